//! The `rest` sink: eKuiper's rest action as a wasm component. Each message becomes one HTTP
//! request to `url`, sent through the host's `wasi:http` outgoing handler, which lets it out
//! only to the URL's scheme and authority (the manifest grants the `url` prop).
//!
//! Answers: 2xx is delivered; 5xx, 408, 429, a refused or dropped connection or a timeout is
//! `transient` (the host retries, then caches); any other status is `rejected` (dead-lettered).
//! A batch that fails part-way remembers how far it got, so the host's retry of the same batch
//! does not send its first messages twice. A message whose templated values are malformed
//! rejects its batch before any of the batch is sent.
//!
//! `timeout` bounds each request, from sending it to the end of the answer's body (writing a
//! body larger than the host's buffer to a server that does not accept the connection is not
//! bounded: the write blocks until the host's own connect timeout). It is kept
//! here with the monotonic clock and `wasi:io/poll` rather than given to the host as
//! `request-options`: the host's `wasi:http` (wasmtime-wasi-http 48) keeps every
//! `request-options` handed to it in the instance's resource table for good, so after a few
//! hundred requests the instance would run out of handles and trap.
//!
//! `url`, `method` and the values of `headers` may be data templates (eKuiper's dynamic
//! props): the host evaluates them per message (and dead-letters a message whose URL is outside
//! the action's grant before the sink sees it); a message whose values are malformed here is
//! `rejected`. `headers` may also be one string, a template that renders to a JSON object of
//! header names and string values (eKuiper's other form of the prop).

use std::collections::BTreeMap;

use oort_sdk::serde::Deserialize;
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink, log};
use wasip2::clocks::monotonic_clock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::poll::{Pollable, poll};

/// Waits for `ready` until `deadline` (an instant of the monotonic clock; none: no limit);
/// false when the deadline came first.
fn wait_until(ready: &Pollable, deadline: Option<u64>) -> bool {
    match deadline {
        None => {
            ready.block();
            true
        }
        Some(at) => {
            let timer = monotonic_clock::subscribe_instant(at);
            poll(&[ready, &timer]).contains(&0)
        }
    }
}

/// The action's props (eKuiper's names).
#[derive(Debug, Deserialize)]
#[serde(
    crate = "oort_sdk::serde",
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct Config {
    /// Where to send: `http://` or `https://` with host, optional port, path and query.
    pub url: String,
    /// `GET` (the default, as in eKuiper), `POST`, `PUT`, `DELETE`, `HEAD` or `PATCH`.
    #[serde(default = "default_method")]
    pub method: String,
    /// `json`, `text`, `html`, `xml`, `javascript`, `form` or `none`; by default `none` for GET
    /// and HEAD (no body) and `json` for the others, as in eKuiper.
    #[serde(default)]
    pub body_type: Option<String>,
    /// How long to wait for the connection, for the answer's first byte and between its bytes:
    /// milliseconds, or a duration such as `"5s"` or `"500ms"` (default 5000 ms; 0: no limit).
    #[serde(default = "default_timeout")]
    pub timeout: oort_sdk::serde_json::Value,
    /// `code` (the default): a 2xx status is success. `body`: the answer's body must also be
    /// JSON whose `code` field (in the object, or in each object of an array) is 2xx.
    #[serde(default = "default_response_type")]
    pub response_type: String,
    /// Extra headers: an object of names and values (each value may be a template), or one
    /// string that renders to such an object as JSON (a template, evaluated per message).
    #[serde(default)]
    pub headers: Headers,
    /// Log each answer's status and body (at debug level).
    #[serde(default)]
    pub debug_resp: bool,
    /// eKuiper's TLS options: certificates come from the host's trust store here. Skipping
    /// verification is refused for an `https` URL (and means nothing for `http`).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Not supported (client certificates).
    #[serde(default)]
    pub certification_path: Option<String>,
    /// Not supported (client certificates).
    #[serde(default)]
    pub private_key_path: Option<String>,
    /// Not supported (a custom root CA).
    #[serde(default)]
    pub root_ca_path: Option<String>,
}

