//! Resyncs that compare digests first: a sync by difference when a link comes up without a
//! usable watermark, and anti-entropy rounds on a link that is up. Each takes one of the node's
//! sync slots while it runs; the digest arithmetic is in src/replication/digest.rs.

use std::collections::HashMap;

use bytes::Bytes;
use tracing::info;

use super::*;
use crate::replication::digest;

/// Anti-entropy on one link: the side that dialed compares the two ends' digests (coarse, then
/// fine where the coarse differ, then key by key in the fine buckets that still differ) and has
/// both ends send the whole state of every key that differs; joins do the rest. A safety net:
/// on a healthy tree it finds nothing, and each key it repairs is counted and logged.
#[derive(Debug)]
pub(super) enum AntiEntropy {
    /// Between rounds (or off: `next_ms` is `u64::MAX`): the next starts at `next_ms`.
    Idle { next_ms: u64 },
    /// The peer was asked for its coarse digest.
    Waiting { started_ms: u64 },
    /// The peer was asked for the fine sums under the coarse buckets set in `differ`.
    Refining {
        started_ms: u64,
        log2: u8,
        fine: u8,
        differ: Vec<u64>,
        ours: Vec<digest::Sum>,
    },
    /// The peer was asked for its records in `buckets` (of `2^fine`).
    Keys {
        started_ms: u64,
        fine: u8,
        buckets: Vec<u32>,
    },
}

/// Where a resync without a usable watermark stands.
#[derive(Debug)]
pub(super) enum DigestSync {
    /// None asked for, or done.
    Off,
    /// Waiting for one of the node's [`SyncSlots`]; nothing is sent until one is free.
    Queued {
        /// The records this node holds, for the digest request.
        records: u64,
    },
    /// The peer was asked for its digest; nothing is sent until it comes.
    Waiting,
    /// The coarse sums were compared; the peer was asked for the fine sums under the coarse
    /// buckets set in `differ`, to compare with `ours` (this node's fine sums up to `target`).
    Refining {
        log2: u8,
        fine: u8,
        differ: Vec<u64>,
        ours: Vec<digest::Sum>,
        target: u64,
    },
    /// Up to `target`, only records in the buckets set in `differ` are sent.
    Filter {
        log2: u8,
        differ: Vec<u64>,
        target: u64,
    },
}

/// How often a sync waiting for a slot looks for one.
pub(super) const SLOT_RETRY_MS: u64 = 10;

impl<R: Replica> Link<R> {
    /// A sync waiting for a slot starts if one is free: its digest request goes out.
    pub(super) fn start_sync_if_free(&mut self) {
        if let DigestSync::Queued { records } = self.digest
            && self.config.sync_slots.try_take()
        {
            self.slot = true;
            self.outbox.push_back(Message::DigestRequest {
                records,
                split: DIGEST_SPLIT,
            });
            self.digest = DigestSync::Waiting;
        }
    }

    /// Gives the sync slot back, if this link holds one.
    pub(super) fn release_slot(&mut self) {
        if std::mem::take(&mut self.slot) {
            self.config.sync_slots.give_back();
        }
    }

    /// Starts an anti-entropy round if one is due, this link is caught up and a sync slot is free.
    pub(super) fn start_anti_entropy(&mut self, now: u64) {
        let AntiEntropy::Idle { next_ms } = self.ae else {
            return;
        };
        if now < next_ms
            || self.phase != Phase::Up
            || self.sync.is_some()
            || !matches!(self.digest, DigestSync::Off)
            || !self.window.is_empty()
            || self.cursor < self.replica.current_seq()
        {
            return;
        }
        if !self.config.sync_slots.try_take() {
            self.ae = AntiEntropy::Idle {
                next_ms: now + SLOT_RETRY_MS,
            };
            return;
        }
        self.slot = true;
        let (records, _) = self.replica.pending(0, self.replica.current_seq());
        self.outbox.push_back(Message::DigestRequest {
            records,
            split: ANTI_ENTROPY_SPLIT,
        });
        self.ae = AntiEntropy::Waiting { started_ms: now };
    }

