//! MQTT connections, shared by the `mqtt` source and the built-in `mqtt` sink: broker settings
//! (from eKuiper's source configuration file and `CONF_KEY`, or from sink props), the server
//! URL, TLS, and the client options handed to rumqttc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};
use serde::Deserialize;

/// The broker when nothing names one (eKuiper's default).
pub const DEFAULT_SERVER: &str = "tcp://127.0.0.1:1883";

/// Connection settings, with eKuiper's names. Every field is optional: a named configuration
/// overrides `default`, which overrides the built-in defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MqttSettings {
    /// `tcp://host:port` (also `mqtt://`; `ssl://`, `tls://`, `mqtts://` for TLS).
    pub server: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Client id (eKuiper spells it `clientid` in source files, `clientId` in sink props).
    #[serde(alias = "clientid")]
    pub client_id: Option<String>,
    /// QoS of the subscription or of published messages: 0, 1 or 2.
    pub qos: Option<u8>,
    /// `3.1.1` (or `4`).
    pub protocol_version: Option<String>,
    /// Client certificate (PEM) for TLS client authentication.
    pub certification_path: Option<String>,
    /// Client private key (PEM).
    pub private_key_path: Option<String>,
    /// CA certificates (PEM) to trust instead of the system's.
    pub root_ca_path: Option<String>,
    /// Skip server certificate checks: refused (see the README's security model).
    pub insecure_skip_verify: Option<bool>,
    /// eKuiper keys that do not apply here (`bufferLength`, `kubeedgeVersion`, ...): accepted.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_yaml::Value>,
}

impl MqttSettings {
    /// `self` with the fields `over` sets replaced.
    pub fn overlay(&self, over: &Self) -> Self {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        Self {
            server: pick(&self.server, &over.server),
            username: pick(&self.username, &over.username),
            password: pick(&self.password, &over.password),
            client_id: pick(&self.client_id, &over.client_id),
            qos: over.qos.or(self.qos),
            protocol_version: pick(&self.protocol_version, &over.protocol_version),
            certification_path: pick(&self.certification_path, &over.certification_path),
            private_key_path: pick(&self.private_key_path, &over.private_key_path),
            root_ca_path: pick(&self.root_ca_path, &over.root_ca_path),
            insecure_skip_verify: over.insecure_skip_verify.or(self.insecure_skip_verify),
            other: BTreeMap::new(),
        }
    }

    /// The QoS, checked.
    pub fn qos(&self, default: u8) -> Result<QoS, String> {
        match self.qos.unwrap_or(default) {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            n => Err(format!("`qos` must be 0, 1 or 2, not {n}")),
        }
    }

