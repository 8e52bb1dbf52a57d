//! The largest single allocation made by this thread while an input is loaded: a thin wrapper
//! over the system allocator for the whole `loaders` binary, tracking only threads that asked.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Tracking;

thread_local! {
    /// `None` when this thread is not tracked, else the largest request so far.
    static BIGGEST: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Requests over this fail (the process reports the failed allocation and aborts) instead of
/// exhausting the machine's memory; 256 MiB is already a failure (see `fuzz::BIG_ALLOC`).
const REFUSE: usize = 8 << 30;

fn note(size: usize) -> bool {
    BIGGEST
        .try_with(|b| {
            if let Some(m) = b.get() {
                b.set(Some(m.max(size)));
                return size <= REFUSE;
            }
            true
        })
        .unwrap_or(true)
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !note(new_size) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Starts tracking this thread's allocations.
pub fn start() {
    BIGGEST.with(|b| b.set(Some(0)));
}

/// Stops tracking; the largest single request since `start`.
pub fn stop() -> usize {
    BIGGEST.with(|b| b.take()).unwrap_or(0)
}
