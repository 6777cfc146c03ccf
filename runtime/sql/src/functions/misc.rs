//! Other functions: null tests, row metadata (`meta`, `mqtt`), timestamps of the evaluation and
//! of the event, random UUIDs, eKuiper's `props`, `delay` and `bypass`, and the rule's `rule_id`
//! and `rule_start` (which the compiler turns into the running rule's constants).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::args::{any_nil, arg, bad_arg, f64_to_i64, fail, wrong_type};
use super::{FnCtx, FnError, ScalarDef};
use crate::value::Value;

type R = Result<Value, FnError>;

const fn def(
    name: &'static str,
    min: usize,
    max: Option<usize>,
    call: super::ScalarFn,
    doc: &'static str,
) -> ScalarDef {
    ScalarDef::new("other", name, min, max, call, doc)
}

#[rustfmt::skip]
pub(super) const DEFS: &[ScalarDef] = &[
    def("bypass", 1, Some(1), bypass, "bypass(x): x itself, unchanged (null included)"),
    def("delay", 2, Some(2), delay, "delay(ms, x): x, after holding the rule's evaluation for ms milliseconds (a float is truncated; null when an argument is null)"),
    def("props", 1, Some(1), props, "props(key): eKuiper's property key as text: et is the current time in epoch milliseconds, snowflake a new unique snowflake id, any other key the environment variable KUIPER_PROPS_<KEY> (\"\" when unset)"),
    def("rule_id", 0, Some(0), rule_id, "rule_id(): the id of the rule running the statement"),
    def("rule_start", 0, Some(0), rule_start, "rule_start(): the time the rule started, in epoch milliseconds"),
    def("coalesce", 1, None, coalesce, "coalesce(a, ...): the first argument that is not null, or null"),
    def("event_time", 0, Some(0), event_time, "event_time(): the event time of the current row in epoch milliseconds; in a window, each row's own time where rows are read one by one (projected without aggregates, or in an aggregate's argument), and the window's end for a group's result or joined rows (as eKuiper)"),
    def("isnull", 1, Some(1), isnull, "isnull(x): true when x is null"),
    def("meta", 1, Some(1), meta, "meta(key): the row's metadata entry key (the compiler passes the key as a string; a.b walks nested objects, * gives all), or null"),
    def("mqtt", 1, Some(1), mqtt, "mqtt(key): the MQTT metadata entry topic or messageid of the row, or null"),
    def("newuuid", 0, Some(0), newuuid, "newuuid(): a random (version 4) UUID as text"),
    def("tstamp", 0, Some(0), tstamp, "tstamp(): the current processing time in epoch milliseconds"),
];

fn bypass(_: &FnCtx<'_>, args: &[Value]) -> R {
    Ok(arg(args, 0).clone())
}

/// eKuiper sleeps in the rule's evaluation: the row, and every row after it, waits. The engine
/// evaluates a statement that calls `delay` where a sleep holds no thread other rules need.
fn delay(_: &FnCtx<'_>, args: &[Value]) -> R {
    const F: &str = "delay";
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let ms = match arg(args, 0) {
        Value::Int(n) => *n,
        Value::Float(x) => {
            f64_to_i64(*x).ok_or_else(|| fail(F, format!("cannot convert float64({x}) to int")))?
        }
        v => {
            return Err(fail(
                F,
                format!("cannot convert {} to int", crate::wording::go_typed(v)),
            ));
        }
    };
    // As eKuiper, a delay of 0 or less does not sleep and none is refused; a stop of the rule
    // cuts a sleep short (see `crate::interrupt`), and the row is not sent.
    if ms > 0 && !crate::interrupt::sleep(Duration::from_millis(ms.unsigned_abs())) {
        return Err(FnError::new(crate::interrupt::CUT));
    }
    Ok(arg(args, 1).clone())
}

/// eKuiper's static properties: each environment variable `KUIPER_PROPS_<KEY>`, under its key in
/// lower case.
static PROPS: LazyLock<HashMap<String, String>> = LazyLock::new(|| props_of(std::env::vars()));

/// The properties among environment variables.
fn props_of(vars: impl Iterator<Item = (String, String)>) -> HashMap<String, String> {
    vars.filter_map(|(k, v)| {
        k.strip_prefix("KUIPER_PROPS_")
            .map(|key| (key.to_lowercase(), v))
    })
    .collect()
}

