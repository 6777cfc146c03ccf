//! Outgoing `wasi:http`, gated: a request leaves only for a scheme and authority the action
//! grants; any other is refused with `HTTP-request-denied` and a warning in the log. An
//! instance has at most so many requests in flight (sent, answer not yet read in full); past
//! that, a request fails with `connection-limit-reached`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use super::grants::HttpGrant;
use super::guest_str::cap_guest_string;
use super::linking::{HTTP_BODY_CHUNK_BYTES, HTTP_RESOURCE_BYTES};
use super::log::InstanceTag;

/// The state of one instance's `wasi:http`: wasmtime-wasi-http's context and the gate in front
/// of it.
pub struct HttpCtx {
    ctx: WasiHttpCtx,
    gate: HttpGate,
}

impl HttpCtx {
    /// Requests allowed to the `grants` only, at most `max_in_flight` at once; denials are
    /// logged under `tag`.
    pub fn new(grants: &[HttpGrant], max_in_flight: usize, tag: InstanceTag) -> Self {
        let mut ctx = WasiHttpCtx::new();
        // With the body chunk below, no `wasi:http` resource holds more than this in the host.
        ctx.set_field_size_limit(HTTP_RESOURCE_BYTES);
        Self {
            ctx,
            gate: HttpGate {
                grants: grants.iter().cloned().collect(),
                in_flight: Arc::default(),
                max_in_flight,
                tag,
            },
        }
    }

    /// The view wasmtime-wasi-http's bindings work on, with the store's resource table.
    pub fn view<'a>(&'a mut self, table: &'a mut ResourceTable) -> WasiHttpCtxView<'a> {
        WasiHttpCtxView {
            hooks: &mut self.gate,
            table,
            ctx: &mut self.ctx,
        }
    }
}

/// Lets `wasi:http` requests out only to the granted schemes and authorities.
struct HttpGate {
    grants: Arc<[HttpGrant]>,
    /// Requests sent whose answer is not yet read in full (or dropped).
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
    tag: InstanceTag,
}

