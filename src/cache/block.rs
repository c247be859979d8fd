//! [`Block`]: an owned byte buffer behind one thin pointer, its length in the allocation — what a
//! store slot keeps its key and inline value in.
//!
//! Written here rather than taken from a crate: `Box<[u8]>` is a 16-byte fat pointer, and the thin
//! vectors on crates.io (`thin-vec`) keep a 16-byte length-and-capacity header. A 4-byte length
//! in the block keeps the slot at 64 bytes — one cache line — and, for the usual small entries,
//! the block in the same allocator size class as without it (BENCHMARKS.md, "Engine v2").

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;

/// Bytes behind a thin pointer: `[len: u32][bytes]` in one allocation; no allocation when empty.
pub(crate) struct Block(Option<NonNull<u32>>);

// SAFETY: a Block owns its allocation exclusively, like a `Box<[u8]>`.
unsafe impl Send for Block {}
// SAFETY: shared access only reads.
unsafe impl Sync for Block {}

/// The longest a block may be (its length is a `u32`).
pub(crate) const BLOCK_MAX: usize = u32::MAX as usize;

impl Block {
    /// An empty block.
    pub const EMPTY: Block = Block(None);

    fn layout(len: usize) -> Layout {
        // 4 + len cannot overflow isize: len is at most u32::MAX.
        Layout::from_size_align(4 + len, 4).unwrap_or_else(|_| unreachable!())
    }

    /// A block holding `a` then `b`. Their lengths together must not exceed [`BLOCK_MAX`].
    pub fn concat(a: &[u8], b: &[u8]) -> Block {
        let len = a.len() + b.len();
        if len == 0 {
            return Block::EMPTY;
        }
        assert!(len <= BLOCK_MAX, "block of {len} bytes");
        let layout = Self::layout(len);
        // SAFETY: the layout is non-zero in size; the writes stay within it (4 header bytes, then
        // exactly `len` bytes), to memory that `a` and `b` cannot overlap (it is fresh).
        unsafe {
            let p = alloc(layout).cast::<u32>();
            let Some(header) = NonNull::new(p) else {
                handle_alloc_error(layout)
            };
            p.write(len as u32);
            let bytes = p.add(1).cast::<u8>();
            std::ptr::copy_nonoverlapping(a.as_ptr(), bytes, a.len());
            std::ptr::copy_nonoverlapping(b.as_ptr(), bytes.add(a.len()), b.len());
            Block(Some(header))
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        match self.0 {
            None => 0,
            // SAFETY: a non-empty block's header is initialised and lives as long as `self`.
            Some(p) => unsafe { p.as_ptr().read() as usize },
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self.0 {
            None => &[],
            // SAFETY: `len` initialised bytes follow the header, owned by `self`.
            Some(p) => unsafe {
                std::slice::from_raw_parts(p.as_ptr().add(1).cast::<u8>(), self.len())
            },
        }
    }

    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len();
        match self.0 {
            None => &mut [],
            // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
            Some(p) => unsafe {
                std::slice::from_raw_parts_mut(p.as_ptr().add(1).cast::<u8>(), len)
            },
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let layout = Self::layout(self.len());
            // SAFETY: allocated in `concat` with this very layout (the length never changes).
            unsafe { dealloc(p.as_ptr().cast::<u8>(), layout) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_holds_its_parts_and_can_be_written() {
        assert_eq!(std::mem::size_of::<Block>(), 8);
        assert_eq!(Block::EMPTY.as_slice(), b"");
        assert_eq!(Block::concat(b"", b"").len(), 0);
        let mut b = Block::concat(b"key", b"value");
        assert_eq!(b.len(), 8);
        assert_eq!(b.as_slice(), b"keyvalue");
        b.as_mut_slice()[3..].copy_from_slice(b"VALUE");
        assert_eq!(b.as_slice(), b"keyVALUE");
        let big = vec![7u8; 100_000];
        assert_eq!(Block::concat(&big, b"!").as_slice().len(), 100_001);
        let blocks: Vec<Block> = (0..1000u32)
            .map(|i| Block::concat(&i.to_le_bytes(), &[1; 50]))
            .collect();
        assert!(
            blocks
                .iter()
                .enumerate()
                .all(|(i, b)| b.as_slice()[..4] == (i as u32).to_le_bytes())
        );
    }
}
