//! Registry round trips that do not depend on each other (one per architecture, one per
//! signature) run on scoped threads, one each: there are only ever a handful.

use std::sync::{Condvar, Mutex, PoisonError};

use crate::error::{PublishError, Result};

/// `f` over every item at once, results in the items' order. A panicking call becomes an
/// error naming `reference` and saying what `what` was doing.
pub(crate) fn each<T: Sync, R: Send>(
    items: &[T],
    reference: impl Fn(&T) -> String,
    what: &str,
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Vec<Result<R>> {
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|i| s.spawn(move || f(i))).collect();
        handles
            .into_iter()
            .zip(items)
            .map(|(h, i)| {
                h.join().unwrap_or_else(|_| {
                    Err(PublishError::Reference {
                        reference: reference(i),
                        reason: format!("{what} panicked"),
                    })
                })
            })
            .collect()
    })
}

/// Where threads wait until something has happened: opened once, open for good.
#[derive(Default)]
pub(crate) struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    pub(crate) fn open(&self) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.opened.notify_all();
    }

    /// Returns once the gate is open.
    pub(crate) fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while !*open {
            open = self
                .opened
                .wait(open)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
