//! What a sink may reach: its manifest says which props name files, network addresses or URLs,
//! the operator's props say which, and the host grants exactly those and nothing else.
//!
//! A sink sees no file, socket, environment variable or argument by default. The manifest
//! (`<Name>.json` beside `<Name>.wasm`, written by the sink's author) can only *point at props*;
//! the values come from the rule the operator wrote. So a sink can be granted the file its
//! `path` prop names, but never pick a file of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The manifest file of a sink component.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// What the sink does, for `oort` listings.
    #[serde(default)]
    pub description: Option<String>,
    /// Which props name things the sink needs access to.
    #[serde(default)]
    pub grants: ManifestGrants,
    /// Props that may hold a data template (`"{{.device}}.csv"`), evaluated by the host for
    /// each message and handed to the sink with each batch (`oort:sink@0.2.0`). A template in
    /// any other prop is refused.
    #[serde(default, rename = "dynamicProps")]
    pub dynamic_props: Vec<String>,
}

/// The grant section of a manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestGrants {
    /// Props whose value is a file path the sink opens.
    #[serde(default)]
    pub files: Vec<FileProp>,
    /// Props naming the MQTT broker and the topics the sink may publish to through the host.
    #[serde(default)]
    pub mqtt: Option<MqttProps>,
    /// Props whose value is a `host:port` (or a list of them) the sink may open TCP connections to.
    #[serde(default)]
    pub sockets: Vec<NetProp>,
    /// Props whose value is an `http://` or `https://` URL: the sink may send `wasi:http`
    /// requests to that URL's scheme and authority.
    #[serde(default)]
    pub http: Vec<NetProp>,
}

/// One prop that names a network address (`sockets`) or a URL (`http`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetProp {
    /// The prop's name, e.g. `addr` or `url`.
    pub prop: String,
    /// The value the prop gets when the rule leaves it out (the sink's own default). It fills
    /// the prop but grants nothing of its own: the sink may reach it only if the operator
    /// grants that same destination (another prop the rule sets, or the rule's `grants`).
    #[serde(default)]
    pub default: Option<String>,
    /// Whether the rule may leave the prop out with no default (then nothing is granted for it).
    #[serde(default)]
    pub optional: bool,
}

/// TCP connections granted to an action: one `host:port` and the addresses it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketGrant {
    /// The host as the rule wrote it (a name or an IP address).
    pub host: String,
    /// The port.
    pub port: u16,
    /// What the host resolved to when the rule started: the sink may connect to these.
    pub addrs: Vec<std::net::SocketAddr>,
}

/// HTTP requests granted to an action: to one scheme and authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port`, lower-cased, with the scheme's default port made explicit.
    pub authority: String,
}

impl HttpGrant {
    /// The grant for an absolute `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not an absolute URL (http://host:port/path)"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            other => return Err(format!("scheme `{other}` is not http or https")),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        Ok(Self {
            authority: normalize_authority(authority, default_port)
                .ok_or_else(|| format!("{url:?} names no host"))?,
            scheme,
        })
    }

    /// Whether a request to `scheme://authority` is inside this grant.
    pub fn allows(&self, scheme: &str, authority: &str) -> bool {
        let default_port = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        self.scheme.eq_ignore_ascii_case(scheme)
            && normalize_authority(authority, default_port).as_deref()
                == Some(self.authority.as_str())
    }
}

/// `host[:port]` lower-cased with the port made explicit; `None` without a host.
fn normalize_authority(authority: &str, default_port: u16) -> Option<String> {
    let authority = authority.to_ascii_lowercase();
    let (host, port) = split_host_port(&authority)?;
    let port = port.unwrap_or(default_port);
    Some(format!("{host}:{port}"))
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`; `None` for an empty host or a bad port.
fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) => (format!("[{host}]"), Some(port)),
            None if after.is_empty() => (format!("[{host}]"), None),
            None => return None,
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (text.to_string(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

/// Which props grant MQTT publishing: the broker (`tcp://host:port`) and the topic filters
/// (a string or a list, MQTT wildcards allowed) the sink may publish to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttProps {
    /// The prop holding the broker URL (absent: `tcp://127.0.0.1:1883`).
    pub server: String,
    /// The prop holding the topic filters.
    pub topics: String,
}

/// MQTT publishing granted to an action: one broker, some topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttGrant {
    /// The broker URL.
    pub server: String,
    /// Topic filters the sink may publish to.
    pub topics: Vec<String>,
}

