//! eKuiper's analytic and state functions: calls that remember earlier rows.
//!
//! Analytic functions (`lag`, `latest`, `changed_col`, `had_changed`, `acc_*`) run on every row
//! as it enters the statement, before `WHERE` and the window, as in eKuiper. Each call site
//! keeps its own state, one per `OVER (PARTITION BY ...)` key; `OVER (WHEN cond)` decides
//! whether a row updates that state. The runner stores each call's result in a hidden field of
//! the row (a name starting with [`HIDDEN_PREFIX`]) that the rest of the statement reads like a
//! column and that `*` never shows.
//!
//! The state functions read what the rule last did: `last_hit_count()`/`last_hit_time()` how
//! many rows passed `WHERE` (or triggered `OVER (WHEN ...)` of a window) and the time of the
//! last one; `last_agg_hit_count()`/`last_agg_hit_time()` the same for windows that sent a
//! result. Every read during one row (one window) sees the values from before it.
//!
//! `changed_cols(prefix, ignore_null, cols...)` is a projection item: it spreads the columns
//! whose value changed since the previous row, each named `prefix` + its name.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::expr::{Column, EvalCtx, EvalError, Expr, Scope};
use crate::value::{Row, Schema, Value};

/// Field names starting with this are the statement's own (analytic results, state
/// snapshots): never part of `*`.
pub const HIDDEN_PREFIX: &str = "$$";

/// Whether `name` is a hidden field.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with(HIDDEN_PREFIX)
}

/// The hidden field holding the result of analytic call `slot`.
pub fn analytic_field(slot: usize) -> Arc<str> {
    Arc::from(format!("{HIDDEN_PREFIX}a{slot}"))
}

/// The hidden field `last_hit_count()` reads.
pub const HIT_COUNT: &str = "$$hit_count";
/// The hidden field `last_hit_time()` reads.
pub const HIT_TIME: &str = "$$hit_time";
/// The name `last_agg_hit_count()` reads in a window's groups.
pub const AGG_HIT_COUNT: &str = "$$agg_hit_count";
/// The name `last_agg_hit_time()` reads in a window's groups.
pub const AGG_HIT_TIME: &str = "$$agg_hit_time";

/// An analytic function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalyticFunc {
    /// `lag(expr[, offset[, default[, ignore_null]]])`: the value `offset` rows back.
    Lag,
    /// `latest(expr[, default])`: the latest non-null value.
    Latest,
    /// `changed_col(ignore_null, expr)`: the value when it changed, else null.
    ChangedCol,
    /// `had_changed(ignore_null, expr, ...)`: whether any value changed.
    HadChanged,
    /// `acc_sum(expr[, begin, reset])`.
    AccSum,
    /// `acc_min(expr[, begin, reset])`.
    AccMin,
    /// `acc_max(expr[, begin, reset])`.
    AccMax,
    /// `acc_count(expr[, begin, reset])`.
    AccCount,
    /// `acc_avg(expr[, begin, reset])`.
    AccAvg,
}

impl AnalyticFunc {
    /// The function called `name` (lower case), with its fewest and most arguments.
    pub fn lookup(name: &str) -> Option<(Self, usize, usize)> {
        Some(match name {
            "lag" => (Self::Lag, 1, 4),
            "latest" => (Self::Latest, 1, 2),
            "changed_col" => (Self::ChangedCol, 2, 2),
            "had_changed" => (Self::HadChanged, 2, usize::MAX),
            "acc_sum" => (Self::AccSum, 1, 3),
            "acc_min" => (Self::AccMin, 1, 3),
            "acc_max" => (Self::AccMax, 1, 3),
            "acc_count" => (Self::AccCount, 1, 3),
            "acc_avg" => (Self::AccAvg, 1, 3),
            _ => return None,
        })
    }

    fn is_acc(self) -> bool {
        matches!(
            self,
            Self::AccSum | Self::AccMin | Self::AccMax | Self::AccCount | Self::AccAvg
        )
    }

    /// The function's SQL name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lag => "lag",
            Self::Latest => "latest",
            Self::ChangedCol => "changed_col",
            Self::HadChanged => "had_changed",
            Self::AccSum => "acc_sum",
            Self::AccMin => "acc_min",
            Self::AccMax => "acc_max",
            Self::AccCount => "acc_count",
            Self::AccAvg => "acc_avg",
        }
    }
}

