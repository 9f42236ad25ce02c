//! The native binaries' allocator: mimalloc, keeping the pages it frees, on small pages.
//!
//! A dense tile allocates and frees activation maps of tens to hundreds of megabytes, layer after
//! layer. By default mimalloc hands freed memory back to the kernel after a second, and maps
//! then come back as fresh pages that the kernel zeroes: in a profile of `celnet heatmap` on a
//! 4,096 px region, clearing pages took 24% of the cycles. Kept, the pages are reused by the next
//! layer and the next tile, and are not handed back before exit; the peak of that command rose
//! about 15%, memory the allocator holds between tiles.
//!
//! The pages are the kernel's small ones: mimalloc asks for transparent huge pages, and on a
//! virtual machine a fresh 2 MB page can cost a fault into the host. On a 2-core VM the same
//! ~550 huge-page faults of `celnet heatmap` on that region took anywhere from 1 to 31 s of
//! system time in a 21-44 s run, from one run to the next; with small pages, 0.3-3.8 s (and
//! about 275,000 cheaper faults).

/// The global allocator of the `celnet` binary and the benches.
pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_purge_delay`, the 16th entry of `mi_option_e` in mimalloc.h (the sys crate names
/// only some of the options).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to return freed pages to the kernel, and the kernel not to back this
/// process with transparent huge pages. Call first thing in `main`.
pub fn keep_freed_pages() {
    // SAFETY: sets an option's value; mimalloc reads options at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
    // mimalloc reads its own huge-page option before `main`; the kernel checks this flag at
    // every fault, so it holds for memory already reserved too. Failure leaves huge pages on,
    // which is slower on some machines but correct.
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_is_the_purge_delay() {
        // Nothing in the tests sets it, so it holds mimalloc's default purge delay, 1,000 ms (no
        // other option defaults to 1,000; the neighbouring ones to 1 and 0).
        // SAFETY: reads an option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(delay, 1000, "option {PURGE_DELAY} is not the purge delay");
    }
}
