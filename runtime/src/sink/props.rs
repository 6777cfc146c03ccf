//! The common sink properties eKuiper defines for every action, split off the action's props
//! and validated; what remains is passed to the sink itself.

use std::sync::Arc;

use serde_json::{Map, Value as Json};

use super::cache::CacheConfig;
use crate::host::{ExplicitGrants, Limits};
use crate::rule::duration_value;
use crate::template::Template;

/// How payloads are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadFormat {
    /// JSON (the default).
    Json,
    /// Values joined by a delimiter, in sorted key order (or the order of `fields`).
    Delimited {
        /// The separator.
        delimiter: String,
    },
}

impl PayloadFormat {
    /// The name sinks see in their context.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Delimited { .. } => "delimited",
        }
    }
}

/// The validated common properties of one action.
#[derive(Debug, Clone)]
pub struct CommonProps {
    /// `bufferLength`: messages buffered between the rule and the action (default 1024).
    pub buffer_length: usize,
    /// `concurrency`: sink instances running in parallel (default 1).
    pub concurrency: u32,
    /// `omitIfEmpty`: drop empty results instead of sending them.
    pub omit_if_empty: bool,
    /// `sendSingle`: send the rows of a window result one by one.
    pub send_single: bool,
    /// `dataTemplate`: a Go template producing the payload.
    pub data_template: Option<Arc<Template>>,
    /// The template's text, for messages.
    pub data_template_text: Option<String>,
    /// `format` (with `delimiter`).
    pub format: PayloadFormat,
    /// `fields`: keep only these fields.
    pub fields: Option<Vec<String>>,
    /// `excludeFields`: drop these fields.
    pub exclude_fields: Option<Vec<String>>,
    /// `dataField`: send this field's value instead of the whole result.
    pub data_field: Option<String>,
    /// `batchSize`: messages per `collect` call; 0 means "what is waiting, without delay".
    pub batch_size: usize,
    /// `lingerInterval`: the longest a partial batch waits, in milliseconds (0: no wait limit
    /// when `batchSize` is set).
    pub linger_ms: u64,
    /// `retryCount`: retries of a batch the sink calls transient, before it counts as failed.
    pub retry_count: u32,
    /// `retryInterval`: the first retry's delay in milliseconds (doubling, capped at 30 s).
    pub retry_interval_ms: u64,
    /// `maxMemory`, `callTimeout`, `fuel`: this action's instance limits, where they differ from
    /// the host's.
    pub limits: Limits,
    /// `enableCache` and its settings: `None` when the cache is off.
    pub cache: Option<CacheConfig>,
    /// `deadLetter`: where undeliverable batches go.
    pub dead_letter: Option<DeadLetterSpec>,
    /// `grants`: what the operator grants a wasm sink beyond what its manifest derives.
    pub grants: Option<ExplicitGrants>,
}

/// Where an action's dead letters go, as the rule wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadLetterSpec {
    /// `"deadLetter": "dead/rule1.jsonl"`: a JSON-lines file (relative to the rule's folder).
    File(String),
    /// `"deadLetter": {"<sink>": {props}}`: another action.
    Action {
        /// The sink's name.
        plugin: String,
        /// Its props.
        props: Map<String, Json>,
    },
}

impl Default for CommonProps {
    fn default() -> Self {
        Self {
            buffer_length: 1024,
            concurrency: 1,
            omit_if_empty: false,
            send_single: false,
            data_template: None,
            data_template_text: None,
            format: PayloadFormat::Json,
            fields: None,
            exclude_fields: None,
            data_field: None,
            batch_size: 0,
            linger_ms: 0,
            retry_count: 3,
            retry_interval_ms: 100,
            limits: Limits::default(),
            cache: None,
            dead_letter: None,
            grants: None,
        }
    }
}

