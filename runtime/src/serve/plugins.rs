//! Sink plugins over the API: install a component (`POST /plugins/sinks`), list, describe (its
//! manifest and what `oort sink inspect` shows) and drop it. Installing a name that exists
//! (`PUT`, or `POST` again) hot-reloads it in every running rule that uses it, with the same
//! zero-loss swap `oort run-rule --watch` does; the answer says which rules took the new build
//! and which refused it, and why.

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

/// The local file a `file` field names (`file:///path` or a path).
fn source_path(file: &str) -> Result<PathBuf, ApiError> {
    if let Some(path) = file.strip_prefix("file://") {
        return Ok(PathBuf::from(path));
    }
    if file.contains("://") {
        return Err(ApiError::bad_request(format!(
            "Invalid body: file `{file}`: only local files (file:///...) can be installed"
        )));
    }
    Ok(PathBuf::from(file))
}

/// Reads a component and checks that the host can load it (compiling it warms the cache).
async fn check_component(server: &Server, path: &Path) -> Result<Vec<u8>, ApiError> {
    if path.extension().is_some_and(|e| e == "zip") {
        return Err(ApiError::bad_request(format!(
            "{}: zip archives are not supported in this version: send the .wasm, with its \
             manifest beside it as <name>.json",
            path.display()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ApiError::bad_request(format!("{}: cannot read: {e}", path.display())))?;
    if !bytes.starts_with(b"\0asm") || bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return Err(ApiError::bad_request(format!(
            "{}: not a WebAssembly component",
            path.display()
        )));
    }
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
    .map_err(ApiError::bad_request)?;
    Ok(bytes)
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
    let source = source_path(file)?;
    let bytes = check_component(server, &source).await?;
    let dir = sinks_dir(server);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let target = dir.join(format!("{name}.wasm"));
    let existed = target.is_file();
    let manifest = source.with_extension("json");
    if manifest.is_file() {
        let text = std::fs::read(&manifest).map_err(|e| {
            ApiError::bad_request(format!("{}: cannot read: {e}", manifest.display()))
        })?;
        replace(&target.with_extension("json"), &text)?;
    }
    replace(&target, &bytes)?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let record = json!({ "file": file, "hash": hash }).to_string();
    server
        .store
        .put(Kind::Plugins, name, &record)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if !existed {
        return text(StatusCode::CREATED, format!("Plugin {name} is created."));
    }
    // Hand the new build to every running rule that uses it.
    let lives: Vec<(String, Arc<crate::reload::Reloader>)> = {
        let registry = server.registry.lock().await;
        registry
            .rules
            .iter()
            .filter(|(_, e)| e.is_running())
            .filter_map(|(id, e)| {
                let state = e.state.lock().ok()?;
                state
                    .live
                    .as_ref()
                    .map(|(_, r)| (id.clone(), Arc::clone(r)))
            })
            .collect()
    };
    let mut reloaded = Vec::new();
    let mut refused = Vec::new();
    let mut unchanged = Vec::new();
    for (rule, reloader) in lives {
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
    let source = server
        .store
        .all(Kind::Plugins)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == &name)
        .and_then(|(_, v)| serde_json::from_str::<Json>(&v).ok())
        .and_then(|v| v.get("file").cloned());
    Ok(axum::Json(json!({
        "name": name,
        "file": path.display().to_string(),
        "source": source,
        "version": &hash[..16],
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
    server
        .store
        .remove(Kind::Plugins, &name)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    // Running rules keep the build they loaded; new starts will not find the plugin.
    text(StatusCode::OK, format!("Plugin {name} is deleted."))
}
