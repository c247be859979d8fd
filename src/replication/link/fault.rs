//! The test-only fault of [`LinkConfig::fault_drop_permille`](super::LinkConfig): merged deltas
//! that lose parts, to prove that anti-entropy heals what deltas lose.

use super::*;

impl<R: Replica> Link<R> {
    /// The test-only fault of [`LinkConfig::fault_drop_permille`]: a merged change of the live
    /// stream (not of a resync) loses that share of its parts or fields, picked by a hash of the
    /// link, the cursor, the key and the part, so that a seeded run replays.
    pub(super) fn fault(&self, change: Change) -> Change {
        let permille = self.config.fault_drop_permille;
        let Change::Merge(mut m) = change else {
            return change;
        };
        if permille == 0 || self.since == 0 {
            return Change::Merge(m);
        }
        let (id, cursor) = (self.id, self.cursor);
        let dropped = |what: &[u8]| {
            let mut h = crc32fast::Hasher::new();
            h.update(&id.to_le_bytes());
            h.update(&cursor.to_le_bytes());
            h.update(&m.key);
            h.update(what);
            h.finalize() % 1000 < permille
        };
        let body = match &m.body {
            crate::cache::merge::Body::Counter { register, parts } => {
                crate::cache::merge::Body::Counter {
                    register: register.clone(),
                    parts: parts
                        .iter()
                        .filter(|p| !dropped(&p.run.to_le_bytes()))
                        .cloned()
                        .collect(),
                }
            }
            crate::cache::merge::Body::Hash { reset, fields } => crate::cache::merge::Body::Hash {
                reset: *reset,
                fields: fields
                    .iter()
                    .filter(|(name, _)| !dropped(name))
                    .cloned()
                    .collect(),
            },
        };
        if body != m.body {
            m.body = body;
            m.complete = false;
        }
        Change::Merge(m)
    }
}
