//! The metadata cache: brokers, topics, partitions and their leaders.

use std::collections::HashMap;
use std::net::SocketAddr;

use floe_protocol::ErrorCode;
use floe_protocol::client::MetadataResponse;

/// A broker's resolved address and the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerAddr {
    pub(crate) addr: SocketAddr,
    pub(crate) server_name: String,
}

/// One partition's placement, as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionState {
    leader: Option<u64>,
    leader_term: u64,
    replicas: Vec<u64>,
}

/// What the client knows of the cluster. Owned by the [`crate::Client`] behind a lock;
/// every method is a few map operations.
#[derive(Debug, Default)]
pub(crate) struct MetadataCache {
    pub(crate) cluster_id: String,
    brokers: HashMap<u64, BrokerAddr>,
    topics: HashMap<String, Vec<PartitionState>>,
}

impl MetadataCache {
    /// Applies a metadata response: the broker list is replaced, the topics it names are
    /// replaced (or removed when the broker says they do not exist), others are kept.
    pub(crate) fn apply(&mut self, r: MetadataResponse, brokers: HashMap<u64, BrokerAddr>) {
        self.cluster_id = r.cluster_id;
        if !brokers.is_empty() {
            self.brokers = brokers;
        }
        for t in r.topics {
            if t.error == ErrorCode::UnknownTopicOrPartition {
                self.topics.remove(&t.name);
                continue;
            }
            if !t.error.is_ok() {
                continue;
            }
            let n = t.partitions.len();
            let old = self.topics.remove(&t.name).unwrap_or_default();
            let mut parts = vec![
                PartitionState {
                    leader: None,
                    leader_term: 0,
                    replicas: Vec::new(),
                };
                n
            ];
            for p in t.partitions {
                // Partition numbers must be dense; ignore any beyond the count.
                let Some(slot) = parts.get_mut(p.partition as usize) else {
                    continue;
                };
                let mut next = PartitionState {
                    leader: if p.error.is_ok() || p.leader.is_some() {
                        p.leader
                    } else {
                        None
                    },
                    leader_term: p.leader_term,
                    replicas: p.replicas,
                };
                // A broker that hosts no replica only guesses (term 0), and a replica that
                // has not heard of the latest election reports an older term: neither may
                // replace a leader this cache learned with a newer term.
                if let Some(prev) = old.get(p.partition as usize)
                    && prev.leader.is_some()
                    && prev.leader_term > next.leader_term
                    && prev.replicas == next.replicas
                {
                    next.leader = prev.leader;
                    next.leader_term = prev.leader_term;
                }
                *slot = next;
            }
            self.topics.insert(t.name, parts);
        }
    }

    /// Takes the leaders `r` names for partitions whose leader is not known here or only
    /// guessed, or known from an older term (the answer of a replica, asked because another
    /// broker could not tell); nothing else.
    pub(crate) fn merge_leaders(&mut self, r: &MetadataResponse) {
        for t in r.topics.iter().filter(|t| t.error.is_ok()) {
            let Some(parts) = self.topics.get_mut(&t.name) else {
                continue;
            };
            for p in &t.partitions {
                if let (Some(slot), Some(leader)) = (parts.get_mut(p.partition as usize), p.leader)
                    && (slot.leader.is_none() || p.leader_term > slot.leader_term)
                    && self.brokers.contains_key(&leader)
                {
                    slot.leader = Some(leader);
                    slot.leader_term = p.leader_term;
                }
            }
        }
    }

    /// For `topics`' partitions without a known leader, or with only a guess (term 0: the
    /// controller's preferred leader, from a broker that hosts no replica; it may not lead
    /// at all, and following it alone can bounce between two brokers): which broker to ask instead of
    /// `asked` (a broker that hosts no replica of a partition cannot tell who leads it): the
    /// first replica at another address. Returns each such broker with its topics.
    pub(crate) fn replicas_to_ask(
        &self,
        topics: Option<&[String]>,
        asked: SocketAddr,
    ) -> Vec<(BrokerAddr, Vec<String>)> {
        let mut out: Vec<(BrokerAddr, Vec<String>)> = Vec::new();
        let mut names: Vec<&String> = self.topics.keys().collect();
        names.sort();
        for name in names {
            if topics.is_some_and(|want| !want.contains(name)) {
                continue;
            }
            for p in self.topics[name]
                .iter()
                .filter(|p| p.leader.is_none() || p.leader_term == 0)
            {
                let Some(broker) = p
                    .replicas
                    .iter()
                    .filter_map(|r| self.brokers.get(r))
                    .find(|b| b.addr != asked)
                else {
                    continue;
                };
                match out.iter_mut().find(|(b, _)| b.addr == broker.addr) {
                    Some((_, ts)) if !ts.contains(name) => ts.push(name.clone()),
                    Some(_) => {}
                    None => out.push((broker.clone(), vec![name.clone()])),
                }
            }
        }
        out
    }

