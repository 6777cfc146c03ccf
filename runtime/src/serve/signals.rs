//! The server's signals, listened to once for all its rules (a rule run under the server
//! listens to none, so an idle rule costs no listener and no task for them): SIGHUP reads the
//! sink modules of every running rule again and hands new builds to their actions, as
//! `oort run-rule` does for its own rules; SIGUSR1 logs every running rule's counters.

use std::sync::Arc;

use super::Server;
use crate::reload::Outcome;

/// Starts listening (on the current runtime) for as long as it runs.
pub(super) fn listen(server: &Arc<Server>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                let server = Arc::clone(server);
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!(
                            "SIGHUP: checking every running rule's sink modules for new builds"
                        );
                        for (rule, _, reloader) in server.live_rules().await {
                            for (path, outcome) in reloader.reload_all().await {
                                if let Outcome::Swapped { hash, instances } = outcome {
                                    tracing::info!(rule = %rule, module = %path.display(), hash, instances, "new sink build handed to its actions");
                                }
                            }
                        }
                    }
                });
            }
            Err(e) => tracing::warn!("cannot listen for SIGHUP: {e}"),
        }
        if let Some(mut usr1) = crate::engine::listen_usr1() {
            let server = Arc::clone(server);
            tokio::spawn(async move {
                while usr1.recv().await.is_some() {
                    let uptime = server.started.elapsed();
                    for (_, rules, _) in server.live_rules().await {
                        for line in crate::report::progress_lines(&rules, uptime) {
                            tracing::info!("{line}");
                        }
                    }
                }
            });
        }
    }
    #[cfg(not(unix))]
    let _ = server;
}
