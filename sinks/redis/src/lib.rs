//! The `redis` sink: eKuiper's redis action as a wasm component. It speaks RESP over one TCP
//! connection (`wasi:sockets`, which the host opens only to the granted `addr`), and writes each
//! row as a string (`SET`, with a TTL when `expiration` is set) or pushes it onto a list
//! (`LPUSH`), under a fixed `key`, a templated one (`"dev:{{.device}}"`, evaluated per message by
//! the host: `key` is a dynamic prop), or the value of the row's `field`; with `keyType`
//! multiple, each field of the row under its own name. A `rowkindField` saying `delete` removes
//! the key instead (`DEL`, or `LPOP` for a list).
//!
//! A batch is sent as one pipeline. With the sequence marker (the default), the pipeline is one
//! `MULTI`/`EXEC` transaction that ends by setting the marker: the server applies all of the
//! batch's writes and its marker, or nothing when the connection dies before `EXEC` (a crash or
//! a kill mid-write), so a batch is never applied in part and then again. A refused connection or a broken one is `transient` (the
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
    /// `AUTH` user name (Redis 6 ACLs), with `password`.
    #[serde(default)]
    pub username: Option<String>,
    /// `AUTH` password, if the server needs one.
    #[serde(default)]
    pub password: Option<String>,
    /// Database number (`SELECT`), default 0.
    #[serde(default)]
    pub db: u32,
    /// A fixed key for every row. Either `key` or `field` is required.
    #[serde(default)]
    pub key: Option<String>,
    /// The row field whose value is the key (wins over `key`).
    #[serde(default)]
    pub field: Option<String>,
    /// `single` (the default): each row is one value, its JSON text, under `key` or `field`.
    /// `multiple`: each field of the row is its own key, holding the field's value.
    #[serde(default = "default_key_type")]
    pub key_type: String,
    /// `string` (the default: `SET key row`) or `list` (`LPUSH key row`).
    #[serde(default = "default_data_type")]
    pub data_type: String,
    /// How long a written key lives: seconds, or a duration such as `"10m"` or `"500ms"`;
    /// -1 or 0 for ever (the default).
    #[serde(default = "default_expiration")]
    pub expiration: Value,
    /// The row field naming what to do with the row: `insert`, `update` or `upsert` write it,
    /// `delete` removes its key (`DEL`, or `LPOP` for a list). Without it every row is written.
    #[serde(default)]
    pub rowkind_field: Option<String>,
    /// The key holding the sequence number of the last batch written, set at the end of each
    /// batch's pipeline; a batch not above it was written already and is skipped (exactly
    /// once). Default `oort:seq:<rule>:<action>`; empty: no marker (at least once).
    #[serde(default)]
    pub sequence_key: Option<String>,
}

fn default_addr() -> String {
    "127.0.0.1:6379".into()
}

fn default_data_type() -> String {
    "string".into()
}

fn default_key_type() -> String {
    "single".into()
}

fn default_expiration() -> Value {
    Value::from(-1)
}

/// `expiration` in milliseconds (0: none): a number of seconds, or a number followed by `ms`,
/// `s`, `m` or `h`.
fn parse_expiration(value: &Value) -> Result<u64, String> {
    let bad = || format!("`expiration` must be seconds or a duration like \"10m\", got {value}");
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(secs) if secs <= 0.0 => Ok(0),
            Some(secs) => Ok((secs * 1000.0).round() as u64),
            None => Err(bad()),
        },
        Value::String(text) => {
            let text = text.trim();
            let split = text
                .find(|c: char| !c.is_ascii_digit() && c != '.' && c != '-')
                .unwrap_or(text.len());
            let (number, unit) = text.split_at(split);
            let number: f64 = number.parse().map_err(|_| bad())?;
            let scale = match unit.trim() {
                "ms" => 1.0,
                "" | "s" => 1_000.0,
                "m" => 60_000.0,
                "h" => 3_600_000.0,
                _ => return Err(bad()),
            };
            Ok(if number <= 0.0 {
                0
            } else {
                (number * scale).round() as u64
            })
        }
        _ => Err(bad()),
    }
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

