//! Rule files: an eKuiper rule (`{"id", "sql", "actions", "options"}`), a JSON array of rules,
//! an eKuiper ruleset export (`{"streams": {...}, "tables": {...}, "rules": {...}}`), or a folder
//! of such files, read into validated [`RuleDef`]s. Every error names the file and the field.
//!
//! A rule file without `id` takes its id from the file name (`alerts.json` → `alerts`), as an
//! eKuiper rule takes its id from `create rule NAME`.

mod duration;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value as Json};

pub use duration::parse_duration_ms;

use crate::stream::{DdlError, StreamDef, parse_streams};

/// A rule or ruleset file is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid JSON, or a field has the wrong shape.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// serde's message, with line and column.
        message: String,
    },
    /// A field has a bad value.
    #[error("{path}: rule `{rule}`: field `{field}`: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The rule's id (or position).
        rule: String,
        /// The field, as a path (`actions[0].log`, `options.bufferLength`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A stream definition inside a ruleset is wrong.
    #[error(transparent)]
    Stream(#[from] DdlError),
}

/// One action of a rule: the sink it delivers to and that sink's props.
#[derive(Debug, Clone)]
pub struct ActionDef {
    /// Position in the rule's `actions` list.
    pub index: usize,
    /// The sink's name: the action object's only key (`log`, `mqtt`, `mySink`).
    pub plugin: String,
    /// The props: the object under that key.
    pub props: Map<String, Json>,
}

impl ActionDef {
    /// The action's name in metrics and logs: `<plugin>_<index>`, as eKuiper names sink nodes.
    pub fn name(&self) -> String {
        format!("{}_{}", self.plugin, self.index)
    }
}

/// A rule's `options`, validated.
#[derive(Debug, Clone)]
pub struct RuleOptions {
    /// `isEventTime`: windows follow the rows' `TIMESTAMP` field rather than arrival time.
    pub is_event_time: bool,
    /// `lateTolerance` in milliseconds.
    pub late_tolerance_ms: u64,
    /// `concurrency`: accepted for compatibility (the engine sizes its own workers).
    pub concurrency: u32,
    /// `bufferLength`: rows buffered between the source and the rule.
    pub buffer_length: usize,
    /// `sendMetaToSink`: pass the source's metadata on to the sinks.
    pub send_meta_to_sink: bool,
    /// `sendNilField`: keep `null` fields in the output instead of leaving them out.
    pub send_nil_field: bool,
    /// `sendError`: send evaluation errors to the sinks as `{"error": "..."}` messages.
    pub send_error: bool,
    /// `qos`: 0 at most once, 1 at least once, 2 exactly once inside the engine (1 and 2
    /// checkpoint the sources' positions and the operators' state).
    pub qos: u8,
    /// `checkpointInterval` in milliseconds (with `qos` 1 or 2).
    pub checkpoint_interval_ms: u64,
    /// `restartStrategy`.
    pub restart: RestartStrategy,
    /// `fireAtEnd` (Oort's): at the end of a bounded input, fire the windows still open and
    /// release the rows the watermark holds. Off by default: as in eKuiper, the end of the
    /// input sends nothing more (what is left is counted).
    pub fire_at_end: bool,
}

/// `restartStrategy`: how a rule whose source or query fails is restarted (eKuiper's fields
/// and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct RestartStrategy {
    /// `attempts`: restarts allowed (0: none).
    pub attempts: u32,
    /// `delay`: milliseconds before the first restart.
    pub delay_ms: u64,
    /// `multiplier`: each delay is the previous one times this.
    pub multiplier: f64,
    /// `maxDelay`: the longest delay, in milliseconds.
    pub max_delay_ms: u64,
    /// `jitterFactor`: a delay varies at random by up to this fraction of itself.
    pub jitter_factor: f64,
}

impl Default for RestartStrategy {
    fn default() -> Self {
        Self {
            attempts: 0,
            delay_ms: 1000,
            multiplier: 2.0,
            max_delay_ms: 30_000,
            jitter_factor: 0.1,
        }
    }
}

