//! The `redis` source, for lookup tables only (as eKuiper's): `CREATE TABLE t () WITH
//! (TYPE="redis", KIND="lookup", DATASOURCE="0")` looks each row's key up in redis database
//! `DATASOURCE` (0 to 15). The server, its credentials, the data type and the lookup cache come
//! from eKuiper's redis source configuration file (`--redis-conf`, a `default` section and named
//! sections a table selects with `CONF_KEY`).
//!
//! With `datatype: string` a key's value (GET) is one row, decoded by the table's `FORMAT`;
//! with `datatype: list` each element of the list (LRANGE 0 -1) is one row. A missing key is no
//! row. The key is the text of the `ON` equality's stream-side value (a whole number without a
//! decimal point, as eKuiper formats its numbers). The client is redis's own blocking one: a
//! lookup runs inside the rule's evaluation, which tells the async runtime that it blocks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio::sync::mpsc;

use super::conf_file::{ConfFile, Section};
use super::decode::Decoder;
use super::lookup_cache::{CacheOptions, LookupSettings};
use super::{Chunk, Reading, Resources, Source, SourceContext};
use crate::clock::Clock;
use crate::sql::Lookup;
use crate::stream::StreamDef;
use crate::value::{Row, Value};

/// The server when nothing names one (eKuiper's default).
pub const DEFAULT_ADDR: &str = "127.0.0.1:6379";

/// How long connecting may take (go-redis's default dial timeout, which eKuiper uses).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one command may wait for its answer (go-redis's default read timeout).
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A section of the redis source configuration, with eKuiper's names. Every field is optional:
/// a named section overrides `default`, which overrides the built-in defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisSettings {
    /// `host:port` of the server.
    pub addr: Option<String>,
    /// User name (redis 6 ACLs).
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// `string` (GET: the value is one row) or `list` (LRANGE: each element is a row).
    #[serde(alias = "datatype")]
    pub data_type: Option<String>,
    /// The lookup cache: `cache`, `cacheTtl`, `cacheMissingKey`.
    pub lookup: Option<LookupSettings>,
    /// eKuiper keys that do not apply here: accepted.
    #[serde(flatten)]
    pub other: BTreeMap<String, IgnoredAny>,
}

impl RedisSettings {
    /// `self` with the fields `over` sets replaced.
    fn overlay(&self, over: &Self) -> Self {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        Self {
            addr: pick(&self.addr, &over.addr),
            username: pick(&self.username, &over.username),
            password: pick(&self.password, &over.password),
            data_type: pick(&self.data_type, &over.data_type),
            lookup: match (&self.lookup, &over.lookup) {
                (Some(a), Some(b)) => Some(a.overlay(b)),
                (a, b) => b.clone().or_else(|| a.clone()),
            },
            other: BTreeMap::new(),
        }
    }
}

/// eKuiper's redis source configuration file (`etc/sources/redis.yaml`): `default` and named
/// sections (`CONF_KEY`).
pub type RedisConf = ConfFile<RedisSettings>;

impl Section for RedisSettings {
    const OPTION: &'static str = "--redis-conf";

    fn laid_under(&self, over: &Self) -> Self {
        self.overlay(over)
    }
}

/// How a key's value holds rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataType {
    /// One value, one row.
    String,
    /// A list, a row per element.
    List,
}

/// A redis lookup table's settings, checked.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    host: String,
    port: u16,
    /// `host:port`, as configured (for messages).
    pub addr: String,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    data_type: DataType,
    /// The lookup cache.
    pub cache: Option<CacheOptions>,
}

impl RedisTarget {
    /// The settings of lookup table `def` from `conf`, checked (nothing is connected).
    pub fn of(def: &StreamDef, conf: &RedisConf) -> Result<Self, String> {
        let settings = conf.settings(def.options.conf_key.as_deref())?;
        let datasource = def.options.datasource.trim();
        let db: i64 = datasource.parse().map_err(|_| {
            format!("DATASOURCE=\"{datasource}\": expected the redis database number (0 to 15)")
        })?;
        if !(0..=15).contains(&db) {
            return Err(format!(
                "DATASOURCE=\"{datasource}\": the redis database must be 0 to 15"
            ));
        }
        let addr = settings
            .addr
            .clone()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ADDR.to_string());
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| format!("addr {addr:?}: expected host:port"))?;
        let data_type = match settings
            .data_type
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("string") => DataType::String,
            Some("list") => DataType::List,
            Some(other) => {
                return Err(format!(
                    "datatype {other:?}: expected string or list (eKuiper's redis lookup types)"
                ));
            }
        };
        let cache = match &settings.lookup {
            Some(lookup) => lookup.options()?,
            None => None,
        };
        Ok(Self {
            host: host.to_string(),
            port,
            username: settings.username.clone().filter(|u| !u.is_empty()),
            password: settings.password.clone().filter(|p| !p.is_empty()),
            addr,
            db,
            data_type,
            cache,
        })
    }
}

