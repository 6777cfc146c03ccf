//! `wasi:sockets/ip-name-lookup` answered by the host from the names it was granted, never by a
//! lookup the guest starts.
//!
//! The host resolves each granted socket name itself: when the rule starts (the grants), and
//! again when an instance starts (first start, or a replacement after a trap: a reconnect) once
//! the last resolution is older than [`REFRESH_AFTER`]. A refresh runs on a thread of its own,
//! at most one per granted name at a time, so lookups never take a thread of tokio's blocking
//! pool (which file I/O uses), and the instance starting meanwhile gets the last good
//! addresses. (Hand-written: the system resolver gives no TTL, and a fixed refresh period is
//! all a granted name needs.)
//!
//! A guest's `resolve-addresses` is answered from the set its instance started with: a granted
//! name gets its addresses, an IP address itself, and any other name `permanent-resolver-failure`
//! without a query leaving the host (the first refusal is logged, then every tenth power). The
//! guest therefore cannot start lookups at all, nor leak data through the names it queries.
//! wasmtime-wasi's own resolver (a blocking-pool lookup per call, of any name) is not linked.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    self, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi_io::poll::{DynPollable, Pollable, subscribe};

use super::grants::SocketGrant;
use super::guest_str;
use super::log::InstanceTag;

/// How old a granted name's resolution may get before an instance starting re-resolves it.
pub const REFRESH_AFTER: Duration = Duration::from_secs(60);

/// The host's resolutions of every granted socket name, shared by all actions of the process.
#[derive(Debug)]
pub struct Resolutions {
    refresh_after: Duration,
    entries: Mutex<Entries>,
}

/// Each granted `(name, port)` and its resolution.
type Entries = HashMap<(String, u16), Arc<Mutex<Entry>>>;

/// One granted name's last good addresses.
#[derive(Debug)]
struct Entry {
    addrs: Vec<SocketAddr>,
    resolved_at: Instant,
    refreshing: bool,
}

impl Default for Resolutions {
    fn default() -> Self {
        Self::new(REFRESH_AFTER)
    }
}

impl Resolutions {
    /// Resolutions refreshed once older than `refresh_after`.
    pub fn new(refresh_after: Duration) -> Self {
        Self {
            refresh_after,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The addresses `grant` stands for now: an IP address itself; for a name, its last good
    /// resolution (the grant's own at first), re-resolved in the background once stale.
    pub fn current(&self, grant: &SocketGrant) -> Vec<SocketAddr> {
        if bare_ip(&grant.host).is_some() {
            return grant.addrs.clone();
        }
        let key = (normalize(&grant.host), grant.port);
        let entry = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(entries.entry(key.clone()).or_insert_with(|| {
                Arc::new(Mutex::new(Entry {
                    addrs: grant.addrs.clone(),
                    resolved_at: Instant::now(),
                    refreshing: false,
                }))
            }))
        };
        let mut guard = entry.lock().unwrap_or_else(PoisonError::into_inner);
        if !guard.refreshing && guard.resolved_at.elapsed() >= self.refresh_after {
            guard.refreshing = true;
            let shared = Arc::clone(&entry);
            let spawned = std::thread::Builder::new()
                .name("oort-resolve".into())
                .spawn(move || refresh(&shared, &key.0, key.1));
            if let Err(e) = spawned {
                tracing::warn!(
                    "sink grants: cannot start re-resolving {:?}: {e}",
                    grant.host
                );
                guard.refreshing = false;
            }
        }
        guard.addrs.clone()
    }
}

/// Re-resolves `host:port` into `entry`, keeping the old addresses when it fails.
fn refresh(entry: &Mutex<Entry>, host: &str, port: u16) {
    let result = (host, port).to_socket_addrs().map(Vec::from_iter);
    let mut entry = entry.lock().unwrap_or_else(PoisonError::into_inner);
    match result {
        Ok(addrs) if !addrs.is_empty() => {
            if addrs != entry.addrs {
                tracing::info!("sink grants: {host}:{port} now resolves to {addrs:?}");
            }
            entry.addrs = addrs;
        }
        Ok(_) => tracing::warn!("sink grants: {host}:{port} resolved to nothing; kept the last"),
        Err(e) => {
            tracing::warn!("sink grants: re-resolving {host}:{port} failed ({e}); kept the last")
        }
    }
    entry.resolved_at = Instant::now();
    entry.refreshing = false;
}

/// A host name as compared: without brackets or a final dot, lower-cased.
fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// `host` as an IP address, if it is one (IPv6 with or without brackets).
fn bare_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// What one instance's resolver answers: the granted names and their addresses.
pub struct GrantedNames {
    names: HashMap<String, Vec<IpAddr>>,
    refused: u64,
    tag: InstanceTag,
}

impl GrantedNames {
    /// The names among `resolved` (each grant and its current addresses); refusals are logged
    /// under `tag`.
    pub fn new<'a>(
        resolved: impl IntoIterator<Item = (&'a SocketGrant, &'a [SocketAddr])>,
        tag: InstanceTag,
    ) -> Self {
        let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (grant, addrs) in resolved {
            if bare_ip(&grant.host).is_some() {
                continue;
            }
            let ips = names.entry(normalize(&grant.host)).or_default();
            for addr in addrs {
                let ip = addr.ip().to_canonical();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        Self {
            names,
            refused: 0,
            tag,
        }
    }

    /// The answer to a lookup of `name`.
    fn answer(&mut self, name: &str) -> Result<Vec<IpAddr>, ErrorCode> {
        if let Some(ip) = bare_ip(name) {
            return Ok(vec![ip.to_canonical()]);
        }
        if let Some(ips) = self.names.get(&normalize(name)) {
            return Ok(ips.clone());
        }
        self.refused += 1;
        let n = self.refused;
        // The first refusal, then the 10th, 100th, ...: a guest querying names by the
        // thousand cannot flood the log.
        if 10u64.pow(n.ilog10()) == n {
            let tag = &self.tag;
            tracing::warn!(
                rule = %tag.rule,
                action = %tag.action,
                instance = tag.instance,
                "sink: name lookup of {:?} refused: not a granted name ({n} refused so far)",
                guest_str::capped(name)
            );
        }
        Err(ErrorCode::PermanentResolverFailure)
    }
}

/// The resolver's view of a store: wasi's sockets (their resource table and error
/// conversions) and the instance's granted names.
pub struct ResolverView<'a> {
    inner: WasiSocketsCtxView<'a>,
    names: &'a mut GrantedNames,
}

impl<'a> ResolverView<'a> {
    /// The view over `inner` and `names`.
    pub fn new(inner: WasiSocketsCtxView<'a>, names: &'a mut GrantedNames) -> Self {
        Self { inner, names }
    }
}

/// The error conversions the resolver bindings need: wasmtime-wasi's own.
impl network::Host for ResolverView<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.inner, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.inner, err)
    }
}

