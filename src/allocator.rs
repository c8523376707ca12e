//! The global allocator of herald's binaries: mimalloc, asked for plain blocks whenever those
//! are aligned enough.
//!
//! The `mimalloc` crate's allocator asks for every block through mimalloc's aligned entry
//! points, whatever its alignment. In mimalloc 3 those take the plain fast path only while the
//! size's page has a free block at hand; otherwise, for a size whose block is not a power of two
//! (40 or 100 bytes, 1,536…), they over-allocate by the alignment and hand out an interior pointer. A
//! Subscribe made about ten such allocations, each 160 instructions in `callgrind` (see
//! BENCHMARKS.md, the twenty-eighth pass). Every mimalloc block is aligned to a machine word,
//! so a layout aligned to a word or less needs none of that: it goes to `mi_malloc`, and only
//! wider alignments to the aligned entry points.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Alignment every block `mi_malloc` returns has, whatever its size: a machine word. (On 64-bit
/// targets its 8-byte size class is aligned to just that, the larger classes to 16; mimalloc's
/// own aligned reallocation hands any alignment up to a word to its plain path the same way.
/// A build of mimalloc with guard pages, `MI_GUARDED`, which only its debug feature compiles
/// in, would not keep this; herald's build does not have it.)
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc, through its plain entry points for layouts aligned to a word or less.
pub struct Allocator;

// SAFETY: every block comes from mimalloc, aligned as its layout asks (plain blocks are
// word-aligned, wider alignments go to mimalloc's aligned calls); `mi_free` and `mi_realloc*`
// accept any block mimalloc returned, aligned or not.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation calls take any size and a power-of-two alignment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new block keeps its
        // alignment as `alloc` would give it.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes around mimalloc's size classes (not powers of two among them) and
    /// its small-block limit, many blocks of each, so that pages run out of free blocks and
    /// the slower paths are taken too.
    const SIZES: [usize; 12] = [1, 7, 8, 12, 24, 40, 100, 1000, 1025, 1536, 5000, 70_000];

    #[test]
    fn every_block_is_aligned_as_asked_holds_what_was_written_and_survives_a_realloc() {
        let allocator = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in SIZES {
                let layout = Layout::from_size_align(size, align).unwrap();
                let blocks: Vec<*mut u8> = (0..200)
                    .map(|i| {
                        // SAFETY: a non-zero size; the block is written within its size and
                        // freed below with the same layout.
                        let block = unsafe {
                            if i % 2 == 0 {
                                allocator.alloc(layout)
                            } else {
                                allocator.alloc_zeroed(layout)
                            }
                        };
                        assert!(!block.is_null(), "{size} bytes aligned to {align}");
                        assert_eq!(block as usize % align, 0, "{size} bytes aligned to {align}");
                        // SAFETY: `block` holds `size` bytes.
                        let bytes = unsafe { std::slice::from_raw_parts_mut(block, size) };
                        if i % 2 == 1 {
                            assert!(bytes.iter().all(|b| *b == 0), "zeroed {size}/{align}");
                        }
                        bytes.fill((i % 251) as u8);
                        block
                    })
                    .collect();
                for (i, block) in blocks.into_iter().enumerate() {
                    let grown = size * 3 + 5;
                    // SAFETY: `block` came from `alloc` with `layout`; `grown` is non-zero.
                    let moved = unsafe { allocator.realloc(block, layout, grown) };
                    assert!(!moved.is_null(), "{size} → {grown} aligned to {align}");
                    assert_eq!(
                        moved as usize % align,
                        0,
                        "{size} → {grown} aligned to {align}"
                    );
                    // SAFETY: the first `size` bytes were kept, and `grown` bytes are there.
                    let bytes = unsafe { std::slice::from_raw_parts(moved, size) };
                    assert!(
                        bytes.iter().all(|b| *b == (i % 251) as u8),
                        "{size}/{align}"
                    );
                    let layout = Layout::from_size_align(grown, align).unwrap();
                    // SAFETY: `moved` is now a block of `layout`.
                    unsafe { allocator.dealloc(moved, layout) };
                }
            }
        }
    }
}