/// One prop that names a file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProp {
    /// The prop's name, e.g. `path`.
    pub prop: String,
    /// What the sink may do with the file.
    pub access: FileAccess,
    /// Whether the rule may leave the prop out (then nothing is granted for it).
    #[serde(default)]
    pub optional: bool,
    /// A suffix naming a companion file the sink keeps beside this one (the file's path with
    /// the suffix appended, e.g. `.seq` for the file sink's sequence marker): it is granted
    /// with the same access.
    #[serde(default)]
    pub companion: Option<String>,
    /// Props that make the grant cover the file's folder (any file in it, no subfolder) when
    /// the rule sets them to anything but `none` or empty: a sink that names its files itself
    /// within the folder (the `file` sink's `rollingNamePattern` adds a timestamp). A prop the
    /// manifest lists in `dynamicProps` that holds a template always grants the folder of the
    /// template's fixed prefix.
    #[serde(default, rename = "folderWith")]
    pub folder_with: Vec<String>,
}

/// What a sink may do with a granted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileAccess {
    /// Open and read it.
    Read,
    /// Create, read, write, truncate it (and create its folder if missing).
    Write,
}

/// A manifest could not be read, or a prop it points at is missing or not a path.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file is unreadable or not valid.
    #[error("{path}: bad sink manifest: {reason}")]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A prop the manifest names as a file is missing or not a string.
    #[error(
        "prop `{prop}` must be a string naming a file (the sink's manifest declares it a {access:?} file)"
    )]
    PropNotAPath {
        /// The prop's name.
        prop: String,
        /// What access it would grant.
        access: FileAccess,
    },
    /// A prop the manifest names as a network address or URL is missing or wrong.
    #[error("prop `{prop}` {reason} (the sink's manifest grants {what} through it)")]
    BadNetProp {
        /// The prop's name.
        prop: String,
        /// What it grants: `TCP connections` or `HTTP requests`.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A prop the manifest names for MQTT publishing is missing or wrong.
    #[error("prop `{prop}` {reason} (the sink's manifest grants MQTT publishing through it)")]
    BadMqttProp {
        /// The prop's name.
        prop: String,
        /// What is wrong.
        reason: String,
    },
    /// A templated file prop whose folder part is not fixed.
    #[error(
        "prop `{prop}`: {value:?} holds a template in its folder part: only the file name may \
         vary per message (the grant covers one folder, the one before the first `{{{{`)"
    )]
    DynamicFolder {
        /// The prop's name.
        prop: String,
        /// Its value.
        value: String,
    },
    /// The folder of a granted file cannot be created or resolved.
    #[error("prop `{prop}`: cannot use {path}: {reason}")]
    Unusable {
        /// The prop's name.
        prop: String,
        /// The path it names.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
}

impl Manifest {
    /// Reads the manifest beside `module` (`X.wasm` -> `X.json`); no manifest means no grants.
    pub fn beside(module: &Path) -> Result<Self, ManifestError> {
        let path = module.with_extension("json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ManifestError::Invalid {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ManifestError::Invalid {
                path,
                reason: e.to_string(),
            }),
        }
    }
}

/// One granted file, or every file of one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGrant {
    /// Its absolute path on the host (the sink sees the same path); with `folder`, the folder's.
    pub path: PathBuf,
    /// What the sink may do with it.
    pub access: FileAccess,
    /// Whether the grant is the folder at `path`: any file directly in it (no subfolder).
    pub folder: bool,
}

/// Everything one action's instances are granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Files, each by exact path.
    pub files: Vec<FileGrant>,
    /// MQTT publishing through the host.
    pub mqtt: Option<MqttGrant>,
    /// TCP connections, each to one `host:port`.
    pub sockets: Vec<SocketGrant>,
    /// `wasi:http` requests, each to one scheme and authority.
    pub http: Vec<HttpGrant>,
    /// The action's own limits, where it overrides the host's.
    pub limits: Limits,
    /// Each grant above and where it came from, in the order they were granted.
    pub origins: Vec<Effective>,
    /// Manifest defaults that filled props the rule left out (each granted nothing).
    pub defaults: Vec<ManifestDefault>,
}

/// The kinds of grant, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// A file.
    File,
    /// MQTT publishing through the host.
    Mqtt,
    /// TCP connections to one `host:port`.
    Socket,
    /// `wasi:http` requests to one scheme and authority.
    Http,
}

impl std::fmt::Display for GrantKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::File => "file",
            Self::Mqtt => "mqtt",
            Self::Socket => "socket",
            Self::Http => "http",
        })
    }
}

/// Where an effective grant came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A prop the rule sets, which the manifest points at.
    Prop(String),
    /// An entry of the rule's `grants` prop, e.g. `grants.http[0]`.
    Explicit(String),
    /// The host's own default for a prop the rule leaves out (the MQTT broker,
    /// `tcp://127.0.0.1:1883`, as in eKuiper).
    HostDefault(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Prop(prop) => write!(f, "the rule's prop `{prop}`"),
            Self::Explicit(entry) => write!(f, "the rule's `{entry}`"),
            Self::HostDefault(prop) => write!(f, "the host's default (the rule sets no `{prop}`)"),
        }
    }
}