impl network::HostNetwork for ResolverView<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.inner, this)
    }
}

/// A store whose lookups the host answers.
pub trait ResolverViewOf: Send {
    /// The resolver's view (see [`ResolverView::new`]).
    fn resolver(&mut self) -> ResolverView<'_>;
}

/// The [`HasData`] of the host's resolver.
struct Resolver;

impl HasData for Resolver {
    type Data<'a> = ResolverView<'a>;
}

/// Links the host's `wasi:sockets/ip-name-lookup`, in place of wasmtime-wasi's own.
pub fn add_to_linker<T: ResolverViewOf + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    ip_name_lookup::add_to_linker::<T, Resolver>(linker, T::resolver)
}

/// The answer to one lookup, read address by address. It lives in the table under the handle
/// the guest holds as a `resolve-address-stream` (whose wasmtime-wasi type only its own
/// resolver can build).
struct Answers(std::vec::IntoIter<IpAddr>);

impl Pollable for Answers {
    /// Always ready: the answer is in hand when the stream is made.
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(std::future::ready(()))
    }
}

/// The table handle of the answers behind the guest's `resolve-address-stream`.
fn answers(stream: &Resource<ResolveAddressStream>) -> Resource<Answers> {
    if stream.owned() {
        Resource::new_own(stream.rep())
    } else {
        Resource::new_borrow(stream.rep())
    }
}

impl ip_name_lookup::Host for ResolverView<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        // The network resource is the capability to look names up: it must be a live one.
        self.inner.table.get(&network)?;
        let ips = self.names.answer(&name).map_err(SocketError::from)?;
        let answers = self.inner.table.push(Answers(ips.into_iter()))?;
        Ok(Resource::new_own(answers.rep()))
    }
}

impl HostResolveAddressStream for ResolverView<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        let answers = self.inner.table.get_mut(&answers(&stream))?;
        Ok(answers.0.next().map(IpAddress::from))
    }

    fn subscribe(
        &mut self,
        stream: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(self.inner.table, answers(&stream))
    }

    fn drop(&mut self, stream: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        self.inner.table.delete(answers(&stream))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag() -> InstanceTag {
        InstanceTag {
            rule: "r".into(),
            action: "a".into(),
            instance: 0,
            dropped_logs: Arc::default(),
        }
    }

    fn grant(host: &str, addrs: &[&str]) -> SocketGrant {
        SocketGrant {
            host: host.into(),
            port: 80,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn only_granted_names_are_answered() {
        let g = grant("Broker.Local.", &["10.0.0.7:80", "[::ffff:10.0.0.8]:80"]);
        let ip = grant("10.1.1.1", &["10.1.1.1:80"]);
        let mut names = GrantedNames::new(
            [(&g, g.addrs.as_slice()), (&ip, ip.addrs.as_slice())],
            tag(),
        );
        let ips: Vec<IpAddr> = vec!["10.0.0.7".parse().unwrap(), "10.0.0.8".parse().unwrap()];
        assert_eq!(names.answer("broker.local").unwrap(), ips);
        assert_eq!(names.answer("BROKER.local.").unwrap(), ips);
        assert_eq!(
            names.answer("::1").unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        for other in ["secret.exfil.example", "broker.local.evil", "localhost"] {
            assert!(matches!(
                names.answer(other),
                Err(ErrorCode::PermanentResolverFailure)
            ));
        }
        assert_eq!(names.refused, 3);
    }

    #[test]
    fn a_stale_name_is_re_resolved_off_the_caller_and_the_last_good_kept_meanwhile() {
        let resolutions = Resolutions::new(Duration::ZERO);
        // A seed that is not what `localhost` resolves to: the refresh replaces it.
        let g = grant("localhost", &["10.9.9.9:80"]);
        assert_eq!(resolutions.current(&g), g.addrs, "the grant's own first");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = resolutions.current(&g);
            if now.iter().any(|a| a.ip().is_loopback()) {
                break;
            }
            assert_eq!(now, g.addrs, "the last good meanwhile");
            assert!(Instant::now() < deadline, "never re-resolved");
            std::thread::yield_now();
        }
    }

    #[test]
    fn an_ip_grant_is_never_resolved() {
        let resolutions = Resolutions::new(Duration::ZERO);
        let g = grant("10.1.1.1", &["10.1.1.1:80"]);
        assert_eq!(resolutions.current(&g), g.addrs);
        assert!(resolutions.entries.lock().unwrap().is_empty());
    }
}
