//! The sync slots a node's links share: how many full syncs and syncs by difference it sends at
//! once.

/// How many full syncs and syncs by difference a node sends at once. When 50 leaves reconnect
/// to a restarted hub at once, each one that needs more than a delta waits for a slot (its link
/// up, sending nothing yet) instead of 50 scans of the whole cache running side by side: the CPU
/// and the memory in flight stay those of `max` syncs. Deltas take no slot.
#[derive(Debug)]
pub struct SyncSlots {
    max: usize,
    used: std::sync::atomic::AtomicUsize,
    /// The most in use at once so far, for tests and benches.
    peak: std::sync::atomic::AtomicUsize,
}

/// Full syncs and syncs by difference a node sends at once by default.
pub const SYNC_SLOTS: usize = 4;

impl Default for SyncSlots {
    fn default() -> Self {
        SyncSlots::new(SYNC_SLOTS)
    }
}

impl SyncSlots {
    /// At most `max` at once (at least one).
    pub fn new(max: usize) -> Self {
        SyncSlots {
            max: max.max(1),
            used: std::sync::atomic::AtomicUsize::new(0),
            peak: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Takes a slot if one is free.
    pub(crate) fn try_take(&self) -> bool {
        use std::sync::atomic::Ordering::AcqRel;
        let taken = self
            .used
            .fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if let Ok(before) = taken {
            self.peak.fetch_max(before + 1, AcqRel);
        }
        taken.is_ok()
    }

    /// Gives a slot taken back.
    pub(crate) fn give_back(&self) {
        self.used.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Slots in use now.
    pub fn in_use(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The most slots in use at once since the node started.
    pub fn peak(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Acquire)
    }
}
