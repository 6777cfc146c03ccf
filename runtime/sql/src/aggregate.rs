//! Aggregate functions: computed over the rows of one group of one window.
//!
//! They follow eKuiper's semantics (nulls are skipped, an empty group gives `NULL`,
//! `percentile_cont` uses eKuiper's midpoint rule), with one deliberate difference: eKuiper
//! reads every JSON number as a float, so its `avg` of JSON data is a float, and Oort, which keeps
//! whole numbers as integers, makes `avg` a float too rather than dividing integers.

use std::collections::HashSet;
use std::sync::Arc;

use super::expr::{BinOp, EvalCtx, EvalError, Expr, Scope, binary};
use crate::value::{Map, Value};

/// The aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// `count(*)`: rows.
    CountStar,
    /// `count(x)`: rows where `x` is not null.
    Count,
    /// `sum(x)`.
    Sum,
    /// `avg(x)` (a float).
    Avg,
    /// `min(x)`: numbers or strings.
    Min,
    /// `max(x)`: numbers or strings.
    Max,
    /// `collect(x)`: every value, nulls included; `collect(*)` the rows.
    Collect,
    /// `last_value(x, ignoreNull)`.
    LastValue,
    /// `deduplicate(x, all)`: the last row if its `x` is new in the window (or every first
    /// occurrence with `all`).
    Deduplicate,
    /// `median(x)`.
    Median,
    /// `stddev(x)`: population standard deviation.
    Stddev,
    /// `stddevs(x)`: sample standard deviation.
    Stddevs,
    /// `var(x)`: population variance.
    Var,
    /// `vars(x)`: sample variance.
    Vars,
    /// `percentile_cont(x, p)`.
    PercentileCont,
    /// `percentile_disc(x, p)`.
    PercentileDisc,
    /// `merge_agg(x)`: the objects merged, later rows winning (`null` when there is no object);
    /// `merge_agg(*)` merges the rows.
    MergeAgg,
}

impl AggFunc {
    /// The function named `name`, with its argument counts.
    pub fn lookup(name: &str) -> Option<(Self, usize, usize)> {
        Some(match name {
            "count" => (Self::Count, 1, 1),
            "sum" => (Self::Sum, 1, 1),
            "avg" => (Self::Avg, 1, 1),
            "min" => (Self::Min, 1, 1),
            "max" => (Self::Max, 1, 1),
            "collect" => (Self::Collect, 1, 1),
            "last_value" => (Self::LastValue, 2, 2),
            "deduplicate" => (Self::Deduplicate, 1, 2),
            "median" => (Self::Median, 1, 1),
            "stddev" => (Self::Stddev, 1, 1),
            "stddevs" => (Self::Stddevs, 1, 1),
            "var" => (Self::Var, 1, 1),
            "vars" => (Self::Vars, 1, 1),
            "percentile_cont" => (Self::PercentileCont, 2, 2),
            "percentile_disc" => (Self::PercentileDisc, 2, 2),
            "merge_agg" => (Self::MergeAgg, 1, 1),
            _ => return None,
        })
    }

    /// Every aggregate's SQL name, for documentation.
    pub const NAMES: &'static [&'static str] = &[
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "collect",
        "last_value",
        "deduplicate",
        "median",
        "stddev",
        "stddevs",
        "var",
        "vars",
        "percentile_cont",
        "percentile_disc",
        "merge_agg",
    ];
}

/// One aggregate call in a statement: the function and its argument expressions (evaluated on
/// every row of the group). `star` is set for `count(*)`, `collect(*)` and `merge_agg(*)`.
#[derive(Debug, Clone)]
pub struct AggCall {
    /// The function.
    pub func: AggFunc,
    /// Its arguments.
    pub args: Vec<Expr>,
    /// Whether the first argument was `*`.
    pub star: bool,
    /// With `*`: the fields `* EXCEPT(...)` leaves out of each row.
    pub except: Vec<Arc<str>>,
}

/// An aggregate's error: `func: message` in Oort's words, and as eKuiper's valuer frames a
/// function's failure, `call func <func> error: ...`.
fn err(func: &str, message: impl std::fmt::Display) -> EvalError {
    EvalError::worded(
        format!("{func}: {message}"),
        format!("call func {func} error: {message}"),
    )
}

/// An aggregate's error with eKuiper's own text for it (`requires int but found string(x)`).
fn err_worded(
    func: &str,
    message: impl std::fmt::Display,
    ekuiper: impl std::fmt::Display,
) -> EvalError {
    EvalError::worded(
        format!("{func}: {message}"),
        format!("call func {func} error: {ekuiper}"),
    )
}

