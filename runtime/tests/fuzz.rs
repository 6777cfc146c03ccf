//! Time-budgeted fuzzers for what a rule file and its source configuration reach besides the
//! SQL (which `oort-sql`'s own fuzz test covers): the rule file parser with its options,
//! durations and restart strategy; each action's common props, its built-in sink's props or
//! a wasm sink's grants and templated props; the payloads an action makes of generated
//! results; and the MQTT and redis source configuration files with their `CONF_KEY` sections.
//! No input may panic or hang.
//!
//! Inputs are mutations (by the shared mutation fuzzer, `oort-fuzz`) of real files: every rule
//! case's `rule.json`, the examples' rules and the README's JSON, both as text (tokens
//! inserted, ranges cut, copied or spliced) and as JSON (a known key set to an odd value
//! somewhere in the tree), and configuration files in eKuiper's layout. A failure prints the
//! seed that replays it (`OORT_FUZZ_SEED`).
//!
//! The test run gives each a short budget; `cargo xtask fuzz-parsers --only rule|conf
//! --seconds N` a long one (`OORT_FUZZ_SECONDS`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use oort::host::{Grants, Manifest};
use oort::rule;
use oort::sink::props::split;
use oort::sink::{ConnectorSpec, Transformer, dynamic_props, render_over};
use oort::source::redis::{RedisConf, RedisTarget};
use oort::source::{MemoryBus, MqttConf, Resources};
use oort_fuzz::{Fuzz, Rng, files_in_folders, mutate, value};
use oort_sql::stream::{StreamDef, parse_streams};
use oort_value::Row;
use oort_value::message::Message;
use serde_json::Value as Json;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------------------------------------
// Rule files

/// Text to insert into a rule file.
const RULE_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "null",
    "true",
    "0",
    "-1",
    "1e400",
    "18446744073709551616",
    "0.5",
    "\"\"",
    "{}",
    "[]",
    "\"1h2m3.5s\"",
    "\"1.5µs\"",
    "\"9999999999999h\"",
    "\"{{.a}}\"",
    "\"id\": \"r\", ",
    "\"sql\": \"SELECT * FROM demo\", ",
    "\"actions\": [{\"log\": {}}], ",
    "\"options\": {\"qos\": 1}, ",
    "\"rules\": {\"r\": \"{\\\"sql\\\": \\\"SELECT 1\\\"}\"}, ",
    "\"streams\": {\"s\": \"CREATE STREAM s () WITH (TYPE=\\\"memory\\\")\"}, ",
    "\u{1F600}",
    "\n",
];

/// Keys set in the JSON tree besides the parsers' own lists: a rule's fields, the wasm sinks'
/// names and the built-in sinks' props.
const RULE_OTHER_KEYS: &[&str] = &[
    "id",
    "name",
    "sql",
    "graph",
    "actions",
    "options",
    "triggered",
    "tags",
    "rules",
    "streams",
    "tables",
    "file",
    "rest",
    "redis",
    "mySink",
    "topic",
    "table",
    "key",
    "rowkindField",
    "server",
    "retained",
    "deliveryTimeout",
    "protocolVersion",
    "certificationPath",
    "insecureSkipVerify",
    "path",
    "url",
    "headers",
    "method",
    "files",
    "sockets",
    "http",
    "access",
];

/// Keys set in the JSON tree: the rule options, `restartStrategy` keys, common sink props and
/// built-in sinks the parsers know (so a new one is fuzzed as soon as it is parsed), and
/// [`RULE_OTHER_KEYS`].
static RULE_KEYS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut keys: Vec<&'static str> = [
        rule::OPTIONS,
        rule::IGNORED_OPTIONS,
        rule::RESTART_KEYS,
        oort::sink::props::COMMON_KEYS,
        oort::sink::BUILTINS,
        RULE_OTHER_KEYS,
    ]
    .concat();
    keys.sort_unstable();
    keys.dedup();
    keys
});

