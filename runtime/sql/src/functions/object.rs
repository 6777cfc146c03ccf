//! Object functions: keys, values and entries of an object, building objects from arrays or
//! argument pairs, merging, and picking or erasing keys.
//!
//! Objects keep their keys sorted, so `keys`, `values` and `items` list them in key order.
//! Errors use eKuiper's texts, after the function's name.

use std::sync::Arc;

use super::args::{any_nil, arg, fail};
use super::convert::cast_text;
use super::{FnCtx, FnError, ScalarDef};
use crate::value::{Map, Value};

type R = Result<Value, FnError>;

const fn def(
    name: &'static str,
    min: usize,
    max: Option<usize>,
    call: super::ScalarFn,
    doc: &'static str,
) -> ScalarDef {
    ScalarDef::new("object", name, min, max, call, doc)
}

#[rustfmt::skip]
pub(super) const DEFS: &[ScalarDef] = &[
    def("erase", 2, Some(2), erase, "erase(obj, k): obj without the key k, or without every key in the array k"),
    def("items", 1, Some(1), items, "items(obj): the entries of obj as [key, value] arrays"),
    def("keys", 1, Some(1), keys, "keys(obj): the keys of obj as an array"),
    def("obj_to_kvpair_array", 1, Some(1), obj_to_kvpair_array, "obj_to_kvpair_array(obj): the entries of obj as {\"key\": k, \"value\": v} objects"),
    def("object", 2, Some(2), object, "object(keys, values): an object from an array of string keys and an array of values of the same length"),
    def("object_concat", 2, None, object_concat, "object_concat(obj, ...): the objects merged, later keys winning (nulls skipped)"),
    def("object_construct", 0, None, object_construct, "object_construct(k1, v1, ...): an object from key and value argument pairs (pairs with a null key are skipped)"),
    def("object_pick", 2, None, object_pick, "object_pick(obj, k, ...): obj with only the given keys (strings or an array of them; a.b picks nested keys)"),
    def("object_size", 1, Some(1), object_size, "object_size(obj): the number of keys of obj (0 for null)"),
    def("values", 1, Some(1), values, "values(obj): the values of obj as an array, in key order"),
    def("zip", 1, Some(1), zip, "zip(entries): an object from an array of [key, value] arrays"),
];

/// The first argument as an object; `refusal` is eKuiper's text when it is not one.
fn object_arg<'a>(f: &str, args: &'a [Value], refusal: &str) -> Result<&'a Map, FnError> {
    match arg(args, 0) {
        Value::Object(map) => Ok(map),
        _ => Err(fail(f, refusal)),
    }
}

/// eKuiper's `<text>, got <v>`, the value as Go prints it.
fn refused(f: &str, text: &str, v: &Value) -> FnError {
    fail(f, format!("{text}, got {}", crate::wording::go_value(v)))
}

fn keys(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let map = object_arg(
        "keys",
        args,
        "the argument should be map[string]interface{}",
    )?;
    Ok(Value::array(
        map.keys().map(|k| Value::String(Arc::clone(k))).collect(),
    ))
}

fn values(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let map = object_arg(
        "values",
        args,
        "the argument should be map[string]interface{}",
    )?;
    Ok(Value::array(map.values().cloned().collect()))
}

fn items(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let map = object_arg(
        "items",
        args,
        "first argument should be map[string]interface{}",
    )?;
    Ok(Value::array(
        map.iter()
            .map(|(k, v)| Value::array(vec![Value::String(Arc::clone(k)), v.clone()]))
            .collect(),
    ))
}

fn obj_to_kvpair_array(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let Value::Object(map) = arg(args, 0) else {
        return Err(refused(
            "obj_to_kvpair_array",
            "the first argument should be map[string]interface{}",
            arg(args, 0),
        ));
    };
    let key: Arc<str> = Arc::from("key");
    let value: Arc<str> = Arc::from("value");
    Ok(Value::array(
        map.iter()
            .map(|(k, v)| {
                let mut pair = Map::new();
                pair.insert(Arc::clone(&key), Value::String(Arc::clone(k)));
                pair.insert(Arc::clone(&value), v.clone());
                Value::object(pair)
            })
            .collect(),
    ))
}

