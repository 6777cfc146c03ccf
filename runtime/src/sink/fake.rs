//! A scripted sink for the pipeline's tests: each `collect` takes the next step of its script
//! (deliver, fail transiently, reject, trap, or deliver slowly) and records what it was given
//! and when, in tokio time (so tests run with the clock paused).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::batch::Batch;
use super::connector::Connector;
use crate::host::CallFailure;

/// What one `collect` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Takes the batch.
    Ok,
    /// Fails with `transient`.
    Transient,
    /// Fails with `rejected`.
    Rejected,
    /// Traps (the instance is broken).
    Trap,
    /// Takes the batch after this long.
    Slow(Duration),
}

/// One `collect` call.
#[derive(Debug, Clone)]
pub(super) struct Call {
    /// When it started.
    pub(super) at: tokio::time::Instant,
    /// What it did.
    pub(super) step: Step,
    /// The payloads it was given, as text.
    pub(super) payloads: Vec<String>,
    /// The batch's sequence number.
    pub(super) sequence: u64,
}

#[derive(Debug)]
struct Script {
    steps: VecDeque<Step>,
    then: Step,
    calls: Vec<Call>,
}

/// A scripted sink. Clones share the script and the record, so a test keeps one to steer and
/// inspect the connector it hands the pipeline.
#[derive(Debug, Clone)]
pub struct FakeSink {
    script: Arc<Mutex<Script>>,
}

impl FakeSink {
    /// A sink that plays `steps`, then does `then` for every further call.
    pub(super) fn new(steps: impl IntoIterator<Item = Step>, then: Step) -> Self {
        Self {
            script: Arc::new(Mutex::new(Script {
                steps: steps.into_iter().collect(),
                then,
                calls: Vec::new(),
            })),
        }
    }

    /// A connector playing this script.
    pub(super) fn connector(&self) -> Connector {
        Connector::Fake(Box::new(self.clone()))
    }

    /// From now on, once the steps are played, does `step`.
    pub(super) fn then(&self, step: Step) {
        self.lock().then = step;
    }

    /// The calls so far.
    pub(super) fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The payloads it took, in order.
    pub(super) fn delivered(&self) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter(|c| matches!(c.step, Step::Ok | Step::Slow(_)))
            .flat_map(|c| c.payloads.iter().cloned())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script
            .lock()
            .expect("a test panicked holding the script")
    }

    /// Plays the next step.
    pub(super) async fn collect(&mut self, batch: &Batch) -> Result<(), CallFailure> {
        let step = {
            let mut script = self.lock();
            let step = script.steps.pop_front().unwrap_or(script.then);
            let payloads = batch
                .payloads()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            script.calls.push(Call {
                at: tokio::time::Instant::now(),
                step,
                payloads,
                sequence: batch.sequence(),
            });
            step
        };
        match step {
            Step::Ok => Ok(()),
            Step::Transient => Err(CallFailure::Transient("scripted: down".into())),
            Step::Rejected => Err(CallFailure::Rejected("scripted: refused".into())),
            Step::Trap => Err(CallFailure::Trap("scripted: trapped".into())),
            Step::Slow(pause) => {
                tokio::time::sleep(pause).await;
                Ok(())
            }
        }
    }
}
