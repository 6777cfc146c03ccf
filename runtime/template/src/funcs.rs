//! The table of functions a template can call, with Go's parameter types so arguments are
//! checked and converted the way Go's `text/template` does; Go's builtins and eKuiper's own
//! `json` and `base64` (the sprig functions are in `sprig.rs`), and helpers they share.

use std::borrow::Cow;
use std::sync::Arc;

use super::exec::{NULL, Val};
use super::format;
use super::parse::{parse_go_float, parse_go_int};
use super::sprig::*;
use crate::json;
use crate::value::{Map, Value};

/// Longest string or list a function may build, against runaway `repeat`/`until` calls.
pub(super) const MAX_BUILD: usize = 16 << 20;

/// A parameter type, as Go would declare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// `interface{}`: anything; a missing value arrives as nil.
    Any,
    /// `reflect.Value` (builtins): anything; a missing value stays missing.
    Val,
    /// `string`
    Str,
    /// `int`
    Int,
    /// `float64`
    Float,
    /// `bool`
    Bool,
    /// `map[string]interface{}`
    Map,
}

impl Ty {
    /// The Go spelling, for error messages.
    pub(crate) const fn go_name(self) -> &'static str {
        match self {
            Self::Any => "interface {}",
            Self::Val => "reflect.Value",
            Self::Str => "string",
            Self::Int => "int",
            Self::Float => "float64",
            Self::Bool => "bool",
            Self::Map => "map[string]interface {}",
        }
    }
}

/// A function's result from its (already converted) arguments.
pub(crate) type Func = for<'a> fn(&[Val<'a>]) -> Result<Val<'a>, String>;

/// Writes a string-producing function's result straight to the output.
pub(crate) type Writer = for<'a> fn(&[Val<'a>], &mut Vec<u8>) -> Result<(), String>;

/// How a function runs.
pub(crate) enum Imp {
    Func(Func),
    /// `and`, which stops at the first false argument.
    And,
    /// `or`, which stops at the first true argument.
    Or,
}

/// One callable function.
pub(crate) struct FuncDef {
    pub name: &'static str,
    pub params: &'static [Ty],
    pub variadic: Option<Ty>,
    pub imp: Imp,
    /// Set for functions that return a string, when the action prints it directly.
    pub writer: Option<Writer>,
    /// sprig's `set` and `unset` modify their map; here the result replaces the variable.
    pub writes_back: bool,
}

const fn def(
    name: &'static str,
    params: &'static [Ty],
    variadic: Option<Ty>,
    func: Func,
) -> FuncDef {
    FuncDef {
        name,
        params,
        variadic,
        imp: Imp::Func(func),
        writer: None,
        writes_back: false,
    }
}

const fn writer(mut d: FuncDef, w: Writer) -> FuncDef {
    d.writer = Some(w);
    d
}

const fn writes_back(mut d: FuncDef) -> FuncDef {
    d.writes_back = true;
    d
}

use Ty::{Any, Bool as B, Float as F, Int as I, Map as M, Str as S, Val as V};

const A1: &[Ty] = &[Any];
const A2: &[Ty] = &[Any, Any];
const S1: &[Ty] = &[S];
const S2: &[Ty] = &[S, S];
const NONE: &[Ty] = &[];