/// The `headers` prop in either of eKuiper's forms.
#[derive(Debug, Deserialize)]
#[serde(
    crate = "oort_sdk::serde",
    untagged,
    expecting = "an object of header names and string values, or a string holding one as JSON"
)]
pub enum Headers {
    /// `{"X-Token": "abc", "X-Device": "{{.device}}"}`.
    Map(BTreeMap<String, String>),
    /// `"{\"X-Device\": \"{{.device}}\"}"`.
    Json(String),
}

impl Default for Headers {
    fn default() -> Self {
        Self::Map(BTreeMap::new())
    }
}

/// The headers a string form of `headers` gives: a JSON object whose values are strings.
fn headers_from_json(text: &str) -> Result<BTreeMap<String, String>, String> {
    oort_sdk::serde_json::from_str(text).map_err(|e| {
        format!(
            "`headers` is {text:?}, which is not a JSON object of header names and string \
             values ({e})"
        )
    })
}

/// Checks each header: a name the host sets itself is refused, and so is a name or value that
/// would make every request fail.
fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if [
            "host",
            "content-length",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
        ]
        .contains(&lower.as_str())
            || lower.starts_with("proxy-")
            || lower == "http2-settings"
        {
            return Err(format!(
                "`headers`: {name} is set by the host and cannot be given"
            ));
        }
        header_ok(name, value)?;
    }
    Ok(())
}

fn default_method() -> String {
    "GET".into()
}

fn default_timeout() -> oort_sdk::serde_json::Value {
    5000.into()
}

fn default_response_type() -> String {
    "code".into()
}

/// `timeout` in milliseconds: a number of ms, or a number followed by `ms`, `s`, `m` or `h`.
fn parse_timeout(value: &oort_sdk::serde_json::Value) -> Result<u64, String> {
    use oort_sdk::serde_json::Value;
    let bad = || format!("`timeout` must be milliseconds or a duration like \"5s\", got {value}");
    match value {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(text) => {
            let text = text.trim();
            let split = text
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(text.len());
            let (number, unit) = text.split_at(split);
            let number: f64 = number.parse().map_err(|_| bad())?;
            let scale = match unit.trim() {
                "" | "ms" => 1.0,
                "s" => 1_000.0,
                "m" => 60_000.0,
                "h" => 3_600_000.0,
                _ => return Err(bad()),
            };
            Ok((number * scale).round() as u64)
        }
        _ => Err(bad()),
    }
}

/// Where requests go, parsed once.
#[derive(Debug, Clone)]
struct Target {
    scheme: Scheme,
    authority: String,
    path_and_query: String,
}

/// Where one message goes and how.
struct Request<'a> {
    url: &'a str,
    target: std::borrow::Cow<'a, Target>,
    method: Method,
    content_type: Option<&'static str>,
    headers: std::borrow::Cow<'a, BTreeMap<String, String>>,
}

/// The sink's state.
pub struct Rest {
    config: Config,
    /// The URL parsed once; `None` when it is a template (parsed per message).
    target: Option<Target>,
    /// The method; `None` when it is a template.
    method: Option<Method>,
    /// The headers as written (values that are templates are replaced per message); empty
    /// when `headers` is one template string.
    headers: BTreeMap<String, String>,
    /// Whether `headers` is one template string, rendered per message by the host.
    headers_template: bool,
    /// `bodyType`'s content type (`None` inside for `none`), when the rule sets it.
    body_type: Option<Option<&'static str>>,
    /// The `timeout` in milliseconds; 0 for none.
    timeout_ms: u64,
    /// Whether the answer's body carries the outcome (`responseType: body`).
    body_code: bool,
    /// The batch being delivered (a hash of its payloads) and how many of its messages were
    /// accepted, so a retry of the same batch resumes after them.
    progress: Option<(u64, usize)>,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`url` must be an absolute http(s) URL, got {url:?}"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("`url`: scheme `{other}` is not http or https")),
    };
    // A fragment names a place in the answer: it is never sent.
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty()
        || authority.contains('@')
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "`url` must name a host (without credentials), got {url:?}"
        ));
    }
    let path_and_query = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(Target {
        scheme,
        authority: authority.to_string(),
        path_and_query,
    })
}

fn parse_method(method: &str) -> Result<Method, String> {
    Ok(match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        "PATCH" => Method::Patch,
        other => {
            return Err(format!(
                "`method`: {other:?} is not GET, POST, PUT, DELETE, HEAD or PATCH"
            ));
        }
    })
}

