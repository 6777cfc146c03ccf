//! `oort run-rule`: run until the input ends (or Ctrl-C / SIGTERM, with a grace period for
//! delivery; a second signal stops at once), then print the summary.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{EXIT_STOPPED_BY_ERROR, EXIT_UNDELIVERED, RuleArgs};

/// Options of `oort run-rule`.
#[derive(Debug, Args)]
pub struct RunRuleArgs {
    /// The rule and where its streams and sinks come from.
    #[command(flatten)]
    pub rule: RuleArgs,

    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Hot-reload sink modules: a new build copied over `plugins/sinks/<Name>.wasm` replaces
    /// the running one, at a batch boundary, without stopping the rule. (SIGHUP checks every
    /// module in use for a new build, with or without --watch.)
    #[arg(long)]
    pub watch: bool,

    /// After Ctrl-C or SIGTERM, how long the actions may go on delivering what they hold
    /// (milliseconds or a duration like "5s"). Then, or at a second signal, undelivered batches
    /// stay in the action's cache if it has one and are counted failed otherwise.
    #[arg(long, default_value = "5s", value_parser = parse_grace)]
    pub grace: Duration,

    /// Log every rule's counters this often while the run goes on (milliseconds or a duration
    /// like "10s"); useful for unbounded (MQTT) input. SIGUSR1 logs them at any time.
    #[arg(long, value_parser = parse_grace)]
    pub progress: Option<Duration>,
    /// At the end of the input, how long an action whose sink is down waits for it before
    /// leaving its undelivered rows in its disk cache (milliseconds or a duration like "30s";
    /// 0: do not wait beyond the action's `retryCount`).
    #[arg(long, default_value = "30s", value_parser = parse_grace)]
    pub drain_timeout: Duration,

    /// Replay recorded input in its recorded processing time: FIELD of each row holds the time
    /// it arrived at (milliseconds since the epoch), and each rule runs on a clock its rows
    /// move, so processing-time windows, `now()` and the like fire as they did live and give
    /// the same messages on every run. The streams' rows are merged by that time (equal
    /// times: in FROM order); a row recorded before the one before it comes at the clock's
    /// time; a row without a usable FIELD is an error naming the stream, the row and the field.
    /// For rules without isEventTime and with qos 0.
    #[arg(long, value_name = "FIELD", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub replay_time: Option<String>,

    /// With --replay-time: how far the clock runs on past the last row at the end of the input,
    /// firing the windows that fall due meanwhile (milliseconds or a duration like "1s").
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_grace, requires = "replay_time")]
    pub replay_after: Duration,
}

pub(super) fn parse_grace(text: &str) -> Result<Duration, String> {
    crate::rule::duration_value(&serde_json::Value::from(text))
        .or_else(|| text.parse().ok())
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is not a duration (milliseconds, or like \"5s\")"))
}

/// Runs the command.
pub async fn run(args: RunRuleArgs) -> ExitCode {
    let mut config = args.rule.config();
    config.watch = args.watch;
    config.progress_every = args.progress.filter(|d| !d.is_zero());
    config.drain_timeout = (!args.drain_timeout.is_zero()).then_some(args.drain_timeout);
    config.replay = args
        .replay_time
        .as_deref()
        .map(|field| crate::replay::Replay {
            field: field.into(),
            after: args.replay_after,
        });
    // Signals are counted from the start: the first stops the run, the second stops it now.
    let (signals_tx, signals) = tokio::sync::watch::channel(0u32);
    let listener = tokio::spawn(count_signals(signals_tx));
    let nth = |n: u32| {
        let mut signals = signals.clone();
        async move {
            if signals.wait_for(|&seen| seen >= n).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let outcome = crate::engine::run_with_grace(&config, nth(1), nth(2), Some(args.grace)).await;
    listener.abort();
    match outcome {
        Ok(report) => {
            if args.json {
                println!("{}", crate::report::to_json(&report));
            } else {
                print!("{}", report.render());
            }
            let stopped = report.stopped_by_error();
            for (rule, why) in &stopped {
                eprintln!("error: rule `{rule}` stopped by error: {why}");
            }
            if !stopped.is_empty() {
                ExitCode::from(EXIT_STOPPED_BY_ERROR)
            } else if report.all_delivered() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_UNDELIVERED)
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Listens for Ctrl-C and SIGTERM from now on (so none is missed, and none kills the process
/// before the run has printed its summary), and counts them into `seen`.
fn count_signals(seen: tokio::sync::watch::Sender<u32>) -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        async move {
            let (Ok(mut int), Ok(mut term)) = streams else {
                tracing::error!("cannot listen for Ctrl-C and SIGTERM");
                return;
            };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                seen.send_modify(|n| *n += 1);
            }
        }
    }
    #[cfg(not(unix))]
    async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            seen.send_modify(|n| *n += 1);
        }
    }
}
