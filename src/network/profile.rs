//! Where a forward pass's time goes, by kind of operation.
//!
//! The model marks its parts with [`span`]; while [`profiled`] runs a closure, each span's time
//! is added to its kind, otherwise a span costs one thread-local check. The times are exact on
//! the CPU backend, which computes each operation when it is called; a GPU backend queues work
//! and would charge it to whichever later span waits for it.

use std::cell::RefCell;

/// Time per kind of operation, in order of first appearance.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Profile {
    /// `(kind, milliseconds)`.
    pub parts: Vec<(&'static str, f64)>,
    /// The whole closure, spans and everything between them.
    pub total: f64,
}

struct Recorder {
    clock: fn() -> f64,
    parts: Vec<(&'static str, f64)>,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Runs `f`, charging its time to `kind` when a profile is being recorded.
pub fn span<T>(kind: &'static str, f: impl FnOnce() -> T) -> T {
    let Some(clock) = RECORDER.with_borrow(|r| r.as_ref().map(|r| r.clock)) else {
        return f();
    };
    let start = clock();
    let out = f();
    let elapsed = clock() - start;
    RECORDER.with_borrow_mut(|r| {
        let parts = &mut r.as_mut().expect("recording").parts;
        match parts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, total)) => *total += elapsed,
            None => parts.push((kind, elapsed)),
        }
    });
    out
}

/// Runs `f` and returns its result with the time of each kind of span inside it (`clock` in
/// milliseconds). Spans inside spans are charged to both; the model's spans do not nest.
pub fn profiled<T>(clock: fn() -> f64, f: impl FnOnce() -> T) -> (T, Profile) {
    let previous = RECORDER.replace(Some(Recorder {
        clock,
        parts: Vec::new(),
    }));
    let start = clock();
    let out = f();
    let total = clock() - start;
    let recorder = RECORDER.replace(previous).expect("recording");
    (
        out,
        Profile {
            parts: recorder.parts,
            total,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        static NOW: Cell<f64> = const { Cell::new(0.0) };
    }

    fn fake_clock() -> f64 {
        NOW.get()
    }

    fn advance(ms: f64) {
        NOW.set(NOW.get() + ms);
    }

    #[test]
    fn spans_add_up_by_kind_and_cost_nothing_outside_a_profile() {
        assert_eq!(span("conv", || 7), 7);
        let (out, profile) = profiled(fake_clock, || {
            span("conv", || advance(2.0));
            advance(1.0);
            span("attention", || advance(0.5));
            span("conv", || advance(3.0));
            "done"
        });
        assert_eq!(out, "done");
        assert_eq!(profile.parts, vec![("conv", 5.0), ("attention", 0.5)]);
        assert_eq!(profile.total, 6.5);
        // Recording stopped with the closure.
        assert!(RECORDER.with_borrow(Option::is_none));
    }
}
