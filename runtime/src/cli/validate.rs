//! `oort validate`: everything `run-rule` checks before it reads a row, and nothing more.

use std::process::ExitCode;

use clap::Args;

use super::RuleArgs;

/// Options of `oort validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The rule and where its streams and sinks come from.
    #[command(flatten)]
    pub rule: RuleArgs,
}

/// Runs the command.
pub async fn run(args: ValidateArgs) -> ExitCode {
    let config = args.rule.config();
    match crate::engine::validate(&config).await {
        Ok(report) => {
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
            for (rule, stream, actions) in &report.rules {
                println!("rule {rule}: ok (reads stream {stream})");
                for action in actions {
                    println!("  {action}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