/// Values set in the JSON tree.
const RULE_VALUES: &[&str] = &[
    "null",
    "true",
    "false",
    "0",
    "1",
    "2",
    "3",
    "-1",
    "0.5",
    "1e308",
    "-1e308",
    "18446744073709551615",
    "9223372036854775807",
    "4294967296",
    "65",
    "\"\"",
    "\" \"",
    "\"1s\"",
    "\"1h2m3.5s\"",
    "\"1.5µs\"",
    "\"0.0000001ns\"",
    "\"99999999999999999999h\"",
    "\"1e300h\"",
    "\"..5s\"",
    "\"32MiB\"",
    "\"18446744073709551615GiB\"",
    "\"0B\"",
    "\"delimited\"",
    "\"json\"",
    "\"{{.a}}\"",
    "\"{{\"",
    "\"{{printf \\\"%.99999999f\\\" 1.5}}\"",
    "\"dead/{{.a}}.jsonl\"",
    "\"out/x.jsonl\"",
    "\"../../etc/passwd\"",
    "\"/abs/path\"",
    "\"tcp://[::1]:99999\"",
    "\"ssl://h\"",
    "\"http://example.com/{{.a}}\"",
    "\"t/+/#\"",
    "\"read\"",
    "\"write\"",
    "\"SELECT * FROM demo\"",
    "\"CREATE STREAM s () WITH (TYPE=\\\"memory\\\", DATASOURCE=\\\"t\\\")\"",
    "{}",
    "[]",
    "[\"a\", \"b\"]",
    "[1]",
    "{\"log\": {}}",
    "{\"log\": null}",
    "{\"nop\": {\"deadLetter\": \"x\"}}",
    "{\"memory\": {\"topic\": \"t/{{.a}}\", \"table\": true, \"key\": \"a\"}}",
    "{\"files\": [{\"path\": \"out\", \"access\": \"write\"}], \"sockets\": [\"h:1\"], \"http\": [\"https://h\"]}",
    "{\"attempts\": 3, \"delay\": \"1s\", \"maxDelay\": 10, \"multiplier\": 1e308}",
    "{\"X-A\": \"{{.a}}\"}",
    "[{\"log\": {}}, {\"nop\": {}}]",
    "{\"mqtt\": {\"server\": \"tcp://127.0.0.1:1883\", \"topic\": \"t/{{.a}}\", \"qos\": 1, \"deliveryTimeout\": \"5s\"}}",
    "{\"mqtt\": {\"server\": \"ssl://h:8883\", \"topic\": \"t\", \"protocolVersion\": \"5\", \"rootCaPath\": \"ca.pem\", \"retained\": true}}",
    "{\"file\": {\"path\": \"out/{{.a}}.jsonl\", \"fileType\": \"lines\", \"rollingCount\": 10}}",
    "{\"rest\": {\"url\": \"http://127.0.0.1:1/{{.a}}\", \"method\": \"post\", \"headers\": {\"X-A\": \"{{.b}}\"}}}",
    "{\"redis\": {\"addr\": \"127.0.0.1:6379\", \"key\": \"k\", \"field\": \"a\", \"dataType\": \"list\"}}",
    "\"{\\\"sql\\\": \\\"SELECT 1\\\", \\\"actions\\\": [{\\\"log\\\": {}}]}\"",
];

/// Rule files of the shapes the rule cases do not have: a list of rules, every option, a
/// ruleset with rules as strings.
const RULE_SEEDS: &[&str] = &[
    r#"[{"id": "a", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}, {"id": "b", "sql": "SELECT 1 FROM demo", "actions": [{"nop": null}], "tags": ["x"]}]"#,
    r#"{"id": "r", "name": "n", "triggered": true, "sql": "SELECT * FROM demo", "actions": [{"log": {"sendSingle": true}}], "options": {"isEventTime": true, "lateTolerance": "1s", "concurrency": 2, "bufferLength": 1024, "sendMetaToSink": true, "sendNilField": true, "sendError": true, "qos": 1, "checkpointInterval": "5m", "debug": true, "restartStrategy": {"attempts": 3, "delay": 1000, "multiplier": 2, "maxDelay": "30s", "jitterFactor": 0.1}}}"#,
    r#"{"streams": {"demo": "CREATE STREAM demo () WITH (TYPE="memory", DATASOURCE="t")"}, "tables": {"t": "CREATE TABLE t (a BIGINT) WITH (TYPE="file", DATASOURCE="t.json")"}, "rules": {"r1": "{"sql": "SELECT * FROM demo", "actions": [{"log": {}}]}", "r2": {"sql": "SELECT a FROM demo", "actions": [{"memory": {"topic": "out"}}]}}}"#,
];