/// One effective grant, for `validate`, `inspect` and the run's start log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// What kind of grant.
    pub kind: GrantKind,
    /// What it grants: a path with its access, an address, a URL's scheme and authority.
    pub target: String,
    /// Where it came from.
    pub origin: Origin,
}

impl std::fmt::Display for Effective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "grant {} {} from {}",
            self.kind, self.target, self.origin
        )
    }
}

/// A default from the manifest that filled a prop the rule left out. It grants nothing: the
/// sink may reach its destination only when the operator granted that destination anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDefault {
    /// `Socket` or `Http`.
    pub kind: GrantKind,
    /// The prop it filled.
    pub prop: String,
    /// The value.
    pub value: String,
}

impl Grants {
    /// Whether the operator granted the destination of a manifest default some other way (the
    /// same `host:port`, or the same scheme and authority).
    pub fn covers(&self, default: &ManifestDefault) -> bool {
        match default.kind {
            GrantKind::Http => HttpGrant::parse(&default.value)
                .is_ok_and(|d| self.http.iter().any(|g| g.allows(&d.scheme, &d.authority))),
            GrantKind::Socket => {
                let Some((host, Some(port))) = split_host_port(&default.value) else {
                    return false;
                };
                let ip = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .ok();
                self.sockets.iter().any(|g| {
                    (g.port == port && g.host.eq_ignore_ascii_case(&host))
                        || ip.is_some_and(|ip| {
                            g.addrs.contains(&std::net::SocketAddr::new(ip, port))
                        })
                })
            }
            GrantKind::File | GrantKind::Mqtt => false,
        }
    }

    /// The manifest defaults whose destination the operator did not grant: the sink may not
    /// reach them.
    pub fn refused_defaults(&self) -> impl Iterator<Item = &ManifestDefault> {
        self.defaults.iter().filter(|d| !self.covers(d))
    }

    /// The effective grants, one line each with where it came from, then each manifest default
    /// and whether the operator's grants cover it.
    pub fn report(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.origins.iter().map(ToString::to_string).collect();
        for default in &self.defaults {
            let verdict = if self.covers(default) {
                "inside a destination the rule grants"
            } else {
                "NOT granted: the rule does not name it (set the prop, or add it to the action's \
                 `grants`, to accept it)"
            };
            lines.push(format!(
                "manifest default {} {} for prop `{}`: {verdict}",
                default.kind, default.value, default.prop
            ));
        }
        lines
    }
}

/// Per-action overrides of the host's instance limits (`None`: the host's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory one instance may grow to, in bytes (`maxMemory`).
    pub max_memory_bytes: Option<usize>,
    /// Wall time of one call (`callTimeout`).
    pub call_timeout: Option<std::time::Duration>,
    /// Fuel one call may burn (`fuel`).
    pub fuel_per_call: Option<u64>,
    /// Files one instance may hold open (`maxOpenFiles`).
    pub max_open_files: Option<usize>,
    /// TCP sockets one instance may hold (`maxSockets`).
    pub max_sockets: Option<usize>,
    /// `wasi:http` requests one instance may have in flight (`maxHttpRequests`).
    pub max_http_requests: Option<usize>,
}

