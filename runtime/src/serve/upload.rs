//! Sink builds sent by the client (the console's file picker): `POST
//! /plugins/sinks/{name}/upload` with `{"wasm": base64, "manifest": {...}?, "filename"?}`.
//!
//! The bytes are written to a staging folder of their own (the component and, when given,
//! its manifest beside it as `<name>.json`) and installed from there exactly as a `file`
//! install is: the same checks, the same hot reload in every running rule that uses the
//! sink, the same answer per rule. The body is JSON (base64 for the component) so one request
//! carries both files; a body over [`UPLOAD_LIMIT`] gets 413.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value as Json, json};

use super::store::Kind;
use super::{ApiError, Server};

/// The largest upload body taken, base64 and manifest included.
pub const UPLOAD_LIMIT: usize = 64 << 20;

/// The upload route (behind the token check like the rest of the API).
pub(super) fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/plugins/sinks/{name}/upload", post(upload))
        .layer(DefaultBodyLimit::max(UPLOAD_LIMIT))
        .with_state(server)
}

fn too_large() -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: 1000,
        message: format!(
            "the upload is larger than the server takes ({} MiB, base64 included)",
            UPLOAD_LIMIT >> 20
        ),
    }
}

/// A staging folder that is removed when dropped.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn upload(
    State(server): State<Arc<Server>>,
    UrlPath(name): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad_request(format!("Invalid body: {}", e.body_text()))
        }
    })?;
    super::plugins::check_name(&name)?;
    let request: Json = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid body: {e}")))?;
    let wasm = request.get("wasm").and_then(Json::as_str).ok_or_else(|| {
        ApiError::bad_request("Invalid body: field `wasm` (the component, base64) is required")
    })?;
    let wasm = oort_value::base64::decode_padded(wasm.trim())
        .ok_or_else(|| ApiError::bad_request("Invalid body: field `wasm` is not base64"))?;
    let manifest = match request.get("manifest") {
        None | Some(Json::Null) => None,
        Some(Json::String(text)) => Some(text.clone().into_bytes()),
        Some(doc @ Json::Object(_)) => Some(doc.to_string().into_bytes()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid body: field `manifest` is the manifest's JSON (an object or its text)",
            ));
        }
    };
    let filename = request
        .get("filename")
        .and_then(Json::as_str)
        .filter(|f| !f.is_empty())
        .map_or_else(|| format!("{name}.wasm"), str::to_string);

    let dir = server
        .config
        .run
        .plugins_dir
        .join(".uploads")
        .join(format!("{name}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let staging = Staging(dir);
    let staged = staging.0.join(format!("{name}.wasm"));
    let write = |path: &std::path::Path, bytes: &[u8]| {
        std::fs::write(path, bytes)
            .map_err(|e| ApiError::internal(format!("{}: cannot write: {e}", path.display())))
    };
    write(&staged, &wasm)?;
    if let Some(manifest) = &manifest {
        write(&staged.with_extension("json"), manifest)?;
    }
    let install = json!({ "file": staged.display().to_string() }).to_string();
    let answer = super::plugins::install(&server, &name, &install)
        .await
        // The client sent a file, not a path on the server: errors name the file.
        .map_err(|mut e| {
            e.message = e
                .message
                .replace(&staged.display().to_string(), &filename)
                .replace(
                    &staged.with_extension("json").display().to_string(),
                    &format!("{name}.json"),
                );
            e
        })?;
    // The plugin's record says where the build came from.
    if let Some(mut record) = server
        .store
        .all(Kind::Plugins)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == &name)
        .and_then(|(_, v)| serde_json::from_str::<Json>(&v).ok())
        && let Some(fields) = record.as_object_mut()
    {
        fields.insert("file".into(), json!(format!("upload: {filename}")));
        server
            .store
            .put(Kind::Plugins, &name, &record.to_string())?;
    }
    Ok(answer)
}
