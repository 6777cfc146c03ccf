//! One sandboxed sink instance: its store, and the four lifecycle calls with a deadline each.
//!
//! A call ends in one of three ways: `Ok`, a [`CallFailure::Sink`] (the guest returned a WIT
//! `sink-error`: data the host acts on), or a [`CallFailure::Trap`] (the instance is broken and
//! must be replaced). The two failure kinds are never mixed.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use super::bindings::{
    Level, WitBatch, WitContext, WitError, batch_v0_1, context_v0_1, error_from_v0_1,
};
use super::fs_guard::FileGuard;
use super::grants::Grants;
use super::guest_str::cap_guest_string;
use super::http::HttpCtx;
use super::linking::{self, Linking, VersionedBindings};
use super::log::{InstanceTag, LogCtx};
use super::mqtt::MqttCtx;
use super::resolver::GrantedNames;
use super::sockets::SocketCap;
use super::state::{InstanceState, SinkLimits};
use super::stdio::LogStream;
use super::{EPOCH_TICK, Plugin, SinkHost};

/// How a call into a sink failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The sink returned `invalid-config`.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The sink returned `transient`.
    #[error("transient error: {0}")]
    Transient(String),
    /// The sink returned `rejected`.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The instance trapped (or could not be created): it is discarded.
    #[error("trapped: {0}")]
    Trap(String),
}

impl CallFailure {
    /// True for traps: the instance must not be called again.
    pub fn is_trap(&self) -> bool {
        matches!(self, Self::Trap(_))
    }

    /// The guest's error, its message capped at the boundary: the host copies it into the log,
    /// the summary and every dead letter of the batch.
    fn from_wit(err: WitError) -> Self {
        match err {
            WitError::InvalidConfig(m) => Self::InvalidConfig(cap_guest_string(m)),
            WitError::Transient(m) => Self::Transient(cap_guest_string(m)),
            WitError::Rejected(m) => Self::Rejected(cap_guest_string(m)),
        }
    }
}

/// A live instance of a sink component.
pub struct WasmInstance {
    store: Store<InstanceState>,
    bindings: VersionedBindings,
    plugin: Arc<Plugin>,
    call_timeout: Duration,
    fuel: Option<u64>,
    epoch: bool,
    poisoned: bool,
}

impl std::fmt::Debug for WasmInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmInstance")
            .field("plugin", &self.plugin)
            .field("tag", self.store.data().log.tag())
            .finish_non_exhaustive()
    }
}

