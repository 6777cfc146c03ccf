//! Running blocking work from async code: on a multi-threaded runtime the worker hands its
//! other tasks to the other workers first (`block_in_place`), elsewhere the work just runs.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which may block (a redis lookup, a statement that calls `delay`). On a
/// multi-threaded runtime the calling worker's other tasks move to other threads meanwhile, so
/// no other rule or sink waits behind it; on a current-thread runtime, or outside one, `f` runs
/// as it is (there is no other worker to hand the tasks to).
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    if Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}