/// eKuiper's text for a value `sum`, `avg`, `min` or `max` cannot take, which depends on the
/// kind of the group's first value (`first`; `None` when `v` is the first): eKuiper computes
/// over whole numbers, floats or strings after the first value that is not null.
fn refused(func: &str, first: Option<&Value>, v: &Value) -> String {
    use crate::wording::go_typed;
    let extreme = matches!(func, "min" | "max");
    match first {
        None if extreme => format!("found invalid arg {}", go_typed(v)),
        None => format!(
            "run {func} function error: found invalid arg {}",
            go_typed(v)
        ),
        Some(Value::Int(_)) if extreme => format!("requires int64 but found {}", go_typed(v)),
        Some(Value::Int(_)) => format!("requires int but found {}", go_typed(v)),
        Some(Value::String(_)) => format!("requires string but found {}", go_typed(v)),
        Some(_) => format!("requires float64 but found {}", go_typed(v)),
    }
}

impl AggCall {
    /// Computes the aggregate over the members of a group.
    pub fn compute<S: Scope>(&self, members: &[S], ctx: &EvalCtx<'_>) -> Result<Value, EvalError> {
        use AggFunc::*;
        if members.is_empty() {
            // As eKuiper: a count over no rows is 0, anything else null.
            return Ok(match self.func {
                CountStar | Count => Value::Int(0),
                _ => Value::Null,
            });
        }
        match self.func {
            CountStar => return Ok(Value::Int(members.len() as i64)),
            Collect if self.star => {
                return Ok(Value::array(
                    members.iter().map(|m| self.star_object(m)).collect(),
                ));
            }
            MergeAgg if self.star => {
                return Ok(merge(
                    members
                        .iter()
                        .map(|m| self.star_object(m))
                        .collect::<Vec<_>>()
                        .iter(),
                ));
            }
            Deduplicate => return self.deduplicate(members, ctx),
            Count | Sum | Avg | Min | Max => return self.fold(members, ctx),
            _ => {}
        }
        let values = members
            .iter()
            .map(|m| self.args[0].eval(m, ctx))
            .collect::<Result<Vec<_>, _>>()?;
        let present = || values.iter().filter(|v| !v.is_null());
        Ok(match self.func {
            Collect => Value::array(values),
            LastValue => {
                // As eKuiper: the first row's value that is not null says.
                let mut ignore_null = Value::Null;
                if let Some(e) = self.args.get(1) {
                    for m in members {
                        ignore_null = e.eval(m, ctx)?;
                        if !ignore_null.is_null() {
                            break;
                        }
                    }
                }
                let Value::Bool(ignore_null) = ignore_null else {
                    return Err(err(
                        "last_value",
                        format!("the second parameter requires bool but found {ignore_null}"),
                    ));
                };
                let mut it = values.iter().rev();
                let found = if ignore_null {
                    it.find(|v| !v.is_null())
                } else {
                    it.next()
                };
                found.cloned().unwrap_or(Value::Null)
            }
            Median => median(present(), "median")?,
            Stddev | Stddevs | Var | Vars => {
                let xs = numbers(present(), "stddev")?;
                let sample = matches!(self.func, Stddevs | Vars);
                match variance(&xs, sample) {
                    None => Value::Null,
                    Some(v) if matches!(self.func, Stddev | Stddevs) => Value::Float(v.sqrt()),
                    Some(v) => Value::Float(v),
                }
            }
            PercentileCont | PercentileDisc => {
                let p = self.args[1]
                    .eval(&members[0], ctx)?
                    .as_f64()
                    .ok_or_else(|| err("percentile", "the fraction must be a number"))?;
                if !(p > 0.0 && p <= 1.0) {
                    return Err(err(
                        "percentile",
                        format!("the fraction must be in (0, 1], got {p}"),
                    ));
                }
                let mut xs = numbers(present(), "percentile")?;
                xs.sort_by(f64::total_cmp);
                if xs.is_empty() {
                    Value::Null
                } else if self.func == PercentileDisc {
                    let rank = (xs.len() as f64 * p).ceil() as usize;
                    Value::Float(xs[rank.clamp(1, xs.len()) - 1])
                } else {
                    percentile_cont(&xs, p)?
                }
            }
            MergeAgg => merge(present()),
            CountStar | Count | Sum | Avg | Min | Max | Deduplicate => Value::Null,
        })
    }