    /// Broker `id`'s address, if known.
    pub(crate) fn broker(&self, id: u64) -> Option<BrokerAddr> {
        self.brokers.get(&id).cloned()
    }

    pub(crate) fn partition_count(&self, topic: &str) -> Option<u32> {
        self.topics.get(topic).map(|p| p.len() as u32)
    }

    pub(crate) fn topic_names(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }

    pub(crate) fn broker_addrs(&self) -> Vec<BrokerAddr> {
        let mut ids: Vec<_> = self.brokers.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| self.brokers[&id].clone())
            .collect()
    }

    pub(crate) fn leader(&self, topic: &str, partition: u32) -> Option<(u64, BrokerAddr)> {
        let p = self.topics.get(topic)?.get(partition as usize)?;
        let leader = p.leader?;
        Some((leader, self.brokers.get(&leader)?.clone()))
    }

    /// Records that `topic`/`partition`'s leader moved: to `hint` if the broker named a
    /// broker we know, otherwise unknown until the next refresh.
    pub(crate) fn leader_moved(&mut self, topic: &str, partition: u32, hint: Option<u64>) {
        // The hint keeps the term this cache knew: the broker that named it is a replica
        // that saw a leader at least that recent, so a later guess does not undo it.
        let known = hint.filter(|h| self.brokers.contains_key(h));
        if let Some(p) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.get_mut(partition as usize))
        {
            p.leader = known;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::client::{PartitionMetadata, TopicMetadata};

    fn addr(port: u16) -> BrokerAddr {
        BrokerAddr {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            server_name: "n".into(),
        }
    }

    fn response(topic: &str, error: ErrorCode, leaders: &[Option<u64>]) -> MetadataResponse {
        with_replicas(topic, error, leaders, &[])
    }

    fn with_replicas(
        topic: &str,
        error: ErrorCode,
        leaders: &[Option<u64>],
        replicas: &[u64],
    ) -> MetadataResponse {
        MetadataResponse {
            brokers: vec![],
            cluster_id: "c".into(),
            controller_id: None,
            topics: vec![TopicMetadata {
                error,
                name: topic.into(),
                internal: false,
                partitions: leaders
                    .iter()
                    .enumerate()
                    .map(|(i, l)| PartitionMetadata {
                        error: ErrorCode::None,
                        partition: i as u32,
                        leader: *l,
                        leader_term: 1,
                        replicas: replicas.to_vec(),
                        in_sync: vec![],
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn leaders_come_from_the_last_response() {
        let mut m = MetadataCache::default();
        let brokers = HashMap::from([(1, addr(1)), (2, addr(2))]);
        m.apply(response("t", ErrorCode::None, &[Some(1), None]), brokers);
        assert_eq!(m.partition_count("t"), Some(2));
        assert_eq!(m.leader("t", 0), Some((1, addr(1))));
        assert_eq!(m.leader("t", 1), None);
        assert_eq!(m.leader("t", 2), None);
        m.leader_moved("t", 0, Some(2));
        assert_eq!(m.leader("t", 0), Some((2, addr(2))));
        m.leader_moved("t", 0, Some(9)); // unknown broker: forget the leader
        assert_eq!(m.leader("t", 0), None);
        m.apply(
            response("t", ErrorCode::UnknownTopicOrPartition, &[]),
            HashMap::new(),
        );
        assert_eq!(m.partition_count("t"), None);
        assert_eq!(m.broker_addrs(), vec![addr(1), addr(2)]);
    }

    #[test]
    fn unknown_leaders_are_asked_of_a_replica_and_merged() {
        let mut m = MetadataCache::default();
        let brokers = HashMap::from([(1, addr(1)), (2, addr(2)), (3, addr(3))]);
        // Broker 1 hosts no replica of t (replicas 2, 3): it cannot tell the leaders.
        m.apply(
            with_replicas("t", ErrorCode::None, &[None, None], &[2, 3]),
            brokers,
        );
        m.apply(
            with_replicas("u", ErrorCode::None, &[Some(1)], &[1]),
            HashMap::new(),
        );
        let ask = m.replicas_to_ask(None, addr(1).addr);
        assert_eq!(ask, vec![(addr(2), vec!["t".to_string()])]);
        // Broker 2 was the one asked: the next replica is 3.
        assert_eq!(
            m.replicas_to_ask(Some(&["t".to_string()]), addr(2).addr),
            vec![(addr(3), vec!["t".to_string()])]
        );
        assert!(
            m.replicas_to_ask(Some(&["u".to_string()]), addr(1).addr)
                .is_empty()
        );
        // Broker 2 knows partition 1's leader (3), not partition 0's; a known leader of u
        // is not overwritten.
        let mut answer = response("t", ErrorCode::None, &[None, Some(3)]);
        answer
            .topics
            .extend(response("u", ErrorCode::None, &[Some(2)]).topics);
        m.merge_leaders(&answer);
        assert_eq!(m.leader("t", 0), None);
        assert_eq!(m.leader("t", 1), Some((3, addr(3))));
        assert_eq!(m.leader("u", 0), Some((1, addr(1))));
    }

    #[test]
    fn a_guessed_leader_is_checked_with_a_replica_and_never_replaces_a_known_one() {
        let mut m = MetadataCache::default();
        let brokers = HashMap::from([(1, addr(1)), (2, addr(2)), (3, addr(3)), (4, addr(4))]);
        // Broker 1 hosts no replica of t/0 (replicas 2, 3, 4): it names the preferred
        // leader, 2, with term 0, a guess. Replica 4 actually leads, in term 5.
        let guess = |m: &mut MetadataCache| {
            let mut r = with_replicas("t", ErrorCode::None, &[Some(2)], &[2, 3, 4]);
            r.topics[0].partitions[0].leader_term = 0;
            m.apply(r, HashMap::new());
        };
        m.apply(
            with_replicas("t", ErrorCode::None, &[None], &[2, 3, 4]),
            brokers,
        );
        guess(&mut m);
        assert_eq!(m.leader("t", 0), Some((2, addr(2))));
        // A guess is checked with a replica, like an unknown leader.
        assert_eq!(
            m.replicas_to_ask(None, addr(1).addr),
            vec![(addr(2), vec!["t".to_string()])]
        );
        let mut real = with_replicas("t", ErrorCode::None, &[Some(4)], &[2, 3, 4]);
        real.topics[0].partitions[0].leader_term = 5;
        m.merge_leaders(&real);
        assert_eq!(m.leader("t", 0), Some((4, addr(4))));
        assert!(m.replicas_to_ask(None, addr(1).addr).is_empty());
        // The next refresh from broker 1 guesses again: the leader known in term 5 stays.
        guess(&mut m);
        assert_eq!(m.leader("t", 0), Some((4, addr(4))));
        // An answer from an older term does not replace it either; a newer one does.
        let mut older = with_replicas("t", ErrorCode::None, &[Some(3)], &[2, 3, 4]);
        older.topics[0].partitions[0].leader_term = 4;
        m.apply(older, HashMap::new());
        assert_eq!(m.leader("t", 0), Some((4, addr(4))));
        let mut newer = with_replicas("t", ErrorCode::None, &[Some(3)], &[2, 3, 4]);
        newer.topics[0].partitions[0].leader_term = 6;
        m.apply(newer, HashMap::new());
        assert_eq!(m.leader("t", 0), Some((3, addr(3))));
        // Once a NotLeader without a hint forgets it, a guess is taken again (and checked).
        m.leader_moved("t", 0, None);
        guess(&mut m);
        assert_eq!(m.leader("t", 0), Some((2, addr(2))));
        assert_eq!(m.replicas_to_ask(None, addr(1).addr).len(), 1);
    }
}
