//! Scalar functions callable from SQL: the registry the compiler resolves names against.
//!
//! Every function is a plain Rust `fn` over already evaluated arguments. Names are matched
//! case-insensitively, as eKuiper does. Aggregates live elsewhere: they run over a group of
//! rows, not over one row's values.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::value::Value;

mod args;
mod array;
mod compress;
mod convert;
mod datetime;
mod hash;
mod jsonpath;
mod math;
mod misc;
mod object;
mod string;
mod timefmt;

/// What a function may see of the row it is evaluated on, beyond its arguments.
#[derive(Debug, Clone, Copy)]
pub struct FnCtx<'a> {
    /// The processing time of the evaluation, in milliseconds since the Unix epoch. Functions
    /// such as `now()` read it from here so that tests are deterministic.
    pub now_ms: i64,
    /// The row's metadata (an object value, or `Null` when the source gives none), for `meta()`.
    pub meta: &'a Value,
    /// The row's event (or arrival) time in milliseconds, for `event_time()`; for a window's
    /// group or a joined tuple in a window, the window's end (as eKuiper).
    pub timestamp_ms: i64,
}

/// A function failed on its arguments; the message names the function and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FnError(pub String);

impl FnError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The signature every scalar function has.
pub type ScalarFn = fn(&FnCtx<'_>, &[Value]) -> Result<Value, FnError>;

/// A scalar function's entry in the registry.
#[derive(Debug)]
pub struct ScalarDef {
    /// The lower-case name SQL calls it by.
    pub name: &'static str,
    /// Fewest arguments.
    pub min_args: usize,
    /// Most arguments; `None` for variadic functions.
    pub max_args: Option<usize>,
    /// The implementation.
    pub call: ScalarFn,
    /// The group it is listed under in the documentation (math, string, ...).
    pub category: &'static str,
    /// One line for the documentation table: the signature and what it returns.
    pub doc: &'static str,
}

impl ScalarDef {
    /// A registry entry (used by the function modules to keep their tables short).
    pub const fn new(
        category: &'static str,
        name: &'static str,
        min_args: usize,
        max_args: Option<usize>,
        call: ScalarFn,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            min_args,
            max_args,
            call,
            category,
            doc,
        }
    }

    /// True when `n` arguments are acceptable.
    pub fn accepts(&self, n: usize) -> bool {
        n >= self.min_args && self.max_args.is_none_or(|max| n <= max)
    }
}

struct Registry {
    by_name: HashMap<&'static str, &'static ScalarDef>,
    sorted: Vec<&'static ScalarDef>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let tables: [&'static [ScalarDef]; 11] = [
        math::DEFS,
        string::DEFS,
        convert::DEFS,
        hash::DEFS,
        datetime::DEFS,
        misc::DEFS,
        array::DEFS,
        object::DEFS,
        convert::JSON_DEFS,
        jsonpath::DEFS,
        compress::DEFS,
    ];
    let mut sorted: Vec<&'static ScalarDef> = tables.iter().flat_map(|t| t.iter()).collect();
    sorted.sort_by(|a, b| (a.category, a.name).cmp(&(b.category, b.name)));
    let by_name = sorted.iter().map(|d| (d.name, *d)).collect();
    Registry { by_name, sorted }
});

/// Checks a JSONPath given as a constant to one of the `json_path_*` functions, so that a bad
/// path is refused when the rule is compiled rather than on every row.
pub(crate) fn check_json_path(path: &str) -> Result<(), String> {
    jsonpath::parse(path).map(|_| ())
}

/// Checks the type given as a constant to `cast`, so that an unknown type is refused when the
/// rule is compiled (as eKuiper's validation does) rather than on every row.
pub(crate) fn check_cast_type(name: &str) -> Result<(), String> {
    if convert::is_cast_type(name) {
        Ok(())
    } else {
        Err(convert::CAST_TYPES.to_string())
    }
}