pub(super) async fn instantiate(
    host: &SinkHost,
    plugin: &Arc<Plugin>,
    tag: InstanceTag,
    grants: &Grants,
) -> Result<WasmInstance, CallFailure> {
    // The granted names as the host resolved them (re-resolved when stale): what the sink may
    // connect to, and all its resolver answers.
    let resolved: Vec<Vec<std::net::SocketAddr>> = grants
        .sockets
        .iter()
        .map(|s| host.resolutions().current(s))
        .collect();
    let names = GrantedNames::new(
        grants
            .sockets
            .iter()
            .zip(resolved.iter().map(Vec::as_slice)),
        tag.clone(),
    );
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(LogStream::new(tag.clone(), Level::Info))
        .stderr(LogStream::new(tag.clone(), Level::Warn))
        .allow_tcp(!grants.sockets.is_empty())
        .allow_udp(false)
        // wasmtime-wasi's resolver is not linked (`resolver.rs` answers lookups).
        .allow_ip_name_lookup(false);
    if !grants.sockets.is_empty() {
        // Connections only to the granted addresses; binds only the implicit one a connect
        // makes (any address, port 0); never a listener.
        let allowed: Arc<[std::net::SocketAddr]> = resolved.into_iter().flatten().collect();
        let tag = tag.clone();
        wasi.socket_addr_check(move |addr, usage| {
            let ok = match usage {
                SocketAddrUse::TcpConnect => allowed.contains(&addr),
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                _ => false,
            };
            if !ok {
                tracing::warn!(
                    rule = %tag.rule,
                    action = %tag.action,
                    instance = tag.instance,
                    "sink: {usage:?} {addr} denied: not granted"
                );
            }
            Box::pin(std::future::ready(ok))
        });
    }
    let caps = host.config().descriptors;
    let files = FileGuard::preopen(&mut wasi, grants)
        .map_err(CallFailure::Trap)?
        .with_max_open_files(
            grants.limits.max_open_files.unwrap_or(caps.open_files),
            tag.clone(),
        );
    let max_memory = grants
        .limits
        .max_memory_bytes
        .unwrap_or(host.config().max_memory_bytes);
    let limits = SinkLimits::new(max_memory);
    let state = InstanceState {
        wasi: wasi.build(),
        // What the host holds for the guest (wasi:http bodies and fields) is bounded by
        // `maxMemory` through the number of resources it may hold at once.
        table: linking::resource_table(max_memory),
        limits,
        files,
        http: HttpCtx::new(
            &grants.http,
            grants
                .limits
                .max_http_requests
                .unwrap_or(caps.http_requests),
            tag.clone(),
        ),
        sockets: SocketCap::new(
            grants.limits.max_sockets.unwrap_or(caps.sockets),
            tag.clone(),
        ),
        names,
        mqtt: MqttCtx::new(grants.mqtt.as_ref()).map_err(CallFailure::Trap)?,
        log: LogCtx::new(tag),
        deadline_hit: false,
        ticks_left: 0,
        before_first_tick: true,
    };
    let mut store = Store::new(host.engine(), state);
    store.limiter(|state| &mut state.limits);
    // Every tick the guest yields to the runtime (so a busy guest does not hog a thread) and,
    // once the call's ticks are spent, traps. Set once; each call only resets the count.
    // The first tick of a call falls anywhere in it, often microseconds after it began (a
    // sink's `close` in a hot swap takes some 20 µs): yielding there would send a short call
    // to the back of the runtime's queue, behind every other task, for nothing. So a call
    // yields from its second tick on: a busy guest still gives the thread back within two
    // ticks.
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        state.ticks_left = state.ticks_left.saturating_sub(1);
        if state.ticks_left == 0 {
            state.deadline_hit = true;
            Err(wasmtime::Error::msg("the call ran past its deadline"))
        } else if std::mem::take(&mut state.before_first_tick) {
            Ok(UpdateDeadline::Continue(1))
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    // Instantiation runs the component's start functions: it gets a deadline too.
    let call_timeout = grants
        .limits
        .call_timeout
        .unwrap_or(host.config().call_timeout);
    let fuel = match host.config().fuel_per_call {
        0 => None,
        default => Some(grants.limits.fuel_per_call.unwrap_or(default)),
    };
    let epoch = host.config().epoch_deadlines;
    arm_deadline(&mut store, call_timeout, fuel, epoch);
    let pre = plugin.pres.get(Linking::of(grants));
    let bindings = match tokio::time::timeout(
        call_timeout + IO_GRACE,
        pre.instantiate_async(&mut store),
    )
    .await
    {
        Ok(result) => result
            .map_err(|e| trap_message(&store, &e))
            .map_err(CallFailure::Trap)?,
        Err(_) => return Err(CallFailure::Trap(io_deadline_message(call_timeout))),
    };
    Ok(WasmInstance {
        store,
        bindings,
        plugin: Arc::clone(plugin),
        call_timeout,
        fuel,
        epoch,
        poisoned: false,
    })
}

/// How long past its deadline a call blocked in the host (waiting on a socket or an HTTP
/// answer, where epoch interruption cannot reach) may go before it is abandoned.
const IO_GRACE: Duration = Duration::from_millis(100);

fn io_deadline_message(timeout: Duration) -> String {
    format!(
        "the call ran past its deadline of {} ms while waiting on I/O",
        timeout.as_millis()
    )
}

/// Arms the deadline (and refills the fuel) for one call: it traps once it has run for
/// `timeout` or burnt `fuel`.
fn arm_deadline(
    store: &mut Store<InstanceState>,
    timeout: Duration,
    fuel: Option<u64>,
    epoch: bool,
) {
    let ticks = (timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64;
    let state = store.data_mut();
    state.deadline_hit = false;
    state.ticks_left = ticks;
    state.before_first_tick = true;
    if epoch {
        store.set_epoch_deadline(1);
    }
    if let Some(fuel) = fuel {
        // Cannot fail: fuel metering is on whenever a fuel budget is given.
        let _ = store.set_fuel(fuel);
    }
}

fn trap_message(store: &Store<InstanceState>, err: &wasmtime::Error) -> String {
    if store.data().deadline_hit {
        return "the call ran past its deadline (interrupted)".into();
    }
    // The trap's kind is the useful part; the wasm backtrace above it is not (a panic's own
    // message went to the sink's stderr, which is in the log).
    let what = match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => {
            "the call burnt all its fuel (its `fuel` limit): interrupted".to_string()
        }
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "wasm `unreachable` executed (a panic in the sink: its message is in the log)"
                .to_string()
        }
        Some(trap) => trap.to_string(),
        None => err.root_cause().to_string(),
    };
    let what = what
        .lines()
        .next()
        .unwrap_or("unknown trap")
        .trim()
        .to_string();
    if what.is_empty() {
        "unknown trap".into()
    } else {
        what
    }
}