fn conf(resources: &Resources) -> Arc<RedisConf> {
    resources.get::<RedisConf>().unwrap_or_default()
}

/// The `redis` source type: lookup tables only.
pub(super) struct RedisSource;

impl Source for RedisSource {
    fn check(&self, def: &StreamDef, resources: &Resources) -> Result<(), String> {
        if !def.options.lookup {
            return Err(
                "TYPE=\"redis\" is a lookup table source only (as in eKuiper): \
                 CREATE TABLE ... WITH (TYPE=\"redis\", KIND=\"lookup\", DATASOURCE=\"0\")"
                    .into(),
            );
        }
        RedisTarget::of(def, &conf(resources)).map(|_| ())
    }

    fn start(&self, _ctx: SourceContext, _tx: mpsc::Sender<Chunk>) -> Reading {
        Box::pin(async {
            Err("TYPE=\"redis\" is read by key as a lookup table, never scanned".into())
        })
    }
}

/// What a lookup holds between calls: the connection (none after an I/O error, until the
/// next lookup connects again) and the decoder of the table's `FORMAT`.
struct State {
    connection: Option<::redis::Connection>,
    decoder: Decoder,
}

/// A redis lookup table of one rule: one connection, used by one lookup at a time.
pub struct RedisLookup {
    table: String,
    target: RedisTarget,
    /// Stamps the rows found (processing time).
    clock: Clock,
    state: Mutex<State>,
}

impl RedisLookup {
    /// The lookup table `def` over `target`, not yet connected; `clock` stamps the rows found.
    pub fn new(def: &StreamDef, target: RedisTarget, clock: Clock) -> Self {
        Self {
            table: def.name.to_string(),
            target,
            clock,
            state: Mutex::new(State {
                connection: None,
                decoder: Decoder::new(def, false),
            }),
        }
    }

    fn fail(&self, error: impl std::fmt::Display) -> String {
        format!(
            "lookup table `{}`: redis at {} (database {}): {error}",
            self.table, self.target.addr, self.target.db
        )
    }

    /// Connects (authenticates, selects the database and pings), as eKuiper's lookup source
    /// does when its rule starts: a server out of reach stops the rule from starting.
    /// Blocking.
    pub fn open(&self) -> Result<(), String> {
        let connection = self.connect()?;
        if let Ok(mut state) = self.state.lock() {
            state.connection = Some(connection);
        }
        Ok(())
    }

    fn connect(&self) -> Result<::redis::Connection, String> {
        let t = &self.target;
        let client = ::redis::Client::open((t.host.as_str(), t.port)).map_err(|e| self.fail(e))?;
        let mut connection = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(|e| self.fail(e))?;
        connection
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| connection.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| self.fail(e))?;
        if let Some(password) = &t.password {
            let mut auth = ::redis::cmd("AUTH");
            if let Some(user) = &t.username {
                auth.arg(user);
            }
            auth.arg(password)
                .query::<()>(&mut connection)
                .map_err(|e| self.fail(e))?;
        }
        if t.db != 0 {
            ::redis::cmd("SELECT")
                .arg(t.db)
                .query::<()>(&mut connection)
                .map_err(|e| self.fail(e))?;
        }
        ::redis::cmd("PING")
            .query::<String>(&mut connection)
            .map_err(|e| self.fail(e))?;
        Ok(connection)
    }

    /// The values stored under `key` (none when it is missing). Blocking.
    fn fetch(&self, state: &mut State, key: &str) -> Result<Vec<Vec<u8>>, String> {
        let mut connection = match state.connection.take() {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let answer = match self.target.data_type {
            DataType::String => ::redis::cmd("GET")
                .arg(key)
                .query::<Option<Vec<u8>>>(&mut connection)
                .map(|v| v.into_iter().collect()),
            DataType::List => ::redis::cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query::<Vec<Vec<u8>>>(&mut connection),
        };
        // After an error the connection may be broken (or out of step): it is dropped, and
        // the next lookup connects again.
        let values = answer.map_err(|e| self.fail(e))?;
        state.connection = Some(connection);
        Ok(values)
    }
}