/// Every rule case's `rule.json`, the examples' rules, the README's JSON blocks and
/// [`RULE_SEEDS`].
fn rule_seeds() -> Vec<String> {
    let mut seeds: Vec<String> = RULE_SEEDS.iter().map(|s| s.to_string()).collect();
    seeds.extend(files_in_folders(&root().join("tests/rules"), "rule.json"));
    seeds.extend(files_in_folders(&root().join("examples"), "rule.json"));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap_or_default();
    for block in readme.split("```json\n").skip(1) {
        if let Some((json, _)) = block.split_once("```") {
            seeds.push(json.to_string());
        }
    }
    seeds
}

/// Sets a key of an object `steps` levels down `node` (or less, where the tree ends) to a
/// value or removes it, or replaces the node there.
fn edit_tree(rng: &mut Rng, node: &mut Json, steps: usize, values: &[Json]) {
    if steps > 0 {
        match node {
            Json::Object(map) if !map.is_empty() => {
                let i = rng.below(map.len());
                if let Some(child) = map.values_mut().nth(i) {
                    return edit_tree(rng, child, steps - 1, values);
                }
            }
            Json::Array(items) if !items.is_empty() => {
                let i = rng.below(items.len());
                return edit_tree(rng, &mut items[i], steps - 1, values);
            }
            _ => {}
        }
    }
    let value = rng.pick(values).clone();
    match node {
        Json::Object(map) if !rng.one_in(5) => {
            let key = rng.pick(&RULE_KEYS).to_string();
            if rng.one_in(6) {
                map.remove(&key);
            } else {
                map.insert(key, value);
            }
        }
        Json::Array(items) if rng.one_in(2) => items.push(value),
        other => *other = value,
    }
}

fn make_rule(rng: &mut Rng, seeds: &[String], trees: &[Json], values: &[Json]) -> String {
    if rng.one_in(2) {
        return mutate(rng, seeds, RULE_TOKENS);
    }
    let mut tree = rng.pick(trees).clone();
    for _ in 0..1 + rng.below(3) {
        let steps = rng.below(6);
        edit_tree(rng, &mut tree, steps, values);
    }
    let text = tree.to_string();
    if rng.one_in(4) {
        mutate(rng, &[text], RULE_TOKENS)
    } else {
        text
    }
}

/// What the rule fuzzer's inputs use besides the text.
struct RuleEnv {
    base_dir: tempfile::TempDir,
    bus: Arc<MemoryBus>,
    manifests: Vec<(String, Manifest)>,
}

impl RuleEnv {
    fn new() -> Self {
        let mut manifests = Vec::new();
        let sinks = root().join("sinks");
        let mut dirs: Vec<_> = std::fs::read_dir(&sinks)
            .expect("sinks/")
            .flatten()
            .map(|e| e.path())
            .collect();
        dirs.sort();
        for dir in dirs {
            if let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) {
                let manifest: Manifest = serde_json::from_str(&text).expect("a shipped manifest");
                let name = dir.file_name().unwrap_or_default().to_string_lossy();
                manifests.push((name.into_owned(), manifest));
            }
        }
        assert!(manifests.len() >= 3, "the shipped sinks' manifests");
        Self {
            base_dir: tempfile::tempdir().expect("a temporary folder"),
            bus: MemoryBus::new(),
            manifests,
        }
    }
}

/// A result of a rule, as its actions get it.
fn message(rng: &mut Rng) -> Message {
    let row = |rng: &mut Rng| {
        let names = ["a", "b", "y", "z", "device", ""];
        let pairs = (0..rng.below(5))
            .map(|i| (Arc::from(names[i]), value(rng, 0)))
            .collect();
        Row::from_pairs(pairs, rng.below(1000) as i64)
    };
    match rng.below(4) {
        0 => Message::Error {
            message: Arc::from("boom"),
            timestamp_ms: 0,
        },
        1 => Message::Rows(Arc::new((0..rng.below(4)).map(|_| row(rng)).collect())),
        _ => Message::Row(row(rng)),
    }
}

