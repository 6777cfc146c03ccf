//! Cutting a `delay` short at a rule's stop: the engine runs a rule's evaluations under the
//! rule's [`Interrupt`] and trips it when the rule stops; a `delay` sleeping under it then wakes
//! at once and fails its row with [`CUT`], which the engine counts as a row the stop did not send.

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::EvalError;

/// The error of a row whose `delay` a stop cut short (and of every row evaluated under the
/// interrupt after it): the row is not sent.
pub const CUT: &str = "delay: cut short by the rule's stop";

/// Whether `error` is a row's `delay` cut short by its rule's stop rather than a failure.
pub fn is_cut(error: &EvalError) -> bool {
    error.to_string().contains(CUT)
}

/// A rule's stop as the sleeps in its evaluations see it. Clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<(Mutex<bool>, Condvar)>);

thread_local! {
    /// The interrupt the evaluation running on this thread answers to, if any.
    static CURRENT: RefCell<Option<Interrupt>> = const { RefCell::new(None) };
}

impl Interrupt {
    /// An interrupt not yet tripped.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trips the interrupt: every sleep under it, now or later, ends at once. It stays tripped.
    pub fn trip(&self) {
        let (tripped, wake) = &*self.0;
        *tripped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
    }

    /// Whether [`Interrupt::trip`] was called.
    pub fn is_tripped(&self) -> bool {
        *self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` (an evaluation) on this thread with its sleeps answering to this interrupt.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        /// Puts back the interrupt that was current before, even if `f` panics.
        struct Restore(Option<Interrupt>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let before = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = before);
            }
        }
        let before = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let _restore = Restore(before);
        f()
    }

    /// Sleeps for `duration` or until tripped: true when the whole duration passed.
    fn sleep(&self, duration: Duration) -> bool {
        let (tripped, wake) = &*self.0;
        let deadline = Instant::now().checked_add(duration);
        let mut guard = tripped.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *guard {
                return false;
            }
            guard = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return true;
                    }
                    wake.wait_timeout(guard, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                // Past what the clock can name: only the stop ends it.
                None => wake.wait(guard).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// Sleeps for `duration` on behalf of `delay`: under an interrupt, until it is tripped at most
/// (false then); elsewhere the whole duration.
pub(crate) fn sleep(duration: Duration) -> bool {
    match CURRENT.with(|c| c.borrow().clone()) {
        Some(interrupt) => interrupt.sleep(duration),
        None => {
            std::thread::sleep(duration);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trip_cuts_a_sleep_under_way_and_every_later_one() {
        let interrupt = Interrupt::new();
        let tripper = interrupt.clone();
        let started = Instant::now();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tripper.trip();
        });
        let slept = interrupt.run(|| sleep(Duration::from_millis(i64::MAX as u64)));
        handle.join().unwrap();
        assert!(!slept);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(interrupt.is_tripped());
        assert!(!interrupt.run(|| sleep(Duration::from_secs(3600))));
        // Outside `run` the interrupt is not current.
        assert!(sleep(Duration::from_millis(1)));
    }

    #[test]
    fn an_untripped_interrupt_sleeps_the_whole_duration() {
        let interrupt = Interrupt::new();
        let started = Instant::now();
        assert!(interrupt.run(|| sleep(Duration::from_millis(30))));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