/// The state of one call for one partition: what a checkpoint keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub enum CallState {
    /// `lag`: the values taken so far, oldest first, at most `offset` of them; while fewer
    /// than `offset` were taken, the answer is `default`. Both are the partition's first row's:
    /// the queue grows with the rows, so a huge offset costs nothing up front.
    Lag {
        /// The values taken, oldest first.
        queue: VecDeque<Value>,
        /// How many rows back.
        offset: usize,
        /// The answer while fewer than `offset` were taken.
        default: Value,
    },
    /// `latest`, `changed_col`: the remembered value.
    Last(Value),
    /// `had_changed`: the remembered value of each argument.
    Each(Vec<Value>),
    /// `acc_*`: the accumulated value (`None` before the first), and whether an accumulation
    /// begun by `begin` is running.
    Acc {
        /// The accumulated value.
        value: Option<Acc>,
        /// Whether `begin` started an accumulation that `reset` has not ended.
        begun: bool,
    },
}

/// The value an `acc_*` call has accumulated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Acc {
    /// `acc_count`.
    Count(i64),
    /// `acc_sum`, `acc_min`, `acc_max`.
    Float(f64),
    /// `acc_avg`.
    Avg {
        /// The sum so far.
        sum: f64,
        /// The count so far.
        count: i64,
    },
}

/// One analytic call of the statement.
#[derive(Debug, Clone)]
pub struct AnalyticCall {
    /// The function.
    pub func: AnalyticFunc,
    /// Its arguments.
    pub args: Vec<Expr>,
    /// `OVER (PARTITION BY ...)`.
    pub partition: Vec<Expr>,
    /// `OVER (WHEN ...)`.
    pub when: Option<Expr>,
    state: HashMap<String, CallState>,
}

fn strict_eq(a: &Value, b: &Value) -> bool {
    // eKuiper compares with Go's deep equality: `1` and `1.0` differ.
    a.type_name() == b.type_name() && a == b
}

fn number(v: &Value) -> Result<f64, EvalError> {
    v.as_f64()
        .ok_or_else(|| EvalError::new("the value should be number".into()))
}

impl AnalyticCall {
    /// A call of `func`.
    pub fn new(
        func: AnalyticFunc,
        args: Vec<Expr>,
        partition: Vec<Expr>,
        when: Option<Expr>,
    ) -> Self {
        Self {
            func,
            args,
            partition,
            when,
            state: HashMap::new(),
        }
    }

