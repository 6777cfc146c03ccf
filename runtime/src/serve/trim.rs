//! Hands the memory the allocator keeps after a burst of work back to the system while the
//! server idles.
//!
//! The `oort` binary allocates with mimalloc, which gives freed pages back to the system only
//! after a delay, and only when a thread that allocates comes back to it. A server is bursty:
//! creating a rule checks, compiles and instantiates (megabytes allocated and freed), then the
//! rule may sit idle for hours. Without this, a server that created 1,000 rules kept the pages
//! those creates freed (about as much again as the rules themselves hold). A forced collect
//! every [`EVERY`] purges them: a few microseconds when there is nothing to give back.
//!
//! mimalloc's own call (`mi_collect`) is the tool; there is no safe binding of it.

use std::time::Duration;

/// How often freed memory is handed back.
pub(super) const EVERY: Duration = Duration::from_secs(2);

/// Hands back what the allocator holds but no longer uses: the calling thread's empty pages,
/// and every arena's freed pages whose purge is due later.
pub(super) fn release_freed_memory() {
    #[expect(
        unsafe_code,
        reason = "mimalloc's collect takes no pointer and may be called from any thread at any time"
    )]
    // SAFETY: `mi_collect` has no preconditions; when mimalloc is not the global allocator
    // (a test binary), its heaps are empty and the call does nothing.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// Calls [`release_freed_memory`] every [`EVERY`], for as long as the calling runtime runs.
pub(super) async fn periodically() {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        release_freed_memory();
    }
}
