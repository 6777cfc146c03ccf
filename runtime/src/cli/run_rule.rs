//! `oort run-rule`: run until the input ends (or Ctrl-C / SIGTERM), then print the summary.

use std::process::ExitCode;

use clap::Args;

use super::{EXIT_UNDELIVERED, RuleArgs};

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
}

/// Runs the command.
pub async fn run(args: RunRuleArgs) -> ExitCode {
    let mut config = args.rule.config();
    config.watch = args.watch;
    match crate::engine::run(&config, shutdown_signal()).await {
        Ok(report) => {
            if args.json {
                println!("{}", crate::report::to_json(&report));
            } else {
                print!("{}", report.render());
            }
            if report.all_delivered() {
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

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