/// Parses a rule file, then checks and runs each action's props as starting the rule would.
fn exec_rule(text: &str, rng: &mut Rng, env: &RuleEnv) -> String {
    let base_dir = env.base_dir.path();
    let file = match rule::parse(text, Path::new("rule.json"), base_dir) {
        Ok(file) => file,
        Err(e) => return format!("rule: {e}"),
    };
    for def in &file.rules {
        for action in &def.actions {
            let kind = if oort::sink::BUILTINS.contains(&action.plugin.as_str()) {
                "built-in"
            } else {
                "wasm"
            };
            let failed = |e: String| format!("{kind} action: {e}");
            let (common, mut own) = match split(&action.props) {
                Ok(split) => split,
                Err(e) => return failed(e.to_string()),
            };
            let mut templates = Vec::new();
            match ConnectorSpec::builtin(&action.plugin, &own, &env.bus, base_dir) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return failed(e),
                None => {
                    let manifest = match env.manifests.iter().find(|(n, _)| *n == action.plugin) {
                        Some((_, m)) => m,
                        None => &rng.pick(&env.manifests).1,
                    };
                    match dynamic_props(&own, &manifest.dynamic_props) {
                        Ok(dynamic) => templates.extend(dynamic.into_iter().map(|(_, t)| t)),
                        Err((prop, e)) => return failed(format!("{prop}: {e}")),
                    }
                    let mut grants = match Grants::resolve(manifest, &mut own, base_dir, false) {
                        Ok(g) => g,
                        Err(e) => return failed(e.to_string()),
                    };
                    if let Some(explicit) = &common.grants
                        && let Err(e) = grants.add_explicit(explicit, base_dir, false)
                    {
                        return failed(e.to_string());
                    }
                    let _ = grants.report();
                }
            }
            let mut transformer = Transformer::new(common, def.options.send_nil_field);
            let mut errors = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let message = message(rng);
                transformer.transform(
                    &message,
                    &mut |payload| {
                        for template in &templates {
                            let _ = render_over(template, payload);
                        }
                    },
                    &mut errors,
                );
            }
            let _ = transformer.header();
            if let Some(e) = errors.first() {
                return failed(format!("payload: {e}"));
            }
        }
    }
    format!("ok: {} rules", file.rules.len().min(2))
}

#[test]
fn no_panic_or_hang_from_rule_files() {
    let seeds = rule_seeds();
    assert!(seeds.len() > 150, "the rule cases are the seeds");
    let trees: Vec<Json> = seeds
        .iter()
        .filter_map(|s| serde_json::from_str(s).ok())
        .collect();
    let values: Vec<Json> = RULE_VALUES
        .iter()
        .map(|v| serde_json::from_str(v).expect("a JSON value"))
        .collect();
    let env = RuleEnv::new();
    Fuzz::from_env("rule", 3).run(
        |rng| make_rule(rng, &seeds, &trees, &values),
        |text, rng| exec_rule(text, rng, &env),
    );
}

// ---------------------------------------------------------------------------------------------
// Source configuration files

const MQTT_SEEDS: &[&str] = &[
    "default:\n  qos: 1\n  server: \"tcp://127.0.0.1:1883\"\n  bufferLength: 1024\n\
     demo_conf:\n  qos: 0\n  server: \"tcp://10.0.0.6:1883\"\n  username: u\n",
    "default:\n  server: \"ssl://broker:8883\"\n  protocolVersion: \"5\"\n  clientid: c1\n  \
     certificationPath: certs/c.pem\n  privateKeyPath: certs/k.pem\n  rootCaPath: ca.pem\n\
     prod:\n  insecureSkipVerify: false\n  password: s3cret\n  kubeedgeVersion: \"\"\n",
    "default: {qos: 2, server: 'mqtt://[::1]:1883'}\nx: {protocolVersion: 3.1.1, qos: 1}\n",
    "# eKuiper's layout\ndefault:\n  qos: 1\n  server: \"tcp://127.0.0.1:1883\"\n  \
     decompression: \"\"\n  kubeedgeModelFile: \"\"\n",
];

const REDIS_SEEDS: &[&str] = &[
    "default:\n  addr: \"127.0.0.1:6379\"\n  datatype: \"string\"\n  password: s3cret\n\
     demo_conf:\n  addr: \"10.0.0.2:6380\"\n  dataType: list\n  lookup:\n    cache: true\n    \
     cacheTtl: 600\n    cacheMissingKey: true\n",
    "default:\n  addr: \"[::1]:6379\"\n  username: u\nprod:\n  lookup: {cache: true, cacheTtl: \"10s\"}\n",
    "x:\n  addr: redis:1\n  datatype: LIST\n",
];