impl RestartStrategy {
    /// The wait before restart number `done + 1` (`done` restarts made already): `delay`
    /// times `multiplier` to the power `done`, at most `maxDelay`, then moved at random by up
    /// to `jitterFactor` of itself either way (never beyond `maxDelay`), as eKuiper waits.
    /// `draw` is the random part, in `0..=1` (0.5 adds no jitter).
    pub fn delay(&self, done: u32, draw: f64) -> std::time::Duration {
        let max = self.max_delay_ms as f64;
        let exponent = i32::try_from(done).unwrap_or(i32::MAX);
        let base = (self.delay_ms as f64 * self.multiplier.powi(exponent)).min(max);
        let jittered = base * (1.0 + (draw.clamp(0.0, 1.0) * 2.0 - 1.0) * self.jitter_factor);
        std::time::Duration::from_millis(jittered.clamp(0.0, max).round() as u64)
    }
}

/// eKuiper's default `checkpointInterval`: 300 seconds.
pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 300_000;

impl Default for RuleOptions {
    fn default() -> Self {
        Self {
            is_event_time: false,
            late_tolerance_ms: 1000,
            concurrency: 1,
            buffer_length: 1024,
            send_meta_to_sink: false,
            send_nil_field: false,
            send_error: false,
            qos: 0,
            checkpoint_interval_ms: DEFAULT_CHECKPOINT_INTERVAL_MS,
            restart: RestartStrategy::default(),
            fire_at_end: false,
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// `id`.
    pub id: String,
    /// `name` (defaults to the id).
    pub name: String,
    /// `sql`.
    pub sql: String,
    /// `actions`, in order.
    pub actions: Vec<ActionDef>,
    /// `options`.
    pub options: RuleOptions,
    /// `tags`.
    pub tags: Vec<String>,
    /// The file it came from.
    pub path: PathBuf,
    /// That file's folder: relative paths in the rule's props start here.
    pub base_dir: PathBuf,
    /// Options present in the file that eKuiper has but Oort does not act on (reported as
    /// warnings by `oort validate`).
    pub ignored_options: Vec<String>,
}

/// What a rule file holds: its rules, and for a ruleset, its stream and table definitions.
#[derive(Debug, Clone, Default)]
pub struct RuleFile {
    /// The rules.
    pub rules: Vec<RuleDef>,
    /// Streams and tables defined in the file (ruleset exports only).
    pub streams: Vec<StreamDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    graph: Option<Json>,
    #[serde(default)]
    actions: Vec<Json>,
    #[serde(default)]
    options: Option<Map<String, Json>>,
    #[serde(default)]
    triggered: Option<bool>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleset {
    #[serde(default)]
    streams: Map<String, Json>,
    #[serde(default)]
    tables: Map<String, Json>,
    #[serde(default)]
    rules: Map<String, Json>,
}

/// Reads several rule files (or folders of them) into one set; rule ids must be unique.
pub fn load_all(paths: &[PathBuf]) -> Result<RuleFile, RuleError> {
    let mut all = RuleFile::default();
    let mut seen: std::collections::HashMap<String, PathBuf> = std::collections::HashMap::new();
    for path in paths {
        let file = load(path)?;
        for rule in &file.rules {
            if let Some(first) = seen.insert(rule.id.clone(), rule.path.clone()) {
                return Err(RuleError::Field {
                    path: rule.path.clone(),
                    rule: rule.id.clone(),
                    field: "id".into(),
                    message: format!(
                        "a rule with this id is also in {}: ids must be unique in a run",
                        first.display()
                    ),
                });
            }
        }
        all.rules.extend(file.rules);
        all.streams.extend(file.streams);
    }
    Ok(all)
}

/// Reads a rule file, a ruleset file, or every `*.json` file of a folder (in name order).
pub fn load(path: &Path) -> Result<RuleFile, RuleError> {
    if path.is_dir() {
        let read_err = |source| RuleError::Read {
            path: path.to_owned(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_err)? {
            let file = entry.map_err(read_err)?.path();
            if file.extension().is_some_and(|e| e == "json") && file.is_file() {
                files.push(file);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(RuleError::Json {
                path: path.to_owned(),
                message: "the folder holds no rule files (`*.json`)".into(),
            });
        }
        return load_all(&files);
    }
    let text = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base_dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base_dir = base_dir
        .canonicalize()
        .unwrap_or_else(|_| base_dir.to_owned());
    parse(&text, path, &base_dir)
}

/// Parses rule file `text` (named `path` in errors; relative paths start at `base_dir`).
pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<RuleFile, RuleError> {
    let json_err = |e: serde_json::Error| RuleError::Json {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let top: Json = serde_json::from_str(text).map_err(json_err)?;
    if let Json::Array(items) = top {
        if items.is_empty() {
            return Err(RuleError::Json {
                path: path.to_owned(),
                message: "the array holds no rules".into(),
            });
        }
        let mut rules = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if !item.as_object().is_some_and(|o| o.contains_key("id")) {
                return Err(RuleError::Field {
                    path: path.to_owned(),
                    rule: format!("[{i}]"),
                    field: format!("[{i}].id"),
                    message: "is required when a file holds several rules".into(),
                });
            }
            rules.push(rule_from_json(
                item,
                path,
                base_dir,
                &format!("rule [{i}]"),
            )?);
        }
        return Ok(RuleFile {
            rules,
            streams: Vec::new(),
        });
    }
    let is_ruleset = top.as_object().is_some_and(|o| {
        !o.contains_key("sql")
            && !o.contains_key("id")
            && (o.contains_key("rules") || o.contains_key("streams"))
    });
    if !is_ruleset {
        let rule = rule_from_json(top, path, base_dir, "the rule")?;
        return Ok(RuleFile {
            rules: vec![rule],
            streams: Vec::new(),
        });
    }
    let raw: RawRuleset = serde_json::from_value(top).map_err(json_err)?;
    let origin = path.display().to_string();
    let mut streams = Vec::new();
    for (name, def) in raw.streams.iter().chain(raw.tables.iter()) {
        let Json::String(sql) = def else {
            return Err(RuleError::Field {
                path: path.to_owned(),
                rule: String::new(),
                field: format!("streams.{name}"),
                message: "expected a CREATE STREAM statement as a string".into(),
            });
        };
        let defs = parse_streams(sql, &format!("{origin} (streams.{name})"), base_dir)?;
        streams.extend(defs);
    }
    let mut rules = Vec::new();
    for (id, rule) in raw.rules {
        // eKuiper exports hold each rule as a JSON string; accept objects too.
        let rule = match rule {
            Json::String(text) => serde_json::from_str(&text).map_err(|e| RuleError::Field {
                path: path.to_owned(),
                rule: id.clone(),
                field: format!("rules.{id}"),
                message: format!("not a valid rule: {e}"),
            })?,
            other => other,
        };
        // A ruleset's key is the rule's id when the rule itself does not name one.
        let rule = match rule {
            Json::Object(mut o) => {
                o.entry("id").or_insert_with(|| Json::String(id.clone()));
                Json::Object(o)
            }
            other => other,
        };
        rules.push(rule_from_json(rule, path, base_dir, &id)?);
    }
    Ok(RuleFile { rules, streams })
}

fn rule_from_json(
    json: Json,
    path: &Path,
    base_dir: &Path,
    what: &str,
) -> Result<RuleDef, RuleError> {
    let raw: RawRule = serde_json::from_value(json).map_err(|e| {
        let hint = crate::sink::props::unknown_field_hint(&e.to_string(), &[]);
        RuleError::Json {
            path: path.to_owned(),
            message: format!("{what}: {e}{hint}"),
        }
    })?;
    let id = match raw.id {
        Some(id) => id,
        None => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            tracing::info!(
                "{}: the rule has no `id`: it is `{stem}`, after the file name",
                path.display()
            );
            stem
        }
    };
    let field_err = |field: &str, message: String| RuleError::Field {
        path: path.to_owned(),
        rule: id.clone(),
        field: field.to_string(),
        message,
    };
    if id.trim().is_empty() {
        return Err(field_err("id", "must not be empty".into()));
    }
    if raw.graph.is_some() {
        return Err(field_err(
            "graph",
            "graph rules are not supported: write the rule with `sql` and `actions`".into(),
        ));
    }
    let sql = match raw.sql {
        Some(sql) if !sql.trim().is_empty() => sql,
        _ => return Err(field_err("sql", "is required".into())),
    };
    if raw.actions.is_empty() {
        return Err(field_err(
            "actions",
            "the rule needs at least one action".into(),
        ));
    }
    let mut actions = Vec::with_capacity(raw.actions.len());
    for (index, action) in raw.actions.into_iter().enumerate() {
        let field = format!("actions[{index}]");
        let Json::Object(map) = action else {
            return Err(field_err(
                &field,
                "expected an object like {\"log\": {}}".into(),
            ));
        };
        if map.len() != 1 {
            return Err(field_err(
                &field,
                format!(
                    "an action object names exactly one sink, found {}: write several actions instead",
                    map.len()
                ),
            ));
        }
        let Some((plugin, props)) = map.into_iter().next() else {
            continue;
        };
        let props = match props {
            Json::Object(props) => props,
            Json::Null => Map::new(),
            _ => {
                return Err(field_err(
                    &format!("{field}.{plugin}"),
                    "the sink's props must be an object".into(),
                ));
            }
        };
        actions.push(ActionDef {
            index,
            plugin,
            props,
        });
    }
    let (options, mut ignored_options) = options(raw.options.unwrap_or_default())
        .map_err(|(field, message)| field_err(&format!("options.{field}"), message))?;
    // Accepted values that cannot act yet: say so rather than pretend.
    if options.concurrency != 1 {
        ignored_options.push(
            "concurrency (set `concurrency` on an action to run several sink instances)".into(),
        );
    }
    let _ = raw.triggered;
    Ok(RuleDef {
        name: raw.name.unwrap_or_else(|| id.clone()),
        id,
        sql,
        actions,
        options,
        tags: raw.tags,
        path: path.to_owned(),
        base_dir: base_dir.to_owned(),
        ignored_options,
    })
}

/// eKuiper options Oort accepts but does not act on (they concern its server, checkpoints and
/// scheduling): a rule's `options` may name them, with a warning.
pub const IGNORED_OPTIONS: &[&str] = &[
    "debug",
    "logFilename",
    "cron",
    "duration",
    "cronDatetimeRange",
    "planOptimizeStrategy",
    "notifySub",
    "disableBufferFullDiscard",
    "enableSaveStateBeforeStop",
    "forceExitTimeout",
    "experiment",
];

/// The options Oort acts on: every key of a rule's `options` is one of these or of
/// [`IGNORED_OPTIONS`].
pub const OPTIONS: &[&str] = &[
    "isEventTime",
    "lateTolerance",
    "concurrency",
    "bufferLength",
    "sendMetaToSink",
    "sendNilField",
    "sendError",
    "qos",
    "checkpointInterval",
    "restartStrategy",
    "fireAtEnd",
];

/// The keys of the `restartStrategy` option.
pub const RESTART_KEYS: &[&str] = &[
    "attempts",
    "delay",
    "multiplier",
    "maxDelay",
    "jitterFactor",
];

type OptionError = (String, String);

fn options(raw: Map<String, Json>) -> Result<(RuleOptions, Vec<String>), OptionError> {
    let mut out = RuleOptions::default();
    let mut ignored = Vec::new();
    for (key, value) in raw {
        let bad = |expected: &str| (key.clone(), format!("expected {expected}, got {value}"));
        match key.as_str() {
            "isEventTime" => {
                out.is_event_time = value.as_bool().ok_or_else(|| bad("true or false"))?
            }
            "lateTolerance" => {
                out.late_tolerance_ms = duration_value(&value)
                    .ok_or_else(|| bad("milliseconds or a duration like \"1s\""))?
            }
            "concurrency" => {
                out.concurrency = positive(&value).ok_or_else(|| bad("a positive integer"))? as u32
            }
            "bufferLength" => {
                out.buffer_length =
                    positive(&value).ok_or_else(|| bad("a positive integer"))? as usize
            }
            "sendMetaToSink" => {
                out.send_meta_to_sink = value.as_bool().ok_or_else(|| bad("true or false"))?
            }
            "sendNilField" => {
                out.send_nil_field = value.as_bool().ok_or_else(|| bad("true or false"))?
            }
            "sendError" => out.send_error = value.as_bool().ok_or_else(|| bad("true or false"))?,
            "fireAtEnd" => out.fire_at_end = value.as_bool().ok_or_else(|| bad("true or false"))?,
            "qos" => {
                out.qos =
                    value.as_u64().filter(|q| *q <= 2).ok_or_else(|| {
                        bad("0 (at most once), 1 (at least once) or 2 (exactly once)")
                    })? as u8
            }
            "checkpointInterval" => {
                out.checkpoint_interval_ms =
                    duration_value(&value).filter(|ms| *ms > 0).ok_or_else(|| {
                        bad("a positive number of milliseconds or a duration like \"10s\"")
                    })?
            }
            "restartStrategy" => {
                out.restart = restart_strategy(&value).map_err(|(field, message)| {
                    let field = if field.is_empty() {
                        "restartStrategy".to_string()
                    } else {
                        format!("restartStrategy.{field}")
                    };
                    (field, message)
                })?
            }
            other if IGNORED_OPTIONS.contains(&other) => ignored.push(other.to_string()),
            _ => {
                let hint = crate::sink::props::did_you_mean(
                    &key,
                    OPTIONS.iter().chain(IGNORED_OPTIONS).copied(),
                )
                .map(|c| format!(": did you mean `{c}`?"))
                .unwrap_or_default();
                return Err((
                    key.clone(),
                    format!(
                        "unknown rule option (expected isEventTime, lateTolerance, concurrency, \
                         bufferLength, sendMetaToSink, sendNilField, sendError, qos, \
                         checkpointInterval, restartStrategy or fireAtEnd){hint}"
                    ),
                ));
            }
        }
    }
    Ok((out, ignored))
}

/// Reads `restartStrategy`; an error names the field inside it.
fn restart_strategy(value: &Json) -> Result<RestartStrategy, OptionError> {
    let Json::Object(map) = value else {
        return Err((
            String::new(),
            format!("expected an object like {{\"attempts\": 3, \"delay\": 1000}}, got {value}"),
        ));
    };
    let mut out = RestartStrategy::default();
    for (key, value) in map {
        let bad = |expected: &str| (key.clone(), format!("expected {expected}, got {value}"));
        let fraction = |v: &Json| v.as_f64().filter(|f| f.is_finite() && *f >= 0.0);
        match key.as_str() {
            "attempts" => {
                out.attempts = value
                    .as_u64()
                    .filter(|n| *n <= u32::MAX as u64)
                    .ok_or_else(|| bad("a whole number (0: never restart)"))?
                    as u32
            }
            "delay" => {
                out.delay_ms = duration_value(value)
                    .ok_or_else(|| bad("milliseconds or a duration like \"1s\""))?
            }
            "maxDelay" => {
                out.max_delay_ms = duration_value(value)
                    .ok_or_else(|| bad("milliseconds or a duration like \"30s\""))?
            }
            "multiplier" => {
                out.multiplier = fraction(value)
                    .filter(|m| *m >= 1.0)
                    .ok_or_else(|| bad("a number of at least 1"))?
            }
            "jitterFactor" => {
                out.jitter_factor = fraction(value)
                    .filter(|j| *j <= 1.0)
                    .ok_or_else(|| bad("a number between 0 and 1"))?
            }
            _ => {
                return Err((
                    key.clone(),
                    format!(
                        "unknown field (expected one of {})",
                        RESTART_KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    if out.max_delay_ms < out.delay_ms {
        return Err((
            "maxDelay".into(),
            format!(
                "{} ms is shorter than delay ({} ms)",
                out.max_delay_ms, out.delay_ms
            ),
        ));
    }
    Ok(out)
}

fn positive(v: &Json) -> Option<u64> {
    v.as_u64().filter(|n| *n > 0 && *n <= u32::MAX as u64)
}

/// A duration written as milliseconds (a number) or Go-style text (`"500ms"`, `"1m30s"`).
pub fn duration_value(v: &Json) -> Option<u64> {
    match v {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => parse_duration_ms(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<RuleFile, RuleError> {
        parse(text, Path::new("rule.json"), Path::new("/rules"))
    }

    #[test]
    fn every_listed_option_and_restart_key_is_parsed() {
        // The lists are exported (the fuzzers build their dictionaries from them): each key in
        // them is one the parser knows, whatever it says of a null value.
        for key in OPTIONS.iter().chain(IGNORED_OPTIONS) {
            let raw = Map::from_iter([(key.to_string(), Json::Null)]);
            if let Err((_, message)) = options(raw) {
                assert!(!message.contains("unknown"), "{key}: {message}");
            }
        }
        for key in RESTART_KEYS {
            let value = serde_json::json!({ *key: null });
            if let Err((_, message)) = restart_strategy(&value) {
                assert!(!message.contains("unknown"), "{key}: {message}");
            }
        }
        let (_, message) = restart_strategy(&serde_json::json!({"tries": 1})).unwrap_err();
        assert!(message.contains("unknown field"), "{message}");
    }

    #[test]
    fn reads_an_ekuiper_rule() {
        let file = parse_str(
            r#"{"id":"rule1","sql":"SELECT * FROM demo","actions":[{"log":{}},{"mySink":{"server":"tcp://x","topic":"t"}}],
                "options":{"sendError":true,"lateTolerance":"2s","qos":1}}"#,
        )
        .unwrap();
        let rule = &file.rules[0];
        assert_eq!(rule.actions.len(), 2);
        assert_eq!(rule.actions[1].plugin, "mySink");
        assert_eq!(rule.actions[1].name(), "mySink_1");
        assert_eq!(rule.actions[1].props["topic"], "t");
        assert!(rule.options.send_error);
        assert_eq!(rule.options.late_tolerance_ms, 2000);
        assert_eq!(rule.options.qos, 1);
        assert!(rule.ignored_options.is_empty());
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let err = parse_str(r#"{"id":"r","sqll":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("rule.json: the rule: unknown field `sqll`")
                && err.ends_with("(did you mean `sql`?)"),
            "{err}"
        );
        let err =
            parse_str(r#"{"id":"r","sql":"SELECT 1 FROM s","actions":[{"log":{},"nop":{}}]}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("field `actions[0]`"), "{err}");
        let err = parse_str(r#"{"id":"r","sql":"SELECT 1 FROM s","actions":[{"log":{}}],"options":{"bufferLength":-1}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `options.bufferLength`: expected a positive integer"),
            "{err}"
        );
        let err = parse_str(r#"{"id":"r","sql":"SELECT 1 FROM s","actions":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `actions`"), "{err}");
        let err = parse_str(r#"{"id":"r","sql":"SELECT 1 FROM s","actions":[{"log":{}}],"options":{"isEventTme":true}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `options.isEventTme`: unknown rule option")
                && err.ends_with("did you mean `isEventTime`?"),
            "{err}"
        );
    }

    fn option_err(options: &str) -> String {
        let text = format!(
            r#"{{"id":"r","sql":"SELECT 1 FROM s","actions":[{{"log":{{}}}}],"options":{options}}}"#
        );
        parse_str(&text).unwrap_err().to_string()
    }

    #[test]
    fn reads_qos_checkpoints_and_restarts() {
        let file = parse_str(
            r#"{"id":"r","sql":"SELECT 1 FROM s","actions":[{"log":{}}],"options":{"qos":2,
                "checkpointInterval":"10s","restartStrategy":{"attempts":3,"delay":"500ms",
                "multiplier":1.5,"maxDelay":2000,"jitterFactor":0.2}}}"#,
        )
        .unwrap();
        let options = &file.rules[0].options;
        assert_eq!(options.qos, 2);
        assert_eq!(options.checkpoint_interval_ms, 10_000);
        assert_eq!(
            options.restart,
            RestartStrategy {
                attempts: 3,
                delay_ms: 500,
                multiplier: 1.5,
                max_delay_ms: 2000,
                jitter_factor: 0.2
            }
        );
        let defaults = parse_str(r#"{"id":"r","sql":"SELECT 1 FROM s","actions":[{"log":{}}]}"#)
            .unwrap()
            .rules
            .remove(0)
            .options;
        assert_eq!(
            (defaults.qos, defaults.checkpoint_interval_ms),
            (0, 300_000)
        );
        assert_eq!(defaults.restart, RestartStrategy::default());
        let waits: Vec<u128> = (0..5)
            .map(|n| options.restart.delay(n, 0.5).as_millis())
            .collect();
        assert_eq!(waits, [500, 750, 1125, 1688, 2000]);
        assert_eq!(options.restart.delay(0, 0.0).as_millis(), 400);
        assert_eq!(options.restart.delay(0, 1.0).as_millis(), 600);
        assert_eq!(options.restart.delay(9, 1.0).as_millis(), 2000);

        let err = option_err(r#"{"qos":3}"#);
        assert!(
            err.contains("field `options.qos`: expected 0 (at most once), 1"),
            "{err}"
        );
        let err = option_err(r#"{"checkpointInterval":"soon"}"#);
        assert!(
            err.contains("field `options.checkpointInterval`: expected a positive"),
            "{err}"
        );
        let err = option_err(r#"{"restartStrategy":{"atempts":1}}"#);
        assert!(
            err.contains("field `options.restartStrategy.atempts`: unknown field"),
            "{err}"
        );
        let err = option_err(r#"{"restartStrategy":{"jitterFactor":2}}"#);
        assert!(
            err.contains(
                "`options.restartStrategy.jitterFactor`: expected a number between 0 and 1"
            ),
            "{err}"
        );
        let err = option_err(r#"{"restartStrategy":{"delay":5000,"maxDelay":1000}}"#);
        assert!(
            err.contains("`options.restartStrategy.maxDelay`: 1000 ms is shorter"),
            "{err}"
        );
        let err = option_err(r#"{"restartStrategy":3}"#);
        assert!(
            err.contains("field `options.restartStrategy`: expected an object"),
            "{err}"
        );
    }

    #[test]
    fn a_rule_without_id_is_named_after_its_file() {
        let file = parse(
            r#"{"sql":"SELECT * FROM demo","actions":[{"log":{}}]}"#,
            Path::new("rules/alerts.json"),
            Path::new("/rules"),
        )
        .unwrap();
        assert_eq!(file.rules[0].id, "alerts");
        assert_eq!(file.rules[0].name, "alerts");
    }

    #[test]
    fn reads_an_array_of_rules_and_names_the_one_without_id() {
        let file = parse_str(
            r#"[{"id":"a","sql":"SELECT * FROM demo","actions":[{"log":{}}]},
                {"id":"b","sql":"SELECT * FROM demo","actions":[{"nop":{}}]}]"#,
        )
        .unwrap();
        let ids: Vec<_> = file.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let err = parse_str(
            r#"[{"id":"a","sql":"SELECT * FROM demo","actions":[{"log":{}}]},
                {"sql":"SELECT * FROM demo","actions":[{"nop":{}}]}]"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("field `[1].id`: is required when a file holds several rules"),
            "{err}"
        );
    }

    #[test]
    fn reads_a_folder_of_rules_and_refuses_a_duplicate_id() {
        let dir = tempfile::tempdir().unwrap();
        let rule = |id: &str| {
            format!(r#"{{"id":"{id}","sql":"SELECT * FROM demo","actions":[{{"log":{{}}}}]}}"#)
        };
        std::fs::write(dir.path().join("b.json"), rule("b")).unwrap();
        std::fs::write(dir.path().join("a.json"), rule("a")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a rule").unwrap();
        let file = load(dir.path()).unwrap();
        let ids: Vec<_> = file.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        std::fs::write(dir.path().join("c.json"), rule("a")).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("c.json: rule `a`: field `id`: a rule with this id is also in")
                && err.contains("a.json"),
            "{err}"
        );
        let empty = tempfile::tempdir().unwrap();
        let err = load(empty.path()).unwrap_err().to_string();
        assert!(err.contains("holds no rule files"), "{err}");
    }

    #[test]
    fn reads_an_ekuiper_ruleset_export() {
        let file = parse_str(
            r#"{"streams":{"demo":"CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"d.jsonl\")"},
                "rules":{"r1":"{\"id\":\"r1\",\"sql\":\"SELECT * FROM demo\",\"actions\":[{\"log\":{}}]}"}}"#,
        )
        .unwrap();
        assert_eq!(file.streams.len(), 1);
        assert_eq!(file.rules[0].id, "r1");
    }
}