impl Grants {
    /// Derives the grants of an action from its manifest and props. Relative paths are resolved
    /// against `base_dir` (the rule file's folder) and the props are rewritten to the absolute
    /// path, which is what the sink then opens. With `prepare`, folders of writable files are
    /// created (running); without it nothing on disk changes (validating).
    pub fn resolve(
        manifest: &Manifest,
        props: &mut serde_json::Map<String, serde_json::Value>,
        base_dir: &Path,
        prepare: bool,
    ) -> Result<Self, ManifestError> {
        let mut files = Vec::new();
        let mut origins = Vec::new();
        let mut defaults = Vec::new();
        for file in &manifest.grants.files {
            let value = match props.get(&file.prop) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
                None if file.optional => continue,
                _ => {
                    return Err(ManifestError::PropNotAPath {
                        prop: file.prop.clone(),
                        access: file.access,
                    });
                }
            };
            let folder_with = file.folder_with.iter().any(|p| {
                props
                    .get(p)
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("none"))
            });
            if manifest.dynamic_props.contains(&file.prop) && value.contains("{{") || folder_with {
                let (dir, name) =
                    templated_folder(&value).ok_or_else(|| ManifestError::DynamicFolder {
                        prop: file.prop.clone(),
                        value: value.clone(),
                    })?;
                let dir = absolute(base_dir, Path::new(if dir.is_empty() { "." } else { dir }));
                let unusable = |reason: String| ManifestError::Unusable {
                    prop: file.prop.clone(),
                    path: dir.clone(),
                    reason,
                };
                if prepare && file.access == FileAccess::Write {
                    std::fs::create_dir_all(&dir).map_err(|e| unusable(e.to_string()))?;
                }
                let dir = match dir.canonicalize() {
                    Ok(dir) => dir,
                    Err(_) if !prepare => dir.clone(),
                    Err(e) => return Err(unusable(e.to_string())),
                };
                let shown = dir.to_string_lossy().into_owned();
                origins.push(Effective {
                    kind: GrantKind::File,
                    target: format!(
                        "{shown}/* ({}, any file in the folder)",
                        format!("{:?}", file.access).to_lowercase()
                    ),
                    origin: Origin::Prop(file.prop.clone()),
                });
                props.insert(
                    file.prop.clone(),
                    serde_json::Value::String(format!("{shown}/{name}")),
                );
                files.push(FileGrant {
                    path: dir,
                    access: file.access,
                    folder: true,
                });
                continue;
            }
            let path = absolute(base_dir, Path::new(&value));
            let unusable = |reason: String| ManifestError::Unusable {
                prop: file.prop.clone(),
                path: path.clone(),
                reason,
            };
            let (Some(dir), Some(_)) = (path.parent(), path.file_name()) else {
                return Err(unusable("it names no file".into()));
            };
            if prepare && file.access == FileAccess::Write {
                std::fs::create_dir_all(dir).map_err(|e| unusable(e.to_string()))?;
            }
            // Resolve symlinks in the folder, so the grant names the real place.
            let path = match dir.canonicalize() {
                Ok(dir) => dir.join(path.file_name().unwrap_or_default()),
                Err(_) if !prepare => path.clone(),
                Err(e) => return Err(unusable(e.to_string())),
            };
            let shown = path.to_string_lossy().into_owned();
            origins.push(Effective {
                kind: GrantKind::File,
                target: format!("{shown} ({})", format!("{:?}", file.access).to_lowercase()),
                origin: Origin::Prop(file.prop.clone()),
            });
            props.insert(file.prop.clone(), serde_json::Value::String(shown));
            if let Some(suffix) = file.companion.as_deref().filter(|s| !s.contains('/')) {
                let mut companion = path.clone().into_os_string();
                companion.push(suffix);
                let companion = PathBuf::from(companion);
                origins.push(Effective {
                    kind: GrantKind::File,
                    target: format!(
                        "{} ({})",
                        companion.to_string_lossy(),
                        format!("{:?}", file.access).to_lowercase()
                    ),
                    origin: Origin::Prop(file.prop.clone()),
                });
                files.push(FileGrant {
                    path: companion,
                    access: file.access,
                    folder: false,
                });
            }
            files.push(FileGrant {
                path,
                access: file.access,
                folder: false,
            });
        }
        let mqtt = match &manifest.grants.mqtt {
            None => None,
            Some(m) => {
                let server_origin = match props.get(&m.server) {
                    None => Origin::HostDefault(m.server.clone()),
                    Some(_) => Origin::Prop(m.server.clone()),
                };
                let server = match props.get(&m.server) {
                    None => crate::mqtt::DEFAULT_SERVER.to_string(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(_) => {
                        return Err(ManifestError::BadMqttProp {
                            prop: m.server.clone(),
                            reason: "must be a broker URL like tcp://host:1883".into(),
                        });
                    }
                };
                crate::mqtt::ServerUrl::parse(&server).map_err(|reason| {
                    ManifestError::BadMqttProp {
                        prop: m.server.clone(),
                        reason,
                    }
                })?;
                let topics = match props.get(&m.topics) {
                    Some(serde_json::Value::String(s)) => vec![s.clone()],
                    Some(serde_json::Value::Array(items)) => items
                        .iter()
                        .map(|t| t.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                if topics.is_empty() || topics.iter().any(|t| !crate::mqtt::valid_filter(t)) {
                    return Err(ManifestError::BadMqttProp {
                        prop: m.topics.clone(),
                        reason: "must name the topics the sink may publish to (a topic filter or a list of them)".into(),
                    });
                }
                origins.push(Effective {
                    kind: GrantKind::Mqtt,
                    target: format!("broker {server}"),
                    origin: server_origin,
                });
                origins.push(Effective {
                    kind: GrantKind::Mqtt,
                    target: format!("topics {}", topics.join(", ")),
                    origin: Origin::Prop(m.topics.clone()),
                });
                Some(MqttGrant { server, topics })
            }
        };
        let mut sockets = Vec::new();
        for net in &manifest.grants.sockets {
            if let Some(default) = fill_default(net, props) {
                defaults.push(ManifestDefault {
                    kind: GrantKind::Socket,
                    prop: net.prop.clone(),
                    value: default,
                });
                continue;
            }
            for value in net_values(net, props, "TCP connections")? {
                let bad = |reason: String| ManifestError::BadNetProp {
                    prop: net.prop.clone(),
                    what: "TCP connections",
                    reason,
                };
                let (host, port) = split_host_port(&value)
                    .and_then(|(h, p)| Some((h, p?)))
                    .ok_or_else(|| bad(format!("must be host:port, got {value:?}")))?;
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                let addrs = match bare.parse::<std::net::IpAddr>() {
                    Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
                    Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(bare, port))
                        .map_err(|e| bad(format!("cannot resolve {value:?}: {e}")))?
                        .collect(),
                };
                origins.push(Effective {
                    kind: GrantKind::Socket,
                    target: value.clone(),
                    origin: Origin::Prop(net.prop.clone()),
                });
                sockets.push(SocketGrant { host, port, addrs });
            }
        }
        let mut http = Vec::new();
        for net in &manifest.grants.http {
            if let Some(default) = fill_default(net, props) {
                defaults.push(ManifestDefault {
                    kind: GrantKind::Http,
                    prop: net.prop.clone(),
                    value: default,
                });
                continue;
            }
            for value in net_values(net, props, "HTTP requests")? {
                let value = if manifest.dynamic_props.contains(&net.prop)
                    && let Some(fixed) = value.find("{{")
                {
                    // A templated URL: its fixed part grants its scheme and authority when
                    // they are whole before the template; otherwise nothing (the rule's
                    // `grants.http` names what its values may reach). The host checks each
                    // message's value against the grants either way.
                    let prefix = &value[..fixed];
                    let whole = prefix
                        .split_once("://")
                        .is_some_and(|(_, rest)| rest.contains(['/', '?', '#']));
                    if !whole {
                        continue;
                    }
                    prefix.to_string()
                } else {
                    value
                };
                let grant =
                    HttpGrant::parse(&value).map_err(|reason| ManifestError::BadNetProp {
                        prop: net.prop.clone(),
                        what: "HTTP requests",
                        reason,
                    })?;
                origins.push(Effective {
                    kind: GrantKind::Http,
                    target: format!("{}://{}", grant.scheme, grant.authority),
                    origin: Origin::Prop(net.prop.clone()),
                });
                http.push(grant);
            }
        }
        Ok(Self {
            files,
            mqtt,
            sockets,
            http,
            limits: Limits::default(),
            origins,
            defaults,
        })
    }

    /// Whether any granted socket host is a name (then the sink may look names up).
    pub fn needs_name_lookup(&self) -> bool {
        self.sockets.iter().any(|s| {
            s.host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_err()
        })
    }

    /// The granted files grouped by folder: what gets preopened, and which names in it the sink
    /// may use. A folder with any writable file is opened read-write.
    pub fn by_dir(&self) -> Vec<GrantedDir> {
        type Names = (Vec<(String, FileAccess)>, Option<FileAccess>);
        let mut dirs: BTreeMap<PathBuf, Names> = BTreeMap::new();
        for grant in &self.files {
            if grant.folder {
                let any = &mut dirs.entry(grant.path.clone()).or_default().1;
                *any = Some(match (*any, grant.access) {
                    (Some(FileAccess::Write), _) | (_, FileAccess::Write) => FileAccess::Write,
                    _ => FileAccess::Read,
                });
            } else if let (Some(dir), Some(name)) = (grant.path.parent(), grant.path.file_name()) {
                dirs.entry(dir.to_owned())
                    .or_default()
                    .0
                    .push((name.to_string_lossy().into_owned(), grant.access));
            }
        }
        dirs.into_iter()
            .map(|(dir, (names, any))| {
                let access = if any == Some(FileAccess::Write)
                    || names.iter().any(|(_, a)| *a == FileAccess::Write)
                {
                    FileAccess::Write
                } else {
                    FileAccess::Read
                };
                GrantedDir {
                    dir,
                    access,
                    names,
                    any,
                }
            })
            .collect()
    }
}

