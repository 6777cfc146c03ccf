//! What each sink instance's store holds: its WASI context (nothing granted but its files and
//! sockets), its `wasi:http` gate, resource table, memory limits, file guard, and the tag its log
//! lines carry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use super::bindings::oort::sink::mqtt::Qos;
use super::bindings::oort::sink::types::SinkError;
use super::bindings::{Level, oort};
use super::fs_guard::FileGuard;
use super::grants::HttpGrant;

/// Who an instance works for: every log line it writes carries this.
#[derive(Debug, Clone)]
pub struct InstanceTag {
    /// The rule's id.
    pub rule: Arc<str>,
    /// The action's name, e.g. `file_0`.
    pub action: Arc<str>,
    /// Which of the action's instances.
    pub instance: u32,
    /// Log lines dropped because the instance logged too fast (shared by the action).
    pub dropped_logs: Arc<AtomicU64>,
}

/// Lines a sink may log per second (host `log` calls and stdout/stderr lines together); more are
/// dropped and counted, so a guest that floods its log cannot flood the host's.
pub const LOG_LINES_PER_SECOND: u32 = 200;

/// A per-instance budget of log lines, refilled every second.
#[derive(Debug)]
pub struct LogBudget {
    window: Instant,
    used: u32,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            window: Instant::now(),
            used: 0,
        }
    }
}

impl LogBudget {
    /// Takes one line from the budget; false when it is spent for this second.
    pub fn take(&mut self) -> bool {
        if self.window.elapsed().as_secs() >= 1 {
            self.window = Instant::now();
            self.used = 0;
        }
        self.used += 1;
        self.used <= LOG_LINES_PER_SECOND
    }
}

/// The data of one instance's store.
pub struct InstanceState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) files: FileGuard,
    pub(crate) tag: InstanceTag,
    pub(crate) budget: LogBudget,
    /// Set when a call ran past its deadline, so the trap can say so.
    pub(crate) deadline_hit: bool,
    /// Epoch ticks the current call may still run.
    pub(crate) ticks_left: u64,
    /// MQTT publishing, when the action grants it.
    pub(crate) mqtt: Option<MqttAccess>,
    pub(crate) http: WasiHttpCtx,
    pub(crate) http_gate: HttpGate,
}

/// Lets `wasi:http` requests out only to the granted schemes and authorities.
pub(crate) struct HttpGate {
    pub(crate) grants: Arc<[HttpGrant]>,
    pub(crate) tag: InstanceTag,
}

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let authority = uri.authority().map(|a| a.as_str().to_string());
        let allowed = authority
            .as_deref()
            .is_some_and(|a| self.grants.iter().any(|g| g.allows(&scheme, a)));
        if !allowed {
            let shown = format!("{scheme}://{}", authority.as_deref().unwrap_or(""));
            tracing::warn!(
                rule = %self.tag.rule,
                action = %self.tag.action,
                instance = self.tag.instance,
                "sink: HTTP request to {shown} denied: not granted (granted: {})",
                if self.grants.is_empty() {
                    "nothing".to_string()
                } else {
                    self.grants
                        .iter()
                        .map(|g| format!("{}://{}", g.scheme, g.authority))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            return Box::new(std::future::ready(Err(HttpError::HttpRequestDenied)));
        }
        _ = fut;
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.http_gate,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// What an instance may publish to over MQTT: the pooled connection to its granted broker, and
/// the granted topic filters.
pub(crate) struct MqttAccess {
    pub(crate) conn: Arc<crate::mqtt::Connection>,
    pub(crate) topics: Vec<String>,
}

/// How long one `mqtt.publish` waits for an absent broker before it fails as `transient`.
const MQTT_PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl oort::sink::types::Host for InstanceState {}

impl oort::sink::host::Host for InstanceState {
    fn log(&mut self, level: Level, message: String) {
        if self.budget.take() {
            emit(&self.tag, level, &message);
        } else {
            self.tag.dropped_logs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl oort::sink::mqtt::Host for InstanceState {
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        qos: Qos,
        retain: bool,
    ) -> Result<(), SinkError> {
        let Some(access) = &self.mqtt else {
            return Err(SinkError::Rejected(
                "this sink has no MQTT grant: its manifest must name the props holding the broker and topics".into(),
            ));
        };
        if topic.is_empty() || topic.contains(['+', '#']) {
            return Err(SinkError::Rejected(format!(
                "cannot publish to {topic:?}: a topic has no wildcards"
            )));
        }
        if !access
            .topics
            .iter()
            .any(|f| crate::mqtt::topic_matches(f, &topic))
        {
            return Err(SinkError::Rejected(format!(
                "topic {topic:?} is not granted to this action (granted: {})",
                access.topics.join(", ")
            )));
        }
        let qos = match qos {
            Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
            Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
            Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
        };
        let conn = Arc::clone(&access.conn);
        conn.publish(vec![(topic, &payload)], qos, retain, MQTT_PUBLISH_TIMEOUT)
            .await
            .map_err(|e| SinkError::Transient(e.to_string()))
    }
}

/// Writes one guest log line to the host log, tagged.
pub fn emit(tag: &InstanceTag, level: Level, message: &str) {
    let (rule, action, instance) = (&*tag.rule, &*tag.action, tag.instance);
    let message = message.trim_end();
    match level {
        Level::Trace => tracing::trace!(rule, action, instance, "sink: {message}"),
        Level::Debug => tracing::debug!(rule, action, instance, "sink: {message}"),
        Level::Info => tracing::info!(rule, action, instance, "sink: {message}"),
        Level::Warn => tracing::warn!(rule, action, instance, "sink: {message}"),
        Level::Error => tracing::error!(rule, action, instance, "sink: {message}"),
    }
}
