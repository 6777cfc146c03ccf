//! The `redis` sink: eKuiper's redis action as a wasm component. It speaks RESP over one TCP
//! connection (`wasi:sockets`, which the host opens only to the granted `addr`), and writes each
//! row as a string (`SET`, with `EX` when `expiration` is set) or pushes it onto a list
//! (`LPUSH`), under a fixed `key` or under the value of the row's `field`.
//!
//! A batch is sent as one pipeline. A refused connection or a broken one is `transient` (the
//! host retries and caches; the next call reconnects), and so is an error reply that says the
//! server cannot take writes for now (`LOADING`, `BUSY`, `READONLY`, `OOM`...); any other error
//! reply (a wrong type, a command it refuses) is `rejected`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use oort_sdk::serde::Deserialize;
use oort_sdk::serde_json::Value;
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink};

/// The action's props (eKuiper's names).
#[derive(Debug, Deserialize)]
#[serde(
    crate = "oort_sdk::serde",
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct Config {
    /// `host:port` of the server (default `127.0.0.1:6379`).
    #[serde(default = "default_addr")]
    pub addr: String,
    /// `AUTH` password, if the server needs one.
    #[serde(default)]
    pub password: Option<String>,
    /// Database number (`SELECT`), default 0.
    #[serde(default)]
    pub db: u32,
    /// A fixed key for every row. Either `key` or `field` is required.
    #[serde(default)]
    pub key: Option<String>,
    /// The row field whose value is the key.
    #[serde(default)]
    pub field: Option<String>,
    /// `string` (the default: `SET key row`) or `list` (`LPUSH key row`).
    #[serde(default = "default_data_type")]
    pub data_type: String,
    /// Seconds the key lives; -1 or 0 for ever (the default).
    #[serde(default = "default_expiration")]
    pub expiration: i64,
    /// Accepted for eKuiper compatibility: rows are always written (upserted).
    #[serde(default)]
    pub rowkind_field: Option<String>,
}

fn default_addr() -> String {
    "127.0.0.1:6379".into()
}

fn default_data_type() -> String {
    "string".into()
}

fn default_expiration() -> i64 {
    -1
}

/// Whether an error reply means the server cannot take writes for now, rather than that it
/// refuses this data: those are worth retrying.
fn passing(reply: &str) -> bool {
    const PASSING: [&str; 9] = [
        "LOADING",
        "BUSY",
        "TRYAGAIN",
        "MASTERDOWN",
        "READONLY",
        "OOM",
        "MISCONF",
        "CLUSTERDOWN",
        "NOREPLICAS",
    ];
    let code = reply.split_whitespace().next().unwrap_or_default();
    PASSING.contains(&code)
}

/// How rows are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataType {
    String,
    List,
}

/// The sink's state.
pub struct Redis {
    config: Config,
    data_type: DataType,
    conn: Option<BufReader<TcpStream>>,
}

/// One RESP command.
fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// A reply: `Ok(text)` for a status, integer or bulk reply, `Err(text)` for an error reply.
fn read_reply(conn: &mut BufReader<TcpStream>) -> std::io::Result<Result<String, String>> {
    let mut line = String::new();
    if conn.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" | ":" => Ok(Ok(rest.to_string())),
        "-" => Ok(Err(rest.to_string())),
        "$" => {
            let len: i64 = rest.parse().unwrap_or(-1);
            if len < 0 {
                return Ok(Ok(String::new()));
            }
            let mut data = vec![0u8; len as usize + 2];
            std::io::Read::read_exact(conn, &mut data)?;
            data.truncate(len as usize);
            Ok(Ok(String::from_utf8_lossy(&data).into_owned()))
        }
        "*" => {
            let n: i64 = rest.parse().unwrap_or(0);
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                match read_reply(conn)? {
                    Ok(item) | Err(item) => items.push(item),
                }
            }
            Ok(Ok(items.join(",")))
        }
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a RESP reply: {line:?}"),
        )),
    }
}

/// The rows of one message: an object, or each object of an array (`sendSingle` false).
fn rows(payload: &[u8]) -> Result<Vec<Value>, SinkError> {
    let value: Value = oort_sdk::serde_json::from_slice(payload)
        .map_err(|e| SinkError::rejected(format!("a message is not JSON: {e}")))?;
    Ok(match value {
        Value::Array(items) => items,
        other => vec![other],
    })
}

impl Redis {
    fn connect(&self) -> Result<BufReader<TcpStream>, SinkError> {
        let stream = TcpStream::connect(self.config.addr.as_str()).map_err(|e| {
            SinkError::transient(format!(
                "cannot connect to redis at {}: {e}",
                self.config.addr
            ))
        })?;
        let mut conn = BufReader::new(stream);
        let mut setup = Vec::new();
        let mut replies = 0;
        if let Some(password) = self.config.password.as_deref().filter(|p| !p.is_empty()) {
            command(&mut setup, &[b"AUTH", password.as_bytes()]);
            replies += 1;
        }
        if self.config.db != 0 {
            command(
                &mut setup,
                &[b"SELECT", self.config.db.to_string().as_bytes()],
            );
            replies += 1;
        }
        if replies > 0 {
            let io = |e: std::io::Error| SinkError::transient(format!("redis: {e}"));
            conn.get_mut().write_all(&setup).map_err(io)?;
            for _ in 0..replies {
                if let Err(reply) = read_reply(&mut conn).map_err(io)? {
                    let message = format!("redis refused the setup: {reply}");
                    // A server still loading its data will take it soon; a wrong password or
                    // database will not fix itself.
                    return Err(if passing(&reply) {
                        SinkError::transient(message)
                    } else {
                        SinkError::rejected(message)
                    });
                }
            }
        }
        Ok(conn)
    }

