//! Catch-up from the log start: compaction, sending and installing snapshots.

use bytes::Bytes;

use super::{Raft, Role};
use crate::error::{CompactError, RaftError};
use crate::log::{Log, Snapshot, SnapshotMeta, term_at};
use crate::message::{AppendResponse, Body, InstallSnapshot};
use crate::types::{NodeId, Offset};

impl<L: Log> Raft<L> {
    /// Discards the log before `up_to` (an entry boundary, already applied), keeping `data`
    /// as the state machine's snapshot there. Followers behind the new start get the snapshot.
    pub fn compact(&mut self, up_to: Offset, data: Bytes) -> Result<(), CompactError> {
        if up_to > self.applied_end {
            return Err(CompactError::NotApplied {
                up_to,
                applied_end: self.applied_end,
            });
        }
        let boundary = self
            .log
            .entry_meta(Offset(up_to.0.saturating_sub(1)))
            .map_err(RaftError::from)?;
        let Some(term) = boundary.filter(|m| m.end == up_to).map(|m| m.term) else {
            return Err(CompactError::NotBoundary { up_to });
        };
        let meta = SnapshotMeta {
            end: up_to,
            term,
            membership: self.members.at(up_to),
        };
        self.log
            .compact(Snapshot { meta, data })
            .map_err(RaftError::from)?;
        self.members.compact(up_to);
        self.persist.mark_log();
        self.finish();
        Ok(())
    }

    /// Sends the log-start snapshot to a follower that needs entries before it.
    pub(super) fn send_snapshot(&mut self, to: NodeId) -> Result<bool, RaftError> {
        let snapshot = self.log.snapshot()?;
        let end = snapshot.meta.end;
        if let Some(pr) = self.lead.as_mut().and_then(|l| l.progress.get_mut(&to)) {
            pr.start_snapshot(end);
        }
        let body = Body::InstallSnapshot(InstallSnapshot {
            meta: snapshot.meta,
            data: snapshot.data,
        });
        self.send_now(to, body);
        Ok(false)
    }

    pub(super) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        snap: InstallSnapshot,
    ) -> Result<(), RaftError> {
        if self.cut_pending() {
            return Ok(()); // as if lost: retried once the damaged log is cut
        }
        self.follow(from);
        let end = snap.meta.end;
        if end > self.commit_end && !self.holds(&snap.meta)? {
            self.members.reset(snap.meta.membership.clone());
            self.log.install_snapshot(Snapshot {
                meta: snap.meta,
                data: snap.data,
            })?;
            self.persist.on_truncate(end);
            self.commit_end = end;
            // A replica that cut its log (corruption) may have applied past the snapshot:
            // its state machine must not go back.
            if end > self.handed_out_end {
                self.snapshot_out = Some(end);
                self.handed_out_end = end;
            }
        } else if end > self.commit_end {
            self.commit_end = end;
        }
        let match_end = self.commit_end;
        let body = Body::AppendResponse(AppendResponse::Success { match_end });
        self.send_durable(from, self.term, body);
        debug_assert!(self.role == Role::Follower);
        Ok(())
    }

    /// Whether the log already holds the snapshot's last entry (then the log is kept).
    fn holds(&self, meta: &SnapshotMeta) -> Result<bool, RaftError> {
        Ok(meta.end >= self.log.start() && term_at(&self.log, meta.end)? == Some(meta.term))
    }
}
