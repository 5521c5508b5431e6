//! Memory advice for the large vectors the engine touches at random.

/// Asks the kernel to back the spare capacity and contents of `v` with huge pages (2 MiB) where it
/// can: lookups and folds touch such vectors at random, and with 4 KiB pages nearly every touch
/// also misses the TLB, whose page walks (a few at a time) then bound how many cache misses can
/// overlap. Call it before the memory is first written. Only advice: on a system without
/// transparent huge pages, or for a vector under 4 MiB, nothing changes.
#[allow(unsafe_code)]
pub fn huge_pages<T>(v: &mut Vec<T>) {
    const HUGE: usize = 2 << 20;
    let bytes = v.capacity().saturating_mul(std::mem::size_of::<T>());
    if bytes < 2 * HUGE {
        return;
    }
    let start = v.as_mut_ptr() as usize;
    let aligned = start.next_multiple_of(HUGE);
    let end = start.saturating_add(bytes) / HUGE * HUGE;
    if end <= aligned {
        return;
    }
    // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel backs the pages of a range that
    // lies inside the vector's allocation (its bounds rounded inward to 2 MiB); it never changes
    // their contents or validity, and nothing else is passed. A failure is harmless and ignored.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::madvise(
            aligned as *mut libc::c_void,
            end - aligned,
            libc::MADV_HUGEPAGE,
        );
    }
}

/// Asks the processor to bring `slice[i]`'s cache line in (nothing when `i` is out of bounds).
/// Unlike a load, a prefetch retires at once, so a loop of them keeps as many misses in flight as
/// the memory system allows; the probes of the key dictionary issue one per key of a block
/// before they read any (see `keytable.rs`).
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch<T>(slice: &[T], i: usize) {
    if let Some(x) = slice.get(i) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults and never changes memory; the pointer comes from a
        // reference into the slice. SSE (which has PREFETCHT0) is part of every x86_64 target.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (x as *const T).cast::<i8>(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = x;
    }
}
