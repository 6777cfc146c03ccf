//! The `mqtt` source: subscribes to `DATASOURCE` (MQTT wildcards allowed; a
//! `$share/<group>/<filter>` shared subscription spreads messages across processes) and decodes
//! each message as a row. It reconnects and resubscribes when the broker goes away, and runs
//! until the rule stops.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Chunk, Emitter, Reading, Resources, Source, SourceContext};
use crate::mqtt::{self, Ev, MqttConf};
use crate::stream::StreamDef;

struct Topic<'a>(&'a str);

impl std::fmt::Display for Topic<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "topic {}", self.0)
    }
}

/// Subscribes to a broker's topic, with the run's broker settings (`--mqtt-conf`, a
/// [`Resources`] value; the defaults without one).
pub(super) struct MqttSource;

fn conf(resources: &Resources) -> Arc<MqttConf> {
    resources.get::<MqttConf>().unwrap_or_default()
}

impl Source for MqttSource {
    fn check(&self, def: &StreamDef, resources: &Resources) -> Result<(), String> {
        let conf = conf(resources);
        let settings = conf.settings(def.options.conf_key.as_deref())?;
        settings.qos(1)?;
        settings.check(&conf.base_dir())?;
        if def.options.datasource.is_empty() {
            return Err("DATASOURCE must name the MQTT topic filter".into());
        }
        Ok(())
    }

    fn start(&self, ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> Reading {
        Box::pin(async move { run(&ctx, &conf(&ctx.resources), &tx).await })
    }

    fn replayable(&self, def: &StreamDef, resources: &Resources) -> Result<(), String> {
        let conf = conf(resources);
        let settings = conf.settings(def.options.conf_key.as_deref())?;
        if settings.qos(1)? == rumqttc::QoS::AtMostOnce {
            return Err(
                "it subscribes with qos 0: the broker would not redeliver what a crash \
                        loses (set `qos: 1` or `2` in the MQTT configuration)"
                    .into(),
            );
        }
        Ok(())
    }
}

async fn run(ctx: &SourceContext, conf: &MqttConf, tx: &mpsc::Sender<Chunk>) -> Result<(), String> {
    let def = &ctx.def;
    let settings = conf.settings(def.options.conf_key.as_deref())?;
    let qos = settings.qos(1)?;
    let filter = def.options.datasource.clone();
    let (client, mut events) =
        settings.client(&mqtt::client_id(&def.name), &conf.base_dir(), 64)?;
    let server = settings
        .server
        .clone()
        .unwrap_or_else(|| mqtt::DEFAULT_SERVER.into());
    let mut out = Emitter::new(ctx, tx);
    let mut failures = 0u32;
    loop {
        // Waiting rows go to the rule before waiting on the network.
        let event = if out.pending() {
            match tokio::time::timeout(std::time::Duration::from_millis(5), events.poll()).await {
                Ok(event) => event,
                Err(_) => {
                    if !out.flush().await {
                        break;
                    }
                    continue;
                }
            }
        } else {
            tokio::select! {
                event = events.poll() => event,
                () = tx.closed() => break,
            }
        };
        match event {
            Ok(Ev::ConnAck { resumed }) => {
                failures = 0;
                tracing::info!(stream = %def.name, %server, protocol = client.protocol(), resumed, "connected to the MQTT broker");
                // A new session has no subscription: subscribe on every connection.
                client
                    .try_subscribe(&filter, qos)
                    .map_err(|e| format!("subscribing to {filter}: {e}"))?;
            }
            Ok(Ev::SubAck { refused }) => {
                if refused {
                    return Err(format!("the broker refused the subscription to {filter}"));
                }
                tracing::info!(stream = %def.name, %server, "subscribed to {filter}");
            }
            Ok(Ev::Message { topic, payload }) => {
                if !out.message(&payload, &Topic(&topic)).await {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if tx.is_closed() {
                    break;
                }
                failures += 1;
                let wait = mqtt::backoff(failures);
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(stream = %def.name, %server, "MQTT connection failed ({e}); retrying in {wait:?}");
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = tx.closed() => break,
                }
            }
        }
    }
    out.flush().await;
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), client.disconnect()).await;
    Ok(())
}
