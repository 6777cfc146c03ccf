//! The switch of an action to a new build: how its pause is timed, and the thread that frees
//! what the switch retires (the old instance, its store and pool slot, the old component).
//!
//! The pause runs from the moment the action stops handing rows to the old build to the moment
//! the new build can take them: the old instance's `close` (which must end before the new
//! build's first `collect`, so that their writes stay in order) and the hand-over. Freeing the
//! old instance needs no such order, so it happens on the reaper thread, after the pause.
//!
//! A pause is measured in wall time, as the action sees it, and split by where that time went:
//! the CPU time of the polls that ran the switch (its own work), the rest of those polls' wall
//! time (the kernel ran something else on the thread meanwhile: a run-queue wait), and the time
//! between polls (the switch waited for I/O and then for a runtime worker to run it again).

use std::future::Future;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the wall time of one pause went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PauseTime {
    /// From the first poll to the end, as the action sees it.
    pub wall: Duration,
    /// The CPU time of the thread(s) while they polled the switch: its own work.
    pub cpu: Duration,
    /// Wall time inside those polls that was not CPU time: the thread was descheduled.
    pub descheduled: Duration,
    /// Wall time between polls: waiting for I/O, then for a worker thread to poll again.
    pub waited: Duration,
}

/// Runs `future`, timing it as a pause (see [`PauseTime`]). The CPU time is read per poll, so a
/// future that moves between worker threads is still measured right.
pub async fn timed<F: Future>(future: F) -> (F::Output, PauseTime) {
    let started = Instant::now();
    let mut future = std::pin::pin!(future);
    let (mut cpu, mut in_polls) = (Duration::ZERO, Duration::ZERO);
    let output = std::future::poll_fn(|cx| {
        let (wall0, cpu0) = (Instant::now(), thread_cpu());
        let poll = future.as_mut().poll(cx);
        cpu += thread_cpu().saturating_sub(cpu0);
        in_polls += wall0.elapsed();
        poll
    })
    .await;
    let wall = started.elapsed();
    // The clocks are read at slightly different moments: CPU time can exceed wall time by the
    // cost of a read.
    let cpu = cpu.min(in_polls);
    let time = PauseTime {
        wall,
        cpu,
        descheduled: in_polls - cpu,
        waited: wall.saturating_sub(in_polls),
    };
    (output, time)
}

/// The calling thread's CPU time so far (zero where there is no per-thread clock).
fn thread_cpu() -> Duration {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }
    #[cfg(not(unix))]
    {
        Duration::ZERO
    }
}

/// Something retired by a swap, freed on the reaper thread (inside the runtime it came from:
/// dropping a store can release sockets and tasks that belong to it).
struct Retired {
    value: Box<dyn Send>,
    runtime: Option<tokio::runtime::Handle>,
}

/// The reaper: one thread for the process, started on first use, at a lower scheduling
/// priority than the runtime's threads so that freeing memory waits for them, not the reverse.
/// `None` if the thread could not be started (values are then freed where they are retired).
static REAPER: OnceLock<Option<mpsc::Sender<Retired>>> = OnceLock::new();

/// How much lower the reaper's priority is (a nice value; Linux sets it per thread).
const REAPER_NICE: i32 = 10;

fn start_reaper() -> Option<mpsc::Sender<Retired>> {
    let (tx, rx) = mpsc::channel::<Retired>();
    let started = std::thread::Builder::new()
        .name("oort-reaper".into())
        .spawn(move || {
            #[cfg(target_os = "linux")]
            if let Err(e) = rustix::process::setpriority_process(None, REAPER_NICE) {
                tracing::debug!("the reaper thread keeps its priority: {e}");
            }
            while let Ok(retired) = rx.recv() {
                let _entered = retired.runtime.as_ref().map(|r| r.enter());
                drop(retired.value);
            }
        });
    match started {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!("no reaper thread ({e}): retired sink instances are freed in place");
            None
        }
    }
}

/// Frees `value` on the reaper thread, off the caller's path: an old instance (its store, linear
/// memory and pool slot), the last reference to an old build's compiled code.
pub fn retire<T: Send + 'static>(value: T) {
    let retired = Retired {
        value: Box::new(value),
        runtime: tokio::runtime::Handle::try_current().ok(),
    };
    match REAPER.get_or_init(start_reaper) {
        Some(tx) => {
            // The reaper never stops while the process runs; if it did, free here.
            if let Err(mpsc::SendError(retired)) = tx.send(retired) {
                drop(retired);
            }
        }
        None => drop(retired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Says on which thread it was dropped.
    struct Witness(mpsc::Sender<Option<String>>);

    impl Drop for Witness {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().map(str::to_string));
        }
    }

    #[test]
    fn retired_values_are_freed_on_the_reaper_thread() {
        let (tx, rx) = mpsc::channel();
        retire(Witness(tx.clone()));
        retire(Witness(tx));
        for _ in 0..2 {
            let thread = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(thread.as_deref(), Some("oort-reaper"));
        }
    }

    #[tokio::test]
    async fn a_retired_value_is_freed_inside_the_runtime_it_came_from() {
        struct NeedsRuntime(mpsc::Sender<bool>);
        impl Drop for NeedsRuntime {
            fn drop(&mut self) {
                let _ = self.0.send(tokio::runtime::Handle::try_current().is_ok());
            }
        }
        let (tx, rx) = mpsc::channel();
        retire(NeedsRuntime(tx));
        let inside = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .unwrap();
        assert!(inside, "dropped outside the runtime");
    }

    #[tokio::test]
    async fn a_pause_is_split_into_work_and_waits() {
        let spin = |d: Duration| {
            let t = Instant::now();
            while t.elapsed() < d {
                std::hint::spin_loop();
            }
        };
        let ((), time) = timed(async {
            spin(Duration::from_millis(20));
            tokio::time::sleep(Duration::from_millis(30)).await;
            spin(Duration::from_millis(20));
        })
        .await;
        assert!(time.wall >= Duration::from_millis(70), "{time:?}");
        // The sleep is a wait between polls, not work: never CPU time. (Part of it can show as
        // descheduled: the kernel may take the thread away inside the first poll after the
        // sleep's deadline is set, and that time is in a poll, not between polls.)
        assert!(
            time.waited + time.descheduled >= Duration::from_millis(30),
            "{time:?}"
        );
        assert!(time.cpu < Duration::from_millis(65), "{time:?}");
        // The spinning is on the CPU unless the kernel took the thread away meanwhile.
        assert!(
            time.cpu + time.descheduled >= Duration::from_millis(40),
            "{time:?}"
        );
        assert!(time.cpu > Duration::ZERO, "{time:?}");
        assert_eq!(time.wall, time.cpu + time.descheduled + time.waited);
    }
}
