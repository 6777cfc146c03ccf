//! A hostile test sink that tries to make the host pay for it: it rejects batches with a huge
//! error message (which the host copies into every dead letter and log line), or, in `collect`,
//! makes the host hold memory outside its own linear memory through `wasi:http` (unsent
//! outgoing requests with a full body each, or header `fields` of 56 KiB each).

use oort_sdk::serde::Deserialize;
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink};
use wasip2::http::types::{Fields, OutgoingBody, OutgoingRequest};

/// The action's props.
#[derive(Debug, Deserialize)]
#[serde(
    crate = "oort_sdk::serde",
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct Config {
    /// Reject every batch with this many `\u{1}` characters as the message.
    #[serde(default)]
    pub reject_with: Option<usize>,
    /// In `collect` of the first instance only: `bodies` or `fields`, what to pile up.
    #[serde(default)]
    pub hoard: Option<String>,
    /// How many requests (or fields) to pile up.
    #[serde(default = "default_count")]
    pub count: u32,
}

fn default_count() -> u32 {
    100
}

/// The sink's state.
pub struct Hoarder {
    config: Config,
    generation: u32,
    /// What the host holds for this instance: kept alive until the instance goes.
    requests: Vec<(OutgoingRequest, OutgoingBody)>,
    fields: Vec<Fields>,
}

impl Hoarder {
    /// Unsent requests, each with 1 MiB (or as much as the host takes) written into its body.
    fn hoard_bodies(&mut self) {
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..self.config.count {
            let request = OutgoingRequest::new(Fields::new());
            let Ok(body) = request.body() else { return };
            if let Ok(stream) = body.write() {
                let room = stream.check_write().unwrap_or(0).min(chunk.len() as u64);
                let _ = stream.write(&chunk[..room as usize]);
            }
            self.requests.push((request, body));
        }
    }

    /// Header fields, each holding 56 KiB of values (under any size limit per `fields`: going
    /// over it traps).
    fn hoard_fields(&mut self) {
        let value = vec![b'a'; 8 << 10];
        for _ in 0..self.config.count {
            let fields = Fields::new();
            for i in 0..7 {
                if fields.append(&format!("x-hoard-{i}"), &value).is_err() {
                    break;
                }
            }
            self.fields.push(fields);
        }
    }
}

impl Sink for Hoarder {
    type Config = Config;

    fn configure(ctx: &Context, config: Config) -> Result<Self, SinkError> {
        Ok(Self {
            config,
            generation: ctx.generation,
            requests: Vec::new(),
            fields: Vec::new(),
        })
    }

    fn collect(&mut self, _batch: &Batch) -> Result<(), SinkError> {
        if let Some(n) = self.config.reject_with {
            return Err(SinkError::rejected("\u{1}".repeat(n)));
        }
        if self.generation == 0 {
            match self.config.hoard.as_deref() {
                Some("bodies") => self.hoard_bodies(),
                Some("fields") => self.hoard_fields(),
                Some(other) => {
                    return Err(SinkError::invalid_config(format!("unknown hoard {other}")));
                }
                None => {}
            }
        }
        Ok(())
    }
}

export_sink!(Hoarder);