/// What to do with one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Write,
    Delete,
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
    /// `keyType: multiple`.
    multiple: bool,
    /// `expiration` in milliseconds; 0 for none.
    expiration_ms: u64,
    conn: Option<BufReader<TcpStream>>,
    /// The sequence marker's key (none: no marker).
    marker: Option<String>,
    /// The last sequence written, as the marker holds it.
    last_written: u64,
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
            // An array holding an error (a command of an `EXEC` that failed) is that error.
            let n: i64 = rest.parse().unwrap_or(0);
            let mut items = Vec::new();
            let mut failed = None;
            for _ in 0..n.max(0) {
                match read_reply(conn)? {
                    Ok(item) => items.push(item),
                    Err(item) => {
                        failed.get_or_insert(item);
                    }
                }
            }
            Ok(failed.map_or_else(|| Ok(items.join(",")), Err))
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
            match self.config.username.as_deref().filter(|u| !u.is_empty()) {
                Some(user) => command(&mut setup, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => command(&mut setup, &[b"AUTH", password.as_bytes()]),
            }
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

    /// Whether `row` is written or deleted (`rowkindField`).
    fn kind_of(&self, row: &Value) -> Result<RowKind, SinkError> {
        let Some(field) = self
            .config
            .rowkind_field
            .as_deref()
            .filter(|f| !f.is_empty())
        else {
            return Ok(RowKind::Write);
        };
        match row.get(field) {
            None => Ok(RowKind::Write),
            Some(Value::String(kind)) => match kind.as_str() {
                "insert" | "update" | "upsert" => Ok(RowKind::Write),
                "delete" => Ok(RowKind::Delete),
                other => Err(SinkError::rejected(format!(
                    "`{field}` is {other:?}, not insert, update, upsert or delete: {row}"
                ))),
            },
            Some(other) => Err(SinkError::rejected(format!(
                "`{field}` must be a string, got {other}: {row}"
            ))),
        }
    }

    /// The keys and values a row becomes: one (its JSON text, under `key` or `field`), or one
    /// per field with `keyType: multiple`.
    fn entries_of(
        &self,
        row: &Value,
        key: Option<&str>,
    ) -> Result<Vec<(String, Vec<u8>)>, SinkError> {
        if self.multiple {
            let Value::Object(fields) = row else {
                return Err(SinkError::rejected(format!(
                    "keyType multiple needs each row to be a JSON object: {row}"
                )));
            };
            return Ok(fields
                .iter()
                .map(|(name, value)| {
                    let text = match value {
                        Value::String(s) => s.clone().into_bytes(),
                        other => other.to_string().into_bytes(),
                    };
                    (name.clone(), text)
                })
                .collect());
        }
        let value =
            oort_sdk::serde_json::to_vec(row).map_err(|e| SinkError::rejected(e.to_string()))?;
        Ok(vec![(self.key_of(row, key)?, value)])
    }

    /// The row's key: its `field`, else the message's value of a templated `key` (evaluated by
    /// the host, e.g. `"dev:{{.device}}"`), else the fixed `key`.
    fn key_of(&self, row: &Value, dynamic: Option<&str>) -> Result<String, SinkError> {
        if let Some(field) = self.config.field.as_deref().filter(|f| !f.is_empty()) {
            return match row.get(field) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                Some(Value::Bool(b)) => Ok(b.to_string()),
                _ => Err(SinkError::rejected(format!(
                    "the row has no usable `{field}` for the key: {row}"
                ))),
            };
        }
        if let Some(key) = dynamic {
            if key.is_empty() {
                return Err(SinkError::rejected(format!(
                    "the `key` template gave an empty key for: {row}"
                )));
            }
            return Ok(key.to_string());
        }
        Ok(self.config.key.clone().unwrap_or_default())
    }
}

impl Sink for Redis {
    type Config = Config;

