//! Who may call the API: on loopback anyone who can connect (the default); on any other
//! address only callers with a bearer token from the server's token file or a client
//! certificate signed by `--client-ca` (see [`super::tls`]), and the server refuses to start on
//! such an address without either.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The accepted tokens, kept as hashes: comparing two hashes takes the same time whatever
/// they hold, so the answer's timing tells nothing about a token.
#[derive(Debug, Clone)]
pub struct Tokens(Arc<Vec<blake3::Hash>>);

impl Tokens {
    /// Reads a token file: one token a line; blank lines and lines starting with `#` are
    /// skipped.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the token file: {e}", path.display()))?;
        let tokens: Vec<blake3::Hash> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|t| blake3::hash(t.as_bytes()))
            .collect();
        if tokens.is_empty() {
            return Err(format!("{}: the token file holds no token", path.display()));
        }
        Ok(Self(Arc::new(tokens)))
    }

    fn accepts(&self, token: &str) -> bool {
        let hash = blake3::hash(token.as_bytes());
        self.0.iter().fold(false, |ok, t| ok | (*t == hash))
    }
}

/// Whether the server may listen on `listen`: on loopback always, elsewhere only with tokens or
/// client certificates.
pub fn check_listen(
    listen: SocketAddr,
    tokens: Option<&Tokens>,
    client_certificates: bool,
) -> Result<(), String> {
    if listen.ip().is_loopback() || tokens.is_some() || client_certificates {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {listen} without authentication: the API can make rules write \
         files and reach hosts as this server. Give --token-file FILE (bearer tokens, one a \
         line), or client certificates (--tls-cert, --tls-key and --client-ca), or listen on \
         loopback (127.0.0.1)"
    ))
}

/// The middleware: a request without an accepted `Authorization: Bearer <token>` gets 401.
pub async fn require_token(State(tokens): State<Tokens>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token) if tokens.accepts(token) => next.run(request).await,
        _ => ApiError {
            status: http::StatusCode::UNAUTHORIZED,
            code: 1000,
            message: "unauthorized: send `Authorization: Bearer <token>` with a token of the \
                      server's token file"
                .into(),
        }
        .into_response(),
    }
}
