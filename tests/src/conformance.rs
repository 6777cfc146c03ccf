//! The sink conformance harness: what every sink shipped with Oort must do, checked through the
//! real host (`oort::host`), one phase at a time.
//!
//! 1. It loads, and fits the `oort:sink` world.
//! 2. Unknown props are refused with `invalid-config` (never a trap).
//! 3. `configure` has no side effect (the sink's granted folder is unchanged).
//! 4. `configure -> open -> collect* -> close` succeeds, including an empty batch.
//! 5. After `close`, every collected message has reached the target (close flushes).
//! 6. A replacement instance (generation 1) resumes: what it delivers adds to what was there.
//!
//! A network sink is checked against a real server the harness starts on loopback.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail, ensure};
use oort::host::bindings::{WitBatch, WitContext};
use oort::host::{CallFailure, Grants, InstanceTag, Manifest, SinkHost};

use crate::guests::ShippedSink;

/// A server a sink delivers to, started by the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// None: the sink's effect is in its folder, or nowhere.
    None,
    /// An HTTP server (`{server}` in the props is its `host:port`).
    Http,
    /// A Redis server (`{server}` in the props is its `host:port`).
    Redis,
}

/// A running server.
pub enum Server {
    /// The HTTP server.
    Http(crate::http::HttpServer),
    /// The Redis server.
    Redis(crate::redis::RedisServer),
}

impl Server {
    fn addr(&self) -> String {
        match self {
            Self::Http(s) => s.addr.clone(),
            Self::Redis(s) => s.addr(),
        }
    }
}

/// How to drive one sink and check its effect.
pub struct SinkSpec {
    /// Props that must work; `{dir}` is replaced by the test folder, `{server}` by the
    /// server's address.
    pub props: serde_json::Value,
    /// The payload format the sink is given.
    pub format: &'static str,
    /// The server the sink delivers to.
    pub server: ServerKind,
    /// Checks what the sink left in `dir` (or the server) after delivering `messages` (in
    /// order) and closing.
    pub verify: fn(dir: &Path, server: Option<&Server>, messages: &[String]) -> Result<()>,
}

/// The spec of each shipped sink. The match is exhaustive: a new sink needs a spec here.
pub fn spec(sink: ShippedSink) -> SinkSpec {
    match sink {
        ShippedSink::File => SinkSpec {
            props: serde_json::json!({"path": "{dir}/out/result.jsonl"}),
            format: "json",
            server: ServerKind::None,
            verify: |dir, _, messages| {
                let text = std::fs::read_to_string(dir.join("out").join("result.jsonl"))
                    .context("the file sink's output")?;
                let lines: Vec<&str> = text.lines().collect();
                ensure!(
                    lines == messages,
                    "file holds {lines:?}, expected {messages:?}"
                );
                ensure!(text.ends_with('\n'), "close ends the last line");
                Ok(())
            },
        },
        ShippedSink::Counter => SinkSpec {
            props: serde_json::json!({}),
            format: "json",
            server: ServerKind::None,
            verify: |_, _, _| Ok(()),
        },
        ShippedSink::Rest => SinkSpec {
            props: serde_json::json!({"url": "http://{server}/ingest", "method": "post", "timeout": 2000}),
            format: "json",
            server: ServerKind::Http,
            verify: |_, server, messages| {
                let Some(Server::Http(http)) = server else {
                    bail!("no HTTP server")
                };
                let got = http.delivered();
                ensure!(
                    got == messages,
                    "the server got {got:?}, expected {messages:?}"
                );
                Ok(())
            },
        },
        ShippedSink::Redis => SinkSpec {
            props: serde_json::json!({"addr": "{server}", "field": "n"}),
            format: "json",
            server: ServerKind::Redis,
            verify: |_, server, messages| {
                let Some(Server::Redis(redis)) = server else {
                    bail!("no Redis server")
                };
                for message in messages {
                    let row: serde_json::Value = serde_json::from_str(message)?;
                    let key = row["n"].to_string();
                    let held = redis.command(&["GET", &key])?;
                    let held: serde_json::Value =
                        serde_json::from_str(held.text().unwrap_or("null"))?;
                    ensure!(
                        held == row,
                        "redis holds {held} under {key}, expected {row}"
                    );
                }
                Ok(())
            },
        },
    }
}

fn tag(action: &str) -> InstanceTag {
    InstanceTag {
        rule: Arc::from("conformance"),
        action: Arc::from(action),
        instance: 0,
        dropped_logs: Arc::default(),
    }
}

fn context(format: &str, generation: u32) -> WitContext {
    WitContext {
        rule_id: "conformance".into(),
        action: "sink_0".into(),
        instance: 0,
        format: format.into(),
        generation,
    }
}

