//! The dead-letter output of an action: where batches go that the sink refused for good
//! (`rejected`), that trapped it too often (poison), or that could not be delivered or cached.
//!
//! Either a JSON-lines file (one line per message: rule, action, why, when, and the payload) or
//! another action, which receives the original payloads as its own messages.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value as Json;

use super::batch::Batch;
use super::connector::Connector;
use crate::backoff::Backoff;
use crate::host::CallFailure;

/// Why a batch was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// The sink returned `rejected`.
    Rejected,
    /// The batch trapped the sink too many times.
    Poison,
    /// Transient errors outlasted the retries and there is no cache (or it failed).
    Transient,
    /// The sink said its config is wrong while collecting.
    InvalidConfig,
    /// The sink could not be started at all (its module is broken).
    Unavailable,
}

impl DeadReason {
    /// The name written in dead-letter records.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Poison => "poison",
            Self::Transient => "transient",
            Self::InvalidConfig => "invalid-config",
            Self::Unavailable => "unavailable",
        }
    }
}

/// One line of a dead-letter file (fields in the order they are written).
#[derive(Serialize)]
struct Record<'a> {
    action: &'a str,
    dead_lettered_at: &'a str,
    error: &'a str,
    payload: Json,
    reason: &'static str,
    rule: &'a str,
    timestamp: i64,
}

/// Where an action's dead letters go.
pub enum DeadLetter {
    /// Appended to a JSON-lines file.
    File {
        /// The file.
        path: PathBuf,
        /// Open for appending.
        file: std::fs::File,
    },
    /// Delivered to another sink (retried like any batch, without a dead letter of its own).
    Action {
        /// Its name, e.g. `file_0_deadletter`.
        name: String,
        /// Its sink.
        connector: Box<Connector>,
        /// Retries of a transient error.
        retry_count: u32,
        /// Waits between retries.
        backoff: Backoff,
    },
}

impl std::fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { path, .. } => write!(f, "DeadLetter::File({})", path.display()),
            Self::Action { name, .. } => write!(f, "DeadLetter::Action({name})"),
        }
    }
}

impl DeadLetter {
    /// Opens (creating its folder) the dead-letter file at `path`.
    pub fn file(path: PathBuf) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Self::File { path, file })
    }

    /// What it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::File { path, .. } => format!("dead-letter file {}", path.display()),
            Self::Action { name, .. } => format!("dead-letter action `{name}`"),
        }
    }

    /// Hands a batch over; an error says why it could not be taken (then it counts as failed).
    pub async fn send(
        &mut self,
        rule: &str,
        action: &str,
        reason: DeadReason,
        message: &str,
        batch: &Batch,
    ) -> Result<(), String> {
        match self {
            Self::File { path, file } => {
                let at = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
                    .to_rfc3339();
                // One record at a time through a small buffer: a batch's dead letters are never
                // all in memory at once, however long its error message.
                let mut out = std::io::BufWriter::new(&*file);
                for (bytes, ts) in batch {
                    let payload = serde_json::from_slice::<Json>(bytes).unwrap_or_else(|_| {
                        Json::String(String::from_utf8_lossy(bytes).into_owned())
                    });
                    let record = Record {
                        action,
                        dead_lettered_at: &at,
                        error: message,
                        payload,
                        reason: reason.name(),
                        rule,
                        timestamp: ts,
                    };
                    serde_json::to_writer(&mut out, &record)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"))
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                }
                out.flush()
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
            }
            Self::Action {
                connector,
                retry_count,
                backoff,
                ..
            } => {
                let mut attempt = 0;
                loop {
                    match connector.collect(batch).await {
                        Ok(()) => return Ok(()),
                        Err(CallFailure::Transient(m) | CallFailure::Trap(m))
                            if attempt < *retry_count =>
                        {
                            attempt += 1;
                            tracing::debug!("dead-letter sink failed, retrying: {m}");
                            tokio::time::sleep(backoff.delay(attempt)).await;
                        }
                        Err(failure) => return Err(failure.to_string()),
                    }
                }
            }
        }
    }

    /// Flushes and closes it.
    pub async fn close(&mut self) {
        match self {
            Self::File { path, file } => {
                if let Err(e) = file.sync_all() {
                    tracing::warn!("cannot sync {}: {e}", path.display());
                }
            }
            Self::Action {
                name, connector, ..
            } => {
                if let Err(e) = connector.close().await {
                    tracing::error!(action = %name, "closing the dead-letter sink failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_gets_one_json_line_per_message() {
        let dir = std::env::temp_dir().join(format!(
            "oort-dead-letter-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let path = dir.join("dead.jsonl");
        let mut dead = DeadLetter::file(path.clone()).unwrap();
        let mut batch = Batch::new();
        batch.push(br#"{"n":1}"#, 10);
        batch.push(b"not json", 20);
        dead.send("r", "a_0", DeadReason::Rejected, "no \"thanks\"", &batch)
            .await
            .unwrap();
        dead.send("r", "a_0", DeadReason::Poison, "again", &batch)
            .await
            .unwrap();
        dead.close().await;
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let records: Vec<Json> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 4, "{text}");
        assert_eq!(records[0]["rule"], "r");
        assert_eq!(records[0]["action"], "a_0");
        assert_eq!(records[0]["reason"], "rejected");
        assert_eq!(records[0]["error"], "no \"thanks\"");
        assert_eq!(records[0]["timestamp"], 10);
        assert_eq!(records[0]["payload"], serde_json::json!({"n": 1}));
        assert!(records[0]["dead_lettered_at"].is_string());
        assert_eq!(records[1]["payload"], "not json");
        assert_eq!(records[3]["reason"], "poison");
        assert_eq!(records[3]["timestamp"], 20);
    }
}
