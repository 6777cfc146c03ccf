//! Other functions: null tests, row metadata (`meta`, `mqtt`), timestamps of the evaluation and
//! of the event, and random UUIDs.

use super::args::{arg, bad_arg, wrong_type};
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
    def("coalesce", 1, None, coalesce, "coalesce(a, ...): the first argument that is not null, or null"),
    def("event_time", 0, Some(0), event_time, "event_time(): the event time of the current row in epoch milliseconds; in a window, each row's own time where rows are read one by one (projected without aggregates, or in an aggregate's argument), and the window's end for a group's result or joined rows (as eKuiper)"),
    def("isnull", 1, Some(1), isnull, "isnull(x): true when x is null"),
    def("meta", 1, Some(1), meta, "meta(key): the row's metadata entry key (the compiler passes the key as a string; a.b walks nested objects, * gives all), or null"),
    def("mqtt", 1, Some(1), mqtt, "mqtt(key): the MQTT metadata entry topic or messageid of the row, or null"),
    def("newuuid", 0, Some(0), newuuid, "newuuid(): a random (version 4) UUID as text"),
    def("tstamp", 0, Some(0), tstamp, "tstamp(): the current processing time in epoch milliseconds"),
];

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