    /// Ends the round: the slot goes back, the next round is due an interval from now.
    pub(super) fn end_anti_entropy(&mut self) {
        self.release_slot();
        self.status.antientropy_rounds += 1;
        let every = self.config.anti_entropy_ms.unwrap_or(u64::MAX);
        self.ae = AntiEntropy::Idle {
            next_ms: self.replica.now_ms().saturating_add(every),
        };
    }

    /// Anti-entropy's coarse round answered: compare, and ask for the fine sums where it differs.
    pub(super) fn on_ae_digest(
        &mut self,
        log2: u8,
        fine: u8,
        sums: &[u8],
    ) -> Result<(), LinkError> {
        let AntiEntropy::Waiting { started_ms } = self.ae else {
            return Err(LinkError::Protocol("a digest nobody asked for".into()));
        };
        if !holds_records(log2, fine, ANTI_ENTROPY_SPLIT, sums)? {
            // The peer holds nothing: nothing it holds differs (what it lacks is not ours to know).
            self.end_anti_entropy();
            return Ok(());
        }
        let ours = digest::sums(fine, self.scan());
        let (differ, differing) = coarse_differ(&ours, log2, fine, sums);
        if differing == 0 {
            self.end_anti_entropy();
            return Ok(());
        }
        self.ask_fine(log2, fine, &differ);
        self.ae = AntiEntropy::Refining {
            started_ms,
            log2,
            fine,
            differ,
            ours,
        };
        Ok(())
    }

    /// Anti-entropy's fine round answered: ask for the records of the fine buckets that differ.
    pub(super) fn on_ae_fine(&mut self, sums: &[u8]) -> Result<(), LinkError> {
        let AntiEntropy::Refining {
            started_ms,
            log2,
            fine,
            differ,
            ours,
        } = std::mem::replace(&mut self.ae, AntiEntropy::Idle { next_ms: u64::MAX })
        else {
            return Err(LinkError::Protocol("fine sums nobody asked for".into()));
        };
        let bits = fine_differ(&ours, log2, fine, &differ, sums)?;
        let mut buckets: Vec<u32> = set_bits(&bits, 1 << fine).map(|b| b as u32).collect();
        buckets.truncate(MAX_KEY_BUCKETS);
        if buckets.is_empty() {
            self.end_anti_entropy();
            return Ok(());
        }
        self.outbox.push_back(Message::KeysRequest {
            fine,
            buckets: buckets.clone(),
        });
        self.ae = AntiEntropy::Keys {
            started_ms,
            fine,
            buckets,
        };
        Ok(())
    }

    /// Anti-entropy's last round: the peer's records where the digests differ, key by key. Each
    /// key both ends hold differently — another version, or the same version with another
    /// content (a string dropped at one end hashes as its live copy does, a merged state does
    /// not) — is sent whole by both ends (ours on every link, the peer's asked for with `Want`),
    /// and joins settle it. A key only one end holds is no difference: the other dropped and
    /// forgot it, or never needed it. Counted as repairs: the keys not merely dropped at one end
    /// at the version the other holds, whose versions are older than a connection timeout before
    /// the round (a newer one may still be on its way).
    pub(super) fn on_keys(&mut self, theirs: Vec<(String, Vec<KeySum>)>) -> Result<(), LinkError> {
        let AntiEntropy::Keys {
            started_ms,
            fine,
            buckets,
        } = std::mem::replace(&mut self.ae, AntiEntropy::Idle { next_ms: u64::MAX })
        else {
            return Err(LinkError::Protocol("keys nobody asked for".into()));
        };
        if theirs.iter().map(|(_, k)| k.len()).sum::<usize>() > MAX_KEY_SUMS {
            return Err(LinkError::Protocol("more keys than a round lists".into()));
        }
        let ours: HashMap<(String, Bytes), Held> = digest::records_in(fine, &buckets, self.scan())
            .into_iter()
            .map(|(c, k, held)| ((c, k), held))
            .collect();
        // A change made within a connection timeout of the round may still be on its way: it is
        // sent again, but not counted as a repair.
        let settled =
            |v: Version| v.ts.physical_ms().saturating_add(self.config.timeout_ms) < started_ms;
        for (cache, sums) in theirs {
            let mut wanted = Vec::new();
            for sum in sums {
                let Some(&held) = ours.get(&(cache.clone(), sum.key.clone())) else {
                    continue;
                };
                let version = held.0;
                let compared = digest::compare(held, &sum);
                if compared == Compared::Same {
                    continue;
                }
                if compared == Compared::Differs && settled(version) && settled(sum.version) {
                    self.status.antientropy_repairs += 1;
                    self.replica
                        .repaired(&cache, &sum.key, version, sum.version);
                }
                self.replica.resend(&cache, &sum.key);
                wanted.push(sum.key);
            }
            for keys in wanted.chunks(MAX_WANTED) {
                self.outbox.push_back(Message::Want {
                    cache: cache.clone(),
                    keys: keys.to_vec(),
                });
            }
        }
        self.end_anti_entropy();
        Ok(())
    }