    /// Its state, per partition key (sorted, so that equal states compare equal).
    pub fn state(&self) -> Vec<(String, CallState)> {
        let mut out: Vec<(String, CallState)> = self
            .state
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Replaces its state with one [`state`](Self::state) returned; an error names the
    /// partition whose state is not this function's.
    pub fn set_state(&mut self, state: Vec<(String, CallState)>) -> Result<(), String> {
        let name = self.func.name();
        for (key, s) in &state {
            let fits = match (self.func, s) {
                (AnalyticFunc::Lag, CallState::Lag { .. }) => true,
                (AnalyticFunc::Latest | AnalyticFunc::ChangedCol, CallState::Last(_)) => true,
                (AnalyticFunc::HadChanged, CallState::Each(values)) => {
                    values.len() == self.args.len().saturating_sub(1)
                }
                (f, CallState::Acc { value, .. }) if f.is_acc() => matches!(
                    (f, value),
                    (_, None)
                        | (AnalyticFunc::AccCount, Some(Acc::Count(_)))
                        | (AnalyticFunc::AccAvg, Some(Acc::Avg { .. }))
                        | (
                            AnalyticFunc::AccSum | AnalyticFunc::AccMin | AnalyticFunc::AccMax,
                            Some(Acc::Float(_))
                        )
                ),
                _ => false,
            };
            if !fits {
                return Err(format!(
                    "the state of partition `{key}` is not a state of `{name}`"
                ));
            }
        }
        self.state = state.into_iter().collect();
        Ok(())
    }

    /// Evaluates the call on `row`, updating its state.
    pub fn eval<S: Scope + ?Sized>(
        &mut self,
        row: &S,
        ctx: &EvalCtx<'_>,
    ) -> Result<Value, EvalError> {
        let args = self
            .args
            .iter()
            .map(|a| a.eval(row, ctx))
            .collect::<Result<Vec<_>, _>>()?;
        // A condition that is not a boolean lets the row through, as in eKuiper.
        let valid = match &self.when {
            Some(w) => !matches!(w.eval(row, ctx)?, Value::Bool(false)),
            None => true,
        };
        let key = if self.partition.is_empty() {
            String::from("self")
        } else {
            let mut key = String::new();
            for p in &self.partition {
                match p.eval(row, ctx)? {
                    Value::Null => key.push_str("<nil>"),
                    v => key.push_str(&v.to_text()),
                }
            }
            key
        };
        let name = self.func.name();
        match self.func {
            AnalyticFunc::Lag => {
                let offset = match args.get(1) {
                    None => 1,
                    Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                        EvalError::new(format!(
                            "lag: the offset must be a whole number ≥ 0, got {v}"
                        ))
                    })?,
                };
                let default = args.get(2).cloned().unwrap_or(Value::Null);
                let ignore_null = match args.get(3) {
                    None => true,
                    Some(Value::Bool(b)) => *b,
                    Some(v) => {
                        return Err(EvalError::new(format!(
                            "lag: the fourth argument must be a boolean, got {v}"
                        )));
                    }
                };
                let CallState::Lag {
                    queue,
                    offset,
                    default,
                } = self.state.entry(key).or_insert_with(|| CallState::Lag {
                    queue: VecDeque::new(),
                    offset: usize::try_from(offset).unwrap_or(usize::MAX),
                    default,
                })
                else {
                    unreachable!("lag keeps a queue");
                };
                let out = if *offset == 0 {
                    Value::Null
                } else if queue.len() < *offset {
                    default.clone()
                } else {
                    queue.front().cloned().unwrap_or(Value::Null)
                };
                if valid && (!ignore_null || !args[0].is_null()) {
                    if *offset == 0 {
                        // An offset of 0: the current value.
                        return Ok(args[0].clone());
                    }
                    queue.push_back(args[0].clone());
                    if queue.len() > *offset {
                        queue.pop_front();
                    }
                }
                Ok(out)
            }
            AnalyticFunc::Latest => {
                let CallState::Last(last) = self
                    .state
                    .entry(key)
                    .or_insert(CallState::Last(Value::Null))
                else {
                    unreachable!("latest keeps a value");
                };
                if valid && !args[0].is_null() {
                    *last = args[0].clone();
                    return Ok(last.clone());
                }
                Ok(if last.is_null() {
                    args.get(1).cloned().unwrap_or(Value::Null)
                } else {
                    last.clone()
                })
            }
            AnalyticFunc::ChangedCol => {
                let Value::Bool(ignore_null) = args[0] else {
                    return Err(EvalError::new(format!(
                        "{name}: the first argument must be a boolean, got {}",
                        args[0]
                    )));
                };
                if (ignore_null && args[1].is_null()) || !valid {
                    return Ok(Value::Null);
                }
                let CallState::Last(last) = self
                    .state
                    .entry(key)
                    .or_insert(CallState::Last(Value::Null))
                else {
                    unreachable!("changed_col keeps a value");
                };
                if strict_eq(&args[1], last) {
                    Ok(Value::Null)
                } else {
                    *last = args[1].clone();
                    Ok(args[1].clone())
                }
            }
            AnalyticFunc::HadChanged => {
                if !valid {
                    return Ok(Value::Bool(false));
                }
                let Value::Bool(ignore_null) = args[0] else {
                    return Err(EvalError::worded(
                        format!(
                            "{name}: the first argument must be a boolean, got {}",
                            args[0]
                        ),
                        format!("first arg is not a bool but got {}", args[0].to_text()),
                    ));
                };
                let n = args.len() - 1;
                let CallState::Each(last) = self
                    .state
                    .entry(key)
                    .or_insert_with(|| CallState::Each(vec![Value::Null; n]))
                else {
                    unreachable!("had_changed keeps values");
                };
                let mut changed = false;
                for (v, l) in args[1..].iter().zip(last.iter_mut()) {
                    if ignore_null && v.is_null() {
                        continue;
                    }
                    if !strict_eq(v, l) {
                        changed = true;
                        *l = v.clone();
                    }
                }
                Ok(Value::Bool(changed))
            }
            f if f.is_acc() => {
                let conditions = match (args.get(1), args.get(2)) {
                    (None, None) => None,
                    (Some(Value::Bool(b)), Some(Value::Bool(r))) => Some((*b, *r)),
                    _ => {
                        return Err(EvalError::new(format!(
                            "{name}: the begin and reset conditions must be booleans"
                        )));
                    }
                };
                let CallState::Acc { value, begun } =
                    self.state.entry(key).or_insert(CallState::Acc {
                        value: None,
                        begun: false,
                    })
                else {
                    unreachable!("acc keeps an accumulator");
                };
                match conditions {
                    None => {
                        if valid {
                            *value = accumulate(f, *value, &args[0])?;
                        }
                    }
                    Some((begin, reset)) => {
                        if !*begun {
                            *value = None;
                        }
                        if begin {
                            *begun = true;
                        }
                        if *begun && valid {
                            *value = accumulate(f, *value, &args[0])?;
                        }
                        if reset {
                            *begun = false;
                        }
                    }
                }
                Ok(match (f, *value) {
                    (AnalyticFunc::AccCount, None) => Value::Int(0),
                    (_, None) => Value::Float(0.0),
                    (_, Some(Acc::Count(n))) => Value::Int(n),
                    (_, Some(Acc::Float(x))) => Value::Float(x),
                    (_, Some(Acc::Avg { sum, count })) => Value::Float(sum / count as f64),
                })
            }
            _ => unreachable!("every analytic function is handled"),
        }
    }
}

