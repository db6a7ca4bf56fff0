//! Property tests of the pure pieces: the conflict search and the quorum position.

use bytes::Bytes;
use floe_raft::log::Log;
use floe_raft::{Entry, MemLog, Membership, NodeId, Offset, Term};
use proptest::prelude::*;

/// A log from (term step, records) pairs: terms never decrease.
fn build(spec: &[(u64, u64)]) -> MemLog {
    let mut log = MemLog::new();
    let mut term = 1;
    for &(step, records) in spec {
        term += step;
        let e = Entry::data(log.end(), Term(term), Bytes::from_static(b"x"), records);
        log.append(&[e]).unwrap();
    }
    log
}

fn boundaries(log: &MemLog) -> Vec<(Offset, Term)> {
    let mut out = vec![(Offset(0), Term(0))];
    out.extend(log.all_entries().iter().map(|e| (e.end(), e.term())));
    out
}

proptest! {
    #[test]
    fn fast_back_off_finds_the_last_boundary_with_a_small_enough_term(
        spec in prop::collection::vec((0u64..3, 1u64..5), 0..30),
        end in 0u64..200,
        term in 0u64..40,
    ) {
        let log = build(&spec);
        let hint = floe_raft::log::find_conflict_by_term(&log, Offset(end), Term(term)).unwrap();
        let expected = boundaries(&log)
            .into_iter()
            .filter(|(e, t)| e.0 <= end && *t <= Term(term))
            .max()
            .unwrap();
        prop_assert_eq!(hint, expected);
    }

    #[test]
    fn quorum_position_is_held_by_a_majority(
        ends in prop::collection::vec(0u64..100, 1..8),
    ) {
        let voters: Vec<NodeId> = (0..ends.len() as u64).map(NodeId).collect();
        let m = Membership::new(voters, []);
        let q = m.quorum_position(|id| Offset(ends[id.0 as usize]));
        let at_least = ends.iter().filter(|&&e| e >= q.0).count();
        prop_assert!(at_least >= m.quorum());
        let above = ends.iter().filter(|&&e| e > q.0).count();
        prop_assert!(above < m.quorum(), "the largest such position");
    }
}