fn batch(messages: &[String]) -> WitBatch {
    let mut b = WitBatch {
        payloads: Vec::new(),
        ends: Vec::new(),
        timestamps: Vec::new(),
        header: None,
        sequence: 0,
        dynamic: Vec::new(),
    };
    for m in messages {
        b.payloads.extend_from_slice(m.as_bytes());
        b.ends.push(b.payloads.len() as u32);
        b.timestamps.push(1_700_000_000_000);
    }
    b
}

fn props_text(
    spec: &SinkSpec,
    dir: &Path,
    server: Option<&Server>,
) -> serde_json::Map<String, serde_json::Value> {
    let text = spec
        .props
        .to_string()
        .replace("{dir}", &dir.display().to_string())
        .replace("{server}", &server.map(Server::addr).unwrap_or_default());
    serde_json::from_str(&text).unwrap_or_default()
}

fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                let p = e.path();
                out.push(p.display().to_string());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// Runs the whole harness on one component. `dir` is an empty folder for the sink's effects.
pub async fn check(host: &SinkHost, wasm: &Path, spec: &SinkSpec, dir: &Path) -> Result<()> {
    let server = match spec.server {
        ServerKind::None => None,
        ServerKind::Http => Some(Server::Http(crate::http::HttpServer::start())),
        ServerKind::Redis => match crate::redis::RedisServer::start(None) {
            Some(redis) => Some(Server::Redis(redis)),
            // Said why; only outside CI.
            None => return Ok(()),
        },
    };
    let server = server.as_ref();
    // 1. Loads and fits the world.
    let plugin = host
        .load(wasm)
        .with_context(|| format!("loading {}", wasm.display()))?;
    let manifest: &Manifest = &plugin.manifest;

    // 2. Unknown props: invalid-config, not a trap.
    let mut bogus = props_text(spec, dir, server);
    bogus.insert("definitelyNotAProp".into(), serde_json::json!(1));
    let grants = Grants::resolve(manifest, &mut bogus, dir, true)?;
    let mut instance = host
        .instantiate(&plugin, tag("bogus"), &grants)
        .await
        .map_err(anyhow::Error::msg)?;
    match instance
        .configure(
            &context(spec.format, 0),
            &serde_json::Value::Object(bogus).to_string(),
        )
        .await
    {
        Err(CallFailure::InvalidConfig(message)) => {
            ensure!(
                message.contains("definitelyNotAProp"),
                "the invalid-config message should name the prop: {message}"
            );
        }
        other => bail!("unknown props must give invalid-config, got {other:?}"),
    }

    // 3. configure has no side effect.
    let before = snapshot(dir);
    let mut props = props_text(spec, dir, server);
    let grants = Grants::resolve(manifest, &mut props, dir, true)?;
    let props = serde_json::Value::Object(props).to_string();
    let created_by_grants = snapshot(dir);
    let mut instance = host
        .instantiate(&plugin, tag("configure-only"), &grants)
        .await
        .map_err(anyhow::Error::msg)?;
    instance
        .configure(&context(spec.format, 0), &props)
        .await
        .map_err(anyhow::Error::msg)
        .context("configure with valid props")?;
    drop(instance);
    ensure!(
        snapshot(dir) == created_by_grants,
        "configure changed the sink's folder (before: {before:?})"
    );

    // 4. The whole lifecycle.
    let first: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"n":{i},"s":"a\"b"}}"#))
        .collect();
    let second: Vec<String> = (3..5).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    let mut instance = host
        .instantiate(&plugin, tag("lifecycle"), &grants)
        .await
        .map_err(anyhow::Error::msg)?;
    let call = |what: &'static str| move |e: CallFailure| anyhow::anyhow!("{what}: {e}");
    instance
        .configure(&context(spec.format, 0), &props)
        .await
        .map_err(call("configure"))?;
    instance.open(None).await.map_err(call("open"))?;
    instance
        .collect(&batch(&[]))
        .await
        .map_err(call("collect of an empty batch"))?;
    instance
        .collect(&batch(&first))
        .await
        .map_err(call("collect"))?;
    instance
        .collect(&batch(&second))
        .await
        .map_err(call("collect"))?;
    instance.close().await.map_err(call("close"))?;
    drop(instance);

    // 5. Close flushed everything.
    let mut all: Vec<String> = first.iter().chain(&second).cloned().collect();
    (spec.verify)(dir, server, &all).context("after close")?;

    // 6. A replacement instance resumes.
    let more: Vec<String> = vec![r#"{"n":5}"#.to_string()];
    let mut instance = host
        .instantiate(&plugin, tag("replacement"), &grants)
        .await
        .map_err(anyhow::Error::msg)?;
    instance
        .configure(&context(spec.format, 1), &props)
        .await
        .map_err(call("configure"))?;
    instance.open(None).await.map_err(call("open"))?;
    instance
        .collect(&batch(&more))
        .await
        .map_err(call("collect"))?;
    instance.close().await.map_err(call("close"))?;
    all.extend(more);
    (spec.verify)(dir, server, &all).context("after a replacement instance")?;
    Ok(())
}