fn object(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let Value::Array(names) = arg(args, 0) else {
        return Err(fail("object", "first argument should be []string"));
    };
    let Value::Array(values) = arg(args, 1) else {
        return Err(fail("object", "second argument should be []interface{}"));
    };
    if names.len() != values.len() {
        return Err(fail(
            "object",
            format!(
                "the length of the arguments should be same: {} keys, {} values",
                names.len(),
                values.len()
            ),
        ));
    }
    let mut out = Map::new();
    for (k, v) in names.iter().zip(values.iter()) {
        let Value::String(k) = k else {
            return Err(fail("object", "first argument should be []string"));
        };
        out.insert(Arc::clone(k), v.clone());
    }
    Ok(Value::object(out))
}

fn zip(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let not_pairs = || fail("zip", "each argument should be [][2]interface{}");
    let Value::Array(entries) = arg(args, 0) else {
        return Err(not_pairs());
    };
    let mut out = Map::new();
    for entry in entries.iter() {
        match entry {
            Value::Null => {}
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(k), v] => {
                    out.insert(Arc::clone(k), v.clone());
                }
                [_, _] => {
                    return Err(fail(
                        "zip",
                        "the first element in the list item should be string",
                    ));
                }
                _ => return Err(not_pairs()),
            },
            _ => return Err(not_pairs()),
        }
    }
    Ok(Value::object(out))
}

fn object_construct(_: &FnCtx<'_>, args: &[Value]) -> R {
    if !args.len().is_multiple_of(2) {
        return Err(fail("object_construct", "the args must be key value pairs"));
    }
    let mut out = Map::new();
    for pair in args.chunks_exact(2) {
        let not_string = || {
            fail(
                "object_construct",
                format!("key {} is not a string", crate::wording::go_value(&pair[0])),
            )
        };
        let key: Arc<str> = match &pair[0] {
            Value::Null => continue,
            Value::String(k) => Arc::clone(k),
            Value::Bytes(b) => Arc::from(std::str::from_utf8(b).map_err(|_| not_string())?),
            _ => return Err(not_string()),
        };
        out.insert(key, pair[1].clone());
    }
    Ok(Value::object(out))
}

fn object_concat(_: &FnCtx<'_>, args: &[Value]) -> R {
    let mut out = Map::new();
    for v in args {
        match v {
            Value::Null => {}
            Value::Object(map) => {
                out.extend(map.iter().map(|(k, v)| (Arc::clone(k), v.clone())));
            }
            _ => {
                return Err(refused(
                    "object_concat",
                    "the argument should be map[string]interface{}",
                    v,
                ));
            }
        }
    }
    Ok(Value::object(out))
}

fn object_size(_: &FnCtx<'_>, args: &[Value]) -> R {
    match arg(args, 0) {
        Value::Null => Ok(Value::Int(0)),
        Value::Object(map) => Ok(Value::Int(map.len() as i64)),
        other => Err(refused(
            "object_size",
            "the first argument should be map[string]any",
            other,
        )),
    }
}

fn erase(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let Value::Object(map) = arg(args, 0) else {
        return Err(refused(
            "erase",
            "the first argument should be map[string]interface{}",
            arg(args, 0),
        ));
    };
    let gone: Vec<String> = match arg(args, 1) {
        Value::String(k) => vec![k.to_string()],
        Value::Array(ks) => ks.iter().map(cast_text).collect(),
        _ => return Err(fail("erase", "the argument should be slice or string")),
    };
    Ok(Value::object(
        map.iter()
            .filter(|(k, _)| !gone.iter().any(|g| g.as_str() == &***k))
            .map(|(k, v)| (Arc::clone(k), v.clone()))
            .collect(),
    ))
}

