//! Sink plugins over the API: install a component (`POST /plugins/sinks`), list, describe (its
//! manifest and what `oort sink inspect` shows) and drop it. Installing a name that exists
//! (`PUT`, or `POST` again) hot-reloads it in every running rule that uses it, with the same
//! zero-loss swap `oort run-rule --watch` does; the answer says which rules took the new build
//! and which refused it, and why. A build comes as a `.wasm` (with its manifest beside it) or
//! as an eKuiper-style `.zip`, from a local file or an `http(s)://` download, both size-limited.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use super::api::{parse_body, text};
use super::store::Kind;
use super::{ApiError, Server};
use crate::host::{HostConfig, SinkHost};
use crate::reload::Outcome;

type Answer = Result<Response, ApiError>;

fn sinks_dir(server: &Server) -> PathBuf {
    server.config.run.plugins_dir.join("sinks")
}

/// A plugin name: letters, digits and `_`, so it is a file name and nothing more.
pub(super) fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ApiError::bad_request(format!(
            "Invalid body: plugin name `{name}`: use letters, digits and `_`"
        )));
    }
    Ok(())
}

/// The most bytes an install reads by default: the file or download, and each entry unpacked
/// from an archive.
pub const DEFAULT_MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// How long a plugin download may take.
const DOWNLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A sink plugin build ready to install: the component and its manifest, from a `.wasm` (and
/// the manifest beside it) or from an eKuiper-style `.zip` archive.
#[derive(Debug, Clone)]
pub struct Package {
    /// The component's bytes.
    pub wasm: Vec<u8>,
    /// The manifest's bytes (`<name>.json`), if the build has one.
    pub manifest: Option<Vec<u8>>,
    /// The version an archive's file name gives (`<Name>@v1.2.0.wasm`: `1.2.0`).
    pub version: Option<String>,
}

impl Package {
    /// Unpacks a plugin archive the way eKuiper lays one out: at its top, the component
    /// `<name>.wasm` (or `<Name>.wasm`, optionally with `@v<version>` before `.wasm`) and
    /// optionally its manifest `<name>.json` (or `<Name>.json`). Anything else is refused:
    /// another file (an `install.sh` included: a sink is a sandboxed component and runs no
    /// installer), an entry in a folder, one whose path escapes the plugin's folder (absolute
    /// or with `..`), a link, an encrypted entry, or one over `max_entry` bytes unpacked.
    pub fn from_zip(name: &str, bytes: &[u8], max_entry: u64) -> Result<Self, String> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| format!("not a zip archive: {e}"))?;
        let upper = upper_first(name);
        let mut package = Package {
            wasm: Vec::new(),
            manifest: None,
            version: None,
        };
        let mut found = false;
        let mut seen = Vec::new();
        for index in 0..archive.len() {
            let mut entry = archive
                .by_index(index)
                .map_err(|e| format!("entry {index}: {e}"))?;
            let entry_name = entry
                .name()
                .map_err(|e| format!("entry {index}: {e}"))?
                .into_owned();
            let escapes = entry_name.starts_with(['/', '\\'])
                || entry_name.split(['/', '\\']).any(|part| part == "..");
            if escapes || entry.enclosed_name().is_none() {
                return Err(format!(
                    "entry `{entry_name}` escapes the plugin's folder (an absolute path or `..`): \
                     refused"
                ));
            }
            if entry.is_symlink() {
                return Err(format!("entry `{entry_name}` is a link: refused"));
            }
            if entry.is_dir() {
                continue;
            }
            seen.push(entry_name.clone());
            if entry.encrypted() {
                return Err(format!("entry `{entry_name}` is encrypted: refused"));
            }
            if entry.size() > max_entry {
                return Err(format!(
                    "entry `{entry_name}` is {} bytes unpacked, over the limit of {max_entry}",
                    entry.size()
                ));
            }
            let role = if entry_name.contains('/') {
                return Err(format!(
                    "entry `{entry_name}` is in a folder: the component and its manifest sit \
                     at the top of the archive"
                ));
            } else if entry_name == "install.sh" {
                return Err(
                    "entry `install.sh`: install scripts are not run (a sink is a sandboxed \
                     component and needs none)"
                        .into(),
                );
            } else if let Some(version) = [name, upper.as_str()]
                .iter()
                .find_map(|n| wasm_version(&entry_name, n))
            {
                if found {
                    return Err(format!(
                        "entry `{entry_name}`: the archive holds more than one component for \
                         `{name}`"
                    ));
                }
                found = true;
                package.version = version;
                Role::Wasm
            } else if entry_name == format!("{name}.json") || entry_name == format!("{upper}.json")
            {
                Role::Manifest
            } else {
                return Err(format!(
                    "entry `{entry_name}` is not part of sink plugin `{name}`: the archive holds \
                     `{name}.wasm` (or `{upper}@v<version>.wasm`) and optionally its manifest \
                     `{name}.json`"
                ));
            };
            // The size in the header can lie: read one byte past the limit to tell.
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(&mut entry, max_entry + 1),
                &mut bytes,
            )
            .map_err(|e| format!("entry `{entry_name}`: cannot unpack: {e}"))?;
            if bytes.len() as u64 > max_entry {
                return Err(format!(
                    "entry `{entry_name}` unpacks to over the limit of {max_entry} bytes"
                ));
            }
            match role {
                Role::Wasm => package.wasm = bytes,
                Role::Manifest => package.manifest = Some(bytes),
            }
        }
        if !found {
            return Err(format!(
                "the archive holds no component `{name}.wasm` (or `{upper}@v<version>.wasm`); \
                 it holds: {}",
                if seen.is_empty() {
                    "nothing".to_string()
                } else {
                    seen.join(", ")
                }
            ));
        }
        Ok(package)
    }
}

