//! Ctrl-C, SIGTERM and SIGHUP for commands that must clean up before they exit:
//! `vnfs build` (temporary roots, the chroot's processes), `export` /
//! `image` writing a temporary file, `checkout` (the partial tree), and
//! `commit` / `import` (the unfinished pack). The signal only sets a flag;
//! the work checks it (between build phases, on every write of an output,
//! per file and chunk of a checkout or commit through
//! `Progress::cancelled`, on every read of an imported file or pipe), stops
//! with an error and cleans up on the way out; the process then ends by
//! the same signal (see [`die_by`]).
//!
//! Commands that have nothing to clean up keep the default disposition, so
//! Ctrl-C ends them at once even when they are blocked (e.g. writing into
//! a FIFO nobody reads).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set by SIGINT/SIGTERM/SIGHUP once [`catch`] has installed the handler.
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The signal that set [`REQUESTED`] first, for the exit status.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    let _ = SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP and returns the
/// flag it sets.
pub fn catch() -> &'static AtomicBool {
    // SAFETY: installing a handler that only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        // A closed terminal or a dropped SSH session.
        libc::signal(libc::SIGHUP, on_signal as *const () as libc::sighandler_t);
    }
    &REQUESTED
}

/// The flag [`catch`] sets, without installing the handler: it stays
/// clear unless a handler is installed (for outputs that may or may not
/// need one).
pub fn flag() -> &'static AtomicBool {
    &REQUESTED
}

/// Whether SIGINT, SIGTERM or SIGHUP arrived since [`catch`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The signal that stopped the command, if one did.
pub fn signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// Ends the process by `signal`, as if it had not been caught, once the
/// command has cleaned up: a shell running vnfs in a loop sees the signal
/// and stops the loop too, which an ordinary exit status (even 130) would
/// not make it do. Returns only if the signal could not end the process.
pub fn die_by(signal: i32) {
    // SAFETY: restoring the default disposition and raising the signal
    // at this thread; nothing runs after it if the default ends us.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}