    fn configure(ctx: &Context, config: Config) -> Result<Self, SinkError> {
        let data_type = match config.data_type.to_ascii_lowercase().as_str() {
            "string" => DataType::String,
            "list" => DataType::List,
            other => {
                return Err(SinkError::invalid_config(format!(
                    "`dataType`: {other:?} is not string or list"
                )));
            }
        };
        let multiple = match config.key_type.as_str() {
            "single" => false,
            "multiple" => true,
            other => {
                return Err(SinkError::invalid_config(format!(
                    "`keyType`: {other:?} is not single or multiple"
                )));
            }
        };
        let has_key = config.key.as_deref().is_some_and(|k| !k.is_empty());
        let has_field = config.field.as_deref().is_some_and(|f| !f.is_empty());
        if !multiple && !has_key && !has_field {
            return Err(SinkError::invalid_config(
                "either `key` or `field` is required (or `keyType` multiple)",
            ));
        }
        let expiration_ms =
            parse_expiration(&config.expiration).map_err(SinkError::invalid_config)?;
        if !config.addr.contains(':') {
            return Err(SinkError::invalid_config(format!(
                "`addr` must be host:port, got {:?}",
                config.addr
            )));
        }
        let marker = match config.sequence_key.as_deref() {
            None => Some(format!("oort:seq:{}:{}", ctx.rule_id, ctx.action)),
            Some("") => None,
            Some(key) => Some(key.to_string()),
        };
        Ok(Self {
            config,
            data_type,
            multiple,
            expiration_ms,
            conn: None,
            marker,
            last_written: 0,
        })
    }

    fn open(&mut self) -> Result<(), SinkError> {
        self.conn = Some(self.connect()?);
        Ok(())
    }

