//! A link's flow-control window: the batches sent and not yet acknowledged, and how many may be.
//! It starts at [`WINDOW`] and, while the window rather than the peer holds the link back,
//! widens by one per acknowledged batch (doubling per round trip) up to [`WINDOW_MAX`].

use std::collections::VecDeque;

/// Batches sent and not yet acknowledged, at most, when a link comes up. With
/// [`BATCH_BYTES`](super::BATCH_BYTES) this bounds what a link has in flight toward a peer that
/// does not acknowledge, whatever its speed.
pub const WINDOW: usize = 8;
/// The most the window grows to. Once a link has filled its window and still has more to send,
/// the round trip holds it back, not the peer or the network: until it catches up, each batch
/// acknowledged widens the window by one (it doubles per round trip) up to this, so a long link
/// carries what its bandwidth allows. A peer that stops acknowledging never opens it. Sent
/// batches are read from the log, not kept, so a wider window costs the sender no memory; what
/// is in flight sits in the sockets and on the wire.
pub const WINDOW_MAX: usize = 64;

/// The batches in flight on one link: `(upto, sent at)` each, oldest first.
#[derive(Debug)]
pub(crate) struct Window {
    inflight: VecDeque<(u64, u64)>,
    /// How many batches may be in flight: from [`WINDOW`] up to [`WINDOW_MAX`].
    size: usize,
    /// The window filled since the link last caught up: it, not the peer, holds the link back,
    /// and each acknowledged batch widens it.
    filled: bool,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            inflight: VecDeque::new(),
            size: WINDOW,
            filled: false,
        }
    }
}

impl Window {
    /// Whether another batch may go out.
    pub fn is_open(&self) -> bool {
        self.inflight.len() < self.size
    }

    /// Whether no batch is in flight.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }

    /// How many batches may be in flight now.
    #[cfg(test)]
    pub fn size(&self) -> usize {
        self.size
    }

    /// When the oldest batch in flight was sent.
    pub fn oldest_sent_ms(&self) -> Option<u64> {
        self.inflight.front().map(|&(_, at)| at)
    }

    /// A batch covering our seqs up to `upto` went out at `now`.
    pub fn sent(&mut self, upto: u64, now: u64) {
        self.inflight.push_back((upto, now));
        if self.inflight.len() >= self.size {
            self.filled = true;
        }
    }

    /// The peer acknowledged up to `upto`: the batches it covers leave, each widening a window
    /// that filled; a link `caught_up` with its log is no longer held back by the window.
    pub fn acked(&mut self, upto: u64, caught_up: bool) {
        while self.inflight.front().is_some_and(|&(u, _)| u <= upto) {
            self.inflight.pop_front();
            if self.filled {
                self.size = (self.size + 1).min(WINDOW_MAX);
            }
        }
        if caught_up {
            self.filled = false;
        }
    }

    /// Forgets what is in flight (a closing link sends the rest regardless).
    pub fn clear(&mut self) {
        self.inflight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_closes_when_full_and_reopens_on_acks() {
        let mut w = Window::default();
        for n in 1..=WINDOW as u64 {
            assert!(w.is_open());
            w.sent(n * 10, n);
        }
        assert!(!w.is_open());
        assert_eq!(w.oldest_sent_ms(), Some(1));
        // An ack below every batch frees nothing.
        w.acked(5, false);
        assert!(!w.is_open());
        w.acked(20, false);
        assert!(w.is_open());
        assert_eq!(w.oldest_sent_ms(), Some(3));
    }

    #[test]
    fn a_filled_window_widens_by_one_per_ack_up_to_its_bound() {
        let mut w = Window::default();
        let mut upto = 0;
        for _ in 0..200 {
            while w.is_open() {
                upto += 1;
                w.sent(upto, upto);
            }
            w.acked(upto, false);
            assert!(w.size() <= WINDOW_MAX);
        }
        assert_eq!(w.size(), WINDOW_MAX);
    }

    #[test]
    fn a_window_that_never_filled_stays_as_it_is() {
        let mut w = Window::default();
        for n in 1..=100 {
            w.sent(n, n);
            w.acked(n, true);
        }
        assert_eq!(w.size(), WINDOW);
        assert!(w.is_empty());
        // Filled, then caught up: the acks of what was in flight widen it, later ones do not.
        for n in 101..=108 {
            w.sent(n, n);
        }
        w.acked(108, true);
        assert_eq!(w.size(), WINDOW + 8);
        w.sent(109, 109);
        w.acked(109, true);
        assert_eq!(w.size(), WINDOW + 8);
    }
}