/// One more value into an accumulator, as eKuiper's `acc_*` do: `acc_count` and `acc_sum` skip
/// nulls, `acc_min`/`acc_max`/`acc_avg` need a number.
fn accumulate(f: AnalyticFunc, acc: Option<Acc>, v: &Value) -> Result<Option<Acc>, EvalError> {
    Ok(Some(match f {
        AnalyticFunc::AccCount => {
            let n = match acc {
                Some(Acc::Count(n)) => n,
                _ => 0,
            };
            Acc::Count(if v.is_null() { n } else { n + 1 })
        }
        AnalyticFunc::AccSum => {
            let s = match acc {
                Some(Acc::Float(s)) => s,
                _ => 0.0,
            };
            Acc::Float(if v.is_null() { s } else { s + number(v)? })
        }
        AnalyticFunc::AccMin | AnalyticFunc::AccMax => {
            let x = number(v)?;
            Acc::Float(match acc {
                Some(Acc::Float(m)) if f == AnalyticFunc::AccMin => m.min(x),
                Some(Acc::Float(m)) => m.max(x),
                _ => x,
            })
        }
        _ => {
            let x = number(v)?;
            match acc {
                Some(Acc::Avg { sum, count }) => Acc::Avg {
                    sum: sum + x,
                    count: count + 1,
                },
                _ => Acc::Avg { sum: x, count: 1 },
            }
        }
    }))
}

/// `changed_cols(prefix, ignore_null, cols...)`, a projection item.
#[derive(Debug)]
pub struct ChangedCols {
    /// The prefix of the output names.
    pub prefix: Expr,
    /// Whether a null value is skipped (neither reported nor remembered).
    pub ignore_null: Expr,
    /// The columns: a name and an expression, or `None` for `*` (every field).
    pub cols: Vec<Option<(Arc<str>, Expr)>>,
    last: RefCell<HashMap<Arc<str>, Value>>,
}

impl Clone for ChangedCols {
    fn clone(&self) -> Self {
        Self::new(
            self.prefix.clone(),
            self.ignore_null.clone(),
            self.cols.clone(),
        )
    }
}

impl ChangedCols {
    /// The item.
    pub fn new(prefix: Expr, ignore_null: Expr, cols: Vec<Option<(Arc<str>, Expr)>>) -> Self {
        Self {
            prefix,
            ignore_null,
            cols,
            last: RefCell::new(HashMap::new()),
        }
    }