/// Checks a literal given as argument `i` (0-based) of `name`, as eKuiper's validation does
/// when a rule is created: a number function refuses a string or boolean literal, a bitwise
/// one also a float, `format` wants an integer count of decimals and a string locale, a
/// date/time function takes no literal datetime (`hour('2019-01-01 01:00:00')`), and a key of
/// `object_construct` is no number or boolean. The message is eKuiper's (`Expect number - float
/// or int type for parameter 1`).
pub(crate) fn check_literal_arg(name: &str, i: usize, v: &Value) -> Result<(), String> {
    let refused = |expect: &str| Err(format!("Expect {expect} type for parameter {}", i + 1));
    let textual = matches!(v, Value::String(_) | Value::Bool(_));
    match name {
        "bitand" | "bitor" | "bitxor" | "bitnot" if textual || matches!(v, Value::Float(_)) => {
            refused("int")
        }
        "format" if i == 1 && !matches!(v, Value::Int(_)) => refused("integer"),
        "format" if i == 2 && !matches!(v, Value::String(_)) => refused("string"),
        "delay" if i == 0 && textual => refused("number - float or int"),
        "conv" | "rand" | "pi" => Ok(()),
        // eKuiper's date/time validation: no number, string or boolean literal where a datetime
        // goes (a datetime comes from a field or another function), and from_days and
        // from_unix_time take no literal at all.
        "format_time" | "date_calc" | "date_diff" | "day_name" | "day_of_month" | "day"
        | "day_of_week" | "day_of_year" | "hour" | "last_day" | "microsecond" | "minute"
        | "month" | "month_name" | "second"
            if i == 0 || (name == "date_diff" && i == 1) =>
        {
            refused("datetime")
        }
        "format_time" if i == 1 && !matches!(v, Value::String(_)) => refused("string"),
        "date_calc" if i == 1 && !matches!(v, Value::String(_)) => refused("string"),
        "from_days" | "from_unix_time" => refused("int"),
        "now" | "current_timestamp" | "local_time" | "local_timestamp" | "cur_time"
        | "current_time"
            if !matches!(v, Value::Int(_)) =>
        {
            refused("int")
        }
        "object_construct"
            if i.is_multiple_of(2)
                && matches!(v, Value::Int(_) | Value::Float(_) | Value::Bool(_)) =>
        {
            refused("string")
        }
        _ if textual && lookup(name).is_some_and(|d| d.category == "math") => {
            refused("number - float or int")
        }
        _ => Ok(()),
    }
}

/// The function called `name`, matched case-insensitively.
pub fn lookup(name: &str) -> Option<&'static ScalarDef> {
    let registry = &*REGISTRY;
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        registry
            .by_name
            .get(name.to_ascii_lowercase().as_str())
            .copied()
    } else {
        registry.by_name.get(name).copied()
    }
}

/// Every function, sorted by category and then name.
pub fn all() -> impl Iterator<Item = &'static ScalarDef> {
    REGISTRY.sorted.iter().copied()
}

