//! The README's example sink: logs every message with a prefix (tests keep the two identical).
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink, log, serde::Deserialize};

#[derive(Deserialize)]
#[serde(crate = "oort_sdk::serde", deny_unknown_fields)]
struct MySink {
    prefix: String,
}

impl Sink for MySink {
    type Config = Self;

    fn configure(_ctx: &Context, config: Self) -> Result<Self, SinkError> {
        Ok(config)
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        for message in batch {
            log::info(&format!("{}{}", self.prefix, message.as_str()?));
        }
        Ok(())
    }
}

export_sink!(MySink);
