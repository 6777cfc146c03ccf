//! `oort serve`: run rules as a service managed over eKuiper's REST API, until Ctrl-C or
//! SIGTERM (then every rule stops, draining its actions within the grace period).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::clock::Clock;
use crate::engine::RunConfig;
use crate::host::{ArtifactCache, HostConfig};
use crate::serve::ServeConfig;
use crate::serve::auth::Tokens;
use crate::serve::ceiling::Ceiling;

/// Options of `oort serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A YAML (or JSON) file of the same settings as these options, keyed by the option's name
    /// (`listen: 127.0.0.1:9081`, `data-dir: data`, `allow-path: [out]`). Options given on the
    /// command line win over the file; lists add up.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where the REST API listens (eKuiper's port by default).
    #[arg(long, env = "OORT_LISTEN", default_value = "127.0.0.1:9081")]
    pub listen: SocketAddr,

    /// Where the server keeps its streams, rules and plugins (`oort.redb`) and the actions
    /// their disk caches. Relative paths in streams and rules start here.
    #[arg(long, env = "OORT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// The plugins folder; sink components are `<dir>/sinks/<Name>.wasm`.
    #[arg(long, env = "OORT_PLUGINS", default_value = "plugins")]
    pub plugins: PathBuf,

    /// eKuiper's MQTT source configuration (YAML: a `default` section and named sections that
    /// streams select with CONF_KEY).
    #[arg(long, env = "OORT_MQTT_CONF")]
    pub mqtt_conf: Option<PathBuf>,

    /// eKuiper's redis source configuration, for redis lookup tables (YAML: a `default`
    /// section and named sections that tables select with CONF_KEY).
    #[arg(long, env = "OORT_REDIS_CONF")]
    pub redis_conf: Option<PathBuf>,

    /// Where compiled sink components are cached (default: $OORT_CACHE_DIR, else
    /// $XDG_CACHE_HOME/oort/components, else ~/.cache/oort/components).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,

    /// Sink instances the server may have alive at once in pooled memory (every rule shares one
    /// engine); 0 (the default for a server of many rules) allocates on demand.
    #[arg(long, default_value_t = 0)]
    pub max_instances: u32,

    /// A file of bearer tokens (one a line) the API requires; needed to listen on any address
    /// other than loopback.
    #[arg(long, env = "OORT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by these CA certificates (PEM): a client without one
    /// cannot connect. Authenticates on its own (enough to listen beyond loopback); needs
    /// --tls-cert and --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,

    /// Ceiling: the only folders whose files a rule may grant a sink (repeatable). Any
    /// `--allow-*` option turns the ceiling on for files, hosts and topics alike.
    #[arg(long = "allow-path", value_name = "DIR")]
    pub allow_path: Vec<PathBuf>,

    /// Ceiling: the only hosts a rule may let a sink reach, as HOST:PORT or a CIDR block
    /// (repeatable).
    #[arg(long = "allow-net", value_name = "HOST:PORT|CIDR")]
    pub allow_net: Vec<String>,

    /// Ceiling: the only MQTT topic filters a rule may let a sink publish to (repeatable).
    #[arg(long = "allow-mqtt-topic", value_name = "FILTER")]
    pub allow_mqtt_topic: Vec<String>,

    /// The most bytes a plugin install reads: the `.wasm` or `.zip` (file or download), and
    /// each entry unpacked from an archive.
    #[arg(long, value_name = "BYTES", default_value_t = crate::serve::plugins::DEFAULT_MAX_PLUGIN_BYTES)]
    pub max_plugin_size: u64,

    /// After a stop, how long a rule's actions may go on delivering what they hold
    /// (milliseconds or a duration like "5s").
    #[arg(long, default_value = "5s", value_parser = super::run_rule::parse_grace)]
    pub grace: Duration,
}

impl ServeArgs {
    /// The server configuration these options describe.
    pub fn config(&self) -> Result<ServeConfig, String> {
        let host = HostConfig {
            cache_dir: self.cache_dir.clone().or_else(ArtifactCache::default_dir),
            max_instances: self.max_instances,
            ..HostConfig::default()
        };
        let tokens = match &self.token_file {
            Some(path) => Some(Tokens::load(path)?),
            None => None,
        };
        Ok(ServeConfig {
            listen: self.listen,
            tokens,
            ceiling: Ceiling::new(&self.allow_path, &self.allow_net, &self.allow_mqtt_topic)?,
            grace: self.grace,
            max_plugin_bytes: self.max_plugin_size,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(crate::serve::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.client_ca.clone(),
                }),
                _ => None,
            },
            run: RunConfig {
                rule_paths: Vec::new(),
                stream_paths: Vec::new(),
                plugins_dir: self.plugins.clone(),
                only_rule: None,
                host,
                clock: Clock::System,
                watch: false,
                mqtt_conf: self.mqtt_conf.clone(),
                redis_conf: self.redis_conf.clone(),
                data_dir: self.data_dir.clone(),
                progress_every: None,
                reset_checkpoints: false,
                drain_timeout: None,
                replay: None,
            },
        })
    }
}

/// Expands `oort serve --config FILE`: the file's settings become options placed right after
/// `serve`, before those of the command line, which therefore win (the command is parsed with
/// later options overriding earlier ones). Other commands pass through unchanged. An unknown
/// setting or a value that is not a scalar (or a list of them) is an error naming the file and
/// the setting.
pub fn expand_config(
    args: Vec<std::ffi::OsString>,
    known: &[String],
) -> Result<Vec<std::ffi::OsString>, String> {
    let Some(serve) = args.iter().position(|a| a == "serve") else {
        return Ok(args);
    };
    let mut file = None;
    for (i, arg) in args.iter().enumerate().skip(serve + 1) {
        let text = arg.to_string_lossy();
        if text == "--config" {
            file = args.get(i + 1).map(PathBuf::from);
        } else if let Some(path) = text.strip_prefix("--config=") {
            file = Some(PathBuf::from(path));
        }
    }
    let Some(file) = file else { return Ok(args) };
    let shown = file.display();
    let text = std::fs::read_to_string(&file).map_err(|e| format!("--config {shown}: {e}"))?;
    let settings: std::collections::BTreeMap<String, serde_json::Value> =
        serde_saphyr::from_str(&text).map_err(|e| format!("--config {shown}: {e}"))?;
    let mut options = Vec::new();
    for (key, value) in settings {
        if key == "config" || !known.contains(&key) {
            let hint = crate::sink::props::did_you_mean(&key, known.iter().map(String::as_str))
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "--config {shown}: `{key}` is not a setting of `oort serve`{hint}"
            ));
        }
        let scalar = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let values = match &value {
            serde_json::Value::Array(items) => items.iter().map(scalar).collect(),
            other => scalar(other).map(|v| vec![v]),
        }
        .ok_or_else(|| {
            format!("--config {shown}: `{key}` must be a value or a list of values, got {value}")
        })?;
        for v in values {
            options.push(std::ffi::OsString::from(format!("--{key}")));
            options.push(std::ffi::OsString::from(v));
        }
    }
    let mut out = args;
    out.splice(serve + 1..serve + 1, options);
    Ok(out)
}

/// Runs the command.
pub async fn run(args: ServeArgs) -> ExitCode {
    let shutdown = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("stopping: every rule drains its actions");
    };
    let config = match args.config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match crate::serve::serve(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