/// Grants the operator writes in the rule itself, beside what the manifest derives from props:
/// `"grants": {"files": [{"path": "ref.csv", "access": "read"}], "sockets": ["10.0.0.5:6379"],
/// "http": ["https://api.example.com"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitGrants {
    /// Files, with their access.
    #[serde(default)]
    pub files: Vec<ExplicitFile>,
    /// `host:port` addresses for TCP connections.
    #[serde(default)]
    pub sockets: Vec<String>,
    /// `http://` or `https://` URLs whose scheme and authority may be requested.
    #[serde(default)]
    pub http: Vec<String>,
}

/// A file the operator grants by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitFile {
    /// The path (relative to the rule's folder).
    pub path: String,
    /// What the sink may do with it.
    pub access: FileAccess,
}

impl Grants {
    /// Adds what the operator granted explicitly (the action's `grants` prop). Errors name the
    /// entry, as `grants.<kind>[<i>]`.
    pub fn add_explicit(
        &mut self,
        explicit: &ExplicitGrants,
        base_dir: &Path,
        prepare: bool,
    ) -> Result<(), ManifestError> {
        let manifest = Manifest {
            description: None,
            dynamic_props: Vec::new(),
            grants: ManifestGrants {
                files: explicit
                    .files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| FileProp {
                        prop: format!("grants.files[{i}]"),
                        access: f.access,
                        optional: false,
                        companion: None,
                        folder_with: Vec::new(),
                    })
                    .collect(),
                mqtt: None,
                sockets: (0..explicit.sockets.len())
                    .map(|i| NetProp {
                        prop: format!("grants.sockets[{i}]"),
                        default: None,
                        optional: false,
                    })
                    .collect(),
                http: (0..explicit.http.len())
                    .map(|i| NetProp {
                        prop: format!("grants.http[{i}]"),
                        default: None,
                        optional: false,
                    })
                    .collect(),
            },
        };
        let mut props = serde_json::Map::new();
        for (i, f) in explicit.files.iter().enumerate() {
            props.insert(format!("grants.files[{i}]"), f.path.clone().into());
        }
        for (i, a) in explicit.sockets.iter().enumerate() {
            props.insert(format!("grants.sockets[{i}]"), a.clone().into());
        }
        for (i, u) in explicit.http.iter().enumerate() {
            props.insert(format!("grants.http[{i}]"), u.clone().into());
        }
        let more = Self::resolve(&manifest, &mut props, base_dir, prepare)?;
        self.files.extend(more.files);
        self.sockets.extend(more.sockets);
        self.http.extend(more.http);
        self.origins
            .extend(more.origins.into_iter().map(|mut effective| {
                if let Origin::Prop(entry) = effective.origin {
                    effective.origin = Origin::Explicit(entry);
                }
                effective
            }));
        Ok(())
    }
}