/// Every key the host treats as a common property, and so never passes to a sink.
pub const COMMON_KEYS: &[&str] = &[
    "bufferLength",
    "concurrency",
    "omitIfEmpty",
    "sendSingle",
    "dataTemplate",
    "format",
    "schemaId",
    "delimiter",
    "hasHeader",
    "fields",
    "excludeFields",
    "dataField",
    "batchSize",
    "lingerInterval",
    "retryCount",
    "retryInterval",
    "runAsync",
    "enableCache",
    "memoryCacheThreshold",
    "maxDiskCache",
    "bufferPageSize",
    "resendInterval",
    "cleanCacheAtStop",
    "resendAlterQueue",
    "resendPriority",
    "resendIndicatorField",
    "compression",
    "encryption",
    "resourceId",
    "maxMemory",
    "callTimeout",
    "fuel",
    "maxOpenFiles",
    "maxSockets",
    "maxHttpRequests",
    "deadLetter",
    "grants",
];

/// A common property has a bad value: names the property.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prop `{prop}`: {message}")]
pub struct PropError {
    /// The property.
    pub prop: String,
    /// What is wrong.
    pub message: String,
}

fn err(prop: &str, message: impl Into<String>) -> PropError {
    PropError {
        prop: prop.to_string(),
        message: message.into(),
    }
}

/// The closest of `candidates` to `word`, if one is close enough to be a likely typo
/// (`paht` → `path`, `sendSingel` → `sendSingle`).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|&(score, _)| score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Decodes a sink's own props into its props type. A wrong value names the prop, the value and
/// the expected type (`prop `qos`: invalid type: string "1", expected u8`); an unknown prop
/// names the closest known one, among the type's fields and `also_known` (the common props).
pub fn decode<T: serde::de::DeserializeOwned>(
    props: &Map<String, Json>,
    also_known: &[&str],
) -> Result<T, PropError> {
    serde_path_to_error::deserialize(Json::Object(props.clone())).map_err(|e| {
        let prop = e.path().to_string();
        let message = e.into_inner().to_string();
        match unknown_field(&message) {
            Some((field, _)) => {
                let field = field.to_string();
                let hint = unknown_field_hint(&message, also_known);
                err(&field, format!("{message}{hint}"))
            }
            None => err(if prop == "." { "(props)" } else { &prop }, message),
        }
    })
}

/// For serde's "unknown field" message, ` (did you mean `x`?)` naming the closest of the
/// expected fields and `also_known`; empty for other messages or when nothing is close.
pub fn unknown_field_hint(message: &str, also_known: &[&str]) -> String {
    unknown_field(message)
        .and_then(|(field, expected)| {
            did_you_mean(
                field,
                expected.into_iter().chain(also_known.iter().copied()),
            )
        })
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// For a sink's own props that look like misspelt common props, `` (`sendSingel` is not a
/// common prop: did you mean `sendSingle`?)`` each; empty when there are none.
pub fn common_key_hints<'a>(own: impl IntoIterator<Item = &'a String>) -> String {
    own.into_iter()
        .filter_map(|key| {
            did_you_mean(key, COMMON_KEYS.iter().copied())
                .map(|c| format!(" (`{key}` is not a common prop: did you mean `{c}`?)"))
        })
        .collect()
}

/// The unknown field and the expected ones, from serde's "unknown field `x`, expected `a`" or
/// "…, expected one of `a`, `b`" or "…, there are no fields".
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).collect();
    Some((field, expected))
}

/// A size in bytes: a number, or a string with a unit (`512KiB`, `32MiB`, `1GB`).
pub fn byte_size(value: &Json) -> Option<usize> {
    if let Some(n) = value.as_u64() {
        return usize::try_from(n).ok().filter(|&n| n > 0);
    }
    let text = value.as_str()?.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits.parse().ok()?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor).filter(|&n| n > 0)
}