/// The documentation table of every function, as Markdown: one row per function, in the order
/// of [`all`].
pub fn markdown_table() -> String {
    let mut out = String::from("| function | category | description |\n| --- | --- | --- |\n");
    for def in all() {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            def.name,
            def.category,
            def.doc.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lowercase_and_documented() {
        let mut seen = std::collections::HashSet::new();
        for def in all() {
            assert!(seen.insert(def.name), "duplicate function {}", def.name);
            assert_eq!(def.name, def.name.to_ascii_lowercase());
            assert!(
                def.doc.starts_with(&format!("{}(", def.name)),
                "doc of {} must open with its signature",
                def.name
            );
            assert!(def.max_args.is_none_or(|max| max >= def.min_args));
            assert!(!def.doc.contains('\n'));
        }
        assert!(seen.len() > 100);
    }

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(lookup("ABS").map(|d| d.name), Some("abs"));
        assert_eq!(lookup("Concat").map(|d| d.name), Some("concat"));
        assert!(lookup("count").is_none());
        assert!(lookup("").is_none());
        assert!(lookup("ABSX").is_none());
    }

    #[test]
    fn all_is_sorted_by_category_then_name() {
        let list: Vec<_> = all().map(|d| (d.category, d.name)).collect();
        let mut sorted = list.clone();
        sorted.sort();
        assert_eq!(list, sorted);
    }

    #[test]
    fn arity_check() {
        let round = lookup("round").unwrap();
        assert!(round.accepts(1) && round.accepts(2));
        assert!(!round.accepts(0) && !round.accepts(3));
        assert!(lookup("concat").unwrap().accepts(40));
    }

    #[test]
    fn literal_arguments_are_checked_as_ekuiper_validates_them() {
        let s = Value::from("1");
        assert_eq!(
            check_literal_arg("round", 0, &s).unwrap_err(),
            "Expect number - float or int type for parameter 1"
        );
        assert!(check_literal_arg("round", 1, &Value::Int(2)).is_ok());
        assert_eq!(
            check_literal_arg("bitand", 1, &Value::Float(1.5)).unwrap_err(),
            "Expect int type for parameter 2"
        );
        assert!(check_literal_arg("conv", 0, &s).is_ok());
        assert_eq!(
            check_literal_arg("format", 1, &s).unwrap_err(),
            "Expect integer type for parameter 2"
        );
        assert!(check_literal_arg("format", 2, &Value::from("en_US")).is_ok());
        assert!(check_literal_arg("concat", 0, &Value::Bool(true)).is_ok());
        assert_eq!(
            check_literal_arg("delay", 0, &s).unwrap_err(),
            "Expect number - float or int type for parameter 1"
        );
        assert!(check_literal_arg("delay", 1, &s).is_ok());
    }

    #[test]
    fn markdown_table_has_a_row_per_function() {
        let table = markdown_table();
        assert!(table.starts_with("| function | category | description |\n| --- |"));
        assert_eq!(table.lines().count(), all().count() + 2);
        assert!(table.contains("| `abs` | math | abs(x): "));
    }

    #[test]
    fn every_function_survives_hostile_arguments_and_names_itself_in_errors() {
        let meta = Value::Null;
        let ctx = FnCtx {
            now_ms: 1_700_000_000_000,
            meta: &meta,
            timestamp_ms: 0,
        };
        let samples = [
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Int(-1),
            Value::Int(0),
            Value::Int(i64::MAX),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(-1e300),
            Value::Float(0.5),
            Value::from(""),
            Value::from("(("),
            Value::from("é-\u{0}x"),
            Value::from("2019-01-01 00:00:00"),
            Value::Bytes(std::sync::Arc::from(&[0xffu8, 0, 0x80][..])),
            Value::array(vec![]),
            Value::array(vec![Value::Null, Value::Int(1), Value::from("a")]),
            Value::object(Default::default()),
        ];
        for def in all() {
            // Functions whose cost grows with an argument get small numbers only.
            let max = def.max_args.unwrap_or(def.min_args + 2).min(4);
            for n in def.min_args..=max {
                let mut idx = vec![0usize; n];
                let combos = samples.len().pow(n.min(3) as u32);
                for c in 0..combos {
                    let mut rest = c;
                    for slot in idx.iter_mut() {
                        *slot = rest % samples.len();
                        rest /= samples.len();
                    }
                    let args: Vec<Value> = idx.iter().map(|&i| samples[i].clone()).collect();
                    // `delay` sleeps for its first argument: its own tests cover it.
                    if def.name == "delay" && args[0].as_f64().is_some_and(|ms| ms >= 1.0) {
                        continue;
                    }
                    if let Err(e) = (def.call)(&ctx, &args) {
                        assert!(
                            e.0.starts_with(&format!("{}: ", def.name)),
                            "error of {} does not name it: {}",
                            def.name,
                            e.0
                        );
                    }
                }
            }
        }
    }
}
