//! The `{{key}}` sink: writes every message to Oort's log with a prefix.

use oort_sdk::serde::Deserialize;
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink, log};

/// The action's props.
#[derive(Deserialize)]
#[serde(crate = "oort_sdk::serde", rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    /// Put before every message.
    #[serde(default)]
    prefix: String,
}

struct {{plugin}} {
    prefix: String,
}

impl Sink for {{plugin}} {
    type Config = Config;

    fn configure(_ctx: &Context, config: Config) -> Result<Self, SinkError> {
        Ok(Self {
            prefix: config.prefix,
        })
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        for message in batch {
            log::info(&format!("{}{}", self.prefix, message.as_str()?));
        }
        Ok(())
    }
}

export_sink!({{plugin}});