    /// The client options for a connection as `client_id` (used when none is configured).
    /// Relative certificate paths start at `base_dir`.
    pub fn options(&self, client_id: &str, base_dir: &Path) -> Result<MqttOptions, String> {
        match self.protocol_version.as_deref() {
            None | Some("3.1.1") | Some("4") => {}
            Some(v) => {
                return Err(format!(
                    "`protocolVersion` {v:?} is not supported: use \"3.1.1\" (MQTT 5 brokers \
                     accept 3.1.1 clients)"
                ));
            }
        }
        if self.insecure_skip_verify == Some(true) {
            return Err(
                "`insecureSkipVerify` is refused: give the broker's CA with `rootCaPath` instead"
                    .into(),
            );
        }
        let server = self.server.as_deref().unwrap_or(DEFAULT_SERVER);
        let url = ServerUrl::parse(server)?;
        let id = self.client_id.as_deref().unwrap_or(client_id);
        let mut options = MqttOptions::new(id, url.host.clone(), url.port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(true);
        options.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        options.set_request_channel_capacity(1024);
        if let Some(user) = &self.username {
            options.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        if url.tls {
            options.set_transport(Transport::Tls(self.tls(base_dir)?));
        } else if self.root_ca_path.is_some() || self.certification_path.is_some() {
            return Err(format!(
                "TLS files are set but the server {server:?} is not `ssl://`, `tls://` or `mqtts://`"
            ));
        }
        Ok(options)
    }

    fn tls(&self, base_dir: &Path) -> Result<TlsConfiguration, String> {
        let read = |p: &str| -> Result<Vec<u8>, String> {
            let path = base_dir.join(p);
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_ca_path {
            Some(p) => {
                let pem = read(p)?;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.map_err(|e| format!("{p}: not a PEM certificate: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("{p}: unusable certificate: {e}"))?;
                }
            }
            None => {
                let found = rustls_native_certs_or_empty();
                for cert in found {
                    let _ = roots.add(cert);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let config = match (&self.certification_path, &self.private_key_path) {
            (Some(cert), Some(key)) => {
                let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{cert}: not a PEM certificate: {e}"))?;
                let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
                    .map_err(|e| format!("{key}: not a PEM key: {e}"))?
                    .ok_or_else(|| format!("{key}: no private key in it"))?;
                builder
                    .with_client_auth_cert(certs, key_der)
                    .map_err(|e| format!("TLS client certificate: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(
                    "`certificationPath` and `privateKeyPath` go together (client authentication)"
                        .into(),
                );
            }
        };
        Ok(TlsConfiguration::Rustls(Arc::new(config)))
    }
}

/// The system's CA certificates, from the usual Debian/Red Hat bundle paths.
fn rustls_native_certs_or_empty() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if let Ok(pem) = std::fs::read(path) {
            return rustls_pemfile::certs(&mut pem.as_slice())
                .filter_map(Result::ok)
                .collect();
        }
    }
    Vec::new()
}

/// A broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Whether the connection uses TLS.
    pub tls: bool,
}

impl ServerUrl {
    /// Parses `scheme://host[:port]`.
    pub fn parse(server: &str) -> Result<Self, String> {
        let (scheme, rest) = server
            .split_once("://")
            .ok_or_else(|| format!("server {server:?} must look like tcp://host:port"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "tcp" | "mqtt" => false,
            "ssl" | "tls" | "mqtts" => true,
            other => {
                return Err(format!(
                    "server {server:?}: scheme {other:?} is not supported (tcp, mqtt, ssl, tls, mqtts)"
                ));
            }
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("server {server:?}: bad port {p:?}"))?,
            ),
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("server {server:?} has no host"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// eKuiper's MQTT source configuration file: `default` and named sections (`CONF_KEY`).
#[derive(Debug, Clone, Default)]
pub struct MqttConf {
    /// Where it was read from (for error messages and relative certificate paths).
    pub path: Option<PathBuf>,
    sections: BTreeMap<String, MqttSettings>,
}

impl MqttConf {
    /// Reads a YAML file like eKuiper's `etc/mqtt_source.yaml`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Parses the YAML text of `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, String> {
        let sections: BTreeMap<String, MqttSettings> = if text.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_yaml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            sections,
        })
    }

    /// The settings for `conf_key` (`None`: `default`): the named section over `default`.
    pub fn settings(&self, conf_key: Option<&str>) -> Result<MqttSettings, String> {
        let base = self.sections.get("default").cloned().unwrap_or_default();
        match conf_key {
            None => Ok(base),
            Some(key) => match self.sections.get(key) {
                Some(named) => Ok(base.overlay(named)),
                None => Err(match &self.path {
                    Some(p) => format!(
                        "CONF_KEY {key:?} is not a section of {} (sections: {})",
                        p.display(),
                        self.sections.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    None => format!(
                        "CONF_KEY {key:?} needs a configuration file: pass --mqtt-conf FILE"
                    ),
                }),
            },
        }
    }

    /// The folder relative certificate paths start at.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// A client id unique to this process: `oort-<what>-<pid>-<random>`.
pub fn client_id(what: &str) -> String {
    let clean: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!(
        "oort-{clean}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// How long to wait before reconnecting after `failures` failed attempts in a row.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.min(5)).min(3_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let u = ServerUrl::parse("tcp://127.0.0.1:1883").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 1883, false));
        let u = ServerUrl::parse("ssl://broker.example").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("broker.example", 8883, true)
        );
        let u = ServerUrl::parse("mqtt://[::1]:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
        assert!(
            ServerUrl::parse("127.0.0.1:1883")
                .unwrap_err()
                .contains("tcp://")
        );
        assert!(ServerUrl::parse("ws://h:1").unwrap_err().contains("ws"));
        assert!(
            ServerUrl::parse("tcp://h:x")
                .unwrap_err()
                .contains("bad port")
        );
    }

    #[test]
    fn conf_keys_overlay_default() {
        let conf = MqttConf::parse(
            "default:\n  qos: 1\n  server: \"tcp://127.0.0.1:1883\"\n  bufferLength: 1024\n\
             demo_conf:\n  qos: 0\n  server: \"tcp://10.0.0.6:1883\"\n  username: u\n",
            Path::new("etc/mqtt_source.yaml"),
        )
        .unwrap();
        let d = conf.settings(None).unwrap();
        assert_eq!(
            (d.qos, d.server.as_deref()),
            (Some(1), Some("tcp://127.0.0.1:1883"))
        );
        let n = conf.settings(Some("demo_conf")).unwrap();
        assert_eq!(
            (n.qos, n.server.as_deref(), n.username.as_deref()),
            (Some(0), Some("tcp://10.0.0.6:1883"), Some("u"))
        );
        let e = conf.settings(Some("nope")).unwrap_err();
        assert!(e.contains("nope") && e.contains("demo_conf"), "{e}");
        assert!(
            MqttConf::default()
                .settings(Some("x"))
                .unwrap_err()
                .contains("--mqtt-conf")
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let s = MqttSettings {
            protocol_version: Some("3.1".into()),
            ..Default::default()
        };
        assert!(
            s.options("c", Path::new("."))
                .unwrap_err()
                .contains("protocolVersion")
        );
        let s = MqttSettings {
            qos: Some(3),
            ..Default::default()
        };
        assert!(s.qos(1).unwrap_err().contains("qos"));
        let s = MqttSettings {
            server: Some("tcp://h:1".into()),
            root_ca_path: Some("ca.pem".into()),
            ..Default::default()
        };
        assert!(s.options("c", Path::new(".")).unwrap_err().contains("TLS"));
    }
}