fn content_type(body_type: &str) -> Result<Option<&'static str>, String> {
    Ok(Some(match body_type.to_ascii_lowercase().as_str() {
        "none" => return Ok(None),
        "json" => "application/json",
        "text" => "text/plain",
        "html" => "text/html",
        "xml" => "application/xml",
        "javascript" => "application/javascript",
        "form" => "application/x-www-form-urlencoded",
        other => {
            return Err(format!(
                "`bodyType`: {other:?} is not none, json, text, html, xml, javascript or form"
            ));
        }
    }))
}

/// A header name must be an HTTP token, and its value must not hold line breaks or other
/// control characters (a tab is allowed): otherwise every request would fail.
fn header_ok(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("`headers`: {name:?} is not a valid header name"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "`headers`: the value of {name} holds a line break or a control character"
        ));
    }
    Ok(())
}

/// FNV-1a over the payloads: identifies a batch the host sends again after a failure.
fn fingerprint(batch: &Batch) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in batch.payloads() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^ batch.len() as u64
}

/// `application/x-www-form-urlencoded` from a JSON object (values as their text).
fn form_body(payload: &[u8]) -> Result<Vec<u8>, SinkError> {
    let value: oort_sdk::serde_json::Value = oort_sdk::serde_json::from_slice(payload)
        .map_err(|e| SinkError::rejected(format!("bodyType form needs a JSON object: {e}")))?;
    let oort_sdk::serde_json::Value::Object(map) = value else {
        return Err(SinkError::rejected(
            "bodyType form needs each message to be a JSON object (set sendSingle)",
        ));
    };
    let mut out = String::new();
    for (key, value) in map {
        if !out.is_empty() {
            out.push('&');
        }
        let text = match value {
            oort_sdk::serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        out.push_str(&urlencode(&key));
        out.push('=');
        out.push_str(&urlencode(&text));
    }
    Ok(out.into_bytes())
}

fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Whether a failure to get an answer is worth retrying. Only faults of the request itself
/// (outside the grant, a malformed URI or method, too large) would fail again the same way;
/// everything on the way to the server or back (DNS, refused or dropped connections, TLS,
/// timeouts, a server closing the connection before answering) may pass.
fn transport_error(what: &str, code: &ErrorCode) -> SinkError {
    let message = format!("{what}: {code:?}");
    match code {
        ErrorCode::HttpRequestDenied => {
            SinkError::rejected(format!("{message}: the URL is outside this action's grant"))
        }
        ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestBodySize(_)
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_)
        | ErrorCode::HttpRequestTrailerSectionSize(_)
        | ErrorCode::HttpRequestTrailerSize(_) => SinkError::rejected(message),
        _ => SinkError::transient(message),
    }
}

