//! The server-wide grant ceiling: `--allow-path DIR`, `--allow-net HOST:PORT|CIDR` and
//! `--allow-mqtt-topic FILTER` bound what any rule may grant any sink. A rule whose sink would
//! be granted a file outside the allowed folders, a host outside the allowed ones or a topic
//! outside the allowed filters is refused when it is created, with the ceiling named. Without
//! any `--allow-*` option there is no ceiling; with one, every kind is bounded (a kind with no
//! entry allows nothing).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::host::Grants;

/// One `--allow-net` entry.
#[derive(Debug, Clone)]
enum Net {
    /// A host (name or address) and a port.
    HostPort(String, u16),
    /// Addresses in a CIDR block, any port.
    Cidr(IpAddr, u8),
}

/// The ceiling.
#[derive(Debug, Clone, Default)]
pub struct Ceiling {
    paths: Vec<PathBuf>,
    nets: Vec<Net>,
    net_text: Vec<String>,
    topics: Vec<String>,
}

fn split_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_ascii_lowercase(), port.parse().ok()?))
}

fn in_cidr(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(bits.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(bits.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Whether every topic `granted` (a filter, possibly with wildcards) matches is also matched
/// by `allowed`.
fn topic_within(allowed: &str, granted: &str) -> bool {
    let mut a = allowed.split('/');
    let mut g = granted.split('/');
    loop {
        match (a.next(), g.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(x), Some(y)) if x == y && x != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Ceiling {
    /// The ceiling of the `--allow-*` options; errors name the option value that is wrong.
    pub fn new(paths: &[PathBuf], nets: &[String], topics: &[String]) -> Result<Self, String> {
        let mut ceiling = Self {
            topics: topics.to_vec(),
            net_text: nets.to_vec(),
            ..Self::default()
        };
        for dir in paths {
            let dir = dir
                .canonicalize()
                .map_err(|e| format!("--allow-path {}: {e}", dir.display()))?;
            ceiling.paths.push(dir);
        }
        for net in nets {
            let parsed = if let Some((addr, bits)) = net.split_once('/') {
                let addr: IpAddr = addr
                    .parse()
                    .map_err(|e| format!("--allow-net {net}: {e}"))?;
                let bits: u8 = bits
                    .parse()
                    .map_err(|e| format!("--allow-net {net}: prefix length: {e}"))?;
                Net::Cidr(addr, bits)
            } else {
                let (host, port) = split_host_port(net)
                    .ok_or_else(|| format!("--allow-net {net}: expected HOST:PORT or a CIDR"))?;
                Net::HostPort(host, port)
            };
            ceiling.nets.push(parsed);
        }
        Ok(ceiling)
    }

    /// Whether there is a ceiling at all.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.nets.is_empty() && self.topics.is_empty()
    }

    fn path_ok(&self, path: &Path) -> bool {
        // The file may not exist yet: its folder decides.
        let resolved = path
            .parent()
            .and_then(|d| d.canonicalize().ok())
            .map(|d| d.join(path.file_name().unwrap_or_default()))
            .unwrap_or_else(|| path.to_owned());
        self.paths.iter().any(|dir| resolved.starts_with(dir))
    }

    fn net_ok(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip: Option<IpAddr> = host.parse().ok();
        self.nets.iter().any(|n| match n {
            Net::HostPort(h, p) => *h == host && *p == port,
            Net::Cidr(net, bits) => ip.is_some_and(|ip| in_cidr(ip, *net, *bits)),
        })
    }

    fn topic_ok(&self, topic: &str) -> bool {
        self.topics
            .iter()
            .any(|allowed| topic_within(allowed, topic))
    }

    fn refuse(&self, action: &str, what: String, option: &str, allowed: &[String]) -> String {
        let allowed = if allowed.is_empty() {
            "none given".to_string()
        } else {
            allowed.join(", ")
        };
        format!(
            "action `{action}`: {what} is outside the server's grant ceiling ({option}: {allowed})"
        )
    }

    fn path_text(&self) -> Vec<String> {
        self.paths.iter().map(|p| p.display().to_string()).collect()
    }

    fn check_server(&self, action: &str, url: &str) -> Result<(), String> {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let ok = split_host_port(authority).is_some_and(|(h, p)| self.net_ok(&h, p));
        if ok {
            Ok(())
        } else {
            Err(self.refuse(
                action,
                format!("broker `{url}`"),
                "--allow-net",
                &self.net_text,
            ))
        }
    }

    /// Checks what a wasm action is granted.
    pub fn check_grants(&self, action: &str, grants: &Grants) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        for file in &grants.files {
            if !self.path_ok(&file.path) {
                return Err(self.refuse(
                    action,
                    format!("file `{}`", file.path.display()),
                    "--allow-path",
                    &self.path_text(),
                ));
            }
        }
        for http in &grants.http {
            let ok = split_host_port(&http.authority).is_some_and(|(h, p)| self.net_ok(&h, p));
            if !ok {
                return Err(self.refuse(
                    action,
                    format!("`{}://{}`", http.scheme, http.authority),
                    "--allow-net",
                    &self.net_text,
                ));
            }
        }
        for socket in &grants.sockets {
            let by_name = self.net_ok(&socket.host, socket.port);
            let by_addr = !socket.addrs.is_empty()
                && socket
                    .addrs
                    .iter()
                    .all(|a| self.net_ok(&a.ip().to_string(), a.port()));
            if !by_name && !by_addr {
                return Err(self.refuse(
                    action,
                    format!("`{}:{}`", socket.host, socket.port),
                    "--allow-net",
                    &self.net_text,
                ));
            }
        }
        if let Some(mqtt) = &grants.mqtt {
            self.check_server(action, &mqtt.server)?;
            for topic in &mqtt.topics {
                if !self.topic_ok(topic) {
                    return Err(self.refuse(
                        action,
                        format!("MQTT topic `{topic}`"),
                        "--allow-mqtt-topic",
                        &self.topics,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the built-in MQTT sink's broker and topic (it publishes as the host does).
    pub fn check_builtin(&self, rule: &Json) -> Result<(), String> {
        if self.is_empty() {
            return Ok(());
        }
        let actions = rule.get("actions").and_then(Json::as_array);
        for (i, action) in actions.into_iter().flatten().enumerate() {
            let Some(props) = action.get("mqtt") else {
                continue;
            };
            let name = format!("mqtt_{i}");
            let server = props
                .get("server")
                .and_then(Json::as_str)
                .unwrap_or("tcp://127.0.0.1:1883");
            self.check_server(&name, server)?;
            let topic = props
                .get("topic")
                .and_then(Json::as_str)
                .unwrap_or_default();
            if !self.topic_ok(topic) {
                return Err(self.refuse(
                    &name,
                    format!("MQTT topic `{topic}`"),
                    "--allow-mqtt-topic",
                    &self.topics,
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_within_filters() {
        assert!(topic_within("out/#", "out/a/b"));
        assert!(topic_within("out/+", "out/a"));
        assert!(!topic_within("out/+", "out/a/b"));
        assert!(!topic_within("out/+", "out/#"));
        assert!(topic_within("out/+", "out/+"));
        assert!(!topic_within("out/a", "other/a"));
    }

    #[test]
    fn networks_by_host_port_and_cidr() {
        let c = Ceiling::new(&[], &["example.com:443".into(), "10.1.0.0/16".into()], &[]).unwrap();
        assert!(c.net_ok("EXAMPLE.com", 443));
        assert!(!c.net_ok("example.com", 80));
        assert!(c.net_ok("10.1.2.3", 9000));
        assert!(!c.net_ok("10.2.0.1", 9000));
        assert!(Ceiling::new(&[], &["nonsense".into()], &[]).is_err());
    }
}
