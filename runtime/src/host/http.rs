//! Outgoing `wasi:http`, gated: a request leaves only for a scheme and authority the action
//! grants; any other is refused with `HTTP-request-denied` and a warning in the log.

use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
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
    /// Requests allowed to the `grants` only; denials are logged under `tag`.
    pub fn new(grants: &[HttpGrant], tag: InstanceTag) -> Self {
        let mut ctx = WasiHttpCtx::new();
        // With the body chunk below, no `wasi:http` resource holds more than this in the host.
        ctx.set_field_size_limit(HTTP_RESOURCE_BYTES);
        Self {
            ctx,
            gate: HttpGate {
                grants: grants.iter().cloned().collect(),
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
    tag: InstanceTag,
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

/// Links `wasi:http/{outgoing-handler,types}` (the store's [`WasiHttpView`] hands out an
/// [`HttpCtx::view`]).
pub fn add_to_linker<T: WasiHttpView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(urls: &[&str]) -> HttpGate {
        let grants: Vec<HttpGrant> = urls.iter().map(|u| HttpGrant::parse(u).unwrap()).collect();
        HttpCtx::new(
            &grants,
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
    fn nothing_granted_denies_everything() {
        let gate = gate(&[]);
        assert!(!gate.allows("http", Some("localhost:80")));
        assert_eq!(gate.granted(), "nothing");
    }
}