enum Role {
    Wasm,
    Manifest,
}

fn upper_first(name: &str) -> String {
    let mut upper = name.to_string();
    if let Some(first) = upper.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    upper
}

/// Whether `file` is the component of plugin `name` (`<name>.wasm` or `<name>@v1.0.wasm`), and
/// the version its name gives.
fn wasm_version(file: &str, name: &str) -> Option<Option<String>> {
    let rest = file.strip_prefix(name)?.strip_suffix(".wasm")?;
    if rest.is_empty() {
        return Some(None);
    }
    let version = rest.strip_prefix('@')?;
    Some(Some(
        version.strip_prefix('v').unwrap_or(version).to_string(),
    ))
}

/// What a `file` field names, read whole (at most `limit` bytes): a local file (`file:///path`
/// or a path) or an `http(s)://` download. A local `.wasm` brings the manifest beside it.
async fn fetch(name: &str, file: &str, limit: u64) -> Result<Package, ApiError> {
    let (bytes, local) = if file.starts_with("http://") || file.starts_with("https://") {
        let bytes = tokio::time::timeout(DOWNLOAD_TIMEOUT, download(file, limit))
            .await
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "{file}: the download took over {} s",
                    DOWNLOAD_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| ApiError::bad_request(format!("{file}: {e}")))?;
        (bytes, None)
    } else if file.contains("://") && !file.starts_with("file://") {
        return Err(ApiError::bad_request(format!(
            "Invalid body: file `{file}`: use file:///path, http:// or https://"
        )));
    } else {
        let path = PathBuf::from(file.strip_prefix("file://").unwrap_or(file));
        let shown = path.display().to_string();
        let size = std::fs::metadata(&path)
            .map_err(|e| ApiError::bad_request(format!("{shown}: cannot read: {e}")))?
            .len();
        if size > limit {
            return Err(ApiError::bad_request(format!(
                "{shown}: {size} bytes, over the limit of {limit}"
            )));
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| ApiError::bad_request(format!("{shown}: cannot read: {e}")))?;
        (bytes, Some(path))
    };
    let path_part = file.split(['?', '#']).next().unwrap_or(file);
    if path_part.ends_with(".zip") || bytes.starts_with(b"PK\x03\x04") {
        return Package::from_zip(name, &bytes, limit)
            .map_err(|e| ApiError::bad_request(format!("{file}: {e}")));
    }
    if !bytes.starts_with(b"\0asm") || bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return Err(ApiError::bad_request(format!(
            "{file}: neither a WebAssembly component nor a zip archive"
        )));
    }
    let manifest = match local.map(|p| p.with_extension("json")) {
        Some(m) if m.is_file() => Some(
            std::fs::read(&m)
                .map_err(|e| ApiError::bad_request(format!("{}: cannot read: {e}", m.display())))?,
        ),
        _ => None,
    };
    Ok(Package {
        wasm: bytes,
        manifest,
        version: None,
    })
}

