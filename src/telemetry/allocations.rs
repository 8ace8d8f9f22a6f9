//! Allocation counting for profiles (cargo feature `count-allocs`, off by default).
//!
//! `Counting` wraps the binary's allocator and counts every allocation (alloc,
//! alloc_zeroed and realloc each count one; frees are not counted). The count is shown on
//! `/metrics` as `leadrouter_allocations_total` only in a build with the feature, so the
//! contract of DESIGN §10 is unchanged in a normal build. Allocations per request are the
//! difference of two scrapes divided by the requests between them (BENCHMARKS.md, "Hot
//! path (issue 17)").

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

/// The metric a `count-allocs` build adds to `/metrics`.
pub const ALLOCATIONS_TOTAL: &str = "leadrouter_allocations_total";

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Allocations made by the process so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// A global allocator that counts the allocations of the one it wraps.
pub struct Counting<A>(pub A);

// SAFETY: every call is forwarded unchanged to the wrapped allocator.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as `alloc`.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from the wrapped allocator with this layout.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from the wrapped allocator with this layout.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}