    fn open_after(&mut self, delivered: Option<u64>) -> Result<(), SinkError> {
        self.open()?;
        self.last_written = 0;
        // A fresh numbering makes an earlier run's marker meaningless: it is overwritten by
        // the first batch written.
        if let (Some(key), Some(_)) = (&self.marker, delivered) {
            let conn = self.conn.as_mut().expect("opened above");
            let mut get = Vec::new();
            command(&mut get, &[b"GET", key.as_bytes()]);
            let reply = conn
                .get_mut()
                .write_all(&get)
                .and_then(|()| conn.get_mut().flush())
                .and_then(|()| read_reply(conn))
                .map_err(|e| SinkError::transient(format!("redis at {}: {e}", self.config.addr)))?;
            self.last_written = reply.ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
        Ok(())
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let sequence = batch.sequence();
        if self.marker.is_some() && sequence != 0 && sequence <= self.last_written {
            // Written before a crash or a trap lost its acknowledgement.
            return Ok(());
        }
        // With a marker the batch is one transaction: `MULTI`, the writes (each answered
        // `QUEUED`), the marker, `EXEC` (answered with every write's reply).
        let transaction = self.marker.is_some() && sequence != 0;
        let mut pipeline = Vec::new();
        if transaction {
            command(&mut pipeline, &[b"MULTI"]);
        }
        let mut replies = 0usize;
        let ttl = self.expiration_ms.to_string();
        // A templated `key` comes evaluated for each message.
        let keys = batch.dynamic("key");
        for (index, message) in batch.into_iter().enumerate() {
            let key = keys.and_then(|keys| keys.get(index)).map(String::as_str);
            for row in rows(message.payload)? {
                let kind = self.kind_of(&row)?;
                for (key, value) in self.entries_of(&row, key)? {
                    let key = key.as_bytes();
                    match (kind, self.data_type) {
                        (RowKind::Delete, DataType::String) => {
                            command(&mut pipeline, &[b"DEL", key]);
                        }
                        (RowKind::Delete, DataType::List) => {
                            command(&mut pipeline, &[b"LPOP", key]);
                        }
                        (RowKind::Write, DataType::String) if self.expiration_ms > 0 => {
                            command(&mut pipeline, &[b"SET", key, &value, b"PX", ttl.as_bytes()]);
                        }
                        (RowKind::Write, DataType::String) => {
                            command(&mut pipeline, &[b"SET", key, &value]);
                        }
                        (RowKind::Write, DataType::List) => {
                            command(&mut pipeline, &[b"LPUSH", key, &value]);
                            if self.expiration_ms > 0 {
                                command(&mut pipeline, &[b"PEXPIRE", key, ttl.as_bytes()]);
                                replies += 1;
                            }
                        }
                    }
                    replies += 1;
                }
            }
        }
        if replies == 0 {
            return Ok(());
        }
        // Last in the transaction: a marker that says this batch comes with all of its writes.
        let seq_text = sequence.to_string();
        if let Some(key) = self.marker.as_deref().filter(|_| transaction) {
            command(
                &mut pipeline,
                &[b"SET", key.as_bytes(), seq_text.as_bytes()],
            );
            command(&mut pipeline, &[b"EXEC"]);
            // Besides one `QUEUED` per write: `MULTI`'s `OK`, the marker's `QUEUED`, `EXEC`'s
            // array.
            replies += 3;
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
            None => {
                self.last_written = self.last_written.max(sequence);
                Ok(())
            }
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
    fn expirations_are_seconds_or_durations() {
        use oort_sdk::serde_json::json;
        assert_eq!(parse_expiration(&json!(-1)), Ok(0));
        assert_eq!(parse_expiration(&json!(0)), Ok(0));
        assert_eq!(parse_expiration(&json!(300)), Ok(300_000));
        assert_eq!(parse_expiration(&json!("10m")), Ok(600_000));
        assert_eq!(parse_expiration(&json!("500ms")), Ok(500));
        assert_eq!(parse_expiration(&json!("30")), Ok(30_000));
        assert!(parse_expiration(&json!("soon")).is_err());
        assert!(parse_expiration(&json!(true)).is_err());
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

    fn sink(props: Value) -> Result<Redis, SinkError> {
        let config = oort_sdk::serde_json::from_value(props).expect("props");
        let ctx = Context {
            rule_id: "r".into(),
            action: "redis_0".into(),
            instance: 0,
            format: "json".into(),
            generation: 0,
        };
        Redis::configure(&ctx, config)
    }

    #[test]
    fn rows_become_one_entry_or_one_per_field() {
        use oort_sdk::serde_json::json;
        let row = json!({"id": "a", "t": 20.5, "s": "on"});
        let single = sink(json!({"field": "id"})).unwrap();
        let entries = single.entries_of(&row, None).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, "a");
        let multiple = sink(json!({"keyType": "multiple"})).unwrap();
        let mut entries = multiple.entries_of(&row, None).unwrap();
        entries.sort();
        assert_eq!(
            entries,
            [
                ("id".to_string(), b"a".to_vec()),
                ("s".to_string(), b"on".to_vec()),
                ("t".to_string(), b"20.5".to_vec())
            ]
        );
        assert!(sink(json!({})).is_err(), "single needs key or field");
        assert!(sink(json!({"key": "k", "keyType": "many"})).is_err());
    }

    #[test]
    fn rowkinds_pick_write_or_delete() {
        use oort_sdk::serde_json::json;
        let redis = sink(json!({"key": "k", "rowkindField": "action"})).unwrap();
        assert_eq!(
            redis.kind_of(&json!({"action": "delete"})),
            Ok(RowKind::Delete)
        );
        assert_eq!(
            redis.kind_of(&json!({"action": "upsert"})),
            Ok(RowKind::Write)
        );
        assert_eq!(redis.kind_of(&json!({"v": 1})), Ok(RowKind::Write));
        assert!(redis.kind_of(&json!({"action": "merge"})).is_err());
    }

    #[test]
    fn messages_hold_one_row_or_a_list() {
        assert_eq!(rows(br#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(rows(br#"[{"a":1},{"a":2}]"#).unwrap().len(), 2);
        assert!(rows(b"nope").is_err());
    }
}
