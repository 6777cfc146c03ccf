//! The API client, like eKuiper's `kuiper` CLI: `oort create|show|describe|getstatus|start|
//! stop|restart|drop|import ...` send the matching REST call to a running `oort serve`
//! (`--host`, default the local server) and print its answer. HTTP/1.1 through hyper, over the
//! same tokio runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};

/// Where the server is.
#[derive(Debug, Args)]
pub struct Host {
    /// The server's address.
    #[arg(
        long,
        global = true,
        env = "OORT_HOST",
        default_value = "127.0.0.1:9081"
    )]
    pub host: String,

    /// A bearer token for a server that requires one.
    #[arg(long, global = true, env = "OORT_TOKEN")]
    pub token: Option<String>,
}

/// What a command acts on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Noun {
    /// A stream.
    Stream,
    /// A table.
    Table,
    /// A rule.
    Rule,
}

impl Noun {
    fn path(self) -> &'static str {
        match self {
            Noun::Stream => "streams",
            Noun::Table => "tables",
            Noun::Rule => "rules",
        }
    }
}

/// `oort create ...`.
#[derive(Debug, Subcommand)]
pub enum Create {
    /// `oort create stream 'CREATE STREAM ...'` (or `-f FILE` holding the statement).
    Stream(Statement),
    /// `oort create table 'CREATE TABLE ...'`.
    Table(Statement),
    /// `oort create rule NAME -f rule.json`.
    Rule(Named),
    /// `oort create plugin sink NAME -f plugin.json` (`{"file": "file:///.../X.zip"}`), or
    /// `-f X.zip` / `-f X.wasm` directly (a path the server reads).
    Plugin {
        /// Only `sink`.
        kind: String,
        /// The plugin's name.
        #[command(flatten)]
        named: Named,
    },
}

/// A statement given inline or in a file.
#[derive(Debug, Args)]
pub struct Statement {
    /// The statement.
    pub sql: Option<String>,
    /// A file holding it.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
}

/// A name and a JSON file.
#[derive(Debug, Args)]
pub struct Named {
    /// The name.
    pub name: String,
    /// The JSON file.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

/// `oort show streams|tables|rules|plugins`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Listing {
    /// Streams.
    Streams,
    /// Tables.
    Tables,
    /// Rules, with their status.
    Rules,
    /// Sink plugins.
    Plugins,
}

/// The only kind `getstatus`, `start`, `stop` and `restart` act on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RuleWord {
    /// A rule.
    Rule,
}

/// The only kind `import` takes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RulesetWord {
    /// A ruleset export (`{"streams", "tables", "rules"}`).
    Ruleset,
}

/// A client command.
#[derive(Debug)]
pub enum Call {
    /// `create ...`.
    Create(Create),
    /// `show ...`.
    Show(Listing),
    /// `describe KIND NAME`.
    Describe(Noun, String),
    /// `drop KIND NAME`.
    Drop(Noun, String),
    /// `getstatus rule NAME`.
    Status(String),
    /// `start|stop|restart rule NAME`.
    Control(&'static str, String),
    /// `import ruleset -f FILE`.
    Import(PathBuf),
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

/// The method, path and body of a call.
fn request(call: Call) -> Result<(&'static str, String, Option<String>), String> {
    Ok(match call {
        Call::Create(create) => match create {
            Create::Stream(s) | Create::Table(s) => {
                let sql = match (s.sql, s.file) {
                    (Some(sql), None) => sql,
                    (None, Some(file)) => read(&file)?,
                    _ => return Err("give the statement, or -f FILE".into()),
                };
                let path = if sql.to_ascii_lowercase().contains("create table") {
                    "/tables"
                } else {
                    "/streams"
                };
                (
                    "POST",
                    path.into(),
                    Some(serde_json::json!({ "sql": sql }).to_string()),
                )
            }
            Create::Rule(named) => {
                let mut rule: serde_json::Value = serde_json::from_str(&read(&named.file)?)
                    .map_err(|e| format!("{}: {e}", named.file.display()))?;
                if let Some(o) = rule.as_object_mut() {
                    o.insert("id".into(), serde_json::json!(named.name));
                }
                ("POST", "/rules".into(), Some(rule.to_string()))
            }
            Create::Plugin { kind, named } => {
                if kind != "sink" {
                    return Err(format!(
                        "plugins of kind `{kind}`: only `sink` plugins exist"
                    ));
                }
                // A plugin archive or component given as is: the server reads it from this
                // path (as eKuiper's `file:///` bodies), so the path is made absolute.
                let is_build = named
                    .file
                    .extension()
                    .is_some_and(|e| e == "zip" || e == "wasm");
                let mut body: serde_json::Value = if is_build {
                    let path = std::path::absolute(&named.file)
                        .map_err(|e| format!("{}: {e}", named.file.display()))?;
                    serde_json::json!({ "file": format!("file://{}", path.display()) })
                } else {
                    serde_json::from_str(&read(&named.file)?)
                        .map_err(|e| format!("{}: {e}", named.file.display()))?
                };
                if let Some(o) = body.as_object_mut() {
                    o.insert("name".into(), serde_json::json!(named.name));
                }
                ("POST", "/plugins/sinks".into(), Some(body.to_string()))
            }
        },
        Call::Show(Listing::Streams) => ("GET", "/streams".into(), None),
        Call::Show(Listing::Tables) => ("GET", "/tables".into(), None),
        Call::Show(Listing::Rules) => ("GET", "/rules".into(), None),
        Call::Show(Listing::Plugins) => ("GET", "/plugins/sinks".into(), None),
        Call::Describe(noun, name) => ("GET", format!("/{}/{name}", noun.path()), None),
        Call::Drop(noun, name) => ("DELETE", format!("/{}/{name}", noun.path()), None),
        Call::Status(name) => ("GET", format!("/rules/{name}/status"), None),
        Call::Control(verb, name) => ("POST", format!("/rules/{name}/{verb}"), None),
        Call::Import(file) => (
            "POST",
            "/ruleset/import".into(),
            Some(serde_json::json!({ "content": read(&file)? }).to_string()),
        ),
    })
}

async fn send(
    host: &Host,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(&host.host)
        .await
        .map_err(|e| format!("cannot reach the server at {}: {e}", host.host))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, host.host.as_str())
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(token) = &host.token {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Sends the call and prints the answer (JSON pretty-printed); fails on an error status.
pub async fn run(host: Host, call: Call) -> ExitCode {
    let (method, path, body) = match request(call) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match send(&host, method, &path, body).await {
        Ok((status, text)) => {
            let shown = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(text);
            if (200..300).contains(&status) {
                println!("{shown}");
                ExitCode::SUCCESS
            } else {
                eprintln!("error ({status}): {shown}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