/// One request in flight: counted from when it is sent until its answer's body is read in full,
/// or the guest drops the request or the response.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more request, unless `max` are in flight already.
    fn acquire(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(Arc::clone(count)))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HttpGate {
    /// Whether a request to `scheme://authority` is granted (no authority: never).
    fn allows(&self, scheme: &str, authority: Option<&str>) -> bool {
        authority.is_some_and(|a| self.grants.iter().any(|g| g.allows(scheme, a)))
    }

    /// What the denial warning lists as granted.
    fn granted(&self) -> String {
        if self.grants.is_empty() {
            "nothing".to_string()
        } else {
            self.grants
                .iter()
                .map(|g| format!("{}://{}", g.scheme, g.authority))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

impl WasiHttpHooks for HttpGate {
    /// One chunk waits in an outgoing body's buffer (and one more in flight): an unsent body
    /// holds at most [`HTTP_RESOURCE_BYTES`].
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        HTTP_BODY_CHUNK_BYTES
    }

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
        if !self.allows(&scheme, authority.as_deref()) {
            let shown =
                cap_guest_string(format!("{scheme}://{}", authority.as_deref().unwrap_or("")));
            tracing::warn!(
                rule = %self.tag.rule,
                action = %self.tag.action,
                instance = self.tag.instance,
                "sink: HTTP request to {shown} denied: not granted (granted: {})",
                self.granted()
            );
            return Box::new(std::future::ready(Err(HttpError::HttpRequestDenied)));
        }
        let Some(permit) = InFlight::acquire(&self.in_flight, self.max_in_flight) else {
            tracing::warn!(
                rule = %self.tag.rule,
                action = %self.tag.action,
                instance = self.tag.instance,
                "sink: HTTP request refused: {} requests in flight, its limit \
                 (`maxHttpRequests`, `--max-http-requests`)",
                self.max_in_flight
            );
            return Box::new(std::future::ready(Err(HttpError::ConnectionLimitReached)));
        };
        _ = fut;
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            // The connection stays open until the body is read: so does the count.
            let io = async move {
                let _permit = permit;
                io.await
            };
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

/// The version of `wasi:http` wasmtime-wasi-http implements: guests importing any 0.2.x up
/// to it are linked to it.
const WASI_HTTP_VERSION: &str = "0.2.12";

/// Links `wasi:http/{outgoing-handler,types}` (the store's [`WasiHttpView`] hands out an
/// [`HttpCtx::view`]): `types` as wasmtime-wasi-http links it, `outgoing-handler` through
/// [`handle`].
pub fn add_to_linker<T: WasiHttpView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    use wasmtime_wasi_http::p2::bindings::{LinkOptions, http};
    http::types::add_to_linker::<_, wasmtime_wasi_http::WasiHttp>(
        linker,
        &LinkOptions::default().into(),
        T::http,
    )?;
    let mut handler =
        linker.instance(&format!("wasi:http/outgoing-handler@{WASI_HTTP_VERSION}"))?;
    handler.func_wrap(
        "handle",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (request, options): (
            Resource<HostOutgoingRequest>,
            Option<Resource<RequestOptions>>,
        )| {
            let mut view = store.data_mut().http();
            Ok((handle(&mut view, request, options)?,))
        },
    )?;
    Ok(())
}

/// `wasi:http/outgoing-handler.handle` as wasmtime-wasi-http implements it, except that the
/// `request-options` the guest hands over are dropped once the call returns.
///
/// `handle` takes the options by value (an owned handle), but wasmtime-wasi-http 48 only reads
/// them and leaves them in the instance's resource table: a guest that sets a timeout on each
/// request filled its table after about a thousand requests and trapped, giving up the batch
/// it was sending. Hand-written because the crate's bindings offer no hook around one function
/// short of implementing every `wasi:http/types` resource again.
fn handle(
    view: &mut WasiHttpCtxView<'_>,
    request: Resource<HostOutgoingRequest>,
    options: Option<Resource<RequestOptions>>,
) -> wasmtime::Result<Result<Resource<HostFutureIncomingResponse>, ErrorCode>> {
    use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler::Host as _, types::Host as _};
    let rep = options.as_ref().map(Resource::rep);
    let answer = view.handle(request, options);
    // Deleted only if the handle still names request options: should a later
    // wasmtime-wasi-http delete them itself, the slot may hold something else by now.
    if let Some(rep) = rep
        && view
            .table
            .get(&Resource::<RequestOptions>::new_borrow(rep))
            .is_ok()
    {
        let _ = view.table.delete(Resource::<RequestOptions>::new_own(rep));
    }
    match answer {
        Ok(response) => Ok(Ok(response)),
        Err(error) => Ok(Err(view.convert_error_code(error)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(urls: &[&str]) -> HttpGate {
        let grants: Vec<HttpGrant> = urls.iter().map(|u| HttpGrant::parse(u).unwrap()).collect();
        HttpCtx::new(
            &grants,
            usize::MAX,
            InstanceTag {
                rule: "r".into(),
                action: "rest_0".into(),
                instance: 0,
                dropped_logs: Arc::default(),
            },
        )
        .gate
    }

    #[test]
    fn only_granted_schemes_and_authorities_pass() {
        let gate = gate(&["http://LocalHost:8080/api", "https://example.com/v1"]);
        assert!(gate.allows("http", Some("localhost:8080")));
        assert!(gate.allows("https", Some("example.com")));
        assert!(gate.allows("https", Some("EXAMPLE.com:443")));
        assert!(!gate.allows("https", Some("localhost:8080")));
        assert!(!gate.allows("http", Some("localhost:8081")));
        assert!(!gate.allows("http", Some("example.com")));
        assert!(!gate.allows("http", None));
        assert_eq!(
            gate.granted(),
            "http://localhost:8080, https://example.com:443"
        );
    }

    #[test]
    fn in_flight_requests_are_capped_until_released() {
        let count = Arc::new(AtomicUsize::new(0));
        let first = InFlight::acquire(&count, 2).unwrap();
        let second = InFlight::acquire(&count, 2).unwrap();
        assert!(InFlight::acquire(&count, 2).is_none());
        drop(first);
        let third = InFlight::acquire(&count, 2);
        assert!(third.is_some());
        drop((second, third));
        assert_eq!(count.load(Ordering::Acquire), 0);
    }

    #[test]
    fn nothing_granted_denies_everything() {
        let gate = gate(&[]);
        assert!(!gate.allows("http", Some("localhost:80")));
        assert_eq!(gate.granted(), "nothing");
    }
}