const CONF_TOKENS: &[&str] = &[
    "\n",
    "  ",
    ":",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!binary ",
    "~",
    "null",
    "true",
    "0",
    "-1",
    "3",
    "256",
    "1e400",
    "18446744073709551616",
    "0x10",
    ".inf",
    "qos: ",
    "server: ",
    "addr: ",
    "datatype: ",
    "lookup:\n    cache: ",
    "cacheTtl: ",
    "protocolVersion: ",
    "insecureSkipVerify: true",
    "rootCaPath: /nonexistent/ca.pem",
    "tcp://",
    "ssl://h:",
    "[::1]",
    ":99999",
    "default:\n",
    "prod:\n",
    "demo_conf:\n",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "#",
    "\t",
    "\u{1F600}",
];

/// The conf keys tried: none, `default`, sections of the seeds, and ones no file has.
const CONF_KEYS: &[Option<&str>] = &[
    None,
    Some("default"),
    Some("demo_conf"),
    Some("prod"),
    Some("x"),
    Some(""),
];

#[derive(Debug)]
struct ConfInput {
    redis: bool,
    yaml: String,
    key: usize,
}

/// A stream over each conf key, for both source types.
struct ConfEnv {
    dir: tempfile::TempDir,
    mqtt: Vec<StreamDef>,
    redis: Vec<StreamDef>,
}

impl ConfEnv {
    fn new() -> Self {
        let with_key = |key: Option<&str>| {
            key.map(|k| format!(", CONF_KEY=\"{k}\""))
                .unwrap_or_default()
        };
        let def = |ddl: String| {
            parse_streams(&ddl, "fuzz", Path::new("."))
                .expect("the fuzz DDL parses")
                .remove(0)
        };
        Self {
            dir: tempfile::tempdir().expect("a temporary folder"),
            mqtt: CONF_KEYS
                .iter()
                .map(|k| {
                    def(format!(
                        "CREATE STREAM s () WITH (TYPE=\"mqtt\", DATASOURCE=\"t/#\"{})",
                        with_key(*k)
                    ))
                })
                .collect(),
            redis: CONF_KEYS
                .iter()
                .map(|k| {
                    def(format!(
                        "CREATE TABLE t () WITH (TYPE=\"redis\", KIND=\"lookup\", DATASOURCE=\"0\"{})",
                        with_key(*k)
                    ))
                })
                .collect(),
        }
    }
}

fn make_conf(rng: &mut Rng, mqtt: &[String], redis: &[String]) -> ConfInput {
    let is_redis = rng.one_in(2);
    let seeds = if is_redis { redis } else { mqtt };
    ConfInput {
        redis: is_redis,
        yaml: mutate(rng, seeds, CONF_TOKENS),
        key: rng.below(CONF_KEYS.len()),
    }
}

/// Parses a configuration file and checks a stream that selects one of its sections.
fn exec_conf(input: &ConfInput, env: &ConfEnv) -> String {
    let path = env.dir.path().join("etc/source.yaml");
    if input.redis {
        let conf = match RedisConf::parse(&input.yaml, &path) {
            Ok(c) => c,
            Err(e) => return format!("redis parse: {e}"),
        };
        let def = &env.redis[input.key];
        if let Err(e) = RedisTarget::of(def, &conf) {
            return format!("redis: {e}");
        }
        let resources = Resources::default().with(Arc::new(conf));
        match oort::source::check(def, &resources) {
            Ok(()) => "redis: ok".into(),
            Err(e) => format!("redis check: {e}"),
        }
    } else {
        let conf = match MqttConf::parse(&input.yaml, &path) {
            Ok(c) => c,
            Err(e) => return format!("mqtt parse: {e}"),
        };
        let def = &env.mqtt[input.key];
        let resources = Resources::default().with(Arc::new(conf));
        if let Err(e) = oort::source::check(def, &resources) {
            return format!("mqtt check: {e}");
        }
        match oort::source::check_replayable(def, &resources, 1) {
            Ok(()) => "mqtt: ok".into(),
            Err(e) => format!("mqtt replay: {e}"),
        }
    }
}

#[test]
fn no_panic_or_hang_from_source_conf_files() {
    let env = ConfEnv::new();
    let mqtt: Vec<String> = MQTT_SEEDS.iter().map(|s| s.to_string()).collect();
    let redis: Vec<String> = REDIS_SEEDS.iter().map(|s| s.to_string()).collect();
    Fuzz::from_env("conf", 3).run(
        |rng| make_conf(rng, &mqtt, &redis),
        |input, _| exec_conf(input, &env),
    );
}