    /// What `*` stands for in a member: its fields, less those of `* EXCEPT(...)`.
    fn star_object<S: Scope>(&self, member: &S) -> Value {
        let object = row_object(member);
        match object {
            Value::Object(map) if !self.except.is_empty() => {
                let mut map = (*map).clone();
                map.retain(|k, _| !self.except.iter().any(|e| e.eq_ignore_ascii_case(k)));
                Value::object(map)
            }
            other => other,
        }
    }

    /// count, sum, avg, min and max in one pass over the members, without collecting the values.
    fn fold<S: Scope>(&self, members: &[S], ctx: &EvalCtx<'_>) -> Result<Value, EvalError> {
        let mut acc = Acc::new(self).expect("count, sum, avg, min and max fold");
        for member in members {
            acc.add(self, member, ctx)?;
        }
        Ok(acc.finish())
    }

    fn deduplicate<S: Scope>(&self, members: &[S], ctx: &EvalCtx<'_>) -> Result<Value, EvalError> {
        let all = match self.args.get(1) {
            Some(e) => e.eval(&members[0], ctx)?.is_true(),
            None => false,
        };
        let mut seen = HashSet::new();
        let mut firsts = Vec::new();
        let mut last_is_new = false;
        for member in members {
            let key = self.args[0].eval(member, ctx)?.to_text();
            last_is_new = seen.insert(key);
            if last_is_new {
                firsts.push(row_object(member));
            }
        }
        Ok(if all {
            Value::array(firsts)
        } else if last_is_new {
            row_object(&members[members.len() - 1])
        } else {
            Value::Null
        })
    }
}

/// The running state of an aggregate that can be computed one row at a time (`count`, `sum`,
/// `avg`, `min`, `max`): the same answers and errors as computing it over the whole group, with
/// memory for one value instead of every row.
#[derive(Debug, Clone)]
pub enum Acc {
    /// `count(*)`: rows.
    Rows(i64),
    /// `count(x)`: non-null values.
    Count(i64),
    /// `sum(x)`.
    Sum(Option<Value>),
    /// `avg(x)`: total and count, and whether the first value was a whole number (eKuiper's
    /// error texts depend on it).
    Avg(f64, i64, bool),
    /// `min(x)` or `max(x)`: the best value so far.
    Extreme(Option<Value>),
}

impl Acc {
    /// The state for `call`, or `None` when it needs the whole group.
    pub fn new(call: &AggCall) -> Option<Self> {
        Some(match call.func {
            AggFunc::CountStar => Self::Rows(0),
            AggFunc::Count => Self::Count(0),
            AggFunc::Sum => Self::Sum(None),
            AggFunc::Avg => Self::Avg(0.0, 0, false),
            AggFunc::Min | AggFunc::Max => Self::Extreme(None),
            _ => return None,
        })
    }