/// Downloads `url` (HTTP/1.1; `https` checked against the system's CA certificates, or those
/// of the file `SSL_CERT_FILE` names), refusing
/// an answer over `limit` bytes. Redirects are not followed.
async fn download(url: &str, limit: u64) -> Result<Vec<u8>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            http::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    if https {
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::mqtt::system_ca_certificates() {
            let _ = roots.add(cert);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        get(tls, request, limit).await
    } else {
        get(tcp, request, limit).await
    }
}

async fn get<S>(
    io: S,
    request: http::Request<http_body_util::Empty<bytes::Bytes>>,
    limit: u64,
) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("the server answered {}", response.status()));
    }
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared.filter(|s| *s > limit) {
        return Err(format!("{size} bytes, over the limit of {limit}"));
    }
    let body = http_body_util::Limited::new(
        response.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
    )
    .collect()
    .await
    .map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            format!("over the limit of {limit} bytes")
        } else {
            format!("the download failed: {e}")
        }
    })?;
    Ok(body.to_bytes().to_vec())
}

/// Checks that the host can load the component at `path` with its manifest beside it
/// (compiling it warms the cache).
async fn check_component(server: &Server, path: &Path) -> Result<(), ApiError> {
    let config = HostConfig {
        max_instances: 0,
        ..server.config.run.host.clone()
    };
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let host = SinkHost::new(config).map_err(|e| e.to_string())?;
        host.load(&owned).map(|_| ()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(ApiError::bad_request)
}

/// Writes `bytes` to `target` by writing beside it and renaming over it, so a rule never sees
/// half a file.
fn replace(target: &Path, bytes: &[u8]) -> Result<(), ApiError> {
    let tmp = target.with_extension("partial");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, target))
        .map_err(|e| ApiError::internal(format!("{}: cannot write: {e}", target.display())))
}

pub(super) async fn install(server: &Arc<Server>, name: &str, body: &str) -> Answer {
    let request = parse_body(body)?;
    check_name(name)?;
    let file = request
        .get("file")
        .and_then(Json::as_str)
        .ok_or_else(|| ApiError::bad_request("Invalid body: field `file` is required"))?;
    let package = fetch(name, file, server.config.max_plugin_bytes).await?;
    install_package(server, name, package, file).await
}

/// Installs a plugin build under `name` (`source` says where it came from): checks that the
/// host loads it with its manifest before anything changes, puts it in place, and, if the
/// name was installed, hands the new build to every running rule that uses it.
pub(crate) async fn install_package(
    server: &Arc<Server>,
    name: &str,
    package: Package,
    source: &str,
) -> Answer {
    check_name(name)?;
    let dir = sinks_dir(server);
    let staging = dir.join(format!(".install-{name}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&staging)
        .map_err(|e| ApiError::internal(format!("{}: {e}", staging.display())))?;
    let staged = staging.join(format!("{name}.wasm"));
    let checked = async {
        let write = |path: &Path, bytes: &[u8]| {
            std::fs::write(path, bytes)
                .map_err(|e| ApiError::internal(format!("{}: cannot write: {e}", path.display())))
        };
        write(&staged, &package.wasm)?;
        if let Some(manifest) = &package.manifest {
            write(&staged.with_extension("json"), manifest)?;
        }
        check_component(server, &staged).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&staging);
    // An error names the build as the user gave it, not the staging folder.
    checked.map_err(|mut e| {
        e.message = e
            .message
            .replace(
                &staged.with_extension("json").display().to_string(),
                &format!("{name}.json"),
            )
            .replace(&staged.display().to_string(), source);
        e
    })?;
    let target = dir.join(format!("{name}.wasm"));
    let existed = target.is_file();
    match &package.manifest {
        Some(manifest) => replace(&target.with_extension("json"), manifest)?,
        // The build was checked without a manifest: an older one must not stay beside it.
        None => match std::fs::remove_file(target.with_extension("json")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ApiError::internal(format!(
                    "{}: cannot remove: {e}",
                    target.with_extension("json").display()
                )));
            }
            _ => {}
        },
    }
    replace(&target, &package.wasm)?;
    let hash = blake3::hash(&package.wasm).to_hex().to_string();
    let record = json!({ "file": source, "hash": hash, "version": package.version }).to_string();
    server.store.put(Kind::Plugins, name, &record)?;
    if !existed {
        return text(StatusCode::CREATED, format!("Plugin {name} is created."));
    }
    // Hand the new build to every running rule that uses it.
    let lives = server.live_rules().await;
    let mut reloaded = Vec::new();
    let mut refused = Vec::new();
    let mut unchanged = Vec::new();
    for (rule, _, reloader) in lives {
        match reloader.reload(&target).await {
            Outcome::Unused => {}
            Outcome::Unchanged => unchanged.push(json!(rule)),
            Outcome::Swapped { hash, instances } => {
                reloaded.push(json!({ "rule": rule, "instances": instances, "version": hash }))
            }
            Outcome::Refused(reason) => refused.push(json!({ "rule": rule, "reason": reason })),
        }
    }
    Ok(axum::Json(json!({
        "message": format!("Plugin {name} is updated."),
        "version": &hash[..16],
        "reloaded": reloaded,
        "refused": refused,
        "unchanged": unchanged,
    }))
    .into_response())
}