impl WasmInstance {
    /// The component this instance runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// True once the instance trapped; it must then be replaced.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Log lines dropped so far because the sink logged too fast.
    pub fn dropped_logs(&self) -> u64 {
        self.store
            .data()
            .log
            .tag()
            .dropped_logs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn settle(
        &mut self,
        result: wasmtime::Result<Result<(), WitError>>,
    ) -> Result<(), CallFailure> {
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(CallFailure::from_wit(err)),
            Err(err) => {
                self.poisoned = true;
                Err(CallFailure::Trap(trap_message(&self.store, &err)))
            }
        }
    }

    fn settle_timed(
        &mut self,
        result: Result<wasmtime::Result<Result<(), WitError>>, tokio::time::error::Elapsed>,
    ) -> Result<(), CallFailure> {
        match result {
            Ok(result) => self.settle(result),
            Err(_) => {
                // The call was abandoned mid-way: the instance is in no state to be used again.
                self.poisoned = true;
                Err(CallFailure::Trap(io_deadline_message(self.call_timeout)))
            }
        }
    }

    fn check_usable(&self) -> Result<(), CallFailure> {
        if self.poisoned {
            Err(CallFailure::Trap("the instance trapped earlier".into()))
        } else {
            Ok(())
        }
    }

    /// Calls `configure` with the action's context and props (a JSON object).
    pub async fn configure(&mut self, ctx: &WitContext, props: &str) -> Result<(), CallFailure> {
        self.check_usable()?;
        arm_deadline(&mut self.store, self.call_timeout, self.fuel, self.epoch);
        let timeout = self.call_timeout + IO_GRACE;
        let store = &mut self.store;
        let result = match &self.bindings {
            VersionedBindings::V0_2(b) => {
                let call = b.oort_sink_sink().call_configure(store, ctx, props);
                tokio::time::timeout(timeout, call).await
            }
            VersionedBindings::V0_1(b) => {
                let ctx = context_v0_1(ctx);
                let call = b.oort_sink_sink().call_configure(store, &ctx, props);
                tokio::time::timeout(timeout, call)
                    .await
                    .map(|r| r.map(|r| r.map_err(error_from_v0_1)))
            }
        };
        self.settle_timed(result)
    }

    /// Calls `open`, telling the sink the highest sequence the host knows was delivered
    /// (0.1.0 components are not told).
    pub async fn open(&mut self, delivered: Option<u64>) -> Result<(), CallFailure> {
        self.check_usable()?;
        arm_deadline(&mut self.store, self.call_timeout, self.fuel, self.epoch);
        let timeout = self.call_timeout + IO_GRACE;
        let store = &mut self.store;
        let result = match &self.bindings {
            VersionedBindings::V0_2(b) => {
                let call = b.oort_sink_sink().call_open(store, delivered);
                tokio::time::timeout(timeout, call).await
            }
            VersionedBindings::V0_1(b) => {
                let call = b.oort_sink_sink().call_open(store);
                tokio::time::timeout(timeout, call)
                    .await
                    .map(|r| r.map(|r| r.map_err(error_from_v0_1)))
            }
        };
        self.settle_timed(result)
    }

    /// Calls `collect` with one batch (without its sequence and dynamic values for a 0.1.0
    /// component).
    pub async fn collect(&mut self, batch: &WitBatch) -> Result<(), CallFailure> {
        self.check_usable()?;
        arm_deadline(&mut self.store, self.call_timeout, self.fuel, self.epoch);
        let timeout = self.call_timeout + IO_GRACE;
        let store = &mut self.store;
        let result = match &self.bindings {
            VersionedBindings::V0_2(b) => {
                let call = b.oort_sink_sink().call_collect(store, batch);
                tokio::time::timeout(timeout, call).await
            }
            VersionedBindings::V0_1(b) => {
                let batch = batch_v0_1(batch);
                let call = b.oort_sink_sink().call_collect(store, &batch);
                tokio::time::timeout(timeout, call)
                    .await
                    .map(|r| r.map(|r| r.map_err(error_from_v0_1)))
            }
        };
        self.settle_timed(result)
    }

    /// Calls `close`.
    pub async fn close(&mut self) -> Result<(), CallFailure> {
        self.check_usable()?;
        arm_deadline(&mut self.store, self.call_timeout, self.fuel, self.epoch);
        let timeout = self.call_timeout + IO_GRACE;
        let store = &mut self.store;
        let result = match &self.bindings {
            VersionedBindings::V0_2(b) => {
                let call = b.oort_sink_sink().call_close(store);
                tokio::time::timeout(timeout, call).await
            }
            VersionedBindings::V0_1(b) => {
                let call = b.oort_sink_sink().call_close(store);
                tokio::time::timeout(timeout, call)
                    .await
                    .map(|r| r.map(|r| r.map_err(error_from_v0_1)))
            }
        };
        self.settle_timed(result)
    }
}