impl Rest {
    /// Sends one request and classifies the answer.
    fn send(&self, payload: &[u8], req: &Request<'_>) -> Result<(), SinkError> {
        let deadline = (self.timeout_ms > 0).then(|| {
            monotonic_clock::now().saturating_add(self.timeout_ms.saturating_mul(1_000_000))
        });
        let body = match req.content_type {
            Some("application/x-www-form-urlencoded") => form_body(payload)?,
            Some(_) if !matches!(req.method, Method::Get | Method::Head) => payload.to_vec(),
            _ => Vec::new(),
        };
        let headers = Fields::new();
        let set = |name: &str, value: &[u8]| {
            headers
                .append(name, value)
                .map_err(|e| SinkError::rejected(format!("header {name}: {e:?}")))
        };
        let own_type = req
            .headers
            .keys()
            .any(|name| name.eq_ignore_ascii_case("content-type"));
        if let Some(ct) = req.content_type
            && !body.is_empty()
            && !own_type
        {
            set("content-type", ct.as_bytes())?;
        }
        for (name, value) in req.headers.iter() {
            set(name, value.as_bytes())?;
        }
        set("content-length", body.len().to_string().as_bytes())?;
        let request = OutgoingRequest::new(headers);
        let invalid = |what: &str| SinkError::rejected(format!("the request's {what} is invalid"));
        request
            .set_method(&req.method)
            .map_err(|()| invalid("method"))?;
        request
            .set_scheme(Some(&req.target.scheme))
            .map_err(|()| invalid("scheme"))?;
        request
            .set_authority(Some(&req.target.authority))
            .map_err(|()| invalid("authority"))?;
        request
            .set_path_with_query(Some(&req.target.path_and_query))
            .map_err(|()| invalid("path"))?;
        let outgoing = request
            .body()
            .map_err(|()| SinkError::transient("the request body is unavailable"))?;
        // No `request-options`: see the module's documentation.
        let pending = outgoing_handler::handle(request, None)
            .map_err(|code| transport_error("sending the request", &code))?;
        {
            let stream = outgoing
                .write()
                .map_err(|()| SinkError::transient("the request body stream is unavailable"))?;
            for chunk in body.chunks(4096) {
                stream.blocking_write_and_flush(chunk).map_err(|e| {
                    SinkError::transient(format!("writing the request body: {e:?}"))
                })?;
            }
        }
        OutgoingBody::finish(outgoing, None)
            .map_err(|code| transport_error("finishing the request", &code))?;
        let answered = {
            let ready = pending.subscribe();
            wait_until(&ready, deadline)
        };
        if !answered {
            return Err(SinkError::transient(format!(
                "{}: Timeout: no answer within {} ms",
                req.url, self.timeout_ms
            )));
        }
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(transport_error(req.url, &code)),
            Some(Err(())) | None => {
                return Err(SinkError::transient("the response was lost"));
            }
        };
        let status = response.status();
        let limit = if self.body_code { 1 << 20 } else { 512 };
        let text = response
            .consume()
            .ok()
            .map(|body| read_some(body, limit, deadline))
            .unwrap_or_default();
        if self.config.debug_resp {
            log::info(&format!("{} answered {status}: {text}", req.url));
        }
        let message = || format!("{} answered {status}: {}", req.url, text.trim());
        match status {
            200..=299 if self.body_code => body_code(&text)
                .map_err(|e| SinkError::rejected(format!("{} answered {status}: {e}", req.url))),
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(SinkError::transient(message())),
            _ => Err(SinkError::rejected(message())),
        }
    }
}

/// With `responseType: body`: the answer is JSON, an object or an array of objects, each with
/// a 2xx `code`.
fn body_code(text: &str) -> Result<(), String> {
    use oort_sdk::serde_json::Value;
    let value: Value = oort_sdk::serde_json::from_str(text)
        .map_err(|e| format!("the body is not JSON ({e}): {}", text.trim()))?;
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    for item in &items {
        let code = item.get("code").and_then(Value::as_f64).unwrap_or(0.0);
        if !(200.0..300.0).contains(&code) {
            return Err(format!("the body's code is not 2xx: {}", text.trim()));
        }
    }
    Ok(())
}

