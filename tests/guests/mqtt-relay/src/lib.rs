//! Test sink: publishes every message to the topic `publishTo` through the host's MQTT
//! interface (it has no sockets of its own); `server` and `topics` are its grant.

use oort_sdk::serde::Deserialize;
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink, mqtt};

/// The relay's props.
#[derive(Deserialize)]
#[serde(crate = "oort_sdk::serde", rename_all = "camelCase")]
pub struct Config {
    /// Where each message goes (the grant decides whether it may).
    publish_to: String,
    /// Pads each payload with spaces to this many bytes (to send oversized messages).
    #[serde(default)]
    pad_to: Option<usize>,
    /// The broker (read by the host, through the manifest's grant).
    #[serde(default)]
    #[expect(dead_code, reason = "the host reads it")]
    server: Option<String>,
    /// The granted topic filters (read by the host).
    #[expect(dead_code, reason = "the host reads it")]
    topics: oort_sdk::serde_json::Value,
}

/// Publishes each message as it comes.
pub struct Relay {
    topic: String,
    pad_to: Option<usize>,
}

impl Sink for Relay {
    type Config = Config;

    fn configure(_ctx: &Context, config: Config) -> Result<Self, SinkError> {
        Ok(Self {
            topic: config.publish_to,
            pad_to: config.pad_to,
        })
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        for message in batch.iter() {
            let mut payload = message.payload.to_vec();
            if let Some(len) = self.pad_to {
                payload.resize(len.max(payload.len()), b' ');
            }
            mqtt::publish(&self.topic, &payload, mqtt::Qos::AtLeastOnce, false)?;
        }
        Ok(())
    }
}

export_sink!(Relay);