fn props(ctx: &FnCtx<'_>, args: &[Value]) -> R {
    let key = match arg(args, 0) {
        Value::String(key) => key,
        Value::Null => return Ok(Value::Null),
        v => {
            return Err(fail(
                "props",
                format!(
                    "invalid input {}: must be property name of string type",
                    crate::wording::go_value(v)
                ),
            ));
        }
    };
    Ok(Value::from(match &**key {
        "et" => ctx.now_ms.to_string(),
        "snowflake" => snowflake(SystemTime::now()).to_string(),
        // eKuiper gives an empty string for a property it does not have.
        key => PROPS.get(key).cloned().unwrap_or_default(),
    }))
}

/// Twitter's snowflake epoch (2010-11-04 01:42:54.657 UTC), which eKuiper's ids count from.
const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;
/// eKuiper's snowflake node number.
const SNOWFLAKE_NODE: i64 = 1;

/// The last snowflake's millisecond and sequence number within it.
static SNOWFLAKE: Mutex<(i64, i64)> = Mutex::new((0, 0));

/// A new snowflake id, as eKuiper's `props("snowflake")` gives (41 bits of milliseconds since
/// [`SNOWFLAKE_EPOCH_MS`], 10 bits of node, 12 of sequence).
fn snowflake(now: SystemTime) -> i64 {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    next_snowflake(
        &mut SNOWFLAKE.lock().unwrap_or_else(|e| e.into_inner()),
        now_ms,
    )
}

/// The snowflake after `last` (its millisecond and sequence number) at `now_ms`: unique and
/// increasing, even when the clock steps back or more than 4096 are asked within a millisecond.
fn next_snowflake(last: &mut (i64, i64), now_ms: i64) -> i64 {
    let (mut ms, mut step) = (now_ms.max(last.0), 0);
    if ms == last.0 {
        step = (last.1 + 1) & 0xfff;
        if step == 0 {
            // The millisecond's sequence is used up: the ids go on in the next one.
            ms += 1;
        }
    }
    *last = (ms, step);
    ((ms - SNOWFLAKE_EPOCH_MS) << 22) | (SNOWFLAKE_NODE << 12) | step
}

/// Only reached when a statement is evaluated outside a rule: in a rule, the compiler puts the
/// rule's id in the call's place.
fn rule_id(_: &FnCtx<'_>, _: &[Value]) -> R {
    Err(fail("rule_id", "the statement is not running in a rule"))
}

/// As [`rule_id`]: in a rule, the compiler puts the time it started in the call's place.
fn rule_start(_: &FnCtx<'_>, _: &[Value]) -> R {
    Err(fail("rule_start", "the statement is not running in a rule"))
}

fn coalesce(_: &FnCtx<'_>, args: &[Value]) -> R {
    Ok(args
        .iter()
        .find(|v| !v.is_null())
        .cloned()
        .unwrap_or(Value::Null))
}

fn isnull(_: &FnCtx<'_>, args: &[Value]) -> R {
    Ok(Value::Bool(arg(args, 0).is_null()))
}

fn tstamp(ctx: &FnCtx<'_>, _: &[Value]) -> R {
    Ok(Value::Int(ctx.now_ms))
}

fn event_time(ctx: &FnCtx<'_>, _: &[Value]) -> R {
    Ok(Value::Int(ctx.timestamp_ms))
}

fn newuuid(_: &FnCtx<'_>, _: &[Value]) -> R {
    let mut bits: u128 = rand::random();
    // Version 4 (random) and the RFC 4122 variant.
    bits = (bits & !(0xf << 76)) | (0x4 << 76);
    bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    Ok(Value::from(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )))
}

/// The entry `key` of an object, matched exactly first and then ignoring ASCII case.
fn entry<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    match object {
        Value::Object(map) => map.get(key).or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        }),
        _ => None,
    }
}

/// Looks `key` up in the metadata: the whole of it for `*`, an entry, or a path of nested
/// entries separated by `.` or `->`.
fn lookup_meta(meta: &Value, key: &str) -> Value {
    if key == "*" {
        return meta.clone();
    }
    if let Some(v) = entry(meta, key) {
        return v.clone();
    }
    let path = key.replace("->", ".");
    let mut current = meta;
    for part in path.split('.') {
        match entry(current, part) {
            Some(next) => current = next,
            None => return Value::Null,
        }
    }
    current.clone()
}

fn meta(ctx: &FnCtx<'_>, args: &[Value]) -> R {
    let key = match arg(args, 0) {
        Value::String(key) => key,
        Value::Null => return Ok(Value::Null),
        _ => return Err(wrong_type("meta", args, 0, "a metadata key")),
    };
    Ok(lookup_meta(ctx.meta, key))
}