impl Lookup for RedisLookup {
    fn get(&self, key: &Value) -> Result<Vec<Row>, String> {
        let key = key_text(key);
        crate::blocking::blocking(|| {
            let mut state = self
                .state
                .lock()
                .map_err(|_| self.fail("the connection was poisoned"))?;
            let values = self.fetch(&mut state, &key)?;
            let now_ms = self.clock.now_ms();
            values
                .iter()
                .map(|bytes| {
                    state
                        .decoder
                        .decode(bytes, now_ms)
                        .and_then(|row| state.decoder.finish(row))
                        .map_err(|e| self.fail(format!("the value of key {key:?}: {e}")))
                })
                .collect()
        })
    }

    fn rows_hold_key(&self) -> bool {
        // The key is redis's, not a field of the value (eKuiper joins every row it finds).
        false
    }
}

/// A value as the text of a lookup key: a string as it is, a whole number without a decimal
/// point (`1.0` is `1`, as eKuiper prints a float), anything else as its text.
pub fn key_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => (*f as i64).to_string(),
        Value::Float(f) => f.to_string(),
        other => other.to_text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::parse_streams;
    use std::path::Path;

    fn table(with: &str) -> StreamDef {
        let sql = format!("CREATE TABLE t () WITH (TYPE=\"redis\", KIND=\"lookup\"{with});");
        parse_streams(&sql, "streams.sql", Path::new("."))
            .unwrap()
            .remove(0)
    }

    fn conf(yaml: &str) -> RedisConf {
        RedisConf::parse(yaml, Path::new("redis.yaml")).unwrap()
    }

    #[test]
    fn settings_come_from_default_and_the_conf_key_section() {
        let conf = conf(
            "default:\n  addr: \"10.0.0.1:6380\"\n  datatype: list\n  password: pw\n\
             other:\n  addr: \"[::1]:7000\"\n  dataType: string\n  lookup:\n    cache: true\n    cacheTtl: \"1m\"\n",
        );
        let t = RedisTarget::of(&table(", DATASOURCE=\"3\""), &conf).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("10.0.0.1", 6380, 3));
        assert_eq!(t.data_type, DataType::List);
        assert_eq!(t.password.as_deref(), Some("pw"));
        assert!(t.cache.is_none());
        let t = RedisTarget::of(&table(", DATASOURCE=\"0\", CONF_KEY=\"other\""), &conf).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7000));
        assert_eq!(t.data_type, DataType::String);
        assert_eq!(t.password.as_deref(), Some("pw"));
        let cache = t.cache.unwrap();
        assert_eq!(cache.ttl, Some(Duration::from_secs(60)));
        assert!(!cache.missing_keys);
        // Without a file: eKuiper's defaults.
        let t = RedisTarget::of(&table(", DATASOURCE=\"0\""), &RedisConf::default()).unwrap();
        assert_eq!(t.addr, DEFAULT_ADDR);
        assert_eq!(t.data_type, DataType::String);
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        let none = RedisConf::default();
        let err = |with: &str, conf: &RedisConf| RedisTarget::of(&table(with), conf).unwrap_err();
        assert!(err(", DATASOURCE=\"16\"", &none).contains("0 to 15"));
        assert!(err(", DATASOURCE=\"devices\"", &none).contains("database number"));
        assert!(err(", DATASOURCE=\"0\", CONF_KEY=\"x\"", &none).contains("--redis-conf"));
        let bad = conf("default:\n  datatype: hash\n");
        assert!(err(", DATASOURCE=\"0\"", &bad).contains("string or list"));
        let bad = conf("default:\n  addr: localhost\n");
        assert!(err(", DATASOURCE=\"0\"", &bad).contains("host:port"));
        let bad = conf("default:\n  lookup:\n    cache: true\n    cacheTtl: \"soon\"\n");
        assert!(err(", DATASOURCE=\"0\"", &bad).contains("cacheTtl"));
    }

    #[test]
    fn keys_are_the_text_of_the_value() {
        assert_eq!(key_text(&Value::Int(7)), "7");
        assert_eq!(key_text(&Value::Float(7.0)), "7");
        assert_eq!(key_text(&Value::Float(7.5)), "7.5");
        assert_eq!(key_text(&Value::string("dev-1")), "dev-1");
        assert_eq!(key_text(&Value::Bool(true)), "true");
    }
}
