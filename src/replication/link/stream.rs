//! The change stream: batches read from the log after the cursor go out within the window;
//! batches that come in are applied and acknowledged.

use bytes::Bytes;

use super::*;
use crate::cache::{Budget, Scan};

/// A `Set` too large for one frame travels as an invalidation: the peer drops its older copy and
/// loads the value itself if it needs it.
/// The most keys one [`Message::Want`] asks for (a longer list is cut: the rest are asked for
/// again with their next change).
pub(super) const MAX_WANTED: usize = 1024;

fn fit_in_frame(change: Change, max_frame: usize) -> Change {
    match change {
        Change::Set {
            key,
            value,
            version,
            ..
        } if key.len() + value.len() + 256 > max_frame => Change::Invalidate { key, version },
        Change::Merge(m) if crate::cache::approx_size(&Change::Merge(m.clone())) > max_frame => {
            Change::Invalidate {
                key: m.key,
                version: m.version,
            }
        }
        other => other,
    }
}

impl<R: Replica> Link<R> {
    pub(super) fn on_batch(&mut self, upto: u64, caches: Vec<CacheChanges>, together: bool) {
        let (replica, status, id) = (&self.replica, &mut self.status, self.id);
        let mut wanted: Vec<(String, Vec<Bytes>)> = Vec::new();
        replica.apply_batch(together, &mut || {
            for group in &caches {
                for change in &group.changes {
                    // A part of a merged state, for a key this node holds no merged state of:
                    // it asks for the whole (it may have dropped parts it once sent).
                    let want = match change {
                        Change::Merge(m) if !m.complete => {
                            replica.wants(&group.cache, &m.key, m.version)
                        }
                        _ => false,
                    };
                    match replica.apply(&group.cache, change, id) {
                        None => {
                            status.unknown_cache_changes += group.changes.len() as u64;
                            warn!(link = id, cache = %group.cache, "changes for a cache this node lacks skipped");
                            break;
                        }
                        Some(applied) => {
                            status.changes_in += 1;
                            status.changes_applied += u64::from(applied);
                            if let Change::Merge(m) = change
                                && want
                            {
                                match wanted.last_mut() {
                                    Some((c, keys)) if *c == group.cache => keys.push(m.key.clone()),
                                    _ => wanted.push((group.cache.clone(), vec![m.key.clone()])),
                                }
                            }
                        }
                    }
                }
            }
        });
        self.advance_recv(upto);
        self.outbox.push_back(Message::Ack { upto });
        for (cache, keys) in wanted {
            for keys in keys.chunks(MAX_WANTED) {
                self.outbox.push_back(Message::Want {
                    cache: cache.clone(),
                    keys: keys.to_vec(),
                });
            }
        }
    }

    pub(super) fn advance_recv(&mut self, upto: u64) {
        if upto > self.recv_upto {
            self.recv_upto = upto;
            if let Some(peer) = &self.peer {
                let resume = Resume {
                    incarnation: peer.incarnation,
                    seq: upto,
                };
                self.watermark = Some((peer.id, resume));
            }
        }
    }

    pub(super) fn on_ack(&mut self, upto: u64) {
        // Caught up, the window is no longer what holds the link back.
        let caught_up = self.cursor >= self.replica.current_seq();
        self.window.acked(upto, caught_up);
        // With nothing left in flight, the peer has everything up to the cursor: what lies
        // between the last batch and the cursor came from the peer itself.
        let covered = if self.window.is_empty() {
            upto.max(self.cursor)
        } else {
            upto
        };
        self.covered(covered);
    }

    /// The peer holds every change of ours up to `upto`.
    pub(super) fn covered(&mut self, upto: u64) {
        if upto > self.status.acked {
            self.status.acked = upto;
            self.acked_event = Some(upto);
        }
    }

    /// The next frame payload to send, if any: queued control messages first, then a batch of
    /// changes read from the log after the cursor.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.start_sync_if_free();
        let message = match self.outbox.pop_front() {
            Some(m) => m,
            None => self.next_batch()?,
        };
        let packing = self.packing;
        match encode(&message).map(|p| if packing { pack(p) } else { p }) {
            Ok(payload) => {
                let now = self.replica.now_ms();
                self.last_sent_ms = now;
                self.status.frames_out += 1;
                self.status.bytes_out += payload.len() as u64 + 4;
                if let Message::Batch { upto, caches, .. } = &message {
                    let n: usize = caches.iter().map(|c| c.changes.len()).sum();
                    self.status.changes_out += n as u64;
                    self.window.sent(*upto, now);
                    if let Some((report, _)) = &mut self.sync {
                        report.changes += n as u64;
                        report.bytes += payload.len() as u64 + 4;
                    }
                    self.finish_sync_if_done();
                }
                Some(payload)
            }
            Err(e) => {
                // Only a bug can make encoding fail; drop the message rather than the node.
                warn!(link = self.id, error = %e, "message not encodable, dropped");
                None
            }
        }
    }

    /// Reads the next records after the cursor into a batch, skipping what came from this link.
    pub(super) fn next_batch(&mut self) -> Option<Message> {
        if !self.wants_changes() {
            return None;
        }
        let max_frame = self.config.max_frame;
        loop {
            let end = self.replica.current_seq();
            let mut upto = end;
            // A resync by difference stops at its target, so that its filter applies to the
            // records it compared and to nothing newer.
            if let DigestSync::Filter { target, .. } = &self.digest {
                if self.cursor >= *target {
                    self.digest = DigestSync::Off;
                } else {
                    upto = upto.min(*target);
                }
            }
            if self.cursor >= upto {
                return None;
            }
            let scan = Scan {
                after: self.cursor,
                upto,
                since: self.since,
                skip: self.id,
            };
            let budget = Budget {
                records: self.config.batch_records,
                bytes: BATCH_BYTES,
            };
            let (mut records, reached, together) = self.replica.changes(scan, budget);
            // Only records up to the target were compared: a batch reaching past it (a group of
            // changes made together is never split) goes whole.
            if let DigestSync::Filter {
                log2,
                differ,
                target,
            } = &self.digest
                && reached <= *target
            {
                let replica = &self.replica;
                records.retain(|(index, change)| {
                    let key = change.key().map(|k| &k[..]);
                    let b = bucket_of(replica.cache_name(*index), key, *log2);
                    differ[b / 64] & (1 << (b % 64)) != 0
                });
            }
            self.cursor = reached;
            if reached >= end {
                // Every record of the log is now on its way, with every part of its state (a
                // scan stopped at a digest's target has not seen the keys written after it).
                self.since = reached;
            }
            if records.is_empty() {
                // Everything in the window came from the peer: nothing to send, but the next
                // ping tells the peer how far it is covered. With nothing in flight, the peer has
                // everything up to the cursor, so it no longer counts as lag.
                if self.window.is_empty() {
                    self.covered(self.cursor);
                }
                self.finish_sync_if_done();
                continue;
            }
            let mut caches: Vec<CacheChanges> = Vec::new();
            let mut last = usize::MAX;
            for (index, change) in records {
                if index != last {
                    last = index;
                    caches.push(CacheChanges {
                        cache: self.replica.cache_name(index).to_string(),
                        changes: Vec::new(),
                    });
                }
                let change = self.fault(change);
                if let Some(group) = caches.last_mut() {
                    group.changes.push(fit_in_frame(change, max_frame));
                }
            }
            return Some(Message::Batch {
                upto: reached,
                caches,
                together,
            });
        }
    }
}