fn mqtt(ctx: &FnCtx<'_>, args: &[Value]) -> R {
    let key = match arg(args, 0) {
        Value::String(key) => key,
        Value::Null => return Ok(Value::Null),
        _ => return Err(wrong_type("mqtt", args, 0, "a metadata key")),
    };
    if !key.eq_ignore_ascii_case("topic") && !key.eq_ignore_ascii_case("messageid") {
        return Err(bad_arg(
            "mqtt",
            args,
            0,
            format!("the key must be topic or messageid, got {key:?}"),
        ));
    }
    Ok(entry(ctx.meta, key).cloned().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn object(pairs: Vec<(&str, Value)>) -> Value {
        Value::object(pairs.into_iter().map(|(k, v)| (Arc::from(k), v)).collect())
    }

    fn call_with(meta: &Value, name: &str, args: &[Value]) -> R {
        let ctx = FnCtx {
            now_ms: 1_000,
            meta,
            timestamp_ms: 7,
        };
        let def = DEFS.iter().find(|d| d.name == name).expect("function");
        (def.call)(&ctx, args)
    }

    fn call(name: &str, args: &[Value]) -> R {
        call_with(&Value::Null, name, args)
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    #[test]
    fn null_handling() {
        assert_eq!(call("isnull", &[Value::Null]), Ok(Value::Bool(true)));
        assert_eq!(call("isnull", &[s("")]), Ok(Value::Bool(false)));
        assert_eq!(
            call("isnull", &[Value::array(vec![])]),
            Ok(Value::Bool(false))
        );
        assert_eq!(call("coalesce", &[Value::Null, s("a"), s("b")]), Ok(s("a")));
        assert_eq!(
            call("coalesce", &[Value::Null, Value::Null]),
            Ok(Value::Null)
        );
        assert_eq!(call("coalesce", &[]), Ok(Value::Null));
    }

    #[test]
    fn clocks_come_from_the_context() {
        assert_eq!(call("tstamp", &[]), Ok(Value::Int(1_000)));
        assert_eq!(call("event_time", &[]), Ok(Value::Int(7)));
        let meta = Value::Null;
        let ctx = FnCtx {
            now_ms: -5,
            meta: &meta,
            timestamp_ms: i64::MIN,
        };
        let get = |name: &str| DEFS.iter().find(|d| d.name == name).expect("function").call;
        assert_eq!(get("tstamp")(&ctx, &[]), Ok(Value::Int(-5)));
        assert_eq!(get("event_time")(&ctx, &[]), Ok(Value::Int(i64::MIN)));
    }

    #[test]
    fn bypass_gives_its_argument() {
        assert_eq!(call("bypass", &[s("a")]), Ok(s("a")));
        assert_eq!(call("bypass", &[Value::Null]), Ok(Value::Null));
        let a = Value::array(vec![Value::Int(1)]);
        assert_eq!(call("bypass", std::slice::from_ref(&a)), Ok(a));
    }

    #[test]
    fn delay_holds_the_evaluation_then_gives_its_value() {
        let started = std::time::Instant::now();
        assert_eq!(call("delay", &[Value::Int(30), s("bar")]), Ok(s("bar")));
        assert!(started.elapsed() >= Duration::from_millis(30));
        let started = std::time::Instant::now();
        assert_eq!(
            call("delay", &[Value::Float(20.9), Value::Int(1)]),
            Ok(Value::Int(1))
        );
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(call("delay", &[Value::Int(-5), s("x")]), Ok(s("x")));
        assert_eq!(call("delay", &[Value::Null, s("x")]), Ok(Value::Null));
        assert_eq!(
            call("delay", &[Value::Int(0), Value::Null]),
            Ok(Value::Null)
        );
        // eKuiper's TestDelay, row 1.
        assert_eq!(
            call("delay", &[s("bar"), s("bar")]).unwrap_err().0,
            "delay: cannot convert string(bar) to int"
        );
        assert!(call("delay", &[Value::Float(f64::NAN), s("x")]).is_err());
    }

    #[test]
    fn delay_is_cut_short_by_the_rule_s_stop() {
        let stop = crate::Interrupt::new();
        let tripper = stop.clone();
        let started = std::time::Instant::now();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tripper.trip();
        });
        // eKuiper refuses no delay, however long: it sleeps until the stop.
        let cut = stop.run(|| call("delay", &[Value::Int(i64::MAX), s("x")]));
        handle.join().unwrap();
        assert_eq!(cut.unwrap_err().0, crate::interrupt::CUT);
        assert!(started.elapsed() < Duration::from_secs(10));
        // A delay that does not sleep is not cut.
        assert_eq!(
            stop.run(|| call("delay", &[Value::Int(0), s("x")])),
            Ok(s("x"))
        );
    }

    #[test]
    fn props_are_ekuiper_s() {
        // eKuiper's TestProps.
        assert_eq!(
            call("props", &[Value::Int(12)]).unwrap_err().0,
            "props: invalid input 12: must be property name of string type"
        );
        assert_eq!(call("props", &[s("et")]), Ok(s("1000")));
        assert_eq!(call("props", &[Value::Null]), Ok(Value::Null));
        assert_eq!(call("props", &[s("no_such_property_here")]), Ok(s("")));
        let id = call("props", &[s("snowflake")]).unwrap().to_text();
        let id: i64 = id.parse().expect("a snowflake id is a number");
        assert!(id > 0);
        let vars = [
            ("KUIPER_PROPS_SITE".to_string(), "plant 7".to_string()),
            ("KUIPER_PROPS_Line_No".to_string(), "3".to_string()),
            ("KUIPER_OTHER".to_string(), "x".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let props = props_of(vars.into_iter());
        assert_eq!(props.len(), 2);
        assert_eq!(props.get("site").map(String::as_str), Some("plant 7"));
        assert_eq!(props.get("line_no").map(String::as_str), Some("3"));
    }

    #[test]
    fn snowflakes_are_unique_increasing_and_laid_out_as_ekuiper_s() {
        let t = 1_704_067_200_000; // 2024-01-01T00:00:00Z
        let mut state = (0, 0);
        let first = next_snowflake(&mut state, t);
        assert_eq!(first >> 22, t - SNOWFLAKE_EPOCH_MS);
        assert_eq!((first >> 12) & 0x3ff, SNOWFLAKE_NODE);
        assert_eq!(first & 0xfff, 0);
        let mut last = first;
        // More than a millisecond's 4096 sequence numbers, at one instant and then with the
        // clock stepping back: every id is new and larger.
        for i in 0..5000 {
            let at = if i < 4000 { t } else { t - 1000 };
            let id = next_snowflake(&mut state, at);
            assert!(id > last, "{id} after {last}");
            last = id;
        }
        assert!(snowflake(SystemTime::now()) < snowflake(SystemTime::now()));
    }

    #[test]
    fn rule_functions_outside_a_rule_are_errors() {
        assert_eq!(
            call("rule_id", &[]).unwrap_err().0,
            "rule_id: the statement is not running in a rule"
        );
        assert!(call("rule_start", &[]).is_err());
    }

    #[test]
    fn uuids_are_random_version_4() {
        let a = call("newuuid", &[]).unwrap().to_text();
        let b = call("newuuid", &[]).unwrap().to_text();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn meta_reads_the_row_metadata() {
        let meta = object(vec![
            ("topic", s("devices/1")),
            ("messageId", Value::Int(9)),
            (
                "reading",
                object(vec![("device", object(vec![("name", s("d1"))]))]),
            ),
            ("a.b", s("dotted")),
        ]);
        assert_eq!(call_with(&meta, "meta", &[s("topic")]), Ok(s("devices/1")));
        assert_eq!(call_with(&meta, "meta", &[s("TOPIC")]), Ok(s("devices/1")));
        assert_eq!(
            call_with(&meta, "meta", &[s("reading.device.name")]),
            Ok(s("d1"))
        );
        assert_eq!(
            call_with(&meta, "meta", &[s("reading->device->name")]),
            Ok(s("d1"))
        );
        assert_eq!(call_with(&meta, "meta", &[s("a.b")]), Ok(s("dotted")));
        assert_eq!(call_with(&meta, "meta", &[s("reading.x")]), Ok(Value::Null));
        assert_eq!(call_with(&meta, "meta", &[s("missing")]), Ok(Value::Null));
        assert_eq!(call_with(&meta, "meta", &[s("*")]), Ok(meta.clone()));
        assert_eq!(call("meta", &[s("topic")]), Ok(Value::Null));
        assert!(call_with(&meta, "meta", &[Value::Int(1)]).is_err());
        assert_eq!(call_with(&meta, "mqtt", &[s("topic")]), Ok(s("devices/1")));
        assert_eq!(
            call_with(&meta, "mqtt", &[s("messageid")]),
            Ok(Value::Int(9))
        );
        assert!(call_with(&meta, "mqtt", &[s("qos")]).is_err());
        assert_eq!(call_with(&meta, "mqtt", &[Value::Null]), Ok(Value::Null));
        assert!(call_with(&meta, "mqtt", &[Value::Bool(true)]).is_err());
    }
}
