//! The `counter` sink: reads every message, counts messages and bytes, and logs the totals when
//! it closes. It reaches nothing outside its sandbox: the wasm counterpart of the `nop` sink,
//! used to measure what the sink host itself costs.

use oort_sdk::serde::Deserialize;
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink, log};

/// The action's props.
#[derive(Debug, Default, Deserialize)]
#[serde(
    crate = "oort_sdk::serde",
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct Config {
    /// Also log a line every this many messages (0: only at close).
    #[serde(default)]
    pub log_every: u64,
}

/// The sink's state.
pub struct Counter {
    action: String,
    log_every: u64,
    messages: u64,
    bytes: u64,
}

impl Sink for Counter {
    type Config = Config;

    fn configure(ctx: &Context, config: Config) -> Result<Self, SinkError> {
        Ok(Self {
            action: ctx.action.clone(),
            log_every: config.log_every,
            messages: 0,
            bytes: 0,
        })
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        for message in batch {
            self.messages += 1;
            self.bytes += message.payload.len() as u64;
            if self.log_every > 0 && self.messages.is_multiple_of(self.log_every) {
                log::info(&format!(
                    "{}: {} messages so far",
                    self.action, self.messages
                ));
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        log::info(&format!(
            "{}: counted {} messages, {} bytes",
            self.action, self.messages, self.bytes
        ));
        Ok(())
    }
}

export_sink!(Counter);