pub(super) async fn create(State(server): State<Arc<Server>>, body: String) -> Answer {
    let name = parse_body(&body)?
        .get("name")
        .and_then(Json::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request("Invalid body: field `name` is required"))?;
    install(&server, &name, &body).await
}

pub(super) async fn update(
    State(server): State<Arc<Server>>,
    UrlPath(name): UrlPath<String>,
    body: String,
) -> Answer {
    if let Some(given) = parse_body(&body)?.get("name").and_then(Json::as_str)
        && given != name
    {
        return Err(ApiError::bad_request(format!(
            "Invalid body: the plugin's name `{given}` is not `{name}`"
        )));
    }
    if !sinks_dir(&server).join(format!("{name}.wasm")).is_file() {
        return Err(ApiError::not_found(format!("plugin {name} not found")));
    }
    install(&server, &name, &body).await
}

pub(super) async fn list(State(server): State<Arc<Server>>) -> Answer {
    let mut names: Vec<String> = std::fs::read_dir(sinks_dir(&server))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            (path.extension()? == "wasm")
                .then(|| path.file_stem()?.to_str().map(str::to_string))
                .flatten()
        })
        .collect();
    names.sort();
    Ok(axum::Json(json!(names)).into_response())
}

pub(super) async fn describe(
    State(server): State<Arc<Server>>,
    UrlPath(name): UrlPath<String>,
) -> Answer {
    check_name(&name)?;
    let path = sinks_dir(&server).join(format!("{name}.wasm"));
    let bytes = std::fs::read(&path)
        .map_err(|_| ApiError::not_found(format!("plugin {name} not found")))?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let manifest = std::fs::read_to_string(path.with_extension("json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Json>(&t).ok());
    // What `oort sink inspect` shows, from this very binary.
    let inspect = match std::env::current_exe() {
        Ok(exe) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(exe)
                    .args(["sink", "inspect"])
                    .arg(&path)
                    .output()
            })
            .await
            .ok()
            .and_then(Result::ok)
            .map(|out| {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                text
            })
        }
        Err(_) => None,
    };
    let record = server
        .store
        .all(Kind::Plugins)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == &name)
        .and_then(|(_, v)| serde_json::from_str::<Json>(&v).ok());
    let source = record.as_ref().and_then(|v| v.get("file").cloned());
    // The version an archive's file name gave, else the first digits of the build's hash.
    let version = record
        .as_ref()
        .and_then(|v| v.get("version")?.as_str().map(str::to_string))
        .unwrap_or_else(|| hash[..16].to_string());
    Ok(axum::Json(json!({
        "name": name,
        "file": path.display().to_string(),
        "source": source,
        "version": version,
        "hash": format!("blake3:{hash}"),
        "manifest": manifest,
        "inspect": inspect,
    }))
    .into_response())
}

pub(super) async fn drop_plugin(
    State(server): State<Arc<Server>>,
    UrlPath(name): UrlPath<String>,
) -> Answer {
    check_name(&name)?;
    let path = sinks_dir(&server).join(format!("{name}.wasm"));
    std::fs::remove_file(&path)
        .map_err(|_| ApiError::not_found(format!("plugin {name} not found")))?;
    let _ = std::fs::remove_file(path.with_extension("json"));
    server.store.remove(Kind::Plugins, &name)?;
    // Running rules keep the build they loaded; new starts will not find the plugin.
    text(StatusCode::OK, format!("Plugin {name} is deleted."))
}