    /// The last value of each column, sorted by name: what a checkpoint keeps.
    pub fn state(&self) -> Vec<(Arc<str>, Value)> {
        let mut out: Vec<(Arc<str>, Value)> = self
            .last
            .borrow()
            .iter()
            .map(|(k, v)| (Arc::clone(k), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Replaces the last values with ones [`state`](Self::state) returned.
    pub fn set_state(&self, state: Vec<(Arc<str>, Value)>) {
        *self.last.borrow_mut() = state.into_iter().collect();
    }

    /// The fields that changed since the last evaluation, with the prefix on their names.
    pub fn eval<S: Scope + ?Sized>(
        &self,
        scope: &S,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<(Arc<str>, Value)>, EvalError> {
        let prefix = match self.prefix.eval(scope, ctx)? {
            Value::String(s) => s,
            v => {
                return Err(EvalError::new(format!(
                    "changed_cols: first arg is not a string but got {}",
                    crate::wording::go_value(&v)
                )));
            }
        };
        let ignore_null = match self.ignore_null.eval(scope, ctx)? {
            Value::Bool(b) => b,
            v => {
                return Err(EvalError::new(format!(
                    "changed_cols: second arg is not a bool but got {}",
                    crate::wording::go_value(&v)
                )));
            }
        };
        let mut values: Vec<(Arc<str>, Value)> = Vec::new();
        for col in &self.cols {
            match col {
                Some((name, e)) => values.push((Arc::clone(name), e.eval(scope, ctx)?)),
                None => scope.fields(None, &mut |k, v| values.push((Arc::clone(k), v.clone()))),
            }
        }
        let mut last = self.last.borrow_mut();
        let mut out = Vec::new();
        for (name, v) in values {
            if ignore_null && v.is_null() {
                continue;
            }
            let before = last.get(&name).unwrap_or(&Value::Null);
            if !strict_eq(&v, before) {
                out.push((Arc::from(format!("{prefix}{name}")), v.clone()));
                last.insert(name, v);
            }
        }
        Ok(out)
    }
}

/// What the rule last did, for the state functions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hits {
    /// How many times.
    pub count: i64,
    /// When, last (ms; 0 before the first).
    pub time: i64,
}

impl Hits {
    /// One more, at `time`.
    pub fn hit(&mut self, time: i64) {
        self.count += 1;
        self.time = time;
    }
}

/// A row and the analytic results computed so far for it (not yet in the row).
pub struct Partial<'a> {
    /// The row.
    pub row: &'a Row,
    /// Hidden fields and their values.
    pub extra: &'a [(Arc<str>, Value)],
}

impl Scope for Partial<'_> {
    fn column(&self, col: &Column) -> Option<&Value> {
        if is_hidden(&col.name)
            && let Some((_, v)) = self.extra.iter().find(|(n, _)| *n == col.name)
        {
            return Some(v);
        }
        col.lookup(self.row)
    }

    fn timestamp_ms(&self) -> i64 {
        self.row.timestamp_ms
    }

    fn fields(&self, stream: Option<usize>, visit: &mut dyn FnMut(&Arc<str>, &Value)) {
        self.row.fields(stream, visit);
    }

    fn meta(&self) -> Option<&Value> {
        Scope::meta(self.row)
    }
}

/// Adds the hidden fields (analytic results, state snapshot) to rows, with the layout built
/// once per input layout.
#[derive(Debug, Default)]
pub struct Augment {
    cache: Option<AugmentedLayout>,
}

/// An input layout, the layout with the hidden fields, and where each hidden field goes
/// (`None`: appended).
type AugmentedLayout = (Arc<Schema>, Arc<Schema>, Vec<Option<usize>>);

impl Augment {
    /// `row` with `extra` fields set (replaced when the row has them already, added otherwise).
    pub fn apply(&mut self, row: Row, extra: Vec<(Arc<str>, Value)>) -> Row {
        let input = Arc::clone(row.schema());
        let fresh = !matches!(&self.cache, Some((seen, _, _)) if Arc::ptr_eq(seen, &input));
        if fresh {
            let mut names: Vec<Arc<str>> = input.names().to_vec();
            let mut at = Vec::with_capacity(extra.len());
            for (name, _) in &extra {
                match names.iter().position(|n| n == name) {
                    Some(i) => at.push(Some(i)),
                    None => {
                        at.push(None);
                        names.push(Arc::clone(name));
                    }
                }
            }
            self.cache = Some((input, Arc::new(Schema::new(names)), at));
        }
        let Some((_, schema, at)) = &self.cache else {
            unreachable!("the layout was just built");
        };
        let ts = row.timestamp_ms;
        let mut values = row.values().to_vec();
        for ((_, v), i) in extra.into_iter().zip(at) {
            match i {
                Some(i) => values[*i] = v,
                None => values.push(v),
            }
        }
        let mut out = Row::new(Arc::clone(schema), values, ts);
        out.set_meta(row.meta().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str) -> Expr {
        Expr::Column(Column::new(None, Arc::from(name)))
    }

    fn row(pairs: &[(&str, Value)]) -> Row {
        Row::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (Arc::from(*k), v.clone()))
                .collect(),
            0,
        )
    }

