//! The one source of processing time, so that tests can fix or drive it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

/// Where "now" comes from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// A clock that only moves when told to (tests).
    Manual(Arc<ManualClock>),
}

/// The state of a manual clock.
#[derive(Debug, Default)]
pub struct ManualClock {
    ms: AtomicI64,
    moved: Notify,
}

impl Clock {
    /// A manual clock starting at `ms` milliseconds since the Unix epoch.
    pub fn manual(ms: i64) -> Self {
        Self::Manual(Arc::new(ManualClock {
            ms: AtomicI64::new(ms),
            moved: Notify::new(),
        }))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Self::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            Self::Manual(clock) => clock.ms.load(Ordering::Relaxed),
        }
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance(&self, ms: i64) {
        if let Self::Manual(clock) = self {
            clock.ms.fetch_add(ms, Ordering::Relaxed);
            clock.moved.notify_waiters();
        }
    }

    /// Moves a manual clock forward to `ms` (never back; no effect on the system clock).
    pub fn advance_to(&self, ms: i64) {
        if let Self::Manual(clock) = self
            && clock.ms.fetch_max(ms, Ordering::Relaxed) < ms
        {
            clock.moved.notify_waiters();
        }
    }

    /// Waits until the clock reads `deadline` (milliseconds since the Unix epoch) or later.
    pub async fn sleep_until(&self, deadline: i64) {
        match self {
            Self::System => {
                let left = deadline.saturating_sub(self.now_ms());
                if left > 0 {
                    tokio::time::sleep(Duration::from_millis(left as u64)).await;
                }
            }
            Self::Manual(clock) => loop {
                let moved = clock.moved.notified();
                if self.now_ms() >= deadline {
                    return;
                }
                moved.await;
            },
        }
    }
}
