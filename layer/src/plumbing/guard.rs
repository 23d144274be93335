//! The panic guard every entry point and every thread of the layer runs
//! under: a Rust panic must never unwind into the application (through an
//! `extern "system"` function it aborts the process), so each is caught,
//! logged once with where it happened, counted, and turned into a result
//! that is legal for the command.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use super::stats::{self, Counter};

thread_local! {
    /// Where and why the last panic on this thread happened, for the guard's
    /// log line.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the default panic message (several lines, and a backtrace hint)
/// with a note the guard turns into its one log line. The hook is this
/// library's own: a cdylib carries its own copy of the standard library.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message} at {location}")));
        }));
    });
}

/// Runs `f`; if it panics, logs one line and returns `fallback`, a result
/// legal for `command`, so that no unwinding ever reaches the caller.
/// Inlined: on the path of every intercepted command, it costs nothing
/// until something panics.
#[inline(always)]
pub fn guard<R: std::fmt::Debug>(command: &str, fallback: R, f: impl FnOnce() -> R) -> R {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            caught(command, &format!("returning {fallback:?}"));
            fallback
        }
    }
}

/// Runs `f`; if it panics, logs one line saying `recovery` and returns `None`.
pub fn try_guard<R>(command: &str, recovery: &str, f: impl FnOnce() -> R) -> Option<R> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            caught(command, recovery);
            None
        }
    }
}

#[cold]
#[inline(never)]
fn caught(command: &str, recovery: &str) {
    stats::count(Counter::PanicsCaught);
    let what = LAST_PANIC
        .try_with(|p| p.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown panic".to_owned());
    tracing::error!("internal error in {command}: {what}; {recovery}");
}

/// Test builds only: panics the first time the site `SYNCFILE_WSI_FAULT`
/// names is reached, to prove that the guards hold.
#[cfg(debug_assertions)]
pub fn fault(site: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    if std::env::var("SYNCFILE_WSI_FAULT").is_ok_and(|v| v == site)
        && !FIRED.swap(true, Ordering::Relaxed)
    {
        panic!("fault injected at {site}");
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn fault(_site: &str) {}