/// Copies the entry at the dotted `path` of `from`, if there is one, into `into`.
fn pick(into: &mut Map, from: &Map, path: &str) {
    let Some((head, rest)) = path.split_once('.') else {
        if let Some(v) = from.get(path) {
            into.insert(Arc::from(path), v.clone());
        }
        return;
    };
    let Some(Value::Object(inner)) = from.get(head) else {
        return;
    };
    let mut nested = match into.get(head) {
        Some(Value::Object(existing)) => (**existing).clone(),
        _ => Map::new(),
    };
    pick(&mut nested, inner, rest);
    if !nested.is_empty() {
        into.insert(Arc::from(head), Value::object(nested));
    }
}

fn object_pick(_: &FnCtx<'_>, args: &[Value]) -> R {
    let map = match arg(args, 0) {
        Value::Null => return Ok(Value::Null),
        Value::Object(map) => map,
        other => {
            return Err(refused(
                "object_pick",
                "the first argument should be a map",
                other,
            ));
        }
    };
    let mut out = Map::new();
    match arg(args, 1) {
        Value::Array(ks) => {
            for k in ks.iter() {
                if let Value::String(k) = k {
                    pick(&mut out, map, k);
                }
            }
        }
        // A null key picks nothing (as eKuiper); the other keys are still picked.
        Value::String(_) | Value::Null => {
            for k in &args[1..] {
                if let Value::String(k) = k {
                    pick(&mut out, map, k);
                }
            }
        }
        // eKuiper picks nothing here, silently; a key of another type is a mistake worth naming.
        other => {
            return Err(refused(
                "object_pick",
                "the second argument should be a string or an array of strings",
                other,
            ));
        }
    }
    Ok(Value::object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> R {
        let meta = Value::Null;
        let ctx = FnCtx {
            now_ms: 0,
            meta: &meta,
            timestamp_ms: 0,
        };
        let def = DEFS.iter().find(|d| d.name == name).expect("function");
        (def.call)(&ctx, args)
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    fn i(x: i64) -> Value {
        Value::Int(x)
    }

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::object(pairs.into_iter().map(|(k, v)| (Arc::from(k), v)).collect())
    }

    fn sample() -> Value {
        obj(vec![("b", i(2)), ("a", i(1))])
    }

    #[test]
    fn keys_values_items() {
        assert_eq!(
            call("keys", &[sample()]),
            Ok(Value::array(vec![s("a"), s("b")]))
        );
        assert_eq!(
            call("values", &[sample()]),
            Ok(Value::array(vec![i(1), i(2)]))
        );
        assert_eq!(
            call("items", &[sample()]),
            Ok(Value::array(vec![
                Value::array(vec![s("a"), i(1)]),
                Value::array(vec![s("b"), i(2)])
            ]))
        );
        for f in ["keys", "values", "items", "obj_to_kvpair_array"] {
            assert_eq!(call(f, &[Value::Null]), Ok(Value::Null), "{f}");
            assert!(call(f, &[s("x")]).is_err(), "{f}");
        }
        assert_eq!(
            call("obj_to_kvpair_array", &[obj(vec![("k", i(1))])]),
            Ok(Value::array(vec![obj(vec![
                ("key", s("k")),
                ("value", i(1))
            ])]))
        );
    }

    #[test]
    fn building_objects() {
        assert_eq!(
            call(
                "object",
                &[
                    Value::array(vec![s("a"), s("b")]),
                    Value::array(vec![i(1), i(2)])
                ]
            ),
            Ok(obj(vec![("a", i(1)), ("b", i(2))]))
        );
        assert!(
            call(
                "object",
                &[Value::array(vec![s("a")]), Value::array(vec![i(1), i(2)])]
            )
            .is_err()
        );
        assert!(
            call(
                "object",
                &[Value::array(vec![i(1)]), Value::array(vec![i(1)])]
            )
            .is_err()
        );
        assert_eq!(
            call("object", &[Value::array(vec![]), Value::array(vec![])]),
            Ok(Value::Null)
        );
        assert_eq!(
            call(
                "zip",
                &[Value::array(vec![
                    Value::array(vec![s("a"), i(1)]),
                    Value::Null,
                    Value::array(vec![s("b"), i(2)])
                ])]
            ),
            Ok(sample())
        );
        assert!(call("zip", &[Value::array(vec![Value::array(vec![s("a")])])]).is_err());
        assert!(call("zip", &[Value::array(vec![Value::array(vec![i(1), i(1)])])]).is_err());
        assert_eq!(
            call(
                "object_construct",
                &[s("a"), i(1), Value::Null, i(5), s("n"), Value::Null]
            ),
            Ok(obj(vec![("a", i(1)), ("n", Value::Null)]))
        );
        assert_eq!(call("object_construct", &[]), Ok(obj(vec![])));
        assert!(call("object_construct", &[Value::Bool(true), s("x")]).is_err());
        assert!(call("object_construct", &[s("a")]).is_err());
    }

    #[test]
    fn merging_and_sizes() {
        assert_eq!(
            call(
                "object_concat",
                &[
                    obj(vec![("a", i(1))]),
                    Value::Null,
                    obj(vec![("b", i(2))]),
                    obj(vec![("b", i(3))])
                ]
            ),
            Ok(obj(vec![("a", i(1)), ("b", i(3))]))
        );
        assert!(call("object_concat", &[obj(vec![]), i(1)]).is_err());
        assert_eq!(call("object_size", &[sample()]), Ok(i(2)));
        assert_eq!(call("object_size", &[Value::Null]), Ok(i(0)));
        assert!(call("object_size", &[Value::array(vec![])]).is_err());
    }

    #[test]
    fn erasing_and_picking() {
        let big = obj(vec![
            ("baz", Value::array(vec![i(1)])),
            ("bar", s("hello")),
            ("foo", s("emq")),
            ("nested", obj(vec![("x", i(1)), ("y", i(2))])),
        ]);
        assert_eq!(
            call("erase", &[sample(), s("a")]),
            Ok(obj(vec![("b", i(2))]))
        );
        assert_eq!(
            call("erase", &[sample(), Value::array(vec![s("a"), s("b")])]),
            Ok(obj(vec![]))
        );
        assert!(call("erase", &[sample(), i(1)]).is_err());
        assert_eq!(call("erase", &[Value::Null, s("a")]), Ok(Value::Null));
        assert_eq!(
            call("object_pick", &[big.clone(), s("foo")]),
            Ok(obj(vec![("foo", s("emq"))]))
        );
        assert_eq!(
            call("object_pick", &[big.clone(), s("foo"), s("bar"), i(3)]),
            Ok(obj(vec![("bar", s("hello")), ("foo", s("emq"))]))
        );
        assert_eq!(
            call(
                "object_pick",
                &[
                    big.clone(),
                    Value::array(vec![s("nested.x"), s("nested.y"), s("nope.z")])
                ]
            ),
            Ok(obj(vec![("nested", obj(vec![("x", i(1)), ("y", i(2))]))]))
        );
        assert!(call("object_pick", &[big, i(1)]).is_err());
        assert!(call("object_pick", &[s("x"), s("a")]).is_err());
        assert_eq!(call("object_pick", &[Value::Null, s("a")]), Ok(Value::Null));
        let one = Value::object([(Arc::from("k"), i(1))].into_iter().collect());
        assert_eq!(
            call("object_pick", &[one.clone(), Value::Null]),
            Ok(Value::object(Map::new()))
        );
        assert_eq!(
            call("object_pick", &[one.clone(), Value::Null, s("k")]),
            Ok(one)
        );
    }
}
