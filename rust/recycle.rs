//! A global-allocator layer that recycles large blocks between calls.
//!
//! A call's outputs (ten arrays of `N` values, 65 bytes a unit) are freed when the caller drops
//! them, usually just before the next call allocates the same sizes again. Handed back to the
//! kernel, every page of them must be faulted in and zeroed again on the next call: 10-15% of
//! a call on a million examples. Here a freed block of at least [`LARGE`] bytes is kept instead
//! (at most [`SLOTS`] of them), with its pages marked `MADV_FREE`: the kernel may still take them
//! whenever it needs memory (then they come back as fresh zero pages), but until it does they
//! stay mapped, and the next allocation of exactly that size and alignment gets the block back
//! with no fault at all. Everything else goes straight to the inner allocator.
//!
//! ```
//! use std::alloc::{GlobalAlloc, Layout, System};
//! use _core::recycle::Recycling;
//!
//! let allocator = Recycling::new(System);
//! let layout = Layout::from_size_align(8 << 20, 64).unwrap();
//! unsafe {
//!     let first = allocator.alloc(layout);
//!     allocator.dealloc(first, layout);
//!     assert_eq!(allocator.alloc(layout), first); // the same block, recycled
//!     allocator.dealloc(first, layout);
//!     allocator.release();
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Blocks this large or larger are recycled (smaller ones are the inner allocator's business).
pub const LARGE: usize = 1 << 20;
/// Blocks kept at most: the ten outputs of a call, twice over, and a few more.
pub const SLOTS: usize = 32;

#[derive(Clone, Copy)]
struct Block {
    address: usize,
    size: usize,
    align: usize,
    /// when it was freed, in recycling order: the oldest is evicted first
    age: u64,
}

struct Slots {
    blocks: [Option<Block>; SLOTS],
    clock: u64,
}

/// The layer: wraps `A`, recycling its large blocks.
pub struct Recycling<A> {
    inner: A,
    slots: Mutex<Slots>,
    /// large allocations served from a kept block
    hits: AtomicU64,
    /// large allocations the inner allocator served
    misses: AtomicU64,
}

impl<A: GlobalAlloc> Recycling<A> {
    pub const fn new(inner: A) -> Self {
        Recycling { inner, slots: Mutex::new(Slots { blocks: [None; SLOTS], clock: 0 }), hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// Hand every kept block back to the inner allocator.
    ///
    /// # Safety
    /// As for [`GlobalAlloc::dealloc`]: no kept block may be in use (none is, by construction).
    pub unsafe fn release(&self) {
        let kept: Vec<Block> = {
            let mut slots = self.lock();
            slots.blocks.iter_mut().filter_map(Option::take).collect()
        };
        for block in kept {
            self.inner.dealloc(block.address as *mut u8, Layout::from_size_align_unchecked(block.size, block.align));
        }
    }

    /// Blocks kept right now.
    pub fn kept(&self) -> usize {
        self.lock().blocks.iter().flatten().count()
    }

    /// (large allocations served from a kept block, large allocations passed on) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // a panic never happens while the lock is held (no allocation, no arithmetic that can
        // fail), but a poisoned lock must not turn every later allocation into an abort
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Tell the kernel it may take the whole 2 MiB pages inside `[address, address + size)` (at
/// most 4 MiB of a block, its two ends, stays resident: 128 MiB over all the slots).
fn mark_free(address: usize, size: usize) {
    #[cfg(target_os = "linux")]
    {
        // whole 2 MiB pages only: marking part of a transparent huge page splits it into 4 KiB
        // ones, and every later call then walks each of them (5% of a pass over a binary file)
        let page = 2 << 20;
        let start = address.div_ceil(page) * page;
        let end = (address + size) / page * page;
        if end > start {
            // SAFETY: the range lies inside a block we own and nobody uses until it is handed
            // out again; MADV_FREE only lets the kernel drop its pages' contents (an old kernel
            // without it returns EINVAL, and the pages simply stay).
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_FREE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (address, size);
}

// SAFETY: every block handed out comes from `inner` with the layout asked for (a recycled one
// was allocated with exactly the same size and an alignment at least as strict, and is used by
// nobody once freed); every block goes back to `inner` with the layout it was allocated with.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Recycling<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LARGE {
            let mut slots = self.lock();
            let found = slots.blocks.iter_mut().find(|b| matches!(b, Some(b) if b.size == layout.size() && b.align >= layout.align()));
            if let Some(block) = found.and_then(Option::take) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return block.address as *mut u8;
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() < LARGE {
            return self.inner.dealloc(ptr, layout);
        }
        mark_free(ptr as usize, layout.size());
        let evicted = {
            let mut slots = self.lock();
            slots.clock += 1;
            let block = Block { address: ptr as usize, size: layout.size(), align: layout.align(), age: slots.clock };
            let slot = match slots.blocks.iter().position(Option::is_none) {
                Some(free) => free,
                None => (0..SLOTS).min_by_key(|&i| slots.blocks[i].map_or(0, |b| b.age)).unwrap_or(0),
            };
            slots.blocks[slot].replace(block)
        };
        if let Some(old) = evicted {
            self.inner.dealloc(old.address as *mut u8, Layout::from_size_align_unchecked(old.size, old.align));
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // a recycled block holds old data: zeroed memory always comes from the inner allocator
        self.inner.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // a recycled block is an `inner` block of this very layout, so `inner` can resize it
        self.inner.realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn large_blocks_come_back_small_ones_do_not() {
        let allocator = Recycling::new(System);
        let large = Layout::from_size_align(LARGE, 8).unwrap();
        let small = Layout::from_size_align(LARGE - 1, 8).unwrap();
        unsafe {
            let a = allocator.alloc(large);
            a.write_bytes(7, LARGE);
            allocator.dealloc(a, large);
            assert_eq!(allocator.kept(), 1);
            // a different size or a stricter alignment is not served from the kept block
            let b = allocator.alloc(Layout::from_size_align(2 * LARGE, 8).unwrap());
            let c = allocator.alloc(Layout::from_size_align(LARGE, 1 << 16).unwrap());
            assert_ne!(b, a);
            assert_ne!(c, a);
            assert_eq!(allocator.alloc(large), a);
            assert_eq!(allocator.kept(), 0);
            // it is writable, whatever the kernel did with its pages
            a.write_bytes(1, LARGE);
            assert_eq!(*a.add(LARGE - 1), 1);
            allocator.dealloc(a, large);
            allocator.dealloc(b, Layout::from_size_align(2 * LARGE, 8).unwrap());
            allocator.dealloc(c, Layout::from_size_align(LARGE, 1 << 16).unwrap());
            assert_eq!(allocator.kept(), 3);
            let s = allocator.alloc(small);
            allocator.dealloc(s, small);
            assert_eq!(allocator.kept(), 3);
            allocator.release();
            assert_eq!(allocator.kept(), 0);
        }
    }

    #[test]
    fn at_most_slots_blocks_are_kept_the_oldest_evicted() {
        let allocator = Recycling::new(System);
        let layouts: Vec<Layout> = (0..SLOTS + 3).map(|i| Layout::from_size_align(LARGE + 4096 * i, 8).unwrap()).collect();
        unsafe {
            let blocks: Vec<*mut u8> = layouts.iter().map(|&l| allocator.alloc(l)).collect();
            for (&block, &layout) in blocks.iter().zip(&layouts) {
                allocator.dealloc(block, layout);
            }
            assert_eq!(allocator.kept(), SLOTS);
            // the three freed first were evicted (handed back), the last SLOTS are kept
            for (i, &layout) in layouts.iter().enumerate().skip(3) {
                assert_eq!(allocator.alloc(layout), blocks[i], "block {i}");
                allocator.dealloc(blocks[i], layout);
            }
            allocator.release();
        }
    }
}