/// Every function, by name.
static FUNCS: &[FuncDef] = &[
    // Go builtins.
    FuncDef {
        name: "and",
        params: &[V],
        variadic: Some(V),
        imp: Imp::And,
        writer: None,
        writes_back: false,
    },
    FuncDef {
        name: "or",
        params: &[V],
        variadic: Some(V),
        imp: Imp::Or,
        writer: None,
        writes_back: false,
    },
    def("not", &[V], None, not),
    def("len", &[V], None, len),
    def("index", &[V], Some(V), index),
    writer(def("print", NONE, Some(Any), print), print_w),
    writer(def("printf", S1, Some(Any), printf), printf_w),
    writer(def("println", NONE, Some(Any), println), println_w),
    writer(def("html", NONE, Some(Any), html), html_w),
    writer(def("js", NONE, Some(Any), js), js_w),
    writer(def("urlquery", NONE, Some(Any), urlquery), urlquery_w),
    def("eq", &[V], Some(V), eq),
    def("ne", &[V, V], None, ne),
    def("lt", &[V, V], None, lt),
    def("le", &[V, V], None, le),
    def("gt", &[V, V], None, gt),
    def("ge", &[V, V], None, ge),
    // eKuiper.
    writer(def("json", A1, None, to_json), to_json_w),
    def("base64", A1, None, base64),
    // sprig: strings.
    def("hello", NONE, None, hello),
    def("upper", S1, None, upper),
    def("lower", S1, None, lower),
    def("title", S1, None, title),
    def("untitle", S1, None, untitle),
    def("trim", S1, None, trim),
    def("trimAll", S2, None, trim_all),
    def("trimall", S2, None, trim_all),
    def("trimPrefix", S2, None, trim_prefix),
    def("trimSuffix", S2, None, trim_suffix),
    def("nospace", S1, None, nospace),
    def("initials", S1, None, initials),
    def("substr", &[I, I, S], None, substr),
    def("trunc", &[I, S], None, trunc),
    def("abbrev", &[I, S], None, abbrev),
    def("repeat", &[I, S], None, repeat),
    def("contains", S2, None, contains),
    def("hasPrefix", S2, None, has_prefix),
    def("hasSuffix", S2, None, has_suffix),
    def("quote", NONE, Some(Any), quote),
    def("squote", NONE, Some(Any), squote),
    def("cat", NONE, Some(Any), cat),
    def("indent", &[I, S], None, indent),
    def("nindent", &[I, S], None, nindent),
    def("replace", &[S, S, S], None, replace),
    def("plural", &[S, S, I], None, plural),
    writer(def("toString", A1, None, to_string), to_string_w),
    def("atoi", S1, None, atoi),
    def("int", A1, None, int),
    def("int64", A1, None, int),
    def("float64", A1, None, float64),
    def("toDecimal", A1, None, to_decimal),
    def("split", S2, None, split),
    def("splitn", &[S, I, S], None, splitn),
    def("splitList", S2, None, split_list),
    def("toStrings", A1, None, to_strings),
    def("join", &[S, Any], None, join),
    def("sortAlpha", A1, None, sort_alpha),
    // sprig: numbers.
    def("until", &[I], None, until),
    def("untilStep", &[I, I, I], None, until_step),
    def("seq", NONE, Some(I), seq),
    def("add1", A1, None, add1),
    def("add", NONE, Some(Any), add),
    def("sub", A2, None, sub),
    def("mul", A1, Some(Any), mul),
    def("div", A2, None, div),
    def("mod", A2, None, modulo),
    def("max", A1, Some(Any), max),
    def("biggest", A1, Some(Any), max),
    def("min", A1, Some(Any), min),
    def("add1f", A1, None, add1f),
    def("addf", NONE, Some(Any), addf),
    def("subf", A1, Some(Any), subf),
    def("mulf", A1, Some(Any), mulf),
    def("divf", A1, Some(Any), divf),
    def("maxf", A1, Some(Any), maxf),
    def("minf", A1, Some(Any), minf),
    def("floor", A1, None, floor),
    def("ceil", A1, None, ceil),
    def("round", &[Any, I], Some(F), round),
    // sprig: defaults, JSON, types.
    def("default", A1, Some(Any), default),
    def("empty", A1, None, empty),
    def("coalesce", NONE, Some(Any), coalesce),
    def("all", NONE, Some(Any), all),
    def("any", NONE, Some(Any), any),
    def("compact", A1, None, compact),
    def("mustCompact", A1, None, compact),
    def("ternary", &[Any, Any, B], None, ternary),
    def("fromJson", S1, None, from_json),
    def("mustFromJson", S1, None, must_from_json),
    writer(def("toJson", A1, None, to_json), to_json_w),
    writer(def("mustToJson", A1, None, to_json), to_json_w),
    writer(def("toRawJson", A1, None, to_json), to_json_w),
    writer(def("mustToRawJson", A1, None, to_json), to_json_w),
    writer(
        def("toPrettyJson", A1, None, to_pretty_json),
        to_pretty_json_w,
    ),
    writer(
        def("mustToPrettyJson", A1, None, to_pretty_json),
        to_pretty_json_w,
    ),
    def("deepCopy", A1, None, identity),
    def("mustDeepCopy", A1, None, identity),
    def("typeOf", A1, None, type_of),
    def("typeIs", &[S, Any], None, type_is),
    def("typeIsLike", &[S, Any], None, type_is_like),
    def("kindOf", A1, None, kind_of),
    def("kindIs", &[S, Any], None, kind_is),
    def("deepEqual", A2, None, deep_equal),
    def("fail", S1, None, fail),
    // sprig: encodings.
    def("b64enc", S1, None, b64enc),
    def("b64dec", S1, None, b64dec),
    def("b32enc", S1, None, b32enc),
    def("b32dec", S1, None, b32dec),
    // sprig: dictionaries.
    def("dict", NONE, Some(Any), dict),
    def("get", &[M, S], None, get),
    writes_back(def("set", &[M, S, Any], None, set)),
    writes_back(def("unset", &[M, S], None, unset)),
    def("hasKey", &[M, S], None, has_key),
    def("pluck", S1, Some(M), pluck),
    def("keys", NONE, Some(M), keys),
    def("pick", &[M], Some(S), pick),
    def("omit", &[M], Some(S), omit),
    def("values", &[M], None, values),
    def("dig", NONE, Some(Any), dig),
    // sprig: lists.
    def("list", NONE, Some(Any), list),
    def("tuple", NONE, Some(Any), list),
    def("append", A2, None, append),
    def("push", A2, None, append),
    def("mustAppend", A2, None, append),
    def("mustPush", A2, None, append),
    def("prepend", A2, None, prepend),
    def("mustPrepend", A2, None, prepend),
    def("first", A1, None, first),
    def("mustFirst", A1, None, first),
    def("last", A1, None, last),
    def("mustLast", A1, None, last),
    def("rest", A1, None, rest),
    def("mustRest", A1, None, rest),
    def("initial", A1, None, initial),
    def("mustInitial", A1, None, initial),
    def("reverse", A1, None, reverse),
    def("mustReverse", A1, None, reverse),
    def("uniq", A1, None, uniq),
    def("mustUniq", A1, None, uniq),
    def("without", A1, Some(Any), without),
    def("mustWithout", A1, Some(Any), without),
    def("has", A2, None, has),
    def("mustHas", A2, None, has),
    def("slice", A1, Some(Any), slice),
    def("mustSlice", A1, Some(Any), slice),
    def("concat", NONE, Some(Any), concat),
    def("chunk", &[I, Any], None, chunk),
    def("mustChunk", &[I, Any], None, chunk),
];