/// The first `limit` bytes of a response body, as text: what came by `deadline`.
fn read_some(body: IncomingBody, limit: usize, deadline: Option<u64>) -> String {
    let mut out = Vec::new();
    if let Ok(stream) = body.stream() {
        while out.len() < limit {
            match stream.read((limit - out.len()) as u64) {
                Ok(chunk) if !chunk.is_empty() => out.extend_from_slice(&chunk),
                Ok(_) => {
                    let ready = stream.subscribe();
                    if !wait_until(&ready, deadline) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Rest {
    /// Where message `index` of `batch` goes: the fixed props, or the values the host
    /// evaluated for it.
    fn request<'a>(&'a self, batch: &'a Batch, index: usize) -> Result<Request<'a>, SinkError> {
        let value = |prop: &str| batch.dynamic(prop).and_then(|v| v.get(index));
        let bad = |what: String| SinkError::rejected(format!("message {index}: {what}"));
        let (url, target) = match (&self.target, value("url")) {
            (Some(target), _) => (self.config.url.as_str(), std::borrow::Cow::Borrowed(target)),
            (None, Some(url)) => (
                url.as_str(),
                std::borrow::Cow::Owned(parse_url(url).map_err(bad)?),
            ),
            (None, None) => {
                return Err(bad("`url` is a template the host gave no value for".into()));
            }
        };
        let method = match (&self.method, value("method")) {
            (Some(method), _) => method.clone(),
            (None, Some(method)) => parse_method(method).map_err(bad)?,
            (None, None) => {
                return Err(bad(
                    "`method` is a template the host gave no value for".into()
                ));
            }
        };
        // eKuiper's default body: none for GET and HEAD, JSON for the others.
        let content_type = match self.body_type {
            Some(ct) => ct,
            None if matches!(method, Method::Get | Method::Head) => None,
            None => Some("application/json"),
        };
        let headers = if self.headers_template {
            let text = value("headers")
                .ok_or_else(|| bad("`headers` is a template the host gave no value for".into()))?;
            let headers = headers_from_json(text).map_err(bad)?;
            check_headers(&headers).map_err(bad)?;
            std::borrow::Cow::Owned(headers)
        } else {
            let mut headers = std::borrow::Cow::Borrowed(&self.headers);
            for name in self.headers.keys() {
                if let Some(v) = value(&format!("headers.{name}")) {
                    header_ok(name, v).map_err(bad)?;
                    headers.to_mut().insert(name.clone(), v.clone());
                }
            }
            headers
        };
        Ok(Request {
            url,
            target,
            method,
            content_type,
            headers,
        })
    }
}

impl Sink for Rest {
    type Config = Config;

    fn configure(_ctx: &Context, config: Config) -> Result<Self, SinkError> {
        let target = (!config.url.contains("{{"))
            .then(|| parse_url(&config.url))
            .transpose()
            .map_err(SinkError::invalid_config)?;
        let method = (!config.method.contains("{{"))
            .then(|| parse_method(&config.method))
            .transpose()
            .map_err(SinkError::invalid_config)?;
        let body_type = config
            .body_type
            .as_deref()
            .map(content_type)
            .transpose()
            .map_err(SinkError::invalid_config)?;
        let https = match &target {
            Some(target) => matches!(target.scheme, Scheme::Https),
            None => !config.url.to_ascii_lowercase().starts_with("http://"),
        };
        if config.insecure_skip_verify && https {
            return Err(SinkError::invalid_config(
                "`insecureSkipVerify` is refused for https: certificates are always verified",
            ));
        }
        for (prop, value) in [
            ("certificationPath", &config.certification_path),
            ("privateKeyPath", &config.private_key_path),
            ("rootCaPath", &config.root_ca_path),
        ] {
            if value.as_deref().is_some_and(|v| !v.is_empty()) {
                return Err(SinkError::invalid_config(format!(
                    "`{prop}` is not supported: https uses the host's trusted roots"
                )));
            }
        }
        let timeout_ms = parse_timeout(&config.timeout).map_err(SinkError::invalid_config)?;
        let body_code = match config.response_type.as_str() {
            "code" => false,
            "body" => true,
            other => {
                return Err(SinkError::invalid_config(format!(
                    "`responseType`: {other:?} is not code or body"
                )));
            }
        };
        let (headers, headers_template) = match &config.headers {
            Headers::Map(map) => (map.clone(), false),
            Headers::Json(text) if text.contains("{{") => (BTreeMap::new(), true),
            Headers::Json(text) => (
                headers_from_json(text).map_err(SinkError::invalid_config)?,
                false,
            ),
        };
        check_headers(&headers).map_err(SinkError::invalid_config)?;
        Ok(Self {
            config,
            target,
            method,
            headers,
            headers_template,
            body_type,
            timeout_ms,
            body_code,
            progress: None,
        })
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let id = fingerprint(batch);
        let skip = match self.progress {
            Some((seen, done)) if seen == id => done,
            _ => 0,
        };
        // Every message's request is made before any is sent: a message whose values are
        // malformed rejects the batch before any of it is delivered.
        let requests = batch
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, message)| Ok((i, message.payload, self.request(batch, i)?)))
            .collect::<Result<Vec<_>, SinkError>>()?;
        let failed = requests
            .iter()
            .find_map(|(i, payload, req)| self.send(payload, req).err().map(|e| (*i, e)));
        drop(requests);
        match failed {
            Some((i, e)) => {
                self.progress = Some((id, i));
                Err(e)
            }
            None => {
                self.progress = None;
                Ok(())
            }
        }
    }
}

export_sink!(Rest);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let t = parse_url("http://127.0.0.1:8080/api/v1?x=1").unwrap();
        assert!(matches!(t.scheme, Scheme::Http));
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/api/v1?x=1");
        let t = parse_url("https://example.com").unwrap();
        assert_eq!(t.path_and_query, "/");
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http://user:pw@x/").is_err());
        assert!(parse_url("x/y").is_err());
        let t = parse_url("http://h:1/a?b=1#top").unwrap();
        assert_eq!(t.path_and_query, "/a?b=1");
        assert!(parse_url("http://h x/").is_err());
    }

    #[test]
    fn forms_are_urlencoded() {
        let body = form_body(r#"{"a":"x y","b":2,"c&":"é"}"#.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(body).unwrap(), "a=x+y&b=2&c%26=%C3%A9");
        assert!(form_body(b"[1]").is_err());
    }

    #[test]
    fn header_names_and_values_are_checked() {
        assert!(header_ok("X-Token", "abc def").is_ok());
        assert!(header_ok("Authorization", "Bearer\tx").is_ok());
        assert!(header_ok("X Token", "a").is_err());
        assert!(header_ok("", "a").is_err());
        assert!(header_ok("X-A", "a\r\nX-Injected: 1").is_err());
    }

    #[test]
    fn headers_are_an_object_or_a_string_holding_one() {
        use oort_sdk::serde_json::{from_value, json};
        let config: Config =
            from_value(json!({"url": "http://h/", "headers": {"X-A": "1"}})).unwrap();
        assert!(matches!(config.headers, Headers::Map(ref m) if m["X-A"] == "1"));
        let config: Config =
            from_value(json!({"url": "http://h/", "headers": "{\"X-A\": \"{{.a}}\"}"})).unwrap();
        assert!(matches!(config.headers, Headers::Json(_)));
        let e = from_value::<Config>(json!({"url": "http://h/", "headers": 3})).unwrap_err();
        assert!(e.to_string().contains("an object of header names"), "{e}");
        let map = headers_from_json(r#"{"X-A": "1", "X-B": "two"}"#).unwrap();
        assert_eq!(map.len(), 2);
        assert!(headers_from_json(r#"{"X-A": 1}"#).is_err());
        assert!(headers_from_json("X-A: 1").is_err());
        assert!(check_headers(&map).is_ok());
        let host = BTreeMap::from([("Host".to_string(), "x".to_string())]);
        assert!(check_headers(&host).is_err());
    }

    #[test]
    fn timeouts_are_milliseconds_or_durations() {
        use oort_sdk::serde_json::json;
        assert_eq!(parse_timeout(&json!(1500)), Ok(1500));
        assert_eq!(parse_timeout(&json!("2s")), Ok(2000));
        assert_eq!(parse_timeout(&json!("250ms")), Ok(250));
        assert_eq!(parse_timeout(&json!("1.5m")), Ok(90_000));
        assert_eq!(parse_timeout(&json!(0)), Ok(0));
        assert!(parse_timeout(&json!(-1)).is_err());
        assert!(parse_timeout(&json!("soon")).is_err());
    }

    #[test]
    fn body_codes_must_be_2xx() {
        assert!(body_code(r#"{"code":200,"message":"ok"}"#).is_ok());
        assert!(body_code(r#"[{"code":201},{"code":200}]"#).is_ok());
        assert!(body_code(r#"{"code":500}"#).is_err());
        assert!(body_code(r#"{"message":"no code"}"#).is_err());
        assert!(body_code("<html>").is_err());
    }

    #[test]
    fn only_faults_of_the_request_itself_are_rejected() {
        let transient =
            |code: ErrorCode| matches!(transport_error("x", &code), SinkError::Transient(_));
        assert!(transient(ErrorCode::HttpProtocolError));
        assert!(transient(ErrorCode::ConnectionRefused));
        assert!(transient(ErrorCode::ConnectionTerminated));
        assert!(transient(ErrorCode::HttpResponseIncomplete));
        assert!(!transient(ErrorCode::HttpRequestDenied));
        assert!(!transient(ErrorCode::HttpRequestUriInvalid));
    }

    #[test]
    fn body_types_and_methods_are_checked() {
        assert_eq!(content_type("JSON").unwrap(), Some("application/json"));
        assert_eq!(content_type("none").unwrap(), None);
        assert!(content_type("yaml").is_err());
        assert!(parse_method("patch").is_ok());
        assert!(parse_method("TRACE").is_err());
    }
}