    /// Adds one member of the group. Nulls are skipped.
    pub fn add<S: Scope>(
        &mut self,
        call: &AggCall,
        member: &S,
        ctx: &EvalCtx<'_>,
    ) -> Result<(), EvalError> {
        if let Self::Rows(n) = self {
            *n += 1;
            return Ok(());
        }
        // Borrowed where it is (a column): only a value kept is copied.
        let v = call.args[0].operand(member, ctx)?;
        let v: &Value = &v;
        if v.is_null() {
            return Ok(());
        }
        match self {
            Self::Rows(_) => {}
            Self::Count(n) => *n += 1,
            Self::Avg(total, n, whole) => {
                let Some(x) = v.as_f64() else {
                    // Only the first value's kind matters to the text.
                    let kind = if *whole {
                        Value::Int(0)
                    } else {
                        Value::Float(0.0)
                    };
                    let first = (*n > 0).then_some(kind);
                    return Err(err_worded(
                        "avg",
                        format!("expected numbers, got {} {}", v.type_name(), v.to_text()),
                        refused("avg", first.as_ref(), v),
                    ));
                };
                if *n == 0 {
                    *whole = matches!(v, Value::Int(_));
                }
                *total += x;
                *n += 1;
            }
            Self::Sum(acc) => {
                if v.as_f64().is_none() {
                    return Err(err_worded(
                        "sum",
                        format!("expected numbers, got {}", v.type_name()),
                        refused("sum", acc.as_ref(), v),
                    ));
                }
                *acc = Some(match acc.take() {
                    None => v.clone(),
                    Some(t) => binary(BinOp::Add, &t, v)?,
                });
            }
            Self::Extreme(best) => {
                let (name, better) = if call.func == AggFunc::Min {
                    ("min", BinOp::Lt)
                } else {
                    ("max", BinOp::Gt)
                };
                match best {
                    None => {
                        if !matches!(v, Value::Int(_) | Value::Float(_) | Value::String(_)) {
                            return Err(err_worded(
                                name,
                                format!("expected numbers or strings, got {}", v.type_name()),
                                refused(name, None, v),
                            ));
                        }
                        *best = Some(v.clone());
                    }
                    Some(b)
                        if matches!(b, Value::String(_)) != matches!(v, Value::String(_))
                            || !matches!(v, Value::Int(_) | Value::Float(_) | Value::String(_)) =>
                    {
                        return Err(err_worded(
                            name,
                            format!("cannot compare {} with {}", v.type_name(), b.type_name()),
                            refused(name, Some(b), v),
                        ));
                    }
                    Some(b) => {
                        if binary(better, v, b).map_err(|e| err(name, e))?.is_true() {
                            *best = Some(v.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The aggregate's value.
    pub fn finish(&self) -> Value {
        match self {
            Self::Rows(n) | Self::Count(n) => Value::Int(*n),
            Self::Avg(_, 0, _) => Value::Null,
            Self::Avg(total, n, _) => Value::Float(total / *n as f64),
            Self::Sum(v) | Self::Extreme(v) => v.clone().unwrap_or(Value::Null),
        }
    }
}

/// `merge_agg`: the objects' fields, a later object's winning; values that are not objects are
/// skipped, and nothing to merge is `null` (as eKuiper).
fn merge<'a>(values: impl Iterator<Item = &'a Value>) -> Value {
    let mut merged = Map::new();
    for v in values {
        if let Value::Object(map) = v {
            for (k, v) in map.iter() {
                merged.insert(Arc::clone(k), v.clone());
            }
        }
    }
    if merged.is_empty() {
        Value::Null
    } else {
        Value::object(merged)
    }
}

fn row_object<S: Scope>(s: &S) -> Value {
    let mut map = Map::new();
    s.fields(None, &mut |k, v| {
        map.entry(Arc::clone(k)).or_insert_with(|| v.clone());
    });
    Value::object(map)
}

fn numbers<'a>(values: impl Iterator<Item = &'a Value>, func: &str) -> Result<Vec<f64>, EvalError> {
    values
        .map(|v| {
            v.as_f64().ok_or_else(|| {
                err(
                    func,
                    format!("expected numbers, got {} {}", v.type_name(), v.to_text()),
                )
            })
        })
        .collect()
}

fn median<'a>(values: impl Iterator<Item = &'a Value>, func: &str) -> Result<Value, EvalError> {
    let mut xs: Vec<&Value> = values.collect();
    if xs.is_empty() {
        return Ok(Value::Null);
    }
    for x in &xs {
        if x.as_f64().is_none() {
            return Err(err(
                func,
                format!("expected numbers, got {}", x.type_name()),
            ));
        }
    }
    xs.sort_by(|a, b| {
        a.as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b.as_f64().unwrap_or(0.0))
    });
    let n = xs.len();
    Ok(if n % 2 == 1 {
        xs[n / 2].clone()
    } else {
        let (a, b) = (
            xs[n / 2 - 1].as_f64().unwrap_or(0.0),
            xs[n / 2].as_f64().unwrap_or(0.0),
        );
        Value::Float((a + b) / 2.0)
    })
}

fn variance(xs: &[f64], sample: bool) -> Option<f64> {
    let n = xs.len();
    if n == 0 || (sample && n < 2) {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let squares = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>();
    Some(squares / if sample { (n - 1) as f64 } else { n as f64 })
}

/// eKuiper's `percentile_cont`: index `p·n`; a whole index takes that element, otherwise the mean
/// of the two elements around it.
fn percentile_cont(sorted: &[f64], p: f64) -> Result<Value, EvalError> {
    let index = p * sorted.len() as f64;
    if index.fract() == 0.0 {
        let i = index as usize;
        return Ok(Value::Float(sorted[i.clamp(1, sorted.len()) - 1]));
    }
    if index < 1.0 {
        return Err(err(
            "percentile_cont",
            format!("the fraction {p} is too small for {} values", sorted.len()),
        ));
    }
    let i = index.floor() as usize;
    let upper = sorted[i.min(sorted.len() - 1)];
    Ok(Value::Float((sorted[i - 1] + upper) / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Column;
    use crate::value::Row;

    fn rows(values: &[Value]) -> Vec<Row> {
        values
            .iter()
            .map(|v| Row::from_pairs(vec![(Arc::from("x"), v.clone())], 0))
            .collect()
    }

    fn call(func: AggFunc, extra: Vec<Expr>) -> AggCall {
        let mut args = vec![Expr::Column(Column::new(None, Arc::from("x")))];
        args.extend(extra);
        AggCall {
            func,
            args,
            star: false,
            except: Vec::new(),
        }
    }

    fn run(func: AggFunc, values: &[Value], extra: Vec<Expr>) -> Value {
        let ctx = EvalCtx {
            now_ms: 0,
            meta: &Value::Null,
        };
        call(func, extra).compute(&rows(values), &ctx).unwrap()
    }

    #[test]
    fn counts_sums_and_averages_skip_nulls() {
        let xs = [Value::Int(1), Value::Null, Value::Int(4), Value::Float(2.5)];
        assert_eq!(run(AggFunc::Count, &xs, vec![]), Value::Int(3));
        assert_eq!(run(AggFunc::Sum, &xs, vec![]), Value::Float(7.5));
        assert_eq!(
            run(AggFunc::Sum, &[Value::Int(2), Value::Int(3)], vec![]),
            Value::Int(5)
        );
        assert_eq!(
            run(AggFunc::Avg, &[Value::Int(1), Value::Int(2)], vec![]),
            Value::Float(1.5)
        );
        assert_eq!(run(AggFunc::Min, &xs, vec![]), Value::Int(1));
        assert_eq!(run(AggFunc::Max, &xs, vec![]), Value::Int(4));
        assert_eq!(run(AggFunc::Max, &[Value::Null], vec![]), Value::Null);
        let ctx = EvalCtx {
            now_ms: 0,
            meta: &Value::Null,
        };
        let empty: Vec<Row> = Vec::new();
        assert_eq!(
            call(AggFunc::Sum, vec![]).compute(&empty, &ctx).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn statistics_match_ekuiper() {
        let xs: Vec<Value> = [100, 150, 200].into_iter().map(Value::Int).collect();
        let p = |f| vec![Expr::Literal(Value::Float(f))];
        assert_eq!(
            run(AggFunc::PercentileCont, &xs, p(0.5)),
            Value::Float(125.0)
        );
        assert_eq!(
            run(AggFunc::PercentileDisc, &xs, p(0.5)),
            Value::Float(150.0)
        );
        assert_eq!(run(AggFunc::Median, &xs, vec![]), Value::Int(150));
        assert_eq!(
            run(AggFunc::Median, &[Value::Int(1), Value::Int(2)], vec![]),
            Value::Float(1.5)
        );
        let four: Vec<Value> = [2, 4, 4, 6].into_iter().map(Value::Int).collect();
        assert_eq!(run(AggFunc::Var, &four, vec![]), Value::Float(2.0));
        assert_eq!(
            run(AggFunc::Stddev, &four, vec![]),
            Value::Float(2f64.sqrt())
        );
        assert_eq!(run(AggFunc::Vars, &four, vec![]), Value::Float(8.0 / 3.0));
    }

    #[test]
    fn last_value_and_deduplicate() {
        let xs = [Value::Int(1), Value::Int(2), Value::Null];
        let yes = vec![Expr::Literal(Value::Bool(true))];
        let no = vec![Expr::Literal(Value::Bool(false))];
        assert_eq!(run(AggFunc::LastValue, &xs, yes.clone()), Value::Int(2));
        assert_eq!(run(AggFunc::LastValue, &xs, no.clone()), Value::Null);
        let dup = [Value::Int(1), Value::Int(2), Value::Int(1)];
        assert_eq!(run(AggFunc::Deduplicate, &dup, no.clone()), Value::Null);
        let all = run(AggFunc::Deduplicate, &dup, yes);
        assert!(
            matches!(all, Value::Array(ref a) if a.len() == 2),
            "{all:?}"
        );
        let fresh = run(AggFunc::Deduplicate, &[Value::Int(1), Value::Int(2)], no);
        assert_eq!(fresh.field("x"), Some(&Value::Int(2)));
    }

    #[test]
    fn type_errors_name_the_function() {
        let ctx = EvalCtx {
            now_ms: 0,
            meta: &Value::Null,
        };
        let e = call(AggFunc::Sum, vec![])
            .compute(&rows(&[Value::string("a")]), &ctx)
            .unwrap_err();
        assert!(e.message().starts_with("sum:"), "{e}");
    }
}
