//! Catching panics that must not stop the sidecar, and the one panic hook that knows about them.
//!
//! Two kinds of panic are caught, both by the code that can give the record an outcome:
//!
//! - **known library panics** ([`catch_quietly`]): rdkafka 0.39 panics reading a Kafka header
//!   name that is not UTF-8 (`Headers::try_get` calls `CStr::to_str().unwrap()`), and it offers
//!   no other way to read a header with `unsafe` forbidden. The caller
//!   (`record::Record::from_message`) catches each header read, so the record is still delivered,
//!   and reports it itself (a metric, a throttled WARN). Such a panic is expected: the default
//!   hook's "thread panicked at ..." line and backtrace would only be noise, once per record, so
//!   it is not printed — on that thread, inside that call, and nowhere else.
//! - **bugs** ([`message`] of a panic caught by `dispatch`'s lane supervision): those are printed
//!   by the default hook as usual (with their location), and logged at ERROR by the catcher.
//!
//! Both rely on `panic = "unwind"` (the default; the workspace does not change it). Built with
//! `panic = "abort"`, any panic ends the process and Kubernetes restarts it: still never silent.

use std::{
    any::Any,
    cell::Cell,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Once,
};

thread_local! {
    /// Whether a panic on this thread is an expected one being caught by [`catch_quietly`].
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

static HOOK: Once = Once::new();

/// Runs `f`; a panic becomes `Err(message)` and prints nothing. Only for panics the caller
/// expects and handles (a library's known panic on bad input), never to hide bugs.
pub fn catch_quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    install_hook();
    let was = QUIET.with(|q| q.replace(true));
    // Unwind safety: callers pass closures that only read their input and build a new value.
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| message(&*payload))
}

/// Wraps the panic hook in force (the default one, or the test harness's) once, so that it is
/// skipped for panics inside [`catch_quietly`] on the panicking thread. Every other panic is
/// reported exactly as before.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// The message of a caught panic (`panic!("...")`, `expect("...")`), or a placeholder.
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_becomes_its_message_and_the_thread_carries_on() {
        assert_eq!(catch_quietly(|| 7), Ok(7));
        let err = catch_quietly(|| -> u8 { panic!("bad header {}", 3) });
        assert_eq!(err, Err("bad header 3".to_owned()));
        let bytes = vec![0xff_u8];
        let err = catch_quietly(|| std::str::from_utf8(&bytes).map(str::len).expect("utf8"));
        assert!(err.is_err_and(|m| m.starts_with("utf8")));
        assert!(!QUIET.with(Cell::get), "quiet only inside the call");
    }
}