    fn run(call: &mut AnalyticCall, rows: &[Row]) -> Vec<Value> {
        let ctx = EvalCtx {
            now_ms: 0,
            meta: &Value::Null,
        };
        rows.iter().map(|r| call.eval(r, &ctx).unwrap()).collect()
    }

    #[test]
    fn lag_returns_the_value_offset_rows_back_per_partition() {
        let mut call = AnalyticCall::new(
            AnalyticFunc::Lag,
            vec![col("a"), Expr::Literal(Value::Int(1))],
            vec![col("k")],
            None,
        );
        let rows = [
            row(&[("a", Value::Int(1)), ("k", Value::string("x"))]),
            row(&[("a", Value::Int(2)), ("k", Value::string("y"))]),
            row(&[("a", Value::Int(3)), ("k", Value::string("x"))]),
            row(&[("a", Value::Null), ("k", Value::string("x"))]),
            row(&[("a", Value::Int(5)), ("k", Value::string("x"))]),
        ];
        assert_eq!(
            run(&mut call, &rows),
            [
                Value::Null,
                Value::Null,
                Value::Int(1),
                Value::Int(3),
                Value::Int(3)
            ]
        );
    }

    #[test]
    fn lag_with_a_huge_offset_answers_its_default_without_reserving_memory() {
        let mut call = AnalyticCall::new(
            AnalyticFunc::Lag,
            vec![
                col("a"),
                Expr::Literal(Value::Int(i64::MAX / 16)),
                Expr::Literal(Value::Int(-1)),
            ],
            vec![],
            None,
        );
        let rows = [row(&[("a", Value::Int(1))]), row(&[("a", Value::Int(2))])];
        assert_eq!(run(&mut call, &rows), [Value::Int(-1), Value::Int(-1)]);
        // Offsets 0 and 2 keep their answers: the current value, and two rows back.
        let mut zero = AnalyticCall::new(
            AnalyticFunc::Lag,
            vec![col("a"), Expr::Literal(Value::Int(0))],
            vec![],
            None,
        );
        assert_eq!(run(&mut zero, &rows), [Value::Int(1), Value::Int(2)]);
        let mut two = AnalyticCall::new(
            AnalyticFunc::Lag,
            vec![
                col("a"),
                Expr::Literal(Value::Int(2)),
                Expr::Literal(Value::Int(0)),
            ],
            vec![],
            None,
        );
        let three = [
            row(&[("a", Value::Int(1))]),
            row(&[("a", Value::Int(2))]),
            row(&[("a", Value::Int(3))]),
        ];
        assert_eq!(
            run(&mut two, &three),
            [Value::Int(0), Value::Int(0), Value::Int(1)]
        );
    }

    #[test]
    fn acc_sum_with_begin_and_reset_restarts() {
        // acc_sum(a, a > 1, a > 3)
        let gt = |n| {
            Expr::Binary(
                crate::expr::BinOp::Gt,
                Box::new(col("a")),
                Box::new(Expr::Literal(Value::Int(n))),
            )
        };
        let mut call = AnalyticCall::new(
            AnalyticFunc::AccSum,
            vec![col("a"), gt(1), gt(3)],
            vec![],
            None,
        );
        let rows: Vec<Row> = [1, 2, 3, 4, 1, 2]
            .iter()
            .map(|n| row(&[("a", Value::Int(*n))]))
            .collect();
        assert_eq!(
            run(&mut call, &rows),
            [0.0, 2.0, 5.0, 9.0, 0.0, 2.0].map(Value::Float)
        );
    }
}