    fn key_of(&self, row: &Value) -> Result<String, SinkError> {
        if let Some(field) = &self.config.field {
            return match row.get(field) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                Some(Value::Bool(b)) => Ok(b.to_string()),
                _ => Err(SinkError::rejected(format!(
                    "the row has no usable `{field}` for the key: {row}"
                ))),
            };
        }
        Ok(self.config.key.clone().unwrap_or_default())
    }
}

impl Sink for Redis {
    type Config = Config;

    fn configure(_ctx: &Context, config: Config) -> Result<Self, SinkError> {
        let data_type = match config.data_type.to_ascii_lowercase().as_str() {
            "string" => DataType::String,
            "list" => DataType::List,
            other => {
                return Err(SinkError::invalid_config(format!(
                    "`dataType`: {other:?} is not string or list"
                )));
            }
        };
        let has_key = config.key.as_deref().is_some_and(|k| !k.is_empty());
        let has_field = config.field.as_deref().is_some_and(|f| !f.is_empty());
        if !has_key && !has_field {
            return Err(SinkError::invalid_config(
                "either `key` or `field` is required",
            ));
        }
        if !config.addr.contains(':') {
            return Err(SinkError::invalid_config(format!(
                "`addr` must be host:port, got {:?}",
                config.addr
            )));
        }
        Ok(Self {
            config,
            data_type,
            conn: None,
        })
    }

    fn open(&mut self) -> Result<(), SinkError> {
        self.conn = Some(self.connect()?);
        Ok(())
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let mut pipeline = Vec::new();
        let mut replies = 0usize;
        let expiration = self.config.expiration;
        for message in batch {
            for row in rows(message.payload)? {
                let key = self.key_of(&row)?;
                let value = oort_sdk::serde_json::to_vec(&row)
                    .map_err(|e| SinkError::rejected(e.to_string()))?;
                match self.data_type {
                    DataType::String if expiration > 0 => command(
                        &mut pipeline,
                        &[
                            b"SET",
                            key.as_bytes(),
                            &value,
                            b"EX",
                            expiration.to_string().as_bytes(),
                        ],
                    ),
                    DataType::String => command(&mut pipeline, &[b"SET", key.as_bytes(), &value]),
                    DataType::List => {
                        command(&mut pipeline, &[b"LPUSH", key.as_bytes(), &value]);
                        if expiration > 0 {
                            command(
                                &mut pipeline,
                                &[b"EXPIRE", key.as_bytes(), expiration.to_string().as_bytes()],
                            );
                            replies += 1;
                        }
                    }
                }
                replies += 1;
            }
        }
        if replies == 0 {
            return Ok(());
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let sent = conn
            .get_mut()
            .write_all(&pipeline)
            .and_then(|()| conn.get_mut().flush());
        let mut refused = None;
        let outcome = sent.and_then(|()| {
            for _ in 0..replies {
                if let Err(reply) = read_reply(conn)?
                    && refused.is_none()
                {
                    refused = Some(reply);
                }
            }
            Ok(())
        });
        if let Err(e) = outcome {
            // The connection is in an unknown state: the next call starts a new one.
            self.conn = None;
            return Err(SinkError::transient(format!(
                "redis at {}: {e}",
                self.config.addr
            )));
        }
        match refused {
            Some(reply) if passing(&reply) => Err(SinkError::transient(format!(
                "redis cannot take writes now: {reply}"
            ))),
            Some(reply) => Err(SinkError::rejected(format!(
                "redis refused a write: {reply}"
            ))),
            None => Ok(()),
        }
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.conn = None;
        Ok(())
    }
}

export_sink!(Redis);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays() {
        let mut out = Vec::new();
        command(&mut out, &[b"SET", b"k", b"{\"a\":1}"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$7\r\n{\"a\":1}\r\n");
    }

    #[test]
    fn only_a_server_busy_for_now_is_worth_a_retry() {
        assert!(passing("LOADING Redis is loading the dataset in memory"));
        assert!(passing(
            "READONLY You can't write against a read only replica."
        ));
        assert!(passing(
            "OOM command not allowed when used memory > 'maxmemory'."
        ));
        assert!(!passing(
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        ));
        assert!(!passing("ERR syntax error"));
    }

    #[test]
    fn messages_hold_one_row_or_a_list() {
        assert_eq!(rows(br#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(rows(br#"[{"a":1},{"a":2}]"#).unwrap().len(), 2);
        assert!(rows(b"nope").is_err());
    }
}