/// Splits an action's props into the common properties (validated) and the sink's own.
/// `hasHeader` is both: the delimited format uses it and so may the sink (the file sink does).
pub fn split(props: &Map<String, Json>) -> Result<(CommonProps, Map<String, Json>), PropError> {
    let mut common = CommonProps::default();
    let mut own = Map::new();
    let mut delimiter = ",".to_string();
    let mut format = "json".to_string();
    let mut enable_cache = false;
    let mut cache = CacheConfig::default();
    for (key, value) in props {
        let boolean = || {
            value
                .as_bool()
                .ok_or_else(|| err(key, format!("expected true or false, got {value}")))
        };
        let count = || {
            value
                .as_u64()
                .ok_or_else(|| err(key, format!("expected a non-negative integer, got {value}")))
        };
        let strings = || -> Result<Vec<String>, PropError> {
            let Json::Array(items) = value else {
                return Err(err(
                    key,
                    format!("expected a list of field names, got {value}"),
                ));
            };
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| err(key, format!("expected field names, got {i}")))
                })
                .collect()
        };
        match key.as_str() {
            "bufferLength" => {
                common.buffer_length = count()?.max(1) as usize;
            }
            "concurrency" => {
                let n = count()?;
                if n == 0 || n > 64 {
                    return Err(err(key, "expected 1 to 64 instances"));
                }
                common.concurrency = n as u32;
            }
            "omitIfEmpty" => common.omit_if_empty = boolean()?,
            "sendSingle" => common.send_single = boolean()?,
            "dataTemplate" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| err(key, "expected the template as a string"))?;
                if !text.is_empty() {
                    let template = Template::parse(text).map_err(|e| err(key, e.to_string()))?;
                    common.data_template = Some(Arc::new(template));
                    common.data_template_text = Some(text.to_string());
                }
            }
            "format" => {
                format = value
                    .as_str()
                    .ok_or_else(|| err(key, "expected json or delimited"))?
                    .to_ascii_lowercase();
            }
            "delimiter" => {
                delimiter = value
                    .as_str()
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| err(key, "expected a non-empty string"))?
                    .to_string();
            }
            "hasHeader" => {
                boolean()?;
                own.insert(key.clone(), value.clone());
            }
            "fields" => common.fields = Some(strings()?),
            "excludeFields" => common.exclude_fields = Some(strings()?),
            "dataField" => {
                common.data_field = Some(
                    value
                        .as_str()
                        .ok_or_else(|| err(key, "expected a field name"))?
                        .to_string(),
                )
                .filter(|f| !f.is_empty())
            }
            "batchSize" => common.batch_size = count()? as usize,
            "lingerInterval" => {
                common.linger_ms = duration_value(value)
                    .ok_or_else(|| err(key, "expected milliseconds or a duration like \"100ms\""))?
            }
            "retryCount" => common.retry_count = count()?.min(1000) as u32,
            "retryInterval" => {
                common.retry_interval_ms = duration_value(value)
                    .ok_or_else(|| err(key, "expected milliseconds or a duration like \"1s\""))?
            }
            "maxMemory" => {
                common.limits.max_memory_bytes = Some(byte_size(value).ok_or_else(|| {
                    err(
                        key,
                        "expected bytes or a size like \"32MiB\" (KiB, MiB, GiB, KB, MB, GB)",
                    )
                })?);
            }
            "callTimeout" => {
                let ms = duration_value(value)
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| err(key, "expected milliseconds or a duration like \"5s\""))?;
                common.limits.call_timeout = Some(std::time::Duration::from_millis(ms));
            }
            "fuel" => {
                let fuel = count()?;
                if fuel == 0 {
                    return Err(err(key, "expected a positive amount of fuel"));
                }
                common.limits.fuel_per_call = Some(fuel);
            }
            "maxOpenFiles" => common.limits.max_open_files = Some(count()? as usize),
            "maxSockets" => common.limits.max_sockets = Some(count()? as usize),
            "maxHttpRequests" => {
                common.limits.max_http_requests = Some(count()? as usize);
            }
            "enableCache" => enable_cache = boolean()?,
            "memoryCacheThreshold" => cache.memory_threshold = count()?,
            "maxDiskCache" => cache.max_disk = count()?,
            "bufferPageSize" => cache.page_size = count()?.max(1),
            "resendInterval" => {
                cache.resend_interval_ms = duration_value(value)
                    .ok_or_else(|| err(key, "expected milliseconds or a duration like \"1s\""))?
            }
            "cleanCacheAtStop" => cache.clean_at_stop = boolean()?,
            "resendAlterQueue" => cache.alter_queue = boolean()?,
            "resendPriority" => {
                cache.priority = match value.as_i64() {
                    Some(p @ -1..=1) => p as i8,
                    _ => return Err(err(key, format!("expected -1, 0 or 1, got {value}"))),
                }
            }
            "resendIndicatorField" => {
                cache.indicator_field = value
                    .as_str()
                    .ok_or_else(|| err(key, "expected a field name"))?
                    .to_string()
                    .into();
                cache.indicator_field = cache.indicator_field.take().filter(|f| !f.is_empty());
            }
            "deadLetter" => {
                common.dead_letter = Some(match value {
                    Json::String(path) if !path.is_empty() => DeadLetterSpec::File(path.clone()),
                    Json::Object(map) if map.len() == 1 => {
                        let (plugin, props) = map.iter().next().expect("one entry");
                        let Json::Object(props) = props else {
                            return Err(err(
                                key,
                                format!("the props of sink `{plugin}` must be an object"),
                            ));
                        };
                        if props.contains_key("deadLetter") {
                            return Err(err(
                                key,
                                "a dead-letter action has no dead letter of its own",
                            ));
                        }
                        DeadLetterSpec::Action {
                            plugin: plugin.clone(),
                            props: props.clone(),
                        }
                    }
                    _ => {
                        return Err(err(
                            key,
                            "expected a file path (\"dead/letters.jsonl\") or one action \
                             ({\"log\": {}})",
                        ));
                    }
                })
            }
            "grants" => {
                common.grants = Some(
                    serde_json::from_value(value.clone())
                        .map_err(|e| err(key, format!("{e} (expected {{\"files\": [{{\"path\", \"access\"}}], \"sockets\": [\"host:port\"], \"http\": [\"https://host\"]}})")))?,
                );
            }
            "schemaId" | "compression" | "encryption" | "resourceId" => {
                if !value.is_null() && value != "" {
                    return Err(err(key, "not supported by this version"));
                }
            }
            // Asynchronous mode: accepted (delivery never blocks the rule's other actions).
            "runAsync" => {}
            _ => {
                own.insert(key.clone(), value.clone());
            }
        }
    }
    common.cache = enable_cache.then_some(cache);
    common.format = match format.as_str() {
        "json" => PayloadFormat::Json,
        "delimited" => PayloadFormat::Delimited { delimiter },
        other => {
            return Err(err(
                "format",
                format!("`{other}` is not supported (expected json or delimited)"),
            ));
        }
    };
    if common.fields.is_some() && common.exclude_fields.is_some() {
        return Err(err(
            "fields",
            "`fields` and `excludeFields` cannot both be set",
        ));
    }
    if common.data_template.is_some() && common.format != PayloadFormat::Json {
        return Err(err(
            "dataTemplate",
            "a data template produces the payload itself: use it with format json",
        ));
    }
    Ok((common, own))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(json: &str) -> Map<String, Json> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn splits_common_from_own_props() {
        let (common, own) = split(&props(
            r#"{"path":"a.txt","sendSingle":true,"batchSize":100,"lingerInterval":"50ms","fields":["a"],"hasHeader":true}"#,
        ))
        .unwrap();
        assert!(common.send_single);
        assert_eq!(common.batch_size, 100);
        assert_eq!(common.linger_ms, 50);
        assert_eq!(common.fields.as_deref(), Some(&["a".to_string()][..]));
        assert_eq!(own.keys().collect::<Vec<_>>(), ["hasHeader", "path"]);
    }

    #[test]
    fn cache_and_dead_letter_props() {
        let (common, _) = split(&props(r#"{"memoryCacheThreshold":10}"#)).unwrap();
        assert_eq!(
            common.cache, None,
            "settings alone do not turn the cache on"
        );
        let (common, _) = split(&props(
            r#"{"enableCache":true,"memoryCacheThreshold":10,"resendAlterQueue":true,
                "resendPriority":-1,"deadLetter":"dead.jsonl"}"#,
        ))
        .unwrap();
        let cache = common.cache.unwrap();
        assert_eq!(
            (cache.memory_threshold, cache.alter_queue, cache.priority),
            (10, true, -1)
        );
        assert_eq!(
            common.dead_letter,
            Some(DeadLetterSpec::File("dead.jsonl".into()))
        );
        let (common, _) = split(&props(r#"{"deadLetter":{"log":{}}}"#)).unwrap();
        assert!(
            matches!(common.dead_letter, Some(DeadLetterSpec::Action { ref plugin, .. }) if plugin == "log")
        );
    }

    #[test]
    fn descriptor_limits_are_counts() {
        let (common, own) = split(&props(
            r#"{"maxOpenFiles":8,"maxSockets":2,"maxHttpRequests":0}"#,
        ))
        .unwrap();
        assert!(own.is_empty());
        assert_eq!(common.limits.max_open_files, Some(8));
        assert_eq!(common.limits.max_sockets, Some(2));
        assert_eq!(common.limits.max_http_requests, Some(0));
        let e = split(&props(r#"{"maxSockets":"many"}"#)).unwrap_err();
        assert_eq!(e.prop, "maxSockets");
    }

    #[test]
    fn limits_parse_sizes_and_durations() {
        let (common, own) = split(&props(
            r#"{"maxMemory":"32MiB","callTimeout":"2s","fuel":1000}"#,
        ))
        .unwrap();
        assert!(own.is_empty());
        assert_eq!(common.limits.max_memory_bytes, Some(32 << 20));
        assert_eq!(
            common.limits.call_timeout,
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(common.limits.fuel_per_call, Some(1000));
        assert_eq!(byte_size(&Json::from(4096)), Some(4096));
        assert_eq!(byte_size(&Json::from("1 GB")), Some(1_000_000_000));
        assert_eq!(byte_size(&Json::from("0MiB")), None);
    }

    #[test]
    fn bad_values_name_the_prop() {
        let e = split(&props(r#"{"sendSingle":"yes"}"#)).unwrap_err();
        assert_eq!(e.prop, "sendSingle");
        let e = split(&props(r#"{"format":"protobuf"}"#)).unwrap_err();
        assert_eq!(e.prop, "format");
        let e = split(&props(r#"{"fields":["a"],"excludeFields":["b"]}"#)).unwrap_err();
        assert_eq!(e.prop, "fields");
        let e = split(&props(r#"{"maxMemory":"lots"}"#)).unwrap_err();
        assert_eq!(e.prop, "maxMemory");
        let e = split(&props(r#"{"fuel":0}"#)).unwrap_err();
        assert_eq!(e.prop, "fuel");
        let e = split(&props(r#"{"resendPriority":2}"#)).unwrap_err();
        assert_eq!(e.prop, "resendPriority");
        let e = split(&props(r#"{"deadLetter":{"a":{},"b":{}}}"#)).unwrap_err();
        assert_eq!(e.prop, "deadLetter");
    }

    #[test]
    fn decoding_own_props_names_the_prop_and_suggests() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[expect(dead_code, reason = "only decoded")]
        struct Own {
            path: String,
            qos: Option<u8>,
        }
        let e = decode::<Own>(&props(r#"{"path":"a","qos":"1"}"#), COMMON_KEYS).unwrap_err();
        assert_eq!(e.prop, "qos");
        assert_eq!(
            e.to_string(),
            r#"prop `qos`: invalid type: string "1", expected u8"#
        );
        let e = decode::<Own>(&props(r#"{"paht":"a"}"#), COMMON_KEYS).unwrap_err();
        assert_eq!(e.prop, "paht");
        assert!(e.message.ends_with("(did you mean `path`?)"), "{e}");
        let e =
            decode::<Own>(&props(r#"{"path":"a","sendSingel":true}"#), COMMON_KEYS).unwrap_err();
        assert!(e.message.ends_with("(did you mean `sendSingle`?)"), "{e}");
        let hints = common_key_hints(props(r#"{"paht":1,"sendSingel":true}"#).keys());
        assert_eq!(
            hints,
            " (`sendSingel` is not a common prop: did you mean `sendSingle`?)"
        );
        let e = decode::<Own>(&props(r#"{"path":"a","zzz":1}"#), COMMON_KEYS).unwrap_err();
        assert!(!e.message.contains("did you mean"), "{e}");
    }
}