/// When the rule leaves a network prop out and the manifest has a default for it: fills the
/// prop with the default, so the sink sees the value it would have assumed, and returns it.
fn fill_default(
    net: &NetProp,
    props: &mut serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    if props.contains_key(&net.prop) {
        return None;
    }
    let default = net.default.clone()?;
    props.insert(net.prop.clone(), default.clone().into());
    Some(default)
}

/// The values of a network prop the rule sets: a string or a list of strings.
fn net_values(
    net: &NetProp,
    props: &serde_json::Map<String, serde_json::Value>,
    what: &'static str,
) -> Result<Vec<String>, ManifestError> {
    let bad = |reason: &str| ManifestError::BadNetProp {
        prop: net.prop.clone(),
        what,
        reason: reason.to_string(),
    };
    match props.get(&net.prop) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(vec![s.clone()]),
        Some(serde_json::Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().filter(|s| !s.is_empty()).map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("must be a string or a list of strings")),
        None if net.optional => Ok(Vec::new()),
        None => Err(bad("is missing")),
        Some(_) => Err(bad("must be a string or a list of strings")),
    }
}

/// A folder preopened for a sink, and the names in it the sink may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedDir {
    /// The folder (absolute).
    pub dir: PathBuf,
    /// How it is opened: read-write if any name in it is writable.
    pub access: FileAccess,
    /// File names in the folder and what the sink may do with each.
    pub names: Vec<(String, FileAccess)>,
    /// With a folder grant: what the sink may do with any file directly in the folder.
    pub any: Option<FileAccess>,
}

/// The folder part and the file-name part of a path whose file name may hold a template
/// (`out/{{.device}}.csv` -> `out`, `{{.device}}.csv`); `None` when the template reaches into
/// the folder part (`out/{{.device}}/data.csv`), which no fixed folder could cover.
pub fn templated_folder(value: &str) -> Option<(&str, &str)> {
    let fixed = value.find("{{").unwrap_or(value.len());
    let split = value[..fixed].rfind('/');
    let (dir, name) = match split {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => ("", value),
    };
    let dir = if dir.is_empty() && split.is_some() {
        "/"
    } else {
        dir
    };
    (!name.contains('/') && !name.is_empty() && name != "." && name != "..").then_some((dir, name))
}