    /// The peer's coarse digest: compare it with this node's. Where no coarse bucket differs,
    /// nothing up to the target is sent; else the peer is asked for the fine sums under those
    /// that differ. A peer that holds nothing gets everything.
    pub(super) fn on_digest(&mut self, log2: u8, fine: u8, sums: &[u8]) -> Result<(), LinkError> {
        if !matches!(self.digest, DigestSync::Waiting) {
            return Err(LinkError::Protocol("a digest nobody asked for".into()));
        }
        let target = self.sync.as_ref().map_or(0, |(_, t)| *t);
        if !holds_records(log2, fine, DIGEST_SPLIT, sums)? {
            self.digest = DigestSync::Off;
            self.status.full_syncs += 1;
            return Ok(());
        }
        self.status.digest_syncs += 1;
        if let Some((report, _)) = &mut self.sync {
            report.kind = SyncKind::Digest;
        }
        // This node's fine sums, read once: the coarse ones are their sums by prefix.
        let ours = digest::sums(fine, |f| self.replica.digest_records(target, f));
        let (differ, differing) = coarse_differ(&ours, log2, fine, sums);
        info!(
            link = self.id,
            buckets = 1u64 << log2,
            differing,
            "coarse digests compared"
        );
        if differing == 0 {
            self.digest = DigestSync::Filter {
                log2,
                differ,
                target,
            };
            return Ok(());
        }
        self.ask_fine(log2, fine, &differ);
        self.digest = DigestSync::Refining {
            log2,
            fine,
            differ,
            ours,
            target,
        };
        Ok(())
    }

    /// The peer's fine sums under the coarse buckets that differ: only the records of the fine
    /// buckets that differ are sent.
    pub(super) fn on_fine_digest(&mut self, sums: &[u8]) -> Result<(), LinkError> {
        let DigestSync::Refining {
            log2,
            fine,
            differ: coarse,
            ours,
            target,
        } = std::mem::replace(&mut self.digest, DigestSync::Off)
        else {
            return Err(LinkError::Protocol("fine sums nobody asked for".into()));
        };
        let differ = fine_differ(&ours, log2, fine, &coarse, sums)?;
        let differing: u64 = differ.iter().map(|w| u64::from(w.count_ones())).sum();
        let (split, asked) = (
            fine - log2,
            coarse.iter().map(|w| w.count_ones()).sum::<u32>(),
        );
        info!(
            link = self.id,
            buckets = u64::from(asked) << split,
            differing,
            "fine digests compared"
        );
        self.digest = DigestSync::Filter {
            log2: fine,
            differ,
            target,
        };
        Ok(())
    }

    pub(super) fn finish_sync_if_done(&mut self) {
        if let Some((report, target)) = &mut self.sync
            && self.cursor >= *target
        {
            report.done = true;
            info!(
                link = self.id,
                sync = %report.kind,
                changes = report.changes,
                bytes = report.bytes,
                "resync sent"
            );
            self.status.sync = Some(report.clone());
            self.sync = None;
            self.release_slot();
        }
    }

    /// Asks the peer for its fine sums (of `2^fine`) under the coarse buckets set in `differ`.
    fn ask_fine(&mut self, log2: u8, fine: u8, differ: &[u64]) {
        self.outbox.push_back(Message::DigestRefine {
            log2,
            fine,
            buckets: bitmap_bytes(differ, log2),
        });
    }
}
