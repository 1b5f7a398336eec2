//! How the C allocator treats large buffers (glibc on Linux).
//!
//! glibc serves a request above its mmap threshold with a mapping of its own, and
//! raises the threshold to the size of each such block freed (up to 32 MiB). After
//! one large message, the next ones of that size come from the heap instead: a
//! growing line is then copied at each doubling (old and new resident together), and
//! the freed memory stays in the heap. A fixed threshold keeps every buffer from
//! 256 KiB up in a mapping of its own: it grows in place (`mremap`) and goes back to
//! the system as soon as it is freed, so the peak memory of a large message is the
//! message, not two or three times it.

/// Buffers of this size and more get a mapping of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// Call once at start-up, before the threads.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