pub use oort_value::path::absolute;

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        serde_json::from_str(r#"{"grants":{"files":[{"prop":"path","access":"write"}]}}"#).unwrap()
    }

    #[test]
    fn resolves_relative_paths_and_rewrites_the_prop() {
        let base = std::env::temp_dir().join(format!("oort-grants-{}", std::process::id()));
        let mut props = serde_json::json!({"path": "out/../out/r.txt"})
            .as_object()
            .unwrap()
            .clone();
        let grants = Grants::resolve(&manifest(), &mut props, &base, true).unwrap();
        let real = base.canonicalize().unwrap().join("out").join("r.txt");
        assert_eq!(
            grants.files,
            [FileGrant {
                path: real.clone(),
                access: FileAccess::Write,
                folder: false,
            }]
        );
        assert_eq!(props["path"], real.to_string_lossy().as_ref());
        let dirs = grants.by_dir();
        assert_eq!(dirs.len(), 1);
        assert_eq!(dirs[0].names, [("r.txt".to_string(), FileAccess::Write)]);
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_templated_path_grants_the_folder_of_its_fixed_prefix() {
        let manifest: Manifest = serde_json::from_str(
            r#"{"grants":{"files":[{"prop":"path","access":"write","folderWith":["rolling"]}]},
                "dynamicProps":["path"]}"#,
        )
        .unwrap();
        let mut props = serde_json::json!({"path": "/data/out/dev-{{.device}}.csv"})
            .as_object()
            .unwrap()
            .clone();
        let grants = Grants::resolve(&manifest, &mut props, Path::new("/"), false).unwrap();
        assert_eq!(
            grants.files,
            [FileGrant {
                path: "/data/out".into(),
                access: FileAccess::Write,
                folder: true,
            }]
        );
        assert_eq!(props["path"], "/data/out/dev-{{.device}}.csv");
        let dirs = grants.by_dir();
        assert_eq!(dirs[0].any, Some(FileAccess::Write));
        assert!(dirs[0].names.is_empty());
        let mut props = serde_json::json!({"path": "out/{{.device}}/data.csv"})
            .as_object()
            .unwrap()
            .clone();
        let err = Grants::resolve(&manifest, &mut props, Path::new("/"), false).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds a template in its folder part"),
            "{err}"
        );
        // A static path with a prop named in `folderWith` grants its folder too.
        let mut props = serde_json::json!({"path": "/data/r.txt", "rolling": "suffix"})
            .as_object()
            .unwrap()
            .clone();
        let grants = Grants::resolve(&manifest, &mut props, Path::new("/"), false).unwrap();
        assert!(grants.files[0].folder);
        let mut props = serde_json::json!({"path": "/data/r.txt", "rolling": "none"})
            .as_object()
            .unwrap()
            .clone();
        let grants = Grants::resolve(&manifest, &mut props, Path::new("/"), false).unwrap();
        assert!(!grants.files[0].folder);
        assert_eq!(templated_folder("{{.a}}.csv"), Some(("", "{{.a}}.csv")));
        assert_eq!(templated_folder("/{{.a}}"), Some(("/", "{{.a}}")));
    }

    #[test]
    fn a_missing_path_prop_is_an_error_naming_it() {
        let mut props = serde_json::Map::new();
        let err = Grants::resolve(&manifest(), &mut props, Path::new("/"), false).unwrap_err();
        assert!(err.to_string().contains("prop `path`"), "{err}");
    }

    #[test]
    fn network_grants_come_from_props() {
        let manifest: Manifest = serde_json::from_str(
            r#"{"grants":{"sockets":[{"prop":"addr","default":"127.0.0.1:6379"}],
                "http":[{"prop":"url"}]}}"#,
        )
        .unwrap();
        let mut props =
            serde_json::json!({"addr": "127.0.0.1:6379", "url": "http://LocalHost:8080/api?x=1"})
                .as_object()
                .unwrap()
                .clone();
        let grants = Grants::resolve(&manifest, &mut props, Path::new("/"), false).unwrap();
        assert_eq!(grants.sockets.len(), 1);
        assert_eq!(
            grants.sockets[0].addrs,
            ["127.0.0.1:6379".parse::<std::net::SocketAddr>().unwrap()]
        );
        assert!(!grants.needs_name_lookup());
        let http = &grants.http[0];
        assert!(http.allows("http", "localhost:8080"));
        assert!(!http.allows("https", "localhost:8080"));
        assert!(!http.allows("http", "localhost:8081"));
        assert!(!http.allows("http", "evil.example:8080"));
        assert!(
            HttpGrant::parse("https://example.com/x")
                .unwrap()
                .allows("https", "example.com")
        );

        let mut props = serde_json::json!({"addr": "nohost", "url": "http://a/"})
            .as_object()
            .unwrap()
            .clone();
        let err = Grants::resolve(&manifest, &mut props, Path::new("/"), false).unwrap_err();
        assert!(
            err.to_string().contains("prop `addr` must be host:port"),
            "{err}"
        );
        let mut props = serde_json::Map::new();
        let err = Grants::resolve(&manifest, &mut props, Path::new("/"), false).unwrap_err();
        assert!(err.to_string().contains("prop `url` is missing"), "{err}");
        let mut props = serde_json::json!({"url": "ftp://a/"})
            .as_object()
            .unwrap()
            .clone();
        let err = Grants::resolve(&manifest, &mut props, Path::new("/"), false).unwrap_err();
        assert!(err.to_string().contains("not http or https"), "{err}");
    }

    #[test]
    fn a_manifest_default_fills_the_prop_but_grants_nothing_of_its_own() {
        let manifest: Manifest = serde_json::from_str(
            r#"{"grants":{"sockets":[{"prop":"addr","default":"127.0.0.1:6379"}],
                "http":[{"prop":"url"},
                        {"prop":"telemetryUrl","default":"http://collector.example:8080/t"}]}}"#,
        )
        .unwrap();
        let mut props = serde_json::json!({"url": "http://localhost:8080/"})
            .as_object()
            .unwrap()
            .clone();
        let grants = Grants::resolve(&manifest, &mut props, Path::new("/"), false).unwrap();
        assert_eq!(props["addr"], "127.0.0.1:6379", "the sink sees the default");
        assert_eq!(props["telemetryUrl"], "http://collector.example:8080/t");
        assert!(grants.sockets.is_empty(), "{grants:?}");
        assert_eq!(grants.http.len(), 1, "only the URL the rule names");
        assert!(!grants.http[0].allows("http", "collector.example:8080"));
        let refused: Vec<_> = grants.refused_defaults().map(|d| d.prop.as_str()).collect();
        assert_eq!(refused, ["addr", "telemetryUrl"]);
        let report = grants.report().join("\n");
        assert!(
            report.contains("grant http http://localhost:8080 from the rule's prop `url`"),
            "{report}"
        );
        assert!(
            report.contains(
                "manifest default http http://collector.example:8080/t for prop `telemetryUrl`: NOT granted"
            ),
            "{report}"
        );

        // The operator accepts a default by granting its destination: the same URL authority
        // in another prop, or an explicit grant.
        let mut props = serde_json::json!({"url": "http://collector.example:8080/api"})
            .as_object()
            .unwrap()
            .clone();
        let mut grants = Grants::resolve(&manifest, &mut props, Path::new("/"), false).unwrap();
        let explicit: ExplicitGrants =
            serde_json::from_str(r#"{"sockets":["127.0.0.1:6379"]}"#).unwrap();
        grants
            .add_explicit(&explicit, Path::new("/"), false)
            .unwrap();
        assert_eq!(grants.refused_defaults().count(), 0, "{grants:?}");
        let report = grants.report().join("\n");
        assert!(
            report.contains("grant socket 127.0.0.1:6379 from the rule's `grants.sockets[0]`"),
            "{report}"
        );
        assert!(
            report.contains("for prop `addr`: inside a destination the rule grants"),
            "{report}"
        );
    }

    #[test]
    fn a_file_prop_has_no_default() {
        let manifest = serde_json::from_str::<Manifest>(
            r#"{"grants":{"files":[{"prop":"path","access":"read","default":"/etc/passwd"}]}}"#,
        );
        assert!(manifest.is_err(), "{manifest:?}");
    }

    #[test]
    fn explicit_grants_add_to_the_manifest_ones() {
        let mut grants = Grants::default();
        let explicit: ExplicitGrants = serde_json::from_str(
            r#"{"files":[{"path":"/srv/ref.csv","access":"read"}],
                "sockets":["127.0.0.1:9"],"http":["https://api.example.com/v1"]}"#,
        )
        .unwrap();
        grants
            .add_explicit(&explicit, Path::new("/"), false)
            .unwrap();
        assert_eq!(grants.files[0].access, FileAccess::Read);
        assert_eq!(grants.sockets[0].port, 9);
        assert!(grants.http[0].allows("https", "api.example.com:443"));
        let bad: ExplicitGrants = serde_json::from_str(r#"{"sockets":["nope"]}"#).unwrap();
        let err = Grants::default()
            .add_explicit(&bad, Path::new("/"), false)
            .unwrap_err();
        assert!(err.to_string().contains("grants.sockets[0]"), "{err}");
    }

    #[test]
    fn manifests_reject_unknown_fields() {
        assert!(serde_json::from_str::<Manifest>(r#"{"grant":{}}"#).is_err());
    }
}