/// The function called `name`, if templates may call it.
pub(crate) fn lookup(name: &str) -> Option<&'static FuncDef> {
    FUNCS.iter().find(|f| f.name == name)
}

/// Names of all functions, for documentation and tests.
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    FUNCS.iter().map(|f| f.name)
}

/// A function's result.
pub(super) type FR<'a> = Result<Val<'a>, String>;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Go's truth for `if`, `with`, `and`, `or`, `not`: zero values and empty things are false.
pub(crate) fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::String(s) => !s.is_empty(),
        Value::Bytes(b) => !b.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

pub(super) fn own<'a>(v: Value) -> FR<'a> {
    Ok(Val::Own(v))
}

pub(super) fn string<'a>(s: impl Into<Arc<str>>) -> FR<'a> {
    own(Value::String(s.into()))
}

pub(super) fn bytes_to_string<'a>(out: Vec<u8>) -> FR<'a> {
    string(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

pub(super) fn boolean<'a>(b: bool) -> FR<'a> {
    own(Value::Bool(b))
}

pub(super) fn int_result<'a>(i: i64) -> FR<'a> {
    own(Value::Int(i))
}

pub(super) fn float_result<'a>(f: f64) -> FR<'a> {
    own(Value::Float(f))
}

pub(super) fn list_result<'a>(items: Vec<Value>) -> FR<'a> {
    own(Value::array(items))
}

/// A string parameter (already checked).
pub(super) fn s<'x>(args: &'x [Val<'_>], i: usize) -> &'x str {
    args[i].value().as_str().unwrap_or("")
}

/// An int parameter (already checked).
pub(super) fn n(args: &[Val<'_>], i: usize) -> i64 {
    args[i].value().as_i64().unwrap_or(0)
}

/// A map parameter (already checked).
pub(super) fn m<'x>(args: &'x [Val<'_>], i: usize) -> Option<&'x Arc<Map>> {
    match args[i].value() {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

pub(super) fn values_of<'x>(args: &'x [Val<'_>]) -> impl Iterator<Item = &'x Value> + Clone {
    args.iter().map(Val::value)
}

/// sprig's `strval`: strings as they are, anything else as `%v`.
pub(super) fn strval(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Bytes(b) => String::from_utf8_lossy(b),
        other => Cow::Owned(format::to_v_string(other)),
    }
}

/// sprig's `strslice`: a list as strings (nil items dropped), anything else as one string.
pub(super) fn strslice(v: &Value) -> Vec<Cow<'_, str>> {
    match v {
        Value::Array(items) => items.iter().filter(|i| !i.is_null()).map(strval).collect(),
        Value::Bytes(b) => b.iter().map(|x| Cow::Owned(x.to_string())).collect(),
        Value::Null => Vec::new(),
        other => vec![strval(other)],
    }
}

/// cast's `trimZeroDecimal`: `"12.00"` becomes `"12"`.
fn trim_zero_decimal(s: &str) -> &str {
    let mut found_zero = false;
    for (i, b) in s.bytes().enumerate().rev() {
        match b {
            b'.' if found_zero => return &s[..i],
            b'.' => {}
            b'0' => found_zero = true,
            _ => return s,
        }
    }
    s
}

/// Go's `int64(f)` as amd64 computes it: out-of-range values and NaN become the minimum.
pub(super) fn float_to_int64(f: f64) -> i64 {
    if f.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

/// cast's `ToInt64`, errors becoming 0.
pub(super) fn to_int64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => float_to_int64(*f),
        Value::String(s) => parse_go_int(trim_zero_decimal(s)).unwrap_or(0),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

/// cast's `ToFloat64`, errors becoming 0.
pub(super) fn to_float64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::String(s) => parse_go_float(s).unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// Go's `unicode.ToUpper` applied rune by rune (no special casing that changes lengths).
pub(super) fn map_runes(s: &str, upper: bool) -> String {
    s.chars()
        .map(|c| if upper { upper_rune(c) } else { lower_rune(c) })
        .collect()
}

pub(super) fn upper_rune(c: char) -> char {
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

pub(super) fn lower_rune(c: char) -> char {
    let mut it = c.to_lowercase();
    match (it.next(), it.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// A list argument's items, or sprig's error naming the kind.
pub(super) fn list_items<'x>(v: &'x Value, what: &str) -> Result<Cow<'x, [Value]>, String> {
    match v {
        Value::Array(items) => Ok(Cow::Borrowed(items.as_slice())),
        Value::Bytes(b) => Ok(Cow::Owned(
            b.iter().map(|x| Value::Int(i64::from(*x))).collect(),
        )),
        other => Err(format!("Cannot {what} on type {}", format::go_kind(other))),
    }
}

/// Item `i` of a list argument, borrowed when the list is.
pub(super) fn item<'a>(v: &Val<'a>, i: usize) -> Val<'a> {
    match v {
        Val::Ref(r) => {
            let r: &'a Value = r;
            match r {
                Value::Array(items) => items.get(i).map_or(Val::Missing, Val::Ref),
                Value::Bytes(b) => b
                    .get(i)
                    .map_or(Val::Missing, |x| Val::Own(Value::Int(i64::from(*x)))),
                _ => Val::Missing,
            }
        }
        other => match other.value() {
            Value::Array(items) => items.get(i).cloned().map_or(Val::Missing, Val::Own),
            Value::Bytes(b) => b
                .get(i)
                .map_or(Val::Missing, |x| Val::Own(Value::Int(i64::from(*x)))),
            _ => Val::Missing,
        },
    }
}

/// The items and bytes of `v` and everything in it, counted until they pass `limit` (then
/// `limit + 1`): a string or bytes count their length, a list or map its entries and theirs.
pub(super) fn deep_size(v: &Value, limit: usize) -> usize {
    fn walk(v: &Value, total: &mut usize, limit: usize) {
        if *total > limit {
            return;
        }
        match v {
            Value::String(s) => *total += s.len(),
            Value::Bytes(b) => *total += b.len(),
            Value::Array(items) => {
                *total += items.len();
                for item in items.iter() {
                    walk(item, total, limit);
                }
            }
            Value::Object(map) => {
                *total += map.len();
                for (key, item) in map.iter() {
                    *total += key.len();
                    walk(item, total, limit);
                }
            }
            _ => *total += 1,
        }
    }
    let mut total = 0;
    walk(v, &mut total, limit);
    total.min(limit.saturating_add(1))
}

pub(super) fn check_size(len: usize) -> Result<(), String> {
    if len > MAX_BUILD {
        return Err(format!("result too large ({len} items or bytes)"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Go builtins

fn not<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(!truth(a[0].value()))
}

fn len<'a>(a: &[Val<'a>]) -> FR<'a> {
    let n = match &a[0] {
        Val::Missing => return Err("len of untyped nil".to_owned()),
        v => match v.value() {
            Value::Null => return Err("len of nil pointer".to_owned()),
            Value::String(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Array(items) => items.len(),
            Value::Object(map) => map.len(),
            other => return Err(format!("len of type {}", format::go_type(other))),
        },
    };
    int_result(i64::try_from(n).unwrap_or(i64::MAX))
}

/// An index into a list of length `len`, as Go's `indexArg` checks it.
fn index_arg(idx: &Value, len: usize) -> Result<usize, String> {
    let x = match idx {
        Value::Int(i) => *i,
        // JSON numbers may be floats where Go would have ints.
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => *f as i64,
        Value::Null => return Err("cannot index slice/array with nil".to_owned()),
        other => {
            return Err(format!(
                "cannot index slice/array with type {}",
                format::go_type(other)
            ));
        }
    };
    match usize::try_from(x) {
        Ok(i) if i < len => Ok(i),
        _ => Err(format!("index out of range: {x}")),
    }
}

/// One step of `index`: a borrowed part, a computed value, or nil for a missing key.
enum Step<'v> {
    Part(&'v Value),
    Made(Value),
    Nil,
}

fn index_step<'v>(item: &'v Value, idx: &Value) -> Result<Step<'v>, String> {
    Ok(match item {
        Value::Null => return Err("index of nil pointer".to_owned()),
        Value::Array(items) => Step::Part(&items[index_arg(idx, items.len())?]),
        Value::String(s) => Step::Made(Value::Int(i64::from(
            s.as_bytes()[index_arg(idx, s.len())?],
        ))),
        Value::Bytes(b) => Step::Made(Value::Int(i64::from(b[index_arg(idx, b.len())?]))),
        Value::Object(map) => match idx {
            Value::String(key) => map.get(&**key).map_or(Step::Nil, Step::Part),
            Value::Null => return Err("value is nil; should be of type string".to_owned()),
            other => {
                return Err(format!(
                    "value has type {}; should be string",
                    format::go_type(other)
                ));
            }
        },
        other => {
            return Err(format!(
                "can't index item of type {}",
                format::go_type(other)
            ));
        }
    })
}

fn index<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut cur = a[0].clone();
    if cur.value().is_null() {
        return Err("index of untyped nil".to_owned());
    }
    for idx in &a[1..] {
        cur = match &cur {
            Val::Ref(r) => {
                let r: &'a Value = r;
                match index_step(r, idx.value())? {
                    Step::Part(p) => Val::Ref(p),
                    Step::Made(v) => Val::Own(v),
                    Step::Nil => Val::Ref(&NULL),
                }
            }
            other => match index_step(other.value(), idx.value())? {
                Step::Part(p) => Val::Own(p.clone()),
                Step::Made(v) => Val::Own(v),
                Step::Nil => Val::Ref(&NULL),
            },
        };
    }
    Ok(cur)
}

fn print_w(a: &[Val<'_>], out: &mut Vec<u8>) -> Result<(), String> {
    format::sprint(out, values_of(a));
    Ok(())
}

fn print<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    print_w(a, &mut out)?;
    bytes_to_string(out)
}

fn println_w(a: &[Val<'_>], out: &mut Vec<u8>) -> Result<(), String> {
    format::sprintln(out, values_of(a));
    Ok(())
}

fn println<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    println_w(a, &mut out)?;
    bytes_to_string(out)
}

fn printf_w(a: &[Val<'_>], out: &mut Vec<u8>) -> Result<(), String> {
    format::sprintf(out, s(a, 0), &a[1..]);
    Ok(())
}

fn printf<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    printf_w(a, &mut out)?;
    bytes_to_string(out)
}

/// The text `html`, `js` and `urlquery` escape: `fmt.Sprint` of the arguments, with nil
/// arguments shown as `<no value>`.
fn escaper_input<'x>(a: &'x [Val<'_>]) -> Cow<'x, str> {
    if let [only] = a
        && let Value::String(s) = only.value()
    {
        return Cow::Borrowed(s);
    }
    let no_value = Value::string("<no value>");
    let mut out = Vec::new();
    format::sprint(
        &mut out,
        a.iter().map(|v| {
            if v.value().is_null() {
                &no_value
            } else {
                v.value()
            }
        }),
    );
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn html_w(a: &[Val<'_>], out: &mut Vec<u8>) -> Result<(), String> {
    format::html_escape(out, &escaper_input(a));
    Ok(())
}

fn html<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    html_w(a, &mut out)?;
    bytes_to_string(out)
}

fn js_w(a: &[Val<'_>], out: &mut Vec<u8>) -> Result<(), String> {
    format::js_escape(out, &escaper_input(a));
    Ok(())
}

fn js<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    js_w(a, &mut out)?;
    bytes_to_string(out)
}

fn urlquery_w(a: &[Val<'_>], out: &mut Vec<u8>) -> Result<(), String> {
    format::query_escape(out, &escaper_input(a));
    Ok(())
}

fn urlquery<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    urlquery_w(a, &mut out)?;
    bytes_to_string(out)
}

const INCOMPATIBLE: &str = "incompatible types for comparison";
const BAD_TYPE: &str = "invalid type for comparison";

/// Go's `eq` for one pair, lenient about ints against floats and able to compare lists and maps.
fn equal(x: &Value, y: &Value) -> Result<bool, String> {
    Ok(match (x, y) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Bool(p), Value::Bool(q)) => p == q,
        (Value::Int(p), Value::Int(q)) => p == q,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            x.as_f64() == y.as_f64()
        }
        (Value::String(p), Value::String(q)) => p == q,
        (Value::Array(_), Value::Array(_))
        | (Value::Object(_), Value::Object(_))
        | (Value::Bytes(_), Value::Bytes(_)) => x == y,
        _ => return Err(INCOMPATIBLE.to_owned()),
    })
}

fn eq<'a>(a: &[Val<'a>]) -> FR<'a> {
    if a.len() < 2 {
        return Err("missing argument for comparison".to_owned());
    }
    let first = a[0].value();
    for other in &a[1..] {
        if equal(first, other.value())? {
            return boolean(true);
        }
    }
    boolean(false)
}

