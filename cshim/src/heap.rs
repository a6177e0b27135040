//! Gives heap memory that large buffers freed back to the operating system.
//!
//! glibc keeps freed memory inside its heap for reuse, and a heap only shrinks from its top.
//! So when many buffers grow at once and are then given back (300 audio sinks that buffered
//! a second each before their first read: ~28 MiB), the memory stays resident, interleaved
//! with the connections' live state, for the life of the process. `malloc_trim` hands the
//! free pages inside the heap back (`madvise`) without moving anything.
//!
//! Code that frees a large buffer says so with [`released`]. Once at least [`TRIM_AFTER`]
//! has been freed, one trim runs on the media runtime [`TRIM_DELAY`] later, so a burst of
//! releases (every sink of a process drained in one loop) costs one trim: ~16 ms with
//! 300 connections' heap and 30 MiB to give back, ~0.4 ms with nothing to give back. A
//! steady reader never shrinks its buffer, so it never asks for one.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }

    static FREED: AtomicUsize = AtomicUsize::new(0);
    static SCHEDULED: AtomicBool = AtomicBool::new(false);

    pub fn released(bytes: usize) {
        if FREED.fetch_add(bytes, Ordering::Relaxed) + bytes < super::TRIM_AFTER
            || SCHEDULED.swap(true, Ordering::AcqRel)
        {
            return;
        }
        drop(crate::media::exec::spawn(async {
            tokio::time::sleep(super::TRIM_DELAY).await;
            FREED.store(0, Ordering::Relaxed);
            // SAFETY: malloc_trim only returns free pages of glibc's heaps to the kernel.
            unsafe { malloc_trim(0) };
            SCHEDULED.store(false, Ordering::Release);
        }));
    }

    #[cfg(test)]
    pub fn scheduled() -> bool {
        SCHEDULED.load(Ordering::Acquire)
    }
}

/// Freed memory that asks for a trim.
pub const TRIM_AFTER: usize = 1 << 20;
/// How long after the first release the trim runs (releases in between join it).
pub const TRIM_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// `bytes` of a large buffer were just freed.
pub fn released(bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::released(bytes);
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes; // other allocators return memory their own way
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    extern "C" {
        fn mincore(addr: *mut std::ffi::c_void, length: usize, vec: *mut u8) -> std::ffi::c_int;
    }

    /// Whether the page holding `addr` is resident.
    fn resident(addr: usize) -> bool {
        let page = addr & !4095;
        let mut v = 0u8;
        // SAFETY: the page is mapped (inside the heap); mincore only reports on it.
        assert_eq!(unsafe { mincore(page as *mut _, 4096, &mut v) }, 0);
        v & 1 == 1
    }

    #[test]
    fn memory_freed_inside_the_heap_goes_back_after_the_delay() {
        // 16 MiB in 16 KB blocks (below the mmap threshold: on the heap); every other one is
        // freed, so the heap cannot shrink from its top, and what is freed stays resident...
        let mut blocks: Vec<Vec<u8>> = (0..1024).map(|i| vec![1 + i as u8; 16 * 1024]).collect();
        let middles: Vec<usize> = blocks.iter().step_by(2).map(|b| b.as_ptr() as usize + 8 * 1024).collect();
        let freed: usize = blocks.iter_mut().step_by(2).map(|b| std::mem::take(b).capacity()).sum();
        assert!(middles.iter().all(|&a| resident(a)));
        released(freed);
        assert!(glibc::scheduled(), "a trim is scheduled");
        std::thread::sleep(TRIM_DELAY + std::time::Duration::from_millis(300));
        // ...until the trim gives it back (a block another thread of the test process took
        // over meanwhile may be resident again)
        let back = middles.iter().filter(|&&a| !resident(a)).count();
        assert!(back * 10 >= middles.len() * 9, "{back} of {} freed blocks given back", middles.len());
        assert!(blocks.iter().skip(1).step_by(2).all(|b| b.len() == 16 * 1024), "kept blocks intact");
    }
}