fn ne<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(!equal(a[0].value(), a[1].value())?)
}

#[derive(PartialEq, Eq)]
enum Basic {
    Bool,
    Number,
    Str,
}

fn basic(v: &Value) -> Result<Basic, String> {
    match v {
        Value::Bool(_) => Ok(Basic::Bool),
        Value::Int(_) | Value::Float(_) => Ok(Basic::Number),
        Value::String(_) => Ok(Basic::Str),
        _ => Err(BAD_TYPE.to_owned()),
    }
}

fn less(x: &Value, y: &Value) -> Result<bool, String> {
    let (kx, ky) = (basic(x)?, basic(y)?);
    if kx != ky {
        return Err(INCOMPATIBLE.to_owned());
    }
    Ok(match (x, y) {
        (Value::Int(p), Value::Int(q)) => p < q,
        (Value::String(p), Value::String(q)) => p < q,
        (Value::Bool(_), _) => return Err(BAD_TYPE.to_owned()),
        _ => x.as_f64().unwrap_or(f64::NAN) < y.as_f64().unwrap_or(f64::NAN),
    })
}

fn less_or_equal(x: &Value, y: &Value) -> Result<bool, String> {
    if less(x, y)? {
        return Ok(true);
    }
    equal(x, y)
}

fn lt<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(less(a[0].value(), a[1].value())?)
}

fn le<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(less_or_equal(a[0].value(), a[1].value())?)
}

fn gt<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(!less_or_equal(a[0].value(), a[1].value())?)
}

fn ge<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(!less(a[0].value(), a[1].value())?)
}

// ---------------------------------------------------------------------------------------------
// eKuiper

fn base64<'a>(a: &[Val<'a>]) -> FR<'a> {
    let text: Cow<'_, [u8]> = match a[0].value() {
        Value::Null => return Err("based64 error for nil".to_owned()),
        Value::Bool(b) => Cow::Borrowed(if *b { b"true" } else { b"false" }),
        Value::Int(i) => Cow::Owned(i.to_string().into_bytes()),
        Value::Float(f) => {
            let mut out = Vec::new();
            format::append_float(&mut out, *f, b'f', -1);
            Cow::Owned(out)
        }
        Value::String(s) => Cow::Borrowed(s.as_bytes()),
        v @ Value::Object(_) => {
            let mut out = Vec::new();
            json::write_value(&mut out, v);
            Cow::Owned(out)
        }
        other => {
            return Err(format!(
                "Unsupported data type {} for base64 function.",
                format::go_kind(other)
            ));
        }
    };
    string(oort_value::base64::encode(&text))
}
