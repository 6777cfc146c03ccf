//! Running a compiled statement: rows in, messages out.
//!
//! A row-by-row statement maps each row to a message. A windowed statement hands rows to its
//! [`WindowOperator`]; each window that fires goes through eKuiper's operator order: join,
//! `WHERE`, `GROUP BY` and aggregates, `HAVING`, `ORDER BY`, `LIMIT`, projection, and becomes one
//! message holding the window's result rows. A stream joined with a table (no window) pairs each
//! row with the table's rows as they are when the row comes; a table fed while the rule runs
//! takes its rows through [`QueryRunner::table_rows`], keeping the latest ones.
//!
//! A tumbling window over one stream whose aggregates can be computed a row at a time (`count`,
//! `sum`, `avg`, `min`, `max`) is aggregated as rows arrive ([`Panes`]): memory holds one state per
//! group instead of every row, with the same results as the general path.

use std::cell::RefCell;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::aggregate::Acc;
use super::analytic::{self, Augment, CallState, Hits};
use super::expr::{BinOp, Column, EvalCtx, EvalError, Expr, Scope, binary};
use super::query::{JoinKind, ProjectionItem, Query, RowNumberOver};
use super::scoped::Extra;
use super::window::{Fired, StateInput, StateSpec, WindowKind, WindowOperator};
use crate::message::Message;
use crate::value::{Row, Schema, Value};

/// One combination of rows, one per source (a missing side of an outer join is `None`).
#[derive(Debug, Clone)]
pub struct Tuple {
    /// The first source's row (kept inline: most statements read one stream).
    first: Option<Arc<Row>>,
    /// The joined sources' rows, in FROM order.
    rest: Vec<Option<Arc<Row>>>,
    timestamp_ms: i64,
    window: Option<(i64, i64)>,
    /// The order its rows are read in, by source, when it is not `FROM` order: a right join
    /// puts the right row first, as eKuiper's does, and an unqualified field is read from the
    /// first row that has it (`SELECT *` too, on a name clash).
    order: Option<Arc<[usize]>>,
}

/// The rows of a tuple in its order (see [`Tuple::order`]).
struct TupleRows<'a> {
    tuple: &'a Tuple,
    at: usize,
}

impl<'a> Iterator for TupleRows<'a> {
    type Item = &'a Arc<Row>;

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.tuple;
        loop {
            let source = match &t.order {
                Some(order) => *order.get(self.at)?,
                None if self.at <= t.rest.len() => self.at,
                None => return None,
            };
            self.at += 1;
            if let Some(row) = t.row(source) {
                return Some(row);
            }
        }
    }
}

impl Tuple {
    fn single(sources: usize, source: usize, row: Arc<Row>, window: Option<(i64, i64)>) -> Self {
        let mut t = Self {
            first: None,
            rest: if sources > 1 {
                vec![None; sources - 1]
            } else {
                Vec::new()
            },
            timestamp_ms: row.timestamp_ms,
            window,
            order: None,
        };
        t.set(source, row);
        t
    }

    fn set(&mut self, source: usize, row: Arc<Row>) {
        match source {
            0 => self.first = Some(row),
            i => {
                if let Some(slot) = self.rest.get_mut(i - 1) {
                    *slot = Some(row);
                }
            }
        }
    }

    fn row(&self, source: usize) -> Option<&Arc<Row>> {
        match source {
            0 => self.first.as_ref(),
            i => self.rest.get(i - 1)?.as_ref(),
        }
    }

    fn rows(&self) -> TupleRows<'_> {
        TupleRows { tuple: self, at: 0 }
    }

    /// The tuple with `row` of `source` (a right join's) put first, before the rows it joins
    /// to, as eKuiper's right join makes its tuples.
    fn led_by(&self, source: usize, row: &Arc<Row>) -> Self {
        let mut t = self.with(source, row);
        let width = 1 + self.rest.len();
        let before: Vec<usize> = match &self.order {
            Some(order) => order.iter().copied().filter(|&s| s != source).collect(),
            None => (0..width).filter(|&s| s != source).collect(),
        };
        t.order = Some(std::iter::once(source).chain(before).collect());
        t
    }

    fn with(&self, source: usize, row: &Arc<Row>) -> Self {
        let mut t = self.clone();
        t.timestamp_ms = t.timestamp_ms.max(row.timestamp_ms);
        t.set(source, Arc::clone(row));
        t
    }
}

/// A tuple and a candidate row of the next joined source, evaluated without building the
/// combined tuple (most pairs of a join do not match).
struct Pair<'a> {
    left: &'a Tuple,
    source: usize,
    right: &'a Row,
}

impl Scope for Pair<'_> {
    fn column(&self, col: &Column) -> Option<&Value> {
        match col.stream {
            Some(i) if i == self.source => col.lookup(self.right),
            Some(_) => self.left.column(col),
            None => self.left.column(col).or_else(|| col.lookup(self.right)),
        }
    }

    fn timestamp_ms(&self) -> i64 {
        self.left.timestamp_ms.max(self.right.timestamp_ms)
    }

    fn window(&self) -> Option<(i64, i64)> {
        self.left.window
    }

    fn meta(&self) -> Option<&Value> {
        self.left.meta().or_else(|| Scope::meta(self.right))
    }

    fn source_meta(&self, source: usize) -> Option<&Value> {
        if source == self.source {
            Scope::meta(self.right)
        } else {
            self.left.source_meta(source)
        }
    }

    fn fields(&self, stream: Option<usize>, visit: &mut dyn FnMut(&Arc<str>, &Value)) {
        match stream {
            Some(i) if i == self.source => self.right.fields(None, visit),
            Some(_) => self.left.fields(stream, visit),
            None => {
                self.left.fields(None, visit);
                self.right.fields(None, visit);
            }
        }
    }
}

/// A value as a hash key: numbers that are equal compare equal (`1` and `1.0`), as `=` does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Null,
    Int(i64),
    Float(u64),
    Str(Arc<str>),
    Bool(bool),
    Text(String),
}

impl Key {
    fn of(v: &Value) -> Self {
        match v {
            Value::Null => Self::Null,
            Value::Int(i) => Self::Int(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Self::Int(*f as i64),
            Value::Float(f) => Self::Float(f.to_bits()),
            Value::String(s) => Self::Str(Arc::clone(s)),
            Value::Bool(b) => Self::Bool(*b),
            other => Self::Text(format!("{}:{}", other.type_name(), other.to_text())),
        }
    }
}

/// A result row with the keys it is sorted by (see `QueryRunner::numbered_results`).
type Keyed = (Vec<Value>, Row);

/// A hash map with a fast (not DoS-resistant) hasher: its keys come from the rule's own data
/// within one window.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The rows of a join's right side by their key: indices into its rows.
#[derive(Debug, Default)]
struct KeyIndex {
    rows: FastMap<Key, Vec<usize>>,
    /// The first key of each type among them (`NULL` left out): a key of the left side that
    /// `=` cannot compare with one of these fails the join, as `=` row by row would.
    kinds: Vec<Value>,
}

impl KeyIndex {
    fn add(&mut self, key: Value, row: usize) {
        if key.is_null() {
            return;
        }
        if !self
            .kinds
            .iter()
            .any(|k| std::mem::discriminant(k) == std::mem::discriminant(&key))
        {
            self.kinds.push(key.clone());
        }
        self.rows.entry(Key::of(&key)).or_default().push(row);
    }

    /// Whether `ON` would fail on `key` (of the left side) and some row: then the join runs
    /// `ON` row by row for it, which fails where eKuiper's join fails and in its words
    /// (`invalid operation int64(1) = string(1)`). `swapped`: the left side's key is the
    /// right operand of `=`.
    fn incomparable(&self, key: &Value, swapped: bool) -> bool {
        !key.is_null()
            && self.kinds.iter().any(|k| {
                let (a, b) = if swapped { (k, key) } else { (key, k) };
                binary(BinOp::Eq, a, b).is_err()
            })
    }
}

/// The key of a group: one value (the common case, without an allocation) or several.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GroupKey {
    One(Key),
    Many(Vec<Key>),
}

/// A lookup table (`KIND="lookup"`): the rows it holds under a key, asked for each row joined
/// with it rather than scanned.
pub trait Lookup: Send + Sync {
    /// The rows whose key is `key`; an error (the store is out of reach) fails the row.
    fn get(&self, key: &Value) -> Result<Vec<Row>, String>;

    /// Whether the rows returned hold their key in the field the `ON` equality names, and
    /// are kept only where it equals the key looked up (a memory table). A store whose key is
    /// not part of its values (redis, as in eKuiper) answers `false`: every row it returns
    /// for the key is joined.
    fn rows_hold_key(&self) -> bool {
        true
    }
}

/// A value as a lookup table's key: values that `=` finds equal are the same key (the
/// integer `1` and the float `1.0`), as eKuiper's tables, where numbers read from JSON are
/// all floats, compare them. A string is never the same key as a number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LookupKey(Key);

impl LookupKey {
    /// The key of `value`; `None` for `NULL`, which no row is kept under.
    pub fn of(value: &Value) -> Option<Self> {
        match Key::of(value) {
            Key::Null => None,
            key => Some(Self(key)),
        }
    }
}

/// An equi-join `ON left = right` that can be answered with a hash table of the right rows.
#[derive(Debug, Clone)]
struct HashJoin {
    /// The key on the tuple built so far.
    left: Expr,
    /// The key on the joined source's rows.
    right: Expr,
    /// `left` is the right operand of the `=` in `ON`.
    swapped: bool,
}

/// The sources an expression reads, if it reads only qualified (resolved) columns.
fn sources_of(e: &Expr, out: &mut Vec<usize>) -> bool {
    match e {
        Expr::Column(c) => match c.stream {
            Some(i) => {
                out.push(i);
                true
            }
            None => false,
        },
        Expr::Literal(_) => true,
        Expr::Unary(_, a) | Expr::Field(a, _) | Expr::IsNull(a, _) => sources_of(a, out),
        Expr::Binary(_, a, b) | Expr::Index(a, b) => sources_of(a, out) && sources_of(b, out),
        Expr::Call(_, args) => args.iter().all(|a| sources_of(a, out)),
        _ => false,
    }
}

/// What a row says to a state window: its conditions (an error fails the row) and its
/// partition key (a value that cannot be computed counts as `null`, as eKuiper skips it).
fn state_input(state: &StateSpec, row: &Row, ctx: &EvalCtx<'_>) -> Result<StateInput, EvalError> {
    let begin = state.begin.eval(row, ctx)?.is_true();
    let end = match &state.end {
        Some(e) => e.eval(row, ctx)?.is_true(),
        None => false,
    };
    let mut key = String::new();
    for e in &state.partition {
        let v = e.eval(row, ctx).unwrap_or(Value::Null);
        key.push_str(&v.to_json().to_string());
        key.push(',');
    }
    Ok(StateInput { begin, end, key })
}

fn hash_join_of(on: Option<&Expr>, source: usize) -> Option<HashJoin> {
    let Some(Expr::Binary(BinOp::Eq, a, b)) = on else {
        return None;
    };
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    if !sources_of(a, &mut sa) || !sources_of(b, &mut sb) || sa.is_empty() || sb.is_empty() {
        return None;
    }
    let only = |s: &[usize], f: &dyn Fn(usize) -> bool| s.iter().all(|&i| f(i));
    if only(&sb, &|i| i == source) && only(&sa, &|i| i < source) {
        Some(HashJoin {
            left: (**a).clone(),
            right: (**b).clone(),
            swapped: false,
        })
    } else if only(&sa, &|i| i == source) && only(&sb, &|i| i < source) {
        Some(HashJoin {
            left: (**b).clone(),
            right: (**a).clone(),
            swapped: true,
        })
    } else {
        None
    }
}

/// A lookup table's `ON`, as eKuiper's lookup plan splits it: the first equality of its `AND`ed
/// conditions between the table's key and what the tuple so far gives, looked up, and the
/// other conditions (`AND`ed, in order), applied to the joined tuples after the lookup.
/// `None` when no equality can be looked up (the statement is refused when compiled).
fn lookup_join_of(on: &Expr, source: usize) -> Option<(HashJoin, Option<Expr>)> {
    fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
        match e {
            Expr::And(a, b) => {
                conjuncts(a, out);
                conjuncts(b, out);
            }
            other => out.push(other),
        }
    }
    // `table.key = e`, `e` reading only the sources joined so far, or nothing (a constant)
    // where `constant`.
    let split = |c: &Expr, constant: bool| -> Option<HashJoin> {
        let Expr::Binary(BinOp::Eq, a, b) = c else {
            return None;
        };
        let (mut sa, mut sb) = (Vec::new(), Vec::new());
        if !sources_of(a, &mut sa) || !sources_of(b, &mut sb) {
            return None;
        }
        let table = |s: &[usize]| !s.is_empty() && s.iter().all(|&i| i == source);
        let before = |s: &[usize]| (constant || !s.is_empty()) && s.iter().all(|&i| i < source);
        if table(&sb) && before(&sa) {
            Some(HashJoin {
                left: (**a).clone(),
                right: (**b).clone(),
                swapped: false,
            })
        } else if table(&sa) && before(&sb) {
            Some(HashJoin {
                left: (**b).clone(),
                right: (**a).clone(),
                swapped: true,
            })
        } else {
            None
        }
    };
    let mut all = Vec::new();
    conjuncts(on, &mut all);
    // An equality with the rows joined so far is looked up first; else one with a constant.
    let (at, constant) = all
        .iter()
        .position(|c| split(c, false).is_some())
        .map(|at| (at, false))
        .or_else(|| {
            all.iter()
                .position(|c| split(c, true).is_some())
                .map(|at| (at, true))
        })?;
    let hash = split(all.remove(at), constant)?;
    let rest = all
        .into_iter()
        .cloned()
        .reduce(|a, b| Expr::And(Box::new(a), Box::new(b)));
    Some((hash, rest))
}

/// Whether `on` can join a lookup table `source`: it has an equality its key is looked up by.
pub(crate) fn looks_up(on: &Expr, source: usize) -> bool {
    lookup_join_of(on, source).is_some()
}

impl Scope for Tuple {
    fn column(&self, col: &Column) -> Option<&Value> {
        match col.stream {
            Some(i) => self.row(i).and_then(|r| col.lookup(r)),
            // Unqualified, over schemaless streams: the first row that has the field.
            None => self.rows().find_map(|r| col.lookup(r)),
        }
    }

    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    fn window(&self) -> Option<(i64, i64)> {
        self.window
    }

    /// eKuiper: a row of one stream answers `event_time()` with its own time, also in a window
    /// (in an aggregate's argument, or a window's rows projected one by one); a joined tuple
    /// and a window's group with the window's end.
    fn event_time_ms(&self) -> i64 {
        match self.window {
            Some((_, end)) if !self.rest.is_empty() => end,
            _ => self.timestamp_ms,
        }
    }

    fn meta(&self) -> Option<&Value> {
        self.rows().find_map(|r| Scope::meta(&**r))
    }

    fn source_meta(&self, source: usize) -> Option<&Value> {
        self.row(source).and_then(|r| Scope::meta(&**r))
    }

    fn fields(&self, stream: Option<usize>, visit: &mut dyn FnMut(&Arc<str>, &Value)) {
        match stream {
            Some(i) => {
                if let Some(row) = self.row(i) {
                    row.fields(None, visit);
                }
            }
            None => {
                // On a name clash the first (left) stream wins, as in eKuiper.
                let mut seen: Vec<&Arc<str>> = Vec::new();
                for row in self.rows() {
                    for (k, v) in row.iter() {
                        if !seen.contains(&k) && !analytic::is_hidden(k) {
                            seen.push(k);
                            visit(k, v);
                        }
                    }
                }
            }
        }
    }
}

/// `last_agg_hit_count()` or `last_agg_hit_time()`, if `col` is one of them and the statement
/// reads them.
fn agg_hit<'a>(hits: Option<&'a [Value; 2]>, col: &Column) -> Option<&'a Value> {
    let hits = hits?;
    if *col.name == *analytic::AGG_HIT_COUNT {
        Some(&hits[0])
    } else if *col.name == *analytic::AGG_HIT_TIME {
        Some(&hits[1])
    } else {
        None
    }
}

/// A group: columns read from its first tuple, aggregates from the computed values.
struct Group<'a> {
    first: Option<&'a Tuple>,
    aggregates: &'a [Value],
    window: Option<(i64, i64)>,
    timestamp_ms: i64,
    /// `last_agg_hit_count()` and `last_agg_hit_time()`, when the statement reads them.
    agg_hits: Option<&'a [Value; 2]>,
}

impl Scope for Group<'_> {
    fn column(&self, col: &Column) -> Option<&Value> {
        agg_hit(self.agg_hits, col).or_else(|| self.first?.column(col))
    }

    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    fn aggregate(&self, slot: usize) -> Option<&Value> {
        self.aggregates.get(slot)
    }

    fn window(&self) -> Option<(i64, i64)> {
        self.window
    }

    fn fields(&self, stream: Option<usize>, visit: &mut dyn FnMut(&Arc<str>, &Value)) {
        if let Some(first) = self.first {
            first.fields(stream, visit);
        }
    }

    fn meta(&self) -> Option<&Value> {
        self.first?.meta()
    }

    fn source_meta(&self, source: usize) -> Option<&Value> {
        self.first?.source_meta(source)
    }
}

/// One row of a window read on its own (a statement without aggregates), with what
/// `last_agg_hit_count()` and `last_agg_hit_time()` read, when the statement reads them.
struct WithAggHits<'a> {
    tuple: &'a Tuple,
    agg_hits: Option<&'a [Value; 2]>,
}

impl Scope for WithAggHits<'_> {
    fn column(&self, col: &Column) -> Option<&Value> {
        agg_hit(self.agg_hits, col).or_else(|| self.tuple.column(col))
    }

    fn timestamp_ms(&self) -> i64 {
        self.tuple.timestamp_ms()
    }

    fn aggregate(&self, slot: usize) -> Option<&Value> {
        self.tuple.aggregate(slot)
    }

    fn window(&self) -> Option<(i64, i64)> {
        self.tuple.window()
    }

    fn event_time_ms(&self) -> i64 {
        self.tuple.event_time_ms()
    }

    fn fields(&self, stream: Option<usize>, visit: &mut dyn FnMut(&Arc<str>, &Value)) {
        self.tuple.fields(stream, visit);
    }

    fn meta(&self) -> Option<&Value> {
        self.tuple.meta()
    }

    fn source_meta(&self, source: usize) -> Option<&Value> {
        self.tuple.source_meta(source)
    }
}

/// What one call produced besides messages: errors (per row or per window) and counts.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Rows or windows whose evaluation failed.
    pub errors: Vec<EvalError>,
    /// Rows `WHERE` (or a window's `FILTER`) dropped.
    pub filtered: u64,
}

impl Outcome {
    /// Records an error that came after the first `place` messages of the call.
    fn fail(&mut self, e: EvalError, place: usize) {
        self.errors.push(e.placed(place));
    }
}

/// One group of a window aggregated on arrival.
struct PaneGroup {
    /// The group's earliest row (non-aggregate columns are read from it): set by
    /// [`Panes::add`] once the row is aggregated.
    first: Option<Tuple>,
    /// `(time, arrival)` of `first`: groups come out in order of first appearance in time.
    order: (i64, u64),
    accs: Vec<Acc>,
    /// The latest row time of the group.
    timestamp_ms: i64,
}

/// The groups of one tumbling window, aggregated as rows arrive.
#[derive(Default)]
struct Pane {
    index: FastMap<GroupKey, usize>,
    groups: Vec<PaneGroup>,
    /// The first error while grouping or aggregating: the window's result is that error, as it
    /// would be when computed over the whole window.
    error: Option<EvalError>,
    /// Rows the window took (before `WHERE`).
    rows: u64,
}

/// Tumbling windows aggregated on arrival, by window start.
struct Panes {
    size: i64,
    open: BTreeMap<i64, Pane>,
    seq: u64,
}

impl Panes {
    /// Whether `query` can be aggregated on arrival.
    fn suit(query: &Query) -> Option<i64> {
        let size = match query.window.as_ref()?.kind {
            WindowKind::Tumbling { size } => size,
            _ => return None,
        };
        let incremental = query.aggregates.iter().all(|a| Acc::new(a).is_some());
        (query.joins.is_empty()
            && query.sources.len() == 1
            && query.is_aggregate()
            && incremental
            && query.where_aggregates.is_empty())
        .then_some(size)
    }

    /// Adds a row that counts at `ts`.
    fn add(
        &mut self,
        query: &Query,
        row: Row,
        ts: i64,
        ctx: &EvalCtx<'_>,
        outcome: &mut Outcome,
        place: usize,
    ) {
        let start = ts.div_euclid(self.size) * self.size;
        let member = WindowRow {
            row: &row,
            window: (start, start + self.size),
        };
        let pane = self.open.entry(start).or_default();
        pane.rows += 1;
        if let Some(f) = &query.filter {
            match f.eval(&member, ctx) {
                Ok(v) if v.is_true() => {}
                Ok(_) => {
                    outcome.filtered += 1;
                    return;
                }
                Err(e) => {
                    outcome.fail(e.in_where(), place);
                    return;
                }
            }
        }
        self.seq += 1;
        let order = (row.timestamp_ms, self.seq);
        if pane.error.is_some() {
            return;
        }
        match pane.add(query, &member, order, ctx) {
            Ok(Some(first)) => {
                let window = member.window;
                pane.groups[first].first = Some(Tuple::single(1, 0, Arc::new(row), Some(window)));
            }
            Ok(None) => {}
            Err(e) => pane.error = Some(e),
        }
    }
}

impl Pane {
    /// Adds `member` to its group; returns the group when the row is its first (earliest)
    /// one, for the caller to keep (most rows are only aggregated, and not kept).
    fn add(
        &mut self,
        query: &Query,
        member: &WindowRow<'_>,
        order: (i64, u64),
        ctx: &EvalCtx<'_>,
    ) -> Result<Option<usize>, EvalError> {
        let key = group_key(&query.group_by, member, ctx)?;
        // The key is hashed once, whether its group is new or not.
        let mut first = false;
        let i = match self.index.entry(key) {
            Entry::Occupied(found) => *found.get(),
            Entry::Vacant(slot) => {
                let accs = query.aggregates.iter().filter_map(Acc::new).collect();
                slot.insert(self.groups.len());
                self.groups.push(PaneGroup {
                    timestamp_ms: member.row.timestamp_ms,
                    first: None,
                    order,
                    accs,
                });
                first = true;
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[i];
        for (slot, (acc, call)) in group.accs.iter_mut().zip(&query.aggregates).enumerate() {
            acc.add(call, member, ctx)
                .map_err(|e| query.projection.aggregate_failed(slot, e))?;
        }
        group.timestamp_ms = group.timestamp_ms.max(member.row.timestamp_ms);
        if order < group.order {
            group.order = order;
            first = true;
        }
        Ok(first.then_some(i))
    }
}

/// A row of the one stream of a window aggregated on arrival, read where it is: what a
/// one-row [`Tuple`] of the window answers, without making the tuple (most rows only add to
/// their group's aggregates).
struct WindowRow<'a> {
    row: &'a Row,
    window: (i64, i64),
}

impl Scope for WindowRow<'_> {
    fn column(&self, col: &Column) -> Option<&Value> {
        match col.stream {
            Some(0) | None => col.lookup(self.row),
            Some(_) => None,
        }
    }

    fn timestamp_ms(&self) -> i64 {
        self.row.timestamp_ms
    }

    fn window(&self) -> Option<(i64, i64)> {
        Some(self.window)
    }

    /// A row of one stream answers `event_time()` with its own time (see [`Tuple`]'s).
    fn event_time_ms(&self) -> i64 {
        self.row.timestamp_ms
    }

    fn meta(&self) -> Option<&Value> {
        Scope::meta(self.row)
    }

    fn source_meta(&self, source: usize) -> Option<&Value> {
        if source == 0 {
            Scope::meta(self.row)
        } else {
            None
        }
    }

    fn fields(&self, stream: Option<usize>, visit: &mut dyn FnMut(&Arc<str>, &Value)) {
        if matches!(stream, Some(0) | None) {
            self.row.fields(None, visit);
        }
    }
}

/// The key of `tuple`'s group.
/// The group `tuple` falls in; an error is worded as eKuiper's aggregate operator reports it.
fn group_key<S: Scope>(keys: &[Expr], tuple: &S, ctx: &EvalCtx<'_>) -> Result<GroupKey, EvalError> {
    let failed = |e: EvalError| e.within("run Group By error: ");
    Ok(match keys {
        [one] => GroupKey::One(Key::of(&*one.operand(tuple, ctx).map_err(failed)?)),
        keys => GroupKey::Many(
            keys.iter()
                .map(|k| k.eval(tuple, ctx).map(|v| Key::of(&v)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed)?,
        ),
    })
}

/// Where a held row goes in the merged order: (time, source, arrival).
type HeldKey = (i64, usize, u64);

/// Event time: the rows of every stream merged into one time order before anything reads them
/// (analytic functions, `WHERE`, a sliding window's `OVER (WHEN ...)`, the window), as from
/// eKuiper's watermark operator. What comes out depends only on each stream's own rows, never
/// on how the streams' chunks interleave on arrival:
/// - a row is late when its own stream has already gone past it by more than the late
///   tolerance (its time is older than that stream's latest time minus `lateTolerance`):
///   counted, left out;
/// - the watermark is the smallest, over the streams that have not ended, of that bound: no
///   row older than it can still come, so the held rows up to it go on, in time order (rows of
///   equal time: in FROM order of their streams, then each stream's own order), and windows
///   ending at it or before fire, as eKuiper's watermark does. A stream that has sent nothing
///   yet holds everything back.
struct Merge {
    tolerance: i64,
    /// Per source: the latest time seen.
    latest: Vec<Option<i64>>,
    /// Per source: ended (a table never sends rows, so it counts as ended).
    done: Vec<bool>,
    /// Held rows by (time, source, arrival).
    held: BTreeMap<HeldKey, Row>,
    /// Held rows that came in order, after every row of `held`, in key order: a stream whose
    /// rows arrive in time order (the common case) never pays for the tree.
    tail: VecDeque<(HeldKey, Row)>,
    seq: u64,
    late: u64,
    /// A stream that ends keeps holding the watermark at its last time, as in eKuiper (whose
    /// watermark takes no notice of a stream's end of input); otherwise it stops holding it
    /// back.
    ended_hold: bool,
}

impl Merge {
    fn new(tolerance: i64, tables: Vec<bool>) -> Self {
        let sources = tables.len().max(1);
        let mut done = tables;
        done.resize(sources, false);
        Self {
            tolerance: tolerance.max(0),
            latest: vec![None; sources],
            done,
            held: BTreeMap::new(),
            tail: VecDeque::new(),
            seq: 0,
            late: 0,
            ended_hold: true,
        }
    }

    /// The oldest time a row of `source` may have and not be late.
    fn bound(&self, source: usize) -> Option<i64> {
        self.latest[source].map(|t| t.saturating_sub(self.tolerance))
    }

    /// No row older than this can still come (`i64::MAX` once every stream has ended).
    fn watermark(&self) -> i64 {
        let mut low = i64::MAX;
        for source in 0..self.latest.len() {
            if self.done[source] {
                continue;
            }
            match self.bound(source) {
                Some(b) => low = low.min(b),
                None => return i64::MIN,
            }
        }
        low
    }

    /// Takes the rows of `source`.
    fn add(&mut self, source: usize, rows: Vec<Row>) {
        let source = source.min(self.latest.len() - 1);
        for row in rows {
            let ts = row.timestamp_ms;
            if self.bound(source).is_some_and(|b| ts < b) {
                self.late += 1;
                continue;
            }
            let latest = &mut self.latest[source];
            *latest = Some(latest.map_or(ts, |t| t.max(ts)));
            let key = (ts, source, self.seq);
            self.seq += 1;
            let last = match self.tail.back() {
                Some((last, _)) => Some(last),
                None => self.held.last_key_value().map(|(last, _)| last),
            };
            if last.is_none_or(|last| *last < key) {
                self.tail.push_back((key, row));
            } else {
                // Out of order: the tail goes into the tree first, so that every row of the
                // tail stays after every row of the tree.
                self.held.extend(self.tail.drain(..));
                self.held.insert(key, row);
            }
        }
    }

    /// `source` has ended: unless ended streams hold the watermark, it no longer holds it back.
    fn end(&mut self, source: usize) {
        if let Some(done) = self.done.get_mut(source)
            && !self.ended_hold
        {
            *done = true;
        }
    }

    /// The held rows up to the watermark (included, as eKuiper's watermark sends them), in
    /// time order, with their sources.
    fn release(&mut self) -> Vec<(usize, Row)> {
        let w = self.watermark();
        if w == i64::MAX {
            return self.drain();
        }
        // Rows at the watermark's own time go too.
        let bound = (w.saturating_add(1), 0, 0);
        let rest = if self.held.is_empty() {
            BTreeMap::new()
        } else {
            self.held.split_off(&bound)
        };
        let older = self.tail.partition_point(|(key, _)| *key < bound);
        let mut out = Vec::with_capacity(self.held.len() + older);
        out.extend(
            std::mem::replace(&mut self.held, rest)
                .into_iter()
                .map(|((_, source, _), row)| (source, row)),
        );
        out.extend(
            self.tail
                .drain(..older)
                .map(|((_, source, _), row)| (source, row)),
        );
        out
    }

    /// Every held row, in time order (the input has ended).
    fn drain(&mut self) -> Vec<(usize, Row)> {
        let mut out = Vec::with_capacity(self.held.len() + self.tail.len());
        out.extend(
            std::mem::take(&mut self.held)
                .into_iter()
                .map(|((_, source, _), row)| (source, row)),
        );
        out.extend(
            self.tail
                .drain(..)
                .map(|((_, source, _), row)| (source, row)),
        );
        out
    }

    /// The held rows, in time order, for a checkpoint.
    fn held(&self) -> impl Iterator<Item = (usize, Arc<Row>)> + '_ {
        self.held
            .iter()
            .chain(self.tail.iter().map(|(key, row)| (key, row)))
            .map(|(&(_, source, _), row)| (source, Arc::new(row.clone())))
    }
}

/// What a statement's analytic and state functions remember, for a checkpoint: with the
/// rows [`QueryRunner::held_rows`] returns, the whole state of a checkpointable runner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionState {
    /// How many of the held rows (the first ones) have been through the analytic calls
    /// already: the rows the window holds, whose results are in their hidden fields.
    pub prepared: usize,
    /// Per analytic call, by slot: the function's name and its state per partition key.
    pub calls: Vec<(String, Vec<(String, CallState)>)>,
    /// Per `changed_cols` item of the SELECT list, in order: the last value of each column.
    pub changed_cols: Vec<Vec<(Arc<str>, Value)>>,
    /// `last_hit_count()` and `last_hit_time()`.
    pub hits: Hits,
    /// `last_agg_hit_count()` and `last_agg_hit_time()`.
    pub agg_hits: Hits,
    /// An event-time tumbling or hopping window has fired its first window: a restored one
    /// reports every later window's start as its range's, as eKuiper restores its trigger time.
    pub first_window_fired: bool,
}

/// A running statement.
pub struct QueryRunner {
    query: Query,
    window: Option<WindowOperator>,
    /// Snapshot rows of table sources, by source index.
    tables: HashMap<usize, Vec<Arc<Row>>>,
    /// Lookup tables, by source index.
    lookups: HashMap<usize, Arc<dyn Lookup>>,
    /// Per join: how to answer it with a hash table, when its condition allows; for a lookup
    /// table, the equality of `ON` whose stream side is looked up.
    hash_joins: Vec<Option<HashJoin>>,
    /// Per join with a lookup table: the rest of its `ON` (the conditions beside the equality
    /// looked up), which filters the joined tuples as eKuiper's planner puts it in a filter
    /// after its lookup.
    lookup_rest: Vec<Option<Expr>>,
    /// Per join with a table: the hash table of the table's rows by key, built at the first row
    /// that needs it and dropped when the table takes rows (so a stream joined row by row with a
    /// table does not index the whole table for every row).
    table_index: RefCell<Vec<Option<Arc<KeyIndex>>>>,
    /// Set when the window is aggregated on arrival.
    panes: Option<Panes>,
    fired: Vec<Fired>,
    /// Event time: the streams merged into one time order.
    merge: Option<Merge>,
    /// Rows that passed WHERE (or triggered the window), for `last_hit_*()`.
    hits: Hits,
    /// Windows that sent a result, for `last_agg_hit_*()`.
    agg_hits: Hits,
    /// Adds the `last_hit_*()` snapshot to rows.
    with_hits: Augment,
    /// Adds the analytic results to rows.
    with_analytics: Augment,
    /// While restoring a checkpoint: how many of the next rows have their analytic results
    /// already (the window's rows), and are not run through the analytic calls again.
    prepared: usize,
    /// `WHERE` runs on each row before the window (see [`where_before_window`]).
    where_first: bool,
    /// Windows fired so far (sent or not).
    fired_total: u64,
    /// Fired windows are counted and dropped, not evaluated ([`abandon`](Self::abandon)).
    discarding: bool,
    /// eKuiper's `sendMetaToSink`: each result of a row adds the row's metadata as `__meta`.
    send_meta: bool,
    /// The layout of the last result with `__meta` added, and the layout it was made from.
    meta_schema: Option<(Arc<Schema>, Arc<Schema>)>,
}

/// The field eKuiper's `sendMetaToSink` puts a row's metadata in (its `message.MetaKey`).
pub const META_FIELD: &str = "__meta";

/// The layout of a result with the field `__meta` added at its end (replacing one of that
/// name), for `sendMetaToSink`.
fn meta_layout(from: &Schema) -> Arc<Schema> {
    let mut names: Vec<Arc<str>> = from
        .names()
        .iter()
        .filter(|n| &***n != META_FIELD)
        .cloned()
        .collect();
    names.push(Arc::from(META_FIELD));
    Arc::new(Schema::new(names))
}

/// `result` laid out by `schema` (from [`meta_layout`]) with `meta` as its field `__meta`: what
/// eKuiper's projection makes of a row's result under `sendMetaToSink`.
fn with_meta(result: Row, meta: &Arc<Value>, schema: Arc<Schema>) -> Row {
    let mut values: Vec<Value> = result
        .iter()
        .filter(|(n, _)| &***n != META_FIELD)
        .map(|(_, v)| v.clone())
        .collect();
    values.push(Value::clone(meta));
    let mut row = Row::new(schema, values, result.timestamp_ms);
    row.set_meta(Some(Arc::clone(meta)));
    row
}

/// Whether `WHERE` runs on each row before the window takes it, as eKuiper's planner pushes it
/// down (`WindowPlan.PushDownPredicate`): in processing time, for one stream, below a tumbling,
/// hopping, session or state window. A window whose rows all fail it is then an empty window,
/// not one that `WHERE` emptied. Count and sliding windows, event time and joins keep `WHERE`
/// after the window, and so does a `WHERE` with aggregates, which are computed over the
/// window (eKuiper's planner would push it down all the same, and read the aggregates before
/// any was computed).
fn where_before_window(query: &Query, event_time: bool) -> bool {
    !event_time
        && query.filter.is_some()
        && query.where_aggregates.is_empty()
        && query.joins.is_empty()
        && matches!(
            query.window.as_ref().map(|w| w.kind),
            Some(
                WindowKind::Tumbling { .. }
                    | WindowKind::Hopping { .. }
                    | WindowKind::Session { .. }
                    | WindowKind::State { .. }
            )
        )
}

/// What the projection stage receives (see [`QueryRunner::project`]): each row of a tuple is
/// the row of one source, in `FROM` order (`None`: a source with no row in it, as the missing
/// side of an outer join).
#[derive(Debug, Clone)]
pub enum StageInput {
    /// One row of a statement without a window.
    Row(Row),
    /// A window's rows (joined tuples for a join), not grouped: each is projected on its own,
    /// or all are one group when the statement aggregates.
    Window(Vec<Vec<Option<Row>>>),
    /// A window's groups, each projected once.
    Groups(Vec<Vec<Vec<Option<Row>>>>),
}

/// What a statement still held when its input ended, or the rule stopped, and did not send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unsent {
    /// Windows still open: the time windows that the end of the input would have fired, a
    /// count window that had not filled, state windows that nothing closed.
    pub windows: u64,
    /// The rows they held, with the rows the watermark still held back (event time).
    pub rows: u64,
}

impl QueryRunner {
    /// A runner for `query`, with `tables` holding the rows of its table sources.
    pub fn new(
        query: Query,
        event_time: bool,
        late_tolerance_ms: i64,
        tables: HashMap<usize, Arc<Vec<Row>>>,
    ) -> Self {
        Self::build(query, event_time, late_tolerance_ms, tables, true)
    }

    /// A runner whose state can be checkpointed ([`held_rows`](Self::held_rows)) and restored
    /// ([`restore`](Self::restore)): its window keeps its rows rather than aggregating them on
    /// arrival.
    pub fn checkpointable(
        query: Query,
        event_time: bool,
        late_tolerance_ms: i64,
        tables: HashMap<usize, Arc<Vec<Row>>>,
    ) -> Self {
        Self::build(query, event_time, late_tolerance_ms, tables, false)
    }

    /// The rows the statement's window holds for windows still to fire, with the source each
    /// came from, in the order [`restore`](Self::restore) takes them: the operator state a
    /// checkpoint keeps: the window's, then (event time) those still waiting for the watermark.
    /// Empty without a window in processing time (the statement then keeps no state); `None`
    /// when the state cannot be kept this way (a count window, or a runner from
    /// [`new`](Self::new) aggregating on arrival).
    pub fn held_rows(&self) -> Option<Vec<(usize, Arc<Row>)>> {
        if self.panes.is_some() {
            return None;
        }
        let mut rows = match &self.window {
            Some(window) => window.held_rows()?,
            None => Vec::new(),
        };
        if let Some(merge) = &self.merge {
            rows.extend(merge.held());
        }
        Some(rows)
    }

    /// Rebuilds the state [`held_rows`](Self::held_rows) returned, in a new runner, by taking
    /// the rows again. What fires while they are taken was emitted before the checkpoint, and
    /// is dropped.
    pub fn restore(&mut self, rows: Vec<(usize, Row)>, ctx: &EvalCtx<'_>) {
        let mut ignored = Vec::new();
        for (source, row) in rows {
            self.push(source, vec![row], ctx, &mut ignored);
            ignored.clear();
        }
    }

    /// What the statement's analytic and state functions remember now, and how many of the
    /// rows [`held_rows`](Self::held_rows) returns have been through the analytic calls.
    pub fn function_state(&self) -> FunctionState {
        let prepared = if self.needs_prepare() {
            self.window
                .as_ref()
                .and_then(WindowOperator::held_rows)
                .map_or(0, |rows| rows.len())
        } else {
            0
        };
        FunctionState {
            prepared,
            calls: self
                .query
                .analytics
                .iter()
                .map(|c| (c.func.name().to_string(), c.state()))
                .collect(),
            changed_cols: self.changed_cols().map(|c| c.state()).collect(),
            hits: self.hits,
            agg_hits: self.agg_hits,
            first_window_fired: self
                .window
                .as_ref()
                .is_some_and(WindowOperator::first_window_fired),
        }
    }

    fn changed_cols(&self) -> impl Iterator<Item = &analytic::ChangedCols> {
        self.query
            .projection
            .items()
            .iter()
            .filter_map(|item| match item {
                ProjectionItem::Cols(c) => Some(c),
                _ => None,
            })
    }

    /// Whether `state` fits this statement (the same functions in the same places); the
    /// message says what differs.
    pub fn check_function_state(query: &Query, state: &FunctionState) -> Result<(), String> {
        let now: Vec<&str> = query.analytics.iter().map(|c| c.func.name()).collect();
        let then: Vec<&str> = state.calls.iter().map(|(name, _)| name.as_str()).collect();
        let cols = query
            .projection
            .items()
            .iter()
            .filter(|i| matches!(i, ProjectionItem::Cols(_)))
            .count();
        if now != then || cols != state.changed_cols.len() {
            let list = |names: &[&str], cols: usize| {
                let mut all: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                all.extend((0..cols).map(|_| "`changed_cols`".to_string()));
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(", ")
                }
            };
            return Err(format!(
                "it holds the state of the analytic functions {}, the rule now has {}",
                list(&then, state.changed_cols.len()),
                list(&now, cols)
            ));
        }
        for (call, (name, partitions)) in query.analytics.iter().zip(&state.calls) {
            call.clone()
                .set_state(partitions.clone())
                .map_err(|e| format!("`{name}`: {e}"))?;
        }
        Ok(())
    }

    /// Rebuilds a checkpoint's state in a new runner: the held rows are taken again (as
    /// [`restore`](Self::restore) does, without running the first `state.prepared` of them
    /// through the analytic calls again), then the functions' state is set to what it was.
    pub fn restore_with(
        &mut self,
        rows: Vec<(usize, Row)>,
        state: FunctionState,
        ctx: &EvalCtx<'_>,
    ) -> Result<(), String> {
        Self::check_function_state(&self.query, &state)?;
        self.prepared = state.prepared.min(rows.len());
        self.restore(rows, ctx);
        // Rows the window had prepared but the watermark has not let through yet are skipped
        // when it does (they are older than any row still to come).
        for (call, (name, partitions)) in self.query.analytics.iter_mut().zip(state.calls) {
            call.set_state(partitions)
                .map_err(|e| format!("`{name}`: {e}"))?;
        }
        let cols: Vec<&analytic::ChangedCols> = self.changed_cols().collect();
        for (item, last) in cols.into_iter().zip(state.changed_cols) {
            item.set_state(last);
        }
        self.hits = state.hits;
        self.agg_hits = state.agg_hits;
        if state.first_window_fired
            && let Some(window) = self.window.as_mut()
        {
            window.set_first_window_fired();
        }
        Ok(())
    }

    fn build(
        query: Query,
        event_time: bool,
        late_tolerance_ms: i64,
        tables: HashMap<usize, Arc<Vec<Row>>>,
        on_arrival: bool,
    ) -> Self {
        let streams = query.sources.len();
        let where_first = where_before_window(&query, event_time);
        let mut window = query
            .window
            .as_ref()
            .map(|w| WindowOperator::new(w.kind, event_time, late_tolerance_ms, streams));
        let panes = Panes::suit(&query)
            .filter(|_| on_arrival)
            .map(|size| Panes {
                size,
                open: Default::default(),
                seq: 0,
            });
        if let (Some(window), Some(_)) = (window.as_mut(), &panes) {
            window.aggregate_on_arrival();
        }
        let mut lookup_rest = Vec::with_capacity(query.joins.len());
        let hash_joins: Vec<Option<HashJoin>> = query
            .joins
            .iter()
            .map(|j| {
                if query.sources[j.source].lookup {
                    let split = j.on.as_ref().and_then(|on| lookup_join_of(on, j.source));
                    let (hash, rest) = split.unzip();
                    lookup_rest.push(rest.flatten());
                    return hash;
                }
                lookup_rest.push(None);
                match j.kind {
                    JoinKind::Cross => None,
                    _ => hash_join_of(j.on.as_ref(), j.source),
                }
            })
            .collect();
        let tables = tables
            .into_iter()
            .map(|(i, rows)| (i, rows.iter().cloned().map(Arc::new).collect()))
            .collect();
        let merge = event_time.then(|| {
            if let Some(window) = window.as_mut() {
                window.watermark_from_caller();
            }
            Merge::new(
                late_tolerance_ms,
                query.sources.iter().map(|s| s.table).collect(),
            )
        });
        Self {
            query,
            window,
            tables,
            lookups: HashMap::new(),
            table_index: RefCell::new(vec![None; hash_joins.len()]),
            hash_joins,
            lookup_rest,
            panes,
            fired: Vec::new(),
            merge,
            hits: Hits::default(),
            agg_hits: Hits::default(),
            with_hits: Augment::default(),
            with_analytics: Augment::default(),
            prepared: 0,
            where_first,
            fired_total: 0,
            discarding: false,
            send_meta: false,
            meta_schema: None,
        }
    }

    /// eKuiper's `sendMetaToSink`: each result of a statement run row by row (with or without
    /// aggregates) carries the metadata of the row it came from as the field `__meta` (an
    /// object; left out when the row has none), as eKuiper's projection adds it. The rule is
    /// to refuse the option for a window, `GROUP BY` or a join ([`Query::can_send_meta_to_sink`]).
    pub fn set_send_meta(&mut self, send: bool) {
        self.send_meta = send;
    }

    /// `result` with `meta` (the metadata of the row it came from) as its field `__meta`
    /// (see [`with_meta`]), the layout made once for each layout of results.
    fn with_meta(&mut self, result: Row, meta: Option<&Arc<Value>>) -> Row {
        let Some(meta) = meta else {
            return result;
        };
        let schema = match &self.meta_schema {
            Some((from, to)) if Arc::ptr_eq(from, result.schema()) => Arc::clone(to),
            _ => {
                let to = meta_layout(result.schema());
                self.meta_schema = Some((Arc::clone(result.schema()), Arc::clone(&to)));
                to
            }
        };
        with_meta(result, meta, schema)
    }

    /// `row` prepared when `prepare` holds (see [`Self::prepare`]); a row that fails is counted
    /// in `outcome` as an error placed at `place` among the messages, and gives `None`.
    fn prepare_or_count(
        &mut self,
        row: Row,
        prepare: bool,
        ctx: &EvalCtx<'_>,
        outcome: &mut Outcome,
        place: usize,
    ) -> Option<Row> {
        if !prepare {
            return Some(row);
        }
        match self.prepare(row, ctx) {
            Ok(row) => Some(row),
            Err(e) => {
                outcome.fail(e, place);
                None
            }
        }
    }

    /// A row as the statement reads it: with the state functions' values from before it and
    /// the results of its analytic calls (which update their state) in hidden fields.
    fn prepare(&mut self, row: Row, ctx: &EvalCtx<'_>) -> Result<Row, EvalError> {
        if self.prepared > 0 {
            // A restored row the window held: its results are in it already.
            self.prepared -= 1;
            return Ok(row);
        }
        let mut row = row;
        if self.query.hits {
            let hits = vec![
                (Arc::from(analytic::HIT_COUNT), Value::Int(self.hits.count)),
                (Arc::from(analytic::HIT_TIME), Value::Int(self.hits.time)),
            ];
            row = self.with_hits.apply(row, hits);
        }
        if self.query.analytics.is_empty() {
            return Ok(row);
        }
        let mut values = Vec::with_capacity(self.query.analytics.len());
        for (slot, call) in self.query.analytics.iter_mut().enumerate() {
            // A call may read the result of an earlier (inner) one.
            let scope = analytic::Partial {
                row: &row,
                extra: &values,
            };
            let value = call.eval(&scope, ctx)?;
            values.push((analytic::analytic_field(slot), value));
        }
        Ok(self.with_analytics.apply(row, values))
    }

    /// Whether rows need [`prepare`](Self::prepare).
    fn needs_prepare(&self) -> bool {
        self.query.hits || !self.query.analytics.is_empty()
    }

    /// The statement.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Rows that arrived after the watermark (event time), counted rather than windowed.
    pub fn late(&self) -> u64 {
        self.window.as_ref().map_or(0, |w| w.late) + self.merge.as_ref().map_or(0, |m| m.late)
    }

    /// Rows still held by the window after `finish` (an unfinished count window).
    pub fn pending(&self) -> usize {
        self.window.as_ref().map_or(0, WindowOperator::pending)
    }

    /// When the processing-time window next needs `advance`.
    pub fn next_deadline(&self) -> Option<i64> {
        self.window.as_ref().and_then(WindowOperator::next_deadline)
    }

    /// Handles rows from source `source`.
    pub fn push(
        &mut self,
        source: usize,
        rows: Vec<Row>,
        ctx: &EvalCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Outcome {
        match self.merge.as_mut() {
            Some(merge) => {
                merge.add(source, rows);
                let rows = merge.release();
                let watermark = merge.watermark();
                self.process(rows, Some(watermark), ctx, out)
            }
            None => self.process(rows.into_iter().map(|r| (source, r)), None, ctx, out),
        }
    }

    /// Handles rows from source `source` that other rules read too: a row-by-row statement
    /// reads them where they are, any other takes its own copies (as [`push`](Self::push)).
    pub fn push_shared(
        &mut self,
        source: usize,
        rows: &[Row],
        ctx: &EvalCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Outcome {
        if self.merge.is_some() || !self.query.is_row_by_row() || self.needs_prepare() {
            return self.push(source, rows.to_vec(), ctx, out);
        }
        let mut outcome = Outcome::default();
        for row in rows {
            self.one_row(row, ctx, out, &mut outcome);
        }
        outcome
    }

    /// `LIMIT 0` on a statement run row by row: eKuiper's projection hands on nothing for any
    /// row, after its `WHERE`, whose errors are still sent. True when the row is done with
    /// (counted as filtered, or as an error).
    fn limited_out(
        &self,
        row: &Row,
        ctx: &EvalCtx<'_>,
        place: usize,
        outcome: &mut Outcome,
    ) -> bool {
        if self.query.limit != Some(0) {
            return false;
        }
        match self.query.keeps_row(row, ctx) {
            Err(e) => outcome.fail(e, place),
            Ok(_) => outcome.filtered += 1,
        }
        true
    }

    /// Runs a row-by-row statement on one (prepared) row.
    fn one_row(
        &mut self,
        row: &Row,
        ctx: &EvalCtx<'_>,
        out: &mut Vec<Message>,
        outcome: &mut Outcome,
    ) {
        if self.limited_out(row, ctx, out.len(), outcome) {
            return;
        }
        let meta = if self.send_meta { row.meta() } else { None };
        if self.query.projection.is_set() {
            // unnest: each result row is a message of its own, as in eKuiper, at most `LIMIT`
            // of them (eKuiper's project-set operator cuts a row's results to it).
            match self.query.process_set(row, ctx) {
                Ok(Some(mut results)) => {
                    results.truncate(self.query.limit.unwrap_or(usize::MAX));
                    for result in results {
                        out.push(Message::Row(self.with_meta(result, meta)));
                    }
                    self.hits.hit(row.timestamp_ms);
                }
                Ok(None) => outcome.filtered += 1,
                Err(e) => outcome.fail(e, out.len()),
            }
            return;
        }
        match self.query.process(row, ctx) {
            Ok(Some(result)) => {
                out.push(Message::Row(self.with_meta(result, meta)));
                self.hits.hit(row.timestamp_ms);
            }
            Ok(None) => outcome.filtered += 1,
            Err(e) => outcome.fail(e, out.len()),
        }
    }

    /// Rows, with the source each came from, in the order they count in. In event time,
    /// `watermark` says that no row older than it can still come: windows that end before it
    /// fire after the rows.
    fn process(
        &mut self,
        rows: impl IntoIterator<Item = (usize, Row)>,
        watermark: Option<i64>,
        ctx: &EvalCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let prepare = self.needs_prepare();
        if self.query.is_row_by_row() {
            for (_, row) in rows {
                let Some(row) = self.prepare_or_count(row, prepare, ctx, &mut outcome, out.len())
                else {
                    continue;
                };
                self.one_row(&row, ctx, out, &mut outcome);
            }
            return outcome;
        }
        if self.query.is_row_alone_aggregate() {
            for (source, row) in rows {
                let Some(row) = self.prepare_or_count(row, prepare, ctx, &mut outcome, out.len())
                else {
                    continue;
                };
                if self.limited_out(&row, ctx, out.len(), &mut outcome) {
                    continue;
                }
                let meta = if self.send_meta {
                    row.meta().cloned()
                } else {
                    None
                };
                match self.row_alone(source, row, ctx) {
                    Ok(Some((mut results, ts))) => {
                        results.truncate(self.query.limit.unwrap_or(usize::MAX));
                        for result in results {
                            out.push(Message::Row(self.with_meta(result, meta.as_ref())));
                        }
                        self.hits.hit(ts);
                    }
                    Ok(None) => outcome.filtered += 1,
                    Err(e) => outcome.fail(e, out.len()),
                }
            }
            return outcome;
        }
        if self.window.is_none() {
            // A stream joined with tables, row by row.
            for (source, row) in rows {
                let Some(row) = self.prepare_or_count(row, prepare, ctx, &mut outcome, out.len())
                else {
                    continue;
                };
                let ts = row.timestamp_ms;
                let tuple = Tuple::single(self.query.sources.len(), source, Arc::new(row), None);
                match self.joined(vec![tuple], &HashMap::new(), ctx) {
                    Ok(tuples) => match self.rows_of(tuples, None, ctx, &mut outcome) {
                        Ok(rows) if !rows.is_empty() => {
                            out.push(Message::Rows(Arc::new(rows)));
                            self.hits.hit(ts);
                        }
                        Ok(_) => {}
                        Err(e) => outcome.fail(e, out.len()),
                    },
                    Err(e) => outcome.fail(e, out.len()),
                }
            }
            return outcome;
        }
        for (source, row) in rows {
            if watermark.is_some() {
                // Every row older than this one is in: the windows that end before it fire
                // first, so that what they change (`last_agg_hit_*()`) is seen in time order.
                if let Some(window) = self.window.as_mut() {
                    window.advance_to(row.timestamp_ms.saturating_sub(1), &mut self.fired);
                }
                self.emit(ctx, out, &mut outcome);
            }
            let Some(row) = self.prepare_or_count(row, prepare, ctx, &mut outcome, out.len())
            else {
                continue;
            };
            // A window aggregated on arrival applies WHERE as it aggregates.
            if self.where_first
                && self.panes.is_none()
                && let Some(f) = &self.query.filter
            {
                match f.eval(&row, ctx) {
                    Ok(v) if v.is_true() => {}
                    Ok(_) => {
                        outcome.filtered += 1;
                        continue;
                    }
                    Err(e) => {
                        outcome.fail(e.in_where(), out.len());
                        continue;
                    }
                }
            }
            let spec = self.query.window.as_ref();
            let (filter, trigger) = (
                spec.and_then(|w| w.filter.as_ref()),
                spec.and_then(|w| w.trigger.as_ref()),
            );
            if let Some(f) = filter {
                match f.eval(&row, ctx) {
                    Ok(v) if v.is_true() => {}
                    Ok(_) => {
                        outcome.filtered += 1;
                        continue;
                    }
                    Err(e) => {
                        outcome.fail(e, out.len());
                        continue;
                    }
                }
            }
            let triggers = match trigger {
                Some(t) => match t.eval(&row, ctx) {
                    Ok(v) => v.is_true(),
                    Err(e) => {
                        outcome.fail(e, out.len());
                        false
                    }
                },
                None => true,
            };
            if trigger.is_some() && triggers {
                self.hits.hit(row.timestamp_ms);
            }
            if let Some(state) = spec.and_then(|w| w.state.as_ref()) {
                let input = match state_input(state, &row, ctx) {
                    Ok(input) => input,
                    Err(e) => {
                        outcome.fail(e, out.len());
                        continue;
                    }
                };
                if let Some(window) = self.window.as_mut() {
                    window.push_state(source, Arc::new(row), input, &mut self.fired);
                }
                continue;
            }
            let Some(window) = self.window.as_mut() else {
                continue;
            };
            if let Some(panes) = self.panes.as_mut() {
                // The window keeps no rows: the pane aggregates the row where it is.
                let at = window.push_time(source, row.timestamp_ms, triggers, &mut self.fired);
                if let Some(ts) = at {
                    panes.add(&self.query, row, ts, ctx, &mut outcome, out.len());
                }
                continue;
            }
            window.push(source, Arc::new(row), triggers, &mut self.fired);
        }
        // Once every stream has ended (`i64::MAX`), `finish` drains the windows.
        if let (Some(window), Some(w)) = (self.window.as_mut(), watermark)
            && w != i64::MAX
        {
            // eKuiper fires the windows that end at the watermark or before.
            window.advance_to(w, &mut self.fired);
        }
        self.emit(ctx, out, &mut outcome);
        outcome
    }

    /// A statement with aggregates and no window on one row, as eKuiper runs it: `WHERE`, then
    /// the aggregates over a group of that row alone, then the projection; each result row is
    /// a message of its own (`None` when `WHERE` drops the row). `ORDER BY` is not evaluated:
    /// eKuiper's order operator hands a single row on untouched.
    fn row_alone(
        &self,
        source: usize,
        row: Row,
        ctx: &EvalCtx<'_>,
    ) -> Result<Option<(Vec<Row>, i64)>, EvalError> {
        let q = &self.query;
        if !q.keeps_row(&row, ctx)? {
            return Ok(None);
        }
        let timestamp_ms = row.timestamp_ms;
        let members = [Tuple::single(q.sources.len(), source, Arc::new(row), None)];
        let aggregates = q
            .aggregates
            .iter()
            .enumerate()
            .map(|(slot, a)| {
                a.compute(&members, ctx)
                    .map_err(|e| q.projection.aggregate_failed(slot, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let scope = Group {
            first: members.first(),
            aggregates: &aggregates,
            window: None,
            timestamp_ms,
            agg_hits: None,
        };
        Ok(Some((q.projection.apply_set(&scope, ctx)?, timestamp_ms)))
    }

    /// Processing time: fires the windows due at `now`.
    pub fn advance(&mut self, now: i64, ctx: &EvalCtx<'_>, out: &mut Vec<Message>) -> Outcome {
        let mut outcome = Outcome::default();
        if let Some(window) = self.window.as_mut() {
            window.advance(now, &mut self.fired);
        }
        self.emit(ctx, out, &mut outcome);
        outcome
    }

    /// Makes table source `source` a lookup table, asked for the key of each row joined with it.
    pub fn with_lookup(mut self, source: usize, lookup: Arc<dyn Lookup>) -> Self {
        self.lookups.insert(source, lookup);
        self
    }

    /// Rows that arrived for table source `source` while the rule runs: appended to its
    /// content, of which only the latest `retain` rows are kept. Each stream row (or window)
    /// is joined with the content as it is when the row comes; nothing is emitted here.
    pub fn table_rows(&mut self, source: usize, rows: Vec<Row>, retain: usize) {
        for (join, index) in self
            .query
            .joins
            .iter()
            .zip(self.table_index.get_mut().iter_mut())
        {
            if join.source == source {
                *index = None;
            }
        }
        let table = self.tables.entry(source).or_default();
        if rows.len() >= retain {
            table.clear();
            let skip = rows.len() - retain;
            table.extend(rows.into_iter().skip(skip).map(Arc::new));
            return;
        }
        table.extend(rows.into_iter().map(Arc::new));
        if table.len() > retain {
            table.drain(..table.len() - retain);
        }
    }

    /// The rows table source `source` holds now (none for a stream).
    pub fn table_len(&self, source: usize) -> usize {
        self.tables.get(&source).map_or(0, Vec::len)
    }

    /// Source `source` has ended.
    pub fn end_source(
        &mut self,
        source: usize,
        ctx: &EvalCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Outcome {
        if let Some(merge) = self.merge.as_mut() {
            merge.end(source);
            let rows = merge.release();
            let watermark = merge.watermark();
            return self.process(rows, Some(watermark), ctx, out);
        }
        let mut outcome = Outcome::default();
        if let Some(window) = self.window.as_mut() {
            window.end_stream(source, &mut self.fired);
        }
        self.emit(ctx, out, &mut outcome);
        outcome
    }

    /// Whether the end of the input is to send what is still open ([`finish`](Self::finish)):
    /// then a stream that ends also stops holding the watermark back (event time). Without
    /// (the default, as eKuiper), an ended stream holds the watermark at its last time, and the
    /// caller [`abandon`](Self::abandon)s what is open at the end.
    pub fn set_fire_at_end(&mut self, fire: bool) {
        if let Some(merge) = self.merge.as_mut() {
            merge.ended_hold = !fire;
        }
    }

    /// Rows held now: by the window (its open windows) and by the watermark.
    fn held_count(&self) -> u64 {
        let window = self.window.as_ref().map_or(0, WindowOperator::pending) as u64;
        let merge = self
            .merge
            .as_ref()
            .map_or(0, |m| m.held.len() + m.tail.len()) as u64;
        let panes = self
            .panes
            .as_ref()
            .map_or(0, |p| p.open.values().map(|pane| pane.rows).sum());
        window + merge + panes
    }

    /// After [`finish`](Self::finish): what it did not send (a count window that had not
    /// filled, state windows that nothing closed).
    pub fn unsent(&self) -> Unsent {
        Unsent {
            windows: self.window.as_ref().map_or(0, WindowOperator::open_windows) as u64,
            rows: self.held_count(),
        }
    }

    /// The input has ended (or the rule stops) and nothing more is sent, as eKuiper's
    /// operators pass its end of input on without firing anything: counts the windows still
    /// open (those [`finish`](Self::finish) would fire, and those it would not) and the rows
    /// they and the watermark hold, and drops them. Call it last: the runner holds nothing
    /// afterwards.
    pub fn abandon(&mut self, ctx: &EvalCtx<'_>) -> Unsent {
        let rows = self.held_count();
        if self.window.is_none() {
            if let Some(merge) = self.merge.as_mut() {
                merge.held.clear();
                merge.tail.clear();
            }
            return Unsent { windows: 0, rows };
        }
        self.set_fire_at_end(true);
        self.discarding = true;
        let before = self.fired_total;
        let mut ignored = Vec::new();
        self.finish(ctx, &mut ignored);
        self.discarding = false;
        let windows = self.fired_total - before + self.unsent().windows;
        Unsent { windows, rows }
    }

    /// The projection stage alone (with the aggregates it reads), on what the stages before it
    /// would hand it: the input of eKuiper's project operator. Nothing else of the statement
    /// runs: no `WHERE`, join, grouping, `HAVING`, `ORDER BY` or `LIMIT`, no analytic or state
    /// function, and no state of the runner changes. `window` is the range `window_start()` and
    /// `window_end()` read. This is how eKuiper's operator tests run against Oort's projection;
    /// rules go through [`push`](Self::push).
    pub fn project(
        &self,
        input: StageInput,
        window: Option<(i64, i64)>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Row>, EvalError> {
        let tuple = |rows: Vec<Option<Row>>| self.tuple_of(rows, window);
        let groups: Vec<Vec<Tuple>> = match input {
            StageInput::Row(row) => {
                let meta = row.meta().filter(|_| self.send_meta).cloned();
                let results = if self.query.is_aggregate() {
                    let groups = [vec![tuple(vec![Some(row)])]];
                    self.project_groups(&groups, window, ctx)?
                } else {
                    self.query.projection.apply_set(&row, ctx)?
                };
                return Ok(match meta {
                    Some(meta) => results
                        .into_iter()
                        .map(|r| {
                            let schema = meta_layout(r.schema());
                            with_meta(r, &meta, schema)
                        })
                        .collect(),
                    None => results,
                });
            }
            StageInput::Window(tuples) => {
                let tuples: Vec<Tuple> = tuples.into_iter().map(tuple).collect();
                if !self.query.is_aggregate() {
                    let agg_hits = [
                        Value::Int(self.agg_hits.count),
                        Value::Int(self.agg_hits.time),
                    ];
                    let mut rows = Vec::new();
                    for t in &tuples {
                        let t = WithAggHits {
                            tuple: t,
                            agg_hits: self.query.agg_hits.then_some(&agg_hits),
                        };
                        rows.extend(self.query.projection.apply_set(&t, ctx)?);
                    }
                    return Ok(rows);
                }
                // A window with aggregates and no group keys is one group.
                vec![tuples]
            }
            StageInput::Groups(groups) => groups
                .into_iter()
                .map(|g| g.into_iter().map(tuple).collect())
                .collect(),
        };
        self.project_groups(&groups, window, ctx)
    }

    /// The window function stage alone, as eKuiper's window function operator: a window's
    /// rows (without aggregates) projected, and their `row_number()` items numbered, in
    /// partitions and orders by `row_number() OVER (...)` when it has one. A row alone is
    /// numbered 1. Nothing else of the statement runs (no ORDER BY, no LIMIT).
    pub fn window_function(
        &self,
        input: StageInput,
        window: Option<(i64, i64)>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Row>, EvalError> {
        let StageInput::Window(tuples) = input else {
            return self.project(input, window, ctx);
        };
        let tuples: Vec<Tuple> = tuples
            .into_iter()
            .map(|t| self.tuple_of(t, window))
            .collect();
        let results = self.numbered_results(&tuples, ctx)?;
        Ok(results.into_iter().map(|(_, row)| row).collect())
    }

    /// The projection of each group of a window (or of one row, a group of its own).
    fn project_groups(
        &self,
        groups: &[Vec<Tuple>],
        window: Option<(i64, i64)>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Row>, EvalError> {
        let mut computed = Vec::with_capacity(groups.len());
        for members in groups {
            let aggregates = self
                .query
                .aggregates
                .iter()
                .enumerate()
                .map(|(slot, a)| {
                    a.compute(members, ctx)
                        .map_err(|e| self.query.projection.aggregate_failed(slot, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let timestamp_ms = members
                .iter()
                .map(|m| m.timestamp_ms)
                .max()
                .unwrap_or_else(|| window.map_or(0, |w| w.1));
            computed.push((members.first(), aggregates, timestamp_ms));
        }
        let q = &self.query;
        let agg_hits = [
            Value::Int(self.agg_hits.count),
            Value::Int(self.agg_hits.time),
        ];
        let mut rows = Vec::new();
        for (first, aggregates, timestamp_ms) in computed {
            let scope = Group {
                first,
                aggregates: &aggregates,
                window,
                timestamp_ms,
                agg_hits: q.agg_hits.then_some(&agg_hits),
            };
            rows.extend(q.projection.apply_set(&scope, ctx)?);
        }
        Ok(rows)
    }

    /// The `WHERE` stage alone, on one row or a window's rows (joined tuples for a join), as
    /// eKuiper's filter operator receives them: the indices of the rows or tuples that pass, in
    /// order. An error fails the whole input, as in a window (`run Where error: ...`). Nothing
    /// else of the statement runs. Groups are no input of `WHERE`.
    pub fn filter(
        &self,
        input: StageInput,
        window: Option<(i64, i64)>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<usize>, EvalError> {
        let Some(filter) = &self.query.filter else {
            return Ok(match input {
                StageInput::Row(_) => vec![0],
                StageInput::Window(t) => (0..t.len()).collect(),
                StageInput::Groups(g) => (0..g.len()).collect(),
            });
        };
        match input {
            StageInput::Row(row) => Ok(if self.query.keeps_row(&row, ctx)? {
                vec![0]
            } else {
                Vec::new()
            }),
            StageInput::Window(tuples) => {
                let tuples: Vec<Tuple> = tuples
                    .into_iter()
                    .map(|rows| self.tuple_of(rows, window))
                    .collect();
                let values = self.query.where_aggregate_values(&tuples, ctx)?;
                let mut kept = Vec::new();
                for (i, t) in tuples.iter().enumerate() {
                    if self.query.keeps_with(filter, t, &values, ctx)? {
                        kept.push(i);
                    }
                }
                Ok(kept)
            }
            StageInput::Groups(_) => Err(EvalError::new(
                "WHERE takes rows or tuples, not groups".into(),
            )),
        }
    }

    /// The aggregates of each group, computed as the projection stage computes them.
    fn group_aggregates(
        &self,
        groups: &[Vec<Tuple>],
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Vec<Value>>, EvalError> {
        groups
            .iter()
            .map(|members| {
                self.query
                    .aggregates
                    .iter()
                    .enumerate()
                    .map(|(slot, a)| {
                        a.compute(members, ctx)
                            .map_err(|e| self.query.projection.aggregate_failed(slot, e))
                    })
                    .collect()
            })
            .collect()
    }

    /// The groups of a stage's input: a row is a group of one, a window's tuples one group.
    fn groups_of(&self, input: StageInput, window: Option<(i64, i64)>) -> Vec<Vec<Tuple>> {
        match input {
            StageInput::Row(row) => vec![vec![self.tuple_of(vec![Some(row)], window)]],
            StageInput::Window(tuples) => vec![
                tuples
                    .into_iter()
                    .map(|t| self.tuple_of(t, window))
                    .collect(),
            ],
            StageInput::Groups(groups) => groups
                .into_iter()
                .map(|g| g.into_iter().map(|t| self.tuple_of(t, window)).collect())
                .collect(),
        }
    }

    /// The grouping stage alone (`GROUP BY` keys beside the window), as eKuiper's aggregate
    /// operator: a window's rows or tuples split into groups, each a list of indices into the
    /// input, groups in order of first appearance. Nothing else of the statement runs.
    pub fn group(
        &self,
        input: StageInput,
        window: Option<(i64, i64)>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Vec<usize>>, EvalError> {
        let StageInput::Window(tuples) = input else {
            return Err(EvalError::new(
                "GROUP BY takes a window's rows or tuples".into(),
            ));
        };
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut index: FastMap<GroupKey, usize> = FastMap::default();
        for (i, rows) in tuples.into_iter().enumerate() {
            let t = self.tuple_of(rows, window);
            let key = group_key(&self.query.group_by, &t, ctx)?;
            match index.entry(key) {
                Entry::Occupied(found) => groups[*found.get()].push(i),
                Entry::Vacant(slot) => {
                    slot.insert(groups.len());
                    groups.push(vec![i]);
                }
            }
        }
        Ok(groups)
    }

    /// The join stage alone, as eKuiper's join operator: a window's rows, each with the index
    /// of its source in `FROM` order, joined left to right by the statement's joins (a table
    /// source reads its table, as in a rule). Each joined tuple is given as the input indices
    /// of its rows, in the tuple's order (`FROM` order, but a right join's row comes first, as
    /// in eKuiper); a missing side of an outer join has none. The tuples come in the order the
    /// rule would project them. Nothing else of the statement runs.
    pub fn join(
        &self,
        rows: Vec<(usize, Row)>,
        window: Option<(i64, i64)>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Vec<usize>>, EvalError> {
        let n = self.query.sources.len();
        let rows: Vec<(usize, Arc<Row>)> = rows
            .into_iter()
            .map(|(source, row)| (source, Arc::new(row)))
            .collect();
        let mut by_source: HashMap<usize, Vec<Arc<Row>>> = HashMap::new();
        for (source, row) in &rows {
            by_source.entry(*source).or_default().push(Arc::clone(row));
        }
        let left = by_source.remove(&0).unwrap_or_default();
        let start = left
            .into_iter()
            .map(|row| Tuple::single(n, 0, row, window))
            .collect();
        let tuples = self.joined(start, &by_source, ctx)?;
        let index_of = |row: &Arc<Row>| rows.iter().position(|(_, r)| Arc::ptr_eq(r, row));
        Ok(tuples
            .iter()
            .map(|t| t.rows().filter_map(index_of).collect())
            .collect())
    }

    /// The `HAVING` stage alone, as eKuiper's having operator: the indices of the groups that
    /// pass (a row, or a window's rows, is one group: `[0]` when it passes). Nothing else of
    /// the statement runs.
    pub fn having(
        &self,
        input: StageInput,
        window: Option<(i64, i64)>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<usize>, EvalError> {
        let groups = self.groups_of(input, window);
        let Some(having) = &self.query.having else {
            return Ok((0..groups.len()).collect());
        };
        let aggregates = self.group_aggregates(&groups, ctx)?;
        let mut kept = Vec::new();
        for (i, (members, aggregates)) in groups.iter().zip(&aggregates).enumerate() {
            let scope = Group {
                first: members.first(),
                aggregates,
                window,
                timestamp_ms: members.iter().map(|m| m.timestamp_ms).max().unwrap_or(0),
                agg_hits: None,
            };
            if having
                .eval(&scope, ctx)
                .map_err(EvalError::in_having)?
                .is_true()
            {
                kept.push(i);
            }
        }
        Ok(kept)
    }

    /// The `ORDER BY` stage alone, as eKuiper's order operator: the order of a window's rows
    /// (or tuples), or of its groups, as indices into the input (a row stays `[0]`). Nothing
    /// else of the statement runs.
    pub fn order(
        &self,
        input: StageInput,
        window: Option<(i64, i64)>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<usize>, EvalError> {
        let q = &self.query;
        let mut keyed: Vec<(Vec<Value>, usize)> = Vec::new();
        match input {
            StageInput::Row(_) => return Ok(vec![0]),
            StageInput::Window(tuples) => {
                for (i, t) in tuples.into_iter().enumerate() {
                    let t = self.tuple_of(t, window);
                    let keys = q
                        .order_by
                        .iter()
                        .map(|(e, _)| e.eval(&t, ctx))
                        .collect::<Result<Vec<_>, _>>()?;
                    keyed.push((keys, i));
                }
            }
            groups @ StageInput::Groups(_) => {
                let groups = self.groups_of(groups, window);
                let aggregates = self.group_aggregates(&groups, ctx)?;
                for (i, (members, aggregates)) in groups.iter().zip(&aggregates).enumerate() {
                    let scope = Group {
                        first: members.first(),
                        aggregates,
                        window,
                        timestamp_ms: members.iter().map(|m| m.timestamp_ms).max().unwrap_or(0),
                        agg_hits: None,
                    };
                    let keys = q
                        .order_by
                        .iter()
                        .map(|(e, _)| e.eval(&scope, ctx))
                        .collect::<Result<Vec<_>, _>>()?;
                    keyed.push((keys, i));
                }
            }
        }
        if !q.order_by.is_empty() {
            sort_results(
                &mut keyed,
                &q.order_by.iter().map(|(_, asc)| *asc).collect::<Vec<_>>(),
            )?;
        }
        Ok(keyed.into_iter().map(|(_, i)| i).collect())
    }

    /// A tuple of the given rows, one per source in `FROM` order.
    fn tuple_of(&self, rows: Vec<Option<Row>>, window: Option<(i64, i64)>) -> Tuple {
        let n = self.query.sources.len();
        let mut t = Tuple {
            first: None,
            rest: vec![None; n.saturating_sub(1)],
            timestamp_ms: 0,
            window,
            order: None,
        };
        for (source, row) in rows.into_iter().enumerate() {
            if let Some(row) = row {
                t.timestamp_ms = t.timestamp_ms.max(row.timestamp_ms);
                t.set(source, Arc::new(row));
            }
        }
        t
    }

    /// Every input has ended: fires every open time window.
    pub fn finish(&mut self, ctx: &EvalCtx<'_>, out: &mut Vec<Message>) -> Outcome {
        let mut outcome = match self.merge.as_mut().map(Merge::drain) {
            // The windows are drained below.
            Some(held) if !held.is_empty() => self.process(held, Some(i64::MAX), ctx, out),
            _ => Outcome::default(),
        };
        if let Some(window) = self.window.as_mut() {
            window.finish(&mut self.fired);
        }
        self.emit(ctx, out, &mut outcome);
        outcome
    }

    fn emit(&mut self, ctx: &EvalCtx<'_>, out: &mut Vec<Message>, outcome: &mut Outcome) {
        self.fired_total += self.fired.len() as u64;
        if self.discarding {
            self.fired.clear();
            return;
        }
        for fired in std::mem::take(&mut self.fired) {
            let end = fired.end;
            let result = match self.panes.as_mut() {
                Some(panes) => {
                    // Keyed by the aligned start (`window_start()` of the first window may differ).
                    let pane = panes
                        .open
                        .remove(&(fired.end - panes.size))
                        .unwrap_or_default();
                    self.pane_result(pane, (fired.start, fired.end), ctx)
                }
                None => self.window_result(fired, ctx, outcome),
            };
            match result {
                Ok(Some(rows)) => {
                    if !rows.is_empty() {
                        self.agg_hits.hit(end);
                    }
                    out.push(Message::Rows(Arc::new(rows)));
                }
                Ok(None) => {}
                Err(e) => outcome.fail(e, out.len()),
            }
        }
    }

    /// A window aggregated on arrival: HAVING, ORDER BY, LIMIT and projection over its groups.
    fn pane_result(
        &self,
        pane: Pane,
        range: (i64, i64),
        ctx: &EvalCtx<'_>,
    ) -> Result<Option<Vec<Row>>, EvalError> {
        if let Some(e) = pane.error {
            return Err(e);
        }
        let mut groups = pane.groups;
        groups.sort_by_key(|g| g.order);
        let results = if groups.is_empty() && self.nothing_after_filter() {
            return Ok(None);
        } else if groups.is_empty() && self.query.group_by.is_empty() {
            // No rows and no GROUP BY: one group over nothing, as over an empty window.
            let nothing = self
                .query
                .aggregates
                .iter()
                .map(|a| a.compute::<Tuple>(&[], ctx))
                .collect::<Result<Vec<_>, _>>()?;
            self.group_results(std::iter::once((None, nothing, range.1)), Some(range), ctx)?
        } else {
            self.group_results(
                groups.iter().map(|g| {
                    let values = g.accs.iter().map(Acc::finish).collect();
                    (g.first.as_ref(), values, g.timestamp_ms)
                }),
                Some(range),
                ctx,
            )?
        };
        let rows = self.ordered(results)?;
        Ok((!rows.is_empty() || !self.suppress_empty()).then_some(rows))
    }

    /// Whether a window left without rows by WHERE or a join sends nothing (eKuiper's filter
    /// and join operators pass nothing on when no row is left).
    fn nothing_after_filter(&self) -> bool {
        self.where_after_window() || !self.query.joins.is_empty()
    }

    /// Whether `WHERE` runs over a fired window's rows (not on each row before the window).
    fn where_after_window(&self) -> bool {
        self.query.filter.is_some() && !self.where_first
    }

    /// As in eKuiper, an empty window is still a result unless something after the window
    /// (WHERE, GROUP BY keys, HAVING, a join) has nothing to say about it.
    fn suppress_empty(&self) -> bool {
        self.where_after_window()
            || !self.query.group_by.is_empty()
            || self.query.having.is_some()
            || !self.query.joins.is_empty()
            || matches!(
                self.query.window.as_ref().map(|w| w.kind),
                Some(
                    WindowKind::Sliding { .. }
                        | WindowKind::Session { .. }
                        | WindowKind::Count { .. }
                        | WindowKind::State { .. }
                )
            )
    }

    /// The results of a collection's rows (or groups), each with its `ORDER BY` keys, as
    /// eKuiper's window function operator numbers them before its order operator and the
    /// projection: each row numbered 1, 2, ... in the order the window (or its groups) gives
    /// them, or by `row_number() OVER (...)` in partitions and orders, which also orders the
    /// results; then its `ORDER BY` keys and projection evaluated with that number, so that
    /// `row_number()` in an expression or `ORDER BY` its alias reads it. Rows an `unnest`
    /// makes of one row share its number.
    fn numbered_results<S: Scope>(
        &self,
        scopes: &[S],
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Keyed>, EvalError> {
        let q = &self.query;
        let numbers = match &q.row_number_over {
            Some(over) => self.number_over(scopes, over, ctx)?,
            None => (0..scopes.len()).map(|i| (i, i as i64 + 1)).collect(),
        };
        let mut results = Vec::with_capacity(numbers.len());
        for (i, n) in numbers {
            let scope = Extra::numbered(&scopes[i], n);
            let mut keys = Vec::with_capacity(q.order_by.len());
            for (e, _) in &q.order_by {
                keys.push(e.eval(&scope, ctx)?);
            }
            for row in q.projection.apply_set(&scope, ctx)? {
                results.push((keys.clone(), row));
            }
        }
        Ok(results)
    }

    /// `row_number() OVER (...)` over a collection, as eKuiper's window function operator:
    /// its rows in partitions by the text of their `PARTITION BY` values, the partitions in
    /// the order of that text, each sorted by the `OVER`'s `ORDER BY` (stable, as `ORDER BY`)
    /// and numbered from 1. Gives each row's index and number, in that order.
    fn number_over<S: Scope>(
        &self,
        scopes: &[S],
        over: &RowNumberOver,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<(usize, i64)>, EvalError> {
        let mut partitions: BTreeMap<String, Vec<(Vec<Value>, usize)>> = BTreeMap::new();
        for (i, scope) in scopes.iter().enumerate() {
            let mut text = String::new();
            for e in &over.partition {
                let v = e
                    .eval(scope, ctx)
                    .map_err(|e| e.within("run partition By error: "))?;
                text.push_str(&crate::wording::go_value(&v));
                text.push(',');
            }
            let order = over
                .order
                .iter()
                .map(|(e, _)| e.eval(scope, ctx))
                .collect::<Result<Vec<_>, _>>()?;
            partitions.entry(text).or_default().push((order, i));
        }
        let ascending: Vec<bool> = over.order.iter().map(|(_, asc)| *asc).collect();
        let mut out = Vec::with_capacity(scopes.len());
        for (_, mut members) in partitions {
            if !ascending.is_empty() {
                sort_results(&mut members, &ascending)?;
            }
            out.extend(
                members
                    .into_iter()
                    .enumerate()
                    .map(|(n, (_, i))| (i, n as i64 + 1)),
            );
        }
        Ok(out)
    }

    /// One fired window through join, WHERE, grouping, HAVING, ORDER BY, LIMIT and projection.
    fn window_result(
        &self,
        fired: Fired,
        ctx: &EvalCtx<'_>,
        outcome: &mut Outcome,
    ) -> Result<Option<Vec<Row>>, EvalError> {
        let range = Some((fired.start, fired.end));
        let n = self.query.sources.len();
        let tuples = if self.query.joins.is_empty() {
            let mut tuples = Vec::with_capacity(fired.rows.len());
            tuples.extend(
                fired
                    .rows
                    .into_iter()
                    .filter(|(source, _)| *source == 0)
                    .map(|(_, row)| Tuple::single(n, 0, row, range)),
            );
            tuples
        } else {
            let mut by_source: HashMap<usize, Vec<Arc<Row>>> = HashMap::new();
            for (source, row) in fired.rows {
                by_source.entry(source).or_default().push(row);
            }
            let left = by_source.remove(&0).unwrap_or_default();
            let start = left
                .into_iter()
                .map(|row| Tuple::single(n, 0, row, range))
                .collect();
            self.joined(start, &by_source, ctx)?
        };
        let rows = self.rows_of(tuples, range, ctx, outcome)?;
        if rows.is_empty() && self.suppress_empty() {
            return Ok(None);
        }
        Ok(Some(rows))
    }

    /// Applies the joins, left to right, to `tuples` (rows of the first source).
    fn joined(
        &self,
        mut tuples: Vec<Tuple>,
        windowed: &HashMap<usize, Vec<Arc<Row>>>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Tuple>, EvalError> {
        let empty = Vec::new();
        let width = self.query.sources.len();
        for (j, (join, hash)) in self.query.joins.iter().zip(&self.hash_joins).enumerate() {
            // For each left tuple, the indices of the right rows it pairs with.
            let mut pairs: Vec<Vec<usize>> = Vec::with_capacity(tuples.len());
            let looked_up;
            let right: &[Arc<Row>] = match (self.lookups.get(&join.source), hash) {
                (Some(lookup), Some(h)) => {
                    looked_up = lookup_rows(lookup.as_ref(), h, &tuples, ctx, &mut pairs)?;
                    &looked_up
                }
                (Some(_), None) => {
                    return Err(EvalError::new(
                        "a lookup table is joined on an equality with its key \
                         (ON stream.field = table.key)"
                            .into(),
                    ));
                }
                (None, _) => match self.tables.get(&join.source) {
                    Some(table) => table,
                    None => windowed.get(&join.source).unwrap_or(&empty),
                },
            };
            let window = tuples.first().and_then(|t| t.window);
            // The right rows `ON` pairs `left` with, row by row.
            let scan = |left: &Tuple| -> Result<Vec<usize>, EvalError> {
                let mut hits = Vec::new();
                for (i, row) in right.iter().enumerate() {
                    let pair = Pair {
                        left,
                        source: join.source,
                        right: row,
                    };
                    let hit = match &join.on {
                        Some(on) => on.eval(&pair, ctx).map_err(EvalError::in_join)?.is_true(),
                        None => true,
                    };
                    if hit {
                        hits.push(i);
                    }
                }
                Ok(hits)
            };
            match (hash, join.kind) {
                _ if self.lookups.contains_key(&join.source) => {}
                (_, JoinKind::Cross) => {
                    pairs.extend(tuples.iter().map(|_| (0..right.len()).collect::<Vec<_>>()));
                }
                (Some(h), _) => {
                    let index = |right: &[Arc<Row>]| -> Result<KeyIndex, EvalError> {
                        let mut table = KeyIndex::default();
                        for (i, row) in right.iter().enumerate() {
                            let key = h.right.eval(row.as_ref(), ctx);
                            table.add(key.map_err(EvalError::in_join)?, i);
                        }
                        Ok(table)
                    };
                    let table = if self.tables.contains_key(&join.source) {
                        let cached = self.table_index.borrow()[j].clone();
                        match cached {
                            Some(table) => table,
                            None => {
                                let table = Arc::new(index(right)?);
                                self.table_index.borrow_mut()[j] = Some(Arc::clone(&table));
                                table
                            }
                        }
                    } else {
                        Arc::new(index(right)?)
                    };
                    for left in &tuples {
                        let key = h.left.eval(left, ctx).map_err(EvalError::in_join)?;
                        if table.incomparable(&key, h.swapped) {
                            pairs.push(scan(left)?);
                            continue;
                        }
                        pairs.push(table.rows.get(&Key::of(&key)).cloned().unwrap_or_default());
                    }
                }
                (None, _) => {
                    for left in &tuples {
                        pairs.push(scan(left)?);
                    }
                }
            }
            let mut out = Vec::new();
            match join.kind {
                JoinKind::Inner | JoinKind::Cross => {
                    for (left, hits) in tuples.iter().zip(&pairs) {
                        out.extend(hits.iter().map(|&i| left.with(join.source, &right[i])));
                    }
                }
                JoinKind::Left | JoinKind::Full => {
                    let mut used = vec![false; right.len()];
                    for (left, hits) in tuples.iter().zip(&pairs) {
                        if hits.is_empty() {
                            out.push(left.clone());
                        }
                        for &i in hits {
                            used[i] = true;
                            out.push(left.with(join.source, &right[i]));
                        }
                    }
                    if join.kind == JoinKind::Full {
                        for (row, used) in right.iter().zip(used) {
                            if !used {
                                out.push(Tuple::single(
                                    width,
                                    join.source,
                                    Arc::clone(row),
                                    window,
                                ));
                            }
                        }
                    }
                }
                JoinKind::Right => {
                    // Right rows lead, each with the left tuples it pairs with, in order.
                    let mut by_right: Vec<Vec<usize>> = vec![Vec::new(); right.len()];
                    for (l, hits) in pairs.iter().enumerate() {
                        for &i in hits {
                            by_right[i].push(l);
                        }
                    }
                    for (i, lefts) in by_right.iter().enumerate() {
                        if lefts.is_empty() {
                            out.push(Tuple::single(
                                width,
                                join.source,
                                Arc::clone(&right[i]),
                                window,
                            ));
                        }
                        for &l in lefts {
                            out.push(tuples[l].led_by(join.source, &right[i]));
                        }
                    }
                }
            }
            if let Some(rest) = &self.lookup_rest[j] {
                // eKuiper's planner filters the looked-up tuples with the rest of `ON`.
                let mut kept = Vec::with_capacity(out.len());
                for t in out {
                    if rest.eval(&t, ctx).map_err(EvalError::in_where)?.is_true() {
                        kept.push(t);
                    }
                }
                out = kept;
            }
            tuples = out;
        }
        Ok(tuples)
    }

    /// WHERE, grouping, HAVING, ORDER BY, LIMIT and projection over a set of tuples.
    fn rows_of(
        &self,
        tuples: Vec<Tuple>,
        window: Option<(i64, i64)>,
        ctx: &EvalCtx<'_>,
        outcome: &mut Outcome,
    ) -> Result<Vec<Row>, EvalError> {
        let q = &self.query;
        let filter = q
            .filter
            .as_ref()
            .filter(|_| window.is_none() || !self.where_first);
        let kept = match filter {
            None => tuples,
            Some(f) => {
                // Its aggregates over the whole collection first (eKuiper's aggregate
                // function operator, before its filter operator).
                let values = q.where_aggregate_values(&tuples, ctx)?;
                let mut kept = Vec::with_capacity(tuples.len());
                for t in tuples {
                    // An error fails the whole collection (as eKuiper's `run Where error`).
                    if q.keeps_with(f, &t, &values, ctx)? {
                        kept.push(t);
                    } else {
                        outcome.filtered += 1;
                    }
                }
                kept
            }
        };
        // (sort keys, projected row) for each result row.
        let results = if q.is_aggregate() {
            // Groups in order of first appearance.
            let mut groups: Vec<Vec<Tuple>> = Vec::new();
            if q.group_by.is_empty() {
                if !(kept.is_empty() && self.nothing_after_filter()) {
                    groups.push(kept);
                }
            } else {
                let mut index: FastMap<GroupKey, usize> = FastMap::default();
                for t in kept {
                    let key = group_key(&q.group_by, &t, ctx)?;
                    match index.entry(key) {
                        Entry::Occupied(found) => groups[*found.get()].push(t),
                        Entry::Vacant(slot) => {
                            slot.insert(groups.len());
                            groups.push(vec![t]);
                        }
                    }
                }
            }
            let mut computed = Vec::with_capacity(groups.len());
            for members in &groups {
                let aggregates = q
                    .aggregates
                    .iter()
                    .enumerate()
                    .map(|(slot, a)| {
                        a.compute(members, ctx)
                            .map_err(|e| q.projection.aggregate_failed(slot, e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let timestamp_ms = members
                    .iter()
                    .map(|m| m.timestamp_ms)
                    .max()
                    .unwrap_or_else(|| window.map_or(0, |w| w.1));
                computed.push((members.first(), aggregates, timestamp_ms));
            }
            self.group_results(computed.into_iter(), window, ctx)?
        } else {
            // HAVING without aggregates or GROUP BY: the collection is one group, kept or
            // dropped whole (as eKuiper's having operator does with a window's rows).
            let agg_hits = [
                Value::Int(self.agg_hits.count),
                Value::Int(self.agg_hits.time),
            ];
            if let Some(having) = &q.having {
                let scope = Group {
                    first: kept.first(),
                    aggregates: &[],
                    window,
                    timestamp_ms: kept
                        .iter()
                        .map(|t| t.timestamp_ms)
                        .max()
                        .unwrap_or_else(|| window.map_or(0, |w| w.1)),
                    agg_hits: q.agg_hits.then_some(&agg_hits),
                };
                if kept.is_empty()
                    || !having
                        .eval(&scope, ctx)
                        .map_err(EvalError::in_having)?
                        .is_true()
                {
                    return Ok(Vec::new());
                }
            }
            let scopes: Vec<WithAggHits<'_>> = kept
                .iter()
                .map(|t| WithAggHits {
                    tuple: t,
                    agg_hits: q.agg_hits.then_some(&agg_hits),
                })
                .collect();
            // As in eKuiper, one row that fails its projection fails the whole window.
            self.numbered_results(&scopes, ctx)?
        };
        self.ordered(results)
    }

    /// HAVING, the ORDER BY keys and projection for each group: `(first tuple, aggregate
    /// values, time)`.
    fn group_results<'a>(
        &self,
        groups: impl Iterator<Item = (Option<&'a Tuple>, Vec<Value>, i64)>,
        window: Option<(i64, i64)>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<(Vec<Value>, Row)>, EvalError> {
        let q = &self.query;
        let agg_hits = [
            Value::Int(self.agg_hits.count),
            Value::Int(self.agg_hits.time),
        ];
        let groups: Vec<_> = groups.collect();
        let mut kept = Vec::with_capacity(groups.len());
        for (first, aggregates, timestamp_ms) in &groups {
            let scope = Group {
                first: *first,
                aggregates,
                window,
                timestamp_ms: *timestamp_ms,
                agg_hits: q.agg_hits.then_some(&agg_hits),
            };
            if let Some(having) = &q.having
                && !having
                    .eval(&scope, ctx)
                    .map_err(EvalError::in_having)?
                    .is_true()
            {
                continue;
            }
            kept.push(scope);
        }
        self.numbered_results(&kept, ctx)
    }

    /// ORDER BY and LIMIT over numbered results (see [`Self::numbered_results`]), in
    /// eKuiper's order.
    fn ordered(&self, mut results: Vec<(Vec<Value>, Row)>) -> Result<Vec<Row>, EvalError> {
        let q = &self.query;
        if !q.order_by.is_empty() {
            sort_results(
                &mut results,
                &q.order_by.iter().map(|(_, asc)| *asc).collect::<Vec<_>>(),
            )?;
        }
        let mut rows: Vec<Row> = results.into_iter().map(|(_, r)| r).collect();
        if let Some(limit) = q.limit {
            rows.truncate(limit);
        }
        Ok(rows)
    }
}

/// ORDER BY: nulls last in both directions; keys of one position compare as numbers, strings
/// or booleans, and mixing kinds is an error (as in eKuiper). The sort is stable.
fn sort_results<T>(results: &mut [(Vec<Value>, T)], ascending: &[bool]) -> Result<(), EvalError> {
    use crate::wording::go_type;
    let kind = |v: &Value| match v {
        Value::Int(_) | Value::Float(_) => Some("number"),
        Value::String(_) => Some("string"),
        Value::Bool(_) => Some("boolean"),
        _ => None,
    };
    // As eKuiper's sorter: row by row, each key against the first key of its position that is
    // not null.
    let mut first: Vec<Option<&Value>> = vec![None; ascending.len()];
    for (keys, _) in results.iter() {
        for (j, v) in keys.iter().enumerate().take(ascending.len()) {
            if v.is_null() {
                continue;
            }
            let f = *first[j].get_or_insert(v);
            let sent = || {
                format!(
                    "run Order By error: incompatible types for comparison: {} and {}",
                    go_type(f),
                    go_type(v)
                )
            };
            match (kind(f), kind(v)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => {
                    return Err(EvalError::worded(
                        format!("ORDER BY: incompatible types for comparison: {a} and {b}"),
                        sent(),
                    ));
                }
                (_, _) => {
                    let odd = if kind(f).is_none() { f } else { v };
                    return Err(EvalError::worded(
                        format!("ORDER BY cannot sort values of type {}", odd.type_name()),
                        sent(),
                    ));
                }
            }
        }
    }
    results.sort_by(|(a, _), (b, _)| {
        for (i, asc) in ascending.iter().enumerate() {
            let (x, y) = (&a[i], &b[i]);
            let ord = match (x.is_null(), y.is_null()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => return std::cmp::Ordering::Greater,
                (false, true) => return std::cmp::Ordering::Less,
                (false, false) => {
                    let lt = binary(BinOp::Lt, x, y)
                        .map(|v| v.is_true())
                        .unwrap_or(false);
                    let gt = binary(BinOp::Gt, x, y)
                        .map(|v| v.is_true())
                        .unwrap_or(false);
                    let ord = if lt {
                        std::cmp::Ordering::Less
                    } else if gt {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    };
                    if *asc { ord } else { ord.reverse() }
                }
            };
            if ord != std::cmp::Ordering::Equal {
                return ord;
            }
        }
        std::cmp::Ordering::Equal
    });
    Ok(())
}

/// The rows of a lookup table each of `tuples` pairs with: its key looked up, then the rows
/// kept whose own key equals it (`pairs` gets the indices, per tuple, into what is returned).
fn lookup_rows(
    lookup: &dyn Lookup,
    h: &HashJoin,
    tuples: &[Tuple],
    ctx: &EvalCtx<'_>,
    pairs: &mut Vec<Vec<usize>>,
) -> Result<Vec<Arc<Row>>, EvalError> {
    let mut rows = Vec::new();
    for left in tuples {
        let value = h.left.eval(left, ctx)?;
        let key = Key::of(&value);
        let mut hits = Vec::new();
        if key != Key::Null {
            let check = lookup.rows_hold_key();
            for row in lookup.get(&value).map_err(EvalError::new)? {
                if !check || Key::of(&h.right.eval(&row, ctx)?) == key {
                    hits.push(rows.len());
                    rows.push(Arc::new(row));
                }
            }
        }
        pairs.push(hits);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::ProjectionItem;
    use crate::stream::{StreamDef, parse_streams};

    /// Stream `s`, read from memory, its rows timed by their `ts`.
    const TIMED: &str =
        "CREATE STREAM s () WITH (TYPE=\"memory\", DATASOURCE=\"t\", TIMESTAMP=\"ts\");";
    /// Stream `s`, read from memory, on processing time.
    const UNTIMED: &str = "CREATE STREAM s () WITH (TYPE=\"memory\", DATASOURCE=\"t\");";
    /// Streams `s` and `t` in event time (`ts`), for joins.
    const TWO_TIMED: &str = "CREATE STREAM s () WITH (TYPE=\"memory\", DATASOURCE=\"s\", TIMESTAMP=\"ts\");\
         CREATE STREAM t () WITH (TYPE=\"memory\", DATASOURCE=\"t\", TIMESTAMP=\"ts\");";

    /// The catalog the statements under test compile against.
    struct Streams(Vec<StreamDef>);

    impl Streams {
        /// The streams `ddl` defines.
        fn of(ddl: &str) -> Self {
            Self(parse_streams(ddl, "test", std::path::Path::new(".")).unwrap())
        }
    }

    impl super::super::Catalog for Streams {
        fn stream(&self, name: &str) -> Option<&StreamDef> {
            self.0.iter().find(|d| &*d.name == name)
        }
    }

    /// Rows that other rules read too give the same messages as rows of the rule's own, for a
    /// statement that reads them in place and for one that takes copies; they stay as they were.
    #[test]
    fn shared_rows_give_what_owned_rows_give() {
        let streams = Streams::of(UNTIMED);
        let rows: Vec<Row> = (0..6)
            .map(|i| {
                Row::from_pairs(
                    vec![
                        (Arc::from("v"), Value::Int(i)),
                        (
                            Arc::from("xs"),
                            Value::array(vec![Value::Int(i), Value::Int(-i)]),
                        ),
                    ],
                    100 + i,
                )
            })
            .collect();
        let ctx = ctx_at(200);
        for sql in [
            "SELECT v, v * 2 AS w FROM s WHERE v > 2",
            "SELECT unnest(xs) AS x FROM s WHERE v % 2 = 0",
            "SELECT v, 1 / (v - 3) AS inv FROM s",
            "SELECT count(*) AS n FROM s GROUP BY COUNTWINDOW(4)",
        ] {
            let run = |shared: bool| {
                let query = super::super::compile(sql, &streams).unwrap();
                let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
                let mut out = Vec::new();
                let outcome = if shared {
                    runner.push_shared(0, &rows, &ctx, &mut out)
                } else {
                    runner.push(0, rows.clone(), &ctx, &mut out)
                };
                (
                    format!("{out:?}"),
                    format!("{:?}", outcome.errors),
                    outcome.filtered,
                )
            };
            let owned = run(false);
            assert!(!owned.0.is_empty(), "{sql}: no message");
            assert_eq!(run(true), owned, "{sql}");
        }
        assert_eq!(rows[5].get("v"), Some(&Value::Int(5)));
    }

    /// The merge releases rows in (time, source, arrival) order whether they came in order
    /// (kept in its tail) or not (kept in its tree), across releases and at the end.
    #[test]
    fn merge_orders_rows_in_and_out_of_order() {
        let row = |ts: i64, n: i64| Row::from_pairs(vec![(Arc::from("n"), Value::Int(n))], ts);
        let order = |rows: Vec<(usize, Row)>| -> Vec<(usize, i64, Option<Value>)> {
            rows.into_iter()
                .map(|(s, r)| (s, r.timestamp_ms, r.get("n").cloned()))
                .collect()
        };
        let mut merge = Merge::new(10, vec![false, false]);
        merge.add(0, vec![row(10, 1), row(12, 2), row(12, 3)]);
        merge.add(1, vec![row(11, 4)]);
        // 11 came after 12 from another source: out of order, then in order again.
        merge.add(0, vec![row(20, 5), row(15, 6), row(25, 7), row(30, 8)]);
        merge.add(1, vec![row(14, 9), row(40, 10)]);
        let held: Vec<i64> = merge.held().map(|(_, r)| r.timestamp_ms).collect();
        assert_eq!(held, [10, 11, 12, 12, 14, 15, 20, 25, 30, 40]);
        // The watermark is min(30, 40) - 10 = 20: rows up to 20 go (eKuiper's watermark sends
        // the rows at its own time too).
        assert_eq!(
            order(merge.release()),
            [
                (0, 10, Some(Value::Int(1))),
                (1, 11, Some(Value::Int(4))),
                (0, 12, Some(Value::Int(2))),
                (0, 12, Some(Value::Int(3))),
                (1, 14, Some(Value::Int(9))),
                (0, 15, Some(Value::Int(6))),
                (0, 20, Some(Value::Int(5))),
            ]
        );
        merge.add(0, vec![row(35, 11), row(50, 12)]);
        // min(50, 40) - 10 = 30.
        assert_eq!(
            order(merge.release()),
            [(0, 25, Some(Value::Int(7))), (0, 30, Some(Value::Int(8)))]
        );
        // Ended streams stop holding the watermark (`fireAtEnd`): the rest goes.
        merge.ended_hold = false;
        merge.end(0);
        merge.end(1);
        assert_eq!(
            order(merge.release()),
            [
                (0, 35, Some(Value::Int(11))),
                (1, 40, Some(Value::Int(10))),
                (0, 50, Some(Value::Int(12))),
            ]
        );
        assert_eq!(merge.held().count(), 0);
    }

    /// Runs `sql` over `rows` (event time, 5 ms tolerance) with or without aggregation on
    /// arrival; returns each emitted window's rows as JSON text, and the late count.
    fn run(sql: &str, rows: &[(i64, &str, Value)], on_arrival: bool) -> (Vec<String>, u64) {
        let streams = Streams::of(TIMED);
        let query = super::super::compile(sql, &streams).unwrap();
        let mut runner = QueryRunner::new(query, true, 5, HashMap::new());
        assert!(
            runner.panes.is_some(),
            "the statement suits aggregation on arrival"
        );
        if !on_arrival {
            runner.panes = None;
            let kind = runner.query.window.as_ref().unwrap().kind;
            let mut window = WindowOperator::new(kind, true, 5, 1);
            window.watermark_from_caller();
            runner.window = Some(window);
        }
        let ctx = ctx_at(0);
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (ts, device, v) in rows {
            let row = Row::from_pairs(
                vec![
                    (Arc::from("ts"), Value::Int(*ts)),
                    (Arc::from("device"), Value::string(*device)),
                    (Arc::from("v"), v.clone()),
                ],
                *ts,
            );
            errors.extend(runner.push(0, vec![row], &ctx, &mut out).errors);
        }
        errors.extend(runner.finish(&ctx, &mut out).errors);
        let mut windows = rendered(&out);
        windows.extend(errors.iter().map(|e| format!("error: {e}")));
        (windows, runner.late())
    }

    /// Each message as text: a row list as its rows' `(field, value)` pairs, one row after the
    /// other; any other message as its `Debug` form.
    fn rendered(out: &[Message]) -> Vec<String> {
        out.iter()
            .map(|m| match m {
                Message::Rows(rows) => rows
                    .iter()
                    .map(|r| format!("{:?}", r.iter().collect::<Vec<_>>()))
                    .collect::<Vec<_>>()
                    .join(" "),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Runs `sql` over stream `s` (event time, 0 ms tolerance), one row per `(ts, v)`; returns
    /// each message as JSON text.
    /// An evaluation context at processing time `now_ms`, without metadata.
    fn ctx_at(now_ms: i64) -> EvalCtx<'static> {
        static NO_META: Value = Value::Null;
        EvalCtx {
            now_ms,
            meta: &NO_META,
        }
    }

    fn messages(sql: &str, rows: &[(i64, i64)]) -> Vec<String> {
        let streams = Streams::of(TIMED);
        let query = super::super::compile(sql, &streams).unwrap();
        let mut runner = QueryRunner::new(query, true, 0, HashMap::new());
        let ctx = ctx_at(0);
        let mut out = Vec::new();
        for (ts, v) in rows {
            let row = Row::from_pairs(
                vec![
                    (Arc::from("ts"), Value::Int(*ts)),
                    (Arc::from("v"), Value::Int(*v)),
                ],
                *ts,
            );
            assert!(runner.push(0, vec![row], &ctx, &mut out).errors.is_empty());
        }
        assert!(runner.finish(&ctx, &mut out).errors.is_empty());
        messages_of(&out)
    }

    /// Each message as `field=value,...` per row, rows separated by a space.
    fn messages_of(out: &[Message]) -> Vec<String> {
        out.iter()
            .map(|m| match m {
                Message::Rows(rows) => rows
                    .iter()
                    .map(|r| {
                        r.iter()
                            .map(|(k, v)| format!("{k}={}", v.to_json()))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// A row of `s` or `t` at `ts` with `v`.
    fn timed(ts: i64, v: i64) -> Row {
        Row::from_pairs(
            vec![
                (Arc::from("ts"), Value::Int(ts)),
                (Arc::from("v"), Value::Int(v)),
            ],
            ts,
        )
    }

    #[test]
    fn the_end_of_input_sends_nothing_more_and_counts_what_is_left() {
        let ctx = ctx_at(0);
        let sql =
            "SELECT count(*) AS n, window_start() AS ws FROM s GROUP BY TUMBLINGWINDOW(ms, 10)";
        for on_arrival in [true, false] {
            let query = super::super::compile(sql, &Streams::of(TIMED)).unwrap();
            let mut runner = if on_arrival {
                QueryRunner::new(query, true, 2, HashMap::new())
            } else {
                QueryRunner::checkpointable(query, true, 2, HashMap::new())
            };
            assert_eq!(runner.panes.is_some(), on_arrival);
            let mut out = Vec::new();
            let rows = [(3, 1), (5, 2), (12, 3), (14, 4)].map(|(ts, v)| timed(ts, v));
            runner.push(0, rows.to_vec(), &ctx, &mut out);
            runner.end_source(0, &ctx, &mut out);
            // The watermark (14 - 2) fires [0, 10), whose start is its first row's time.
            assert_eq!(messages_of(&out), ["n=2,ws=3"]);
            // [10, 20) holds 12; the watermark holds 14 back.
            let unsent = runner.abandon(&ctx);
            assert_eq!(
                unsent,
                Unsent {
                    windows: 1,
                    rows: 2
                }
            );
            assert_eq!(runner.pending(), 0);
            // With `fireAtEnd`, the same input sends it.
            let query = super::super::compile(sql, &Streams::of(TIMED)).unwrap();
            let mut runner = QueryRunner::new(query, true, 2, HashMap::new());
            runner.set_fire_at_end(true);
            let mut out = Vec::new();
            runner.push(0, rows.to_vec(), &ctx, &mut out);
            runner.end_source(0, &ctx, &mut out);
            runner.finish(&ctx, &mut out);
            assert_eq!(messages_of(&out), ["n=2,ws=3", "n=2,ws=10"]);
            assert_eq!(runner.unsent(), Unsent::default());
        }
    }

    #[test]
    fn a_restored_runner_reports_the_first_window_start_only_once() {
        let ctx = ctx_at(0);
        let sql =
            "SELECT count(*) AS n, window_start() AS ws FROM s GROUP BY TUMBLINGWINDOW(ms, 10)";
        let runner = || {
            let query = super::super::compile(sql, &Streams::of(TIMED)).unwrap();
            QueryRunner::checkpointable(query, true, 0, HashMap::new())
        };
        // Checkpointed with the first window fired ([0, 10), start 3) and 14 held.
        let mut first = runner();
        let mut out = Vec::new();
        first.push(0, vec![timed(3, 1), timed(14, 2)], &ctx, &mut out);
        assert_eq!(messages_of(&out), ["n=1,ws=3"]);
        let held: Vec<(usize, Row)> = first
            .held_rows()
            .unwrap()
            .into_iter()
            .map(|(s, r)| (s, (*r).clone()))
            .collect();
        let state = first.function_state();
        assert!(state.first_window_fired);
        let mut restored = runner();
        restored.restore_with(held.clone(), state, &ctx).unwrap();
        let mut out = Vec::new();
        restored.push(0, vec![timed(25, 3)], &ctx, &mut out);
        assert_eq!(
            messages_of(&out),
            ["n=1,ws=10"],
            "the range's start, not 14"
        );
        // A checkpoint of an earlier version (nothing said): the held row starts a first window.
        let mut old = runner();
        old.restore(held, &ctx);
        let mut out = Vec::new();
        old.push(0, vec![timed(25, 3)], &ctx, &mut out);
        assert_eq!(messages_of(&out), ["n=1,ws=14"]);
    }

    #[test]
    fn an_ended_stream_holds_the_watermark_unless_fire_at_end() {
        let ctx = ctx_at(0);
        let ddl = TWO_TIMED;
        let sql =
            "SELECT count(*) AS n FROM s INNER JOIN t ON s.v = t.v GROUP BY TUMBLINGWINDOW(ms, 10)";
        for fire in [false, true] {
            let query = super::super::compile(sql, &Streams::of(ddl)).unwrap();
            let mut runner = QueryRunner::new(query, true, 0, HashMap::new());
            runner.set_fire_at_end(fire);
            let mut out = Vec::new();
            runner.push(0, vec![timed(1, 1), timed(11, 2)], &ctx, &mut out);
            runner.push(1, vec![timed(2, 1)], &ctx, &mut out);
            // `t` ends at 2: eKuiper's watermark stays there, so [0, 10) never fires.
            runner.end_source(1, &ctx, &mut out);
            runner.push(0, vec![timed(25, 3)], &ctx, &mut out);
            if fire {
                assert_eq!(messages_of(&out), ["n=1"], "t no longer holds it back");
            } else {
                assert!(out.is_empty(), "{:?}", messages_of(&out));
                assert_eq!(
                    runner.abandon(&ctx),
                    Unsent {
                        windows: 3,
                        rows: 4
                    }
                );
            }
        }
    }

    #[test]
    fn star_as_an_analytic_argument_is_the_whole_row() {
        // eKuiper's `TestChangedFuncs_Apply1` 1: `changed_col(true, *)` sends the row when it
        // changed.
        let streams = Streams::of(UNTIMED);
        let ctx = ctx_at(0);
        let query =
            super::super::compile("SELECT changed_col(true, *), lag(*) AS p FROM s", &streams)
                .unwrap();
        assert_eq!(query.fields_read(), crate::reads::FieldsRead::All);
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let mut got = Vec::new();
        for (a, c) in [(1, None), (1, Some(2)), (1, Some(2))] {
            let mut pairs = vec![(Arc::from("a"), Value::Int(a))];
            pairs.extend(c.map(|c| (Arc::from("c"), Value::Int(c))));
            let mut out = Vec::new();
            let outcome = runner.push(0, vec![Row::from_pairs(pairs, 0)], &ctx, &mut out);
            assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
            let Some(Message::Row(row)) = out.first() else {
                panic!("one row expected: {out:?}")
            };
            got.push(
                row.iter()
                    .map(|(k, v)| format!("{k}={}", v.to_json()))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        assert_eq!(
            got,
            [
                "changed_col={\"a\":1},p=null",
                "changed_col={\"a\":1,\"c\":2},p={\"a\":1}",
                "changed_col=null,p={\"a\":1,\"c\":2}",
            ]
        );
    }

    #[test]
    fn a_field_may_be_named_all_as_in_ekuiper() {
        // eKuiper's `TestJsonPathFunc_Apply1` 15: its SQL has no `ALL`.
        let streams = Streams::of(UNTIMED);
        let ctx = ctx_at(0);
        let row = Row::from_pairs(
            vec![
                (
                    Arc::from("all"),
                    Value::from_json(serde_json::json!([{"ts": 0}, {"ts": 500}, {"ts": 1000}])),
                ),
                (
                    Arc::from("poi"),
                    Value::from_json(serde_json::json!([0, 1])),
                ),
            ],
            0,
        );
        for (sql, want) in [
            ("SELECT all[poi[-1] + 1]->ts AS t FROM s", "t=1000"),
            (
                "SELECT poi[0] AS p, all[0]->ts AS t FROM s WHERE all[1]->ts = 500",
                "p=0,t=0",
            ),
            ("SELECT `all`[2]->ts AS t FROM s", "t=1000"),
        ] {
            let query = super::super::compile(sql, &streams).unwrap();
            let runner = QueryRunner::new(query, false, 0, HashMap::new());
            let rows = runner
                .project(StageInput::Row(row.clone()), None, &ctx)
                .unwrap();
            let got = rows[0]
                .iter()
                .map(|(k, v)| format!("{k}={}", v.to_json()))
                .collect::<Vec<_>>()
                .join(",");
            assert_eq!(got, want, "{sql}");
        }
    }

    #[test]
    fn a_right_join_reads_its_right_row_first_as_ekuiper() {
        // eKuiper's right join puts the right row first in the tuples it makes
        // (`TestRightJoinPlan_Apply`, `TestMultiJoinPlan_Apply` 13): a field name both rows
        // have is read from the right row, unqualified or in `*`.
        let ctx = ctx_at(0);
        let ddl = TWO_TIMED;
        let row = |ts: i64, v: i64, f: &str| {
            Row::from_pairs(
                vec![
                    (Arc::from("ts"), Value::Int(ts)),
                    (Arc::from("v"), Value::Int(v)),
                    (Arc::from("f"), Value::string(f)),
                ],
                ts,
            )
        };
        for (join, want) in [
            ("LEFT", "x=\"s1\",f=\"s1\""),
            ("RIGHT", "x=\"t1\",f=\"t1\""),
        ] {
            let sql = format!(
                "SELECT f AS x, * EXCEPT(ts, v) FROM s {join} JOIN t ON s.v = t.v \
                 GROUP BY TUMBLINGWINDOW(ms, 10)"
            );
            let query = super::super::compile(&sql, &Streams::of(ddl)).unwrap();
            let mut runner = QueryRunner::new(query, true, 0, HashMap::new());
            runner.set_fire_at_end(true);
            let mut out = Vec::new();
            runner.push(0, vec![row(1, 1, "s1")], &ctx, &mut out);
            runner.push(1, vec![row(2, 1, "t1")], &ctx, &mut out);
            runner.finish(&ctx, &mut out);
            assert_eq!(messages_of(&out), [want], "{join}");
        }
    }

    #[test]
    fn without_a_window_each_row_is_a_group_of_its_own() {
        let sql = "SELECT v, count(*) AS n, sum(v) AS s, collect(v) AS c FROM s WHERE v != 2 \
                   ORDER BY v DESC LIMIT 1";
        let query = super::super::compile(sql, &Streams::of(UNTIMED)).unwrap();
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let ctx = ctx_at(0);
        let rows = (1..=3)
            .map(|v| Row::from_pairs(vec![(Arc::from("v"), Value::Int(v))], v))
            .collect();
        let mut out = Vec::new();
        let outcome = runner.push(0, rows, &ctx, &mut out);
        assert!(outcome.errors.is_empty());
        assert_eq!(outcome.filtered, 1);
        // One message per row, in arrival order (ORDER BY has one row to sort, and one row is
        // within any LIMIT but 0).
        let got: Vec<String> = out
            .iter()
            .map(|m| match m {
                Message::Row(r) => r
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.to_json()))
                    .collect::<Vec<_>>()
                    .join(","),
                other => panic!("a row alone is one message: {other:?}"),
            })
            .collect();
        assert_eq!(got, ["v=1,n=1,s=1,c=[1]", "v=3,n=1,s=3,c=[3]"]);
    }

    /// Each message as `field=value,...`, a row alone or the rows of a list (space-separated).
    fn row_texts(out: &[Message]) -> Vec<String> {
        let text = |r: &Row| {
            r.iter()
                .map(|(k, v)| format!("{k}={}", v.to_json()))
                .collect::<Vec<_>>()
                .join(",")
        };
        out.iter()
            .map(|m| match m {
                Message::Row(r) => text(r),
                Message::Rows(rows) => rows.iter().map(text).collect::<Vec<_>>().join(" "),
                Message::Error { message, .. } => format!("error: {message}"),
            })
            .collect()
    }

    #[test]
    fn limit_without_a_window_cuts_each_row_s_unnested_results_and_limit_0_sends_nothing() {
        let ctx = ctx_at(0);
        let rows = || -> Vec<Row> {
            [(vec![1, 2, 3], 1), (vec![4], 0)]
                .into_iter()
                .map(|(a, v)| {
                    let a = Value::array(a.into_iter().map(Value::Int).collect());
                    Row::from_pairs(
                        vec![(Arc::from("a"), a), (Arc::from("v"), Value::Int(v))],
                        0,
                    )
                })
                .collect()
        };
        let run = |sql: &str| {
            let query = super::super::compile(sql, &Streams::of(UNTIMED)).unwrap();
            let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
            let mut out = Vec::new();
            let outcome = runner.push(0, rows(), &ctx, &mut out);
            (row_texts(&out), outcome)
        };
        let (got, _) = run("SELECT unnest(a) AS x FROM s LIMIT 2");
        assert_eq!(got, ["x=1", "x=2", "x=4"]);
        let (got, outcome) = run("SELECT a FROM s LIMIT 0");
        assert!(got.is_empty() && outcome.errors.is_empty());
        assert_eq!(outcome.filtered, 2);
        // `WHERE` still runs first, and its errors are sent (eKuiper's filter operator).
        let (got, outcome) = run("SELECT count(*) AS n FROM s WHERE 10 / v > 1 LIMIT 0");
        assert!(got.is_empty());
        assert_eq!(outcome.errors.len(), 1, "{outcome:?}");
    }

    #[test]
    fn send_meta_adds_each_row_s_metadata_as_meta_to_its_results() {
        let ctx = ctx_at(0);
        let topic = |t: &str| {
            let mut m = crate::value::Map::new();
            m.insert(Arc::from("topic"), Value::string(t));
            Arc::new(Value::object(m))
        };
        let row = |v: i64, meta: Option<Arc<Value>>| {
            let mut row = Row::from_pairs(vec![(Arc::from("v"), Value::Int(v))], 0);
            row.set_meta(meta);
            row
        };
        for sql in ["SELECT v FROM s", "SELECT v, count(*) AS n FROM s"] {
            let query = super::super::compile(sql, &Streams::of(UNTIMED)).unwrap();
            assert!(query.can_send_meta_to_sink());
            let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
            runner.set_send_meta(true);
            let mut out = Vec::new();
            let rows = vec![
                row(1, Some(topic("a"))),
                row(2, None),
                row(3, Some(topic("b"))),
            ];
            runner.push(0, rows, &ctx, &mut out);
            let n = if sql.contains("count") { ",n=1" } else { "" };
            assert_eq!(
                row_texts(&out),
                [
                    format!("v=1{n},__meta={{\"topic\":\"a\"}}"),
                    format!("v=2{n}"),
                    format!("v=3{n},__meta={{\"topic\":\"b\"}}"),
                ]
            );
        }
        for sql in [
            "SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)",
            "SELECT * FROM s INNER JOIN t ON s.v = t.v GROUP BY TUMBLINGWINDOW(ss, 1)",
        ] {
            let streams = Streams::of(&format!(
                "{UNTIMED}\nCREATE STREAM t () WITH (TYPE=\"memory\", DATASOURCE=\"u\");"
            ));
            let query = super::super::compile(sql, &streams).unwrap();
            assert!(!query.can_send_meta_to_sink(), "{sql}");
        }
    }

    #[test]
    fn a_hash_join_fails_where_on_cannot_compare_its_keys_as_eq_row_by_row_does() {
        let ctx = ctx_at(0);
        let row = |k: Value| Row::from_pairs(vec![(Arc::from("k"), k)], 0);
        for sql in [
            "SELECT s.k AS a FROM s INNER JOIN t ON s.k = t.k GROUP BY COUNTWINDOW(4)",
            "SELECT s.k AS a FROM s INNER JOIN t ON t.k = s.k GROUP BY COUNTWINDOW(4)",
        ] {
            let streams = Streams::of(&format!(
                "{UNTIMED}\nCREATE STREAM t () WITH (TYPE=\"memory\", DATASOURCE=\"u\");"
            ));
            let query = super::super::compile(sql, &streams).unwrap();
            let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
            let mut out = Vec::new();
            let mut outcome = runner.push(0, vec![row(Value::Int(1))], &ctx, &mut out);
            outcome.errors.extend(
                runner
                    .push(1, vec![row(Value::Int(1))], &ctx, &mut out)
                    .errors,
            );
            outcome.errors.extend(
                runner
                    .push(1, vec![row(Value::string("1"))], &ctx, &mut out)
                    .errors,
            );
            outcome.errors.extend(
                runner
                    .push(0, vec![row(Value::Int(2))], &ctx, &mut out)
                    .errors,
            );
            assert!(out.is_empty(), "{out:?}");
            let [e] = &outcome.errors[..] else {
                panic!("{outcome:?}")
            };
            let (l, r) = if sql.contains("ON s.k") {
                ("int64(1)", "string(1)")
            } else {
                ("string(1)", "int64(1)")
            };
            assert_eq!(
                e.sent(),
                format!("run Join error: invalid operation {l} = {r}")
            );
        }
    }

    #[test]
    fn group_by_keys_and_having_without_a_window_are_refused() {
        let streams = Streams::of(UNTIMED);
        let err = super::super::compile("SELECT v FROM s GROUP BY v", &streams).unwrap_err();
        assert!(
            err.message
                .starts_with("GROUP BY keys group the rows of a window")
        );
        let err =
            super::super::compile("SELECT v FROM s HAVING count(*) > 1", &streams).unwrap_err();
        assert!(
            err.message
                .starts_with("HAVING works on the rows of a window")
        );
    }

    #[test]
    fn event_time_is_the_row_time_per_row_and_the_window_end_per_window() {
        // Rows projected one by one keep their own time (eKuiper's row answers first).
        assert_eq!(
            messages(
                "SELECT v, event_time() AS et FROM s GROUP BY TUMBLINGWINDOW(ms, 10)",
                &[(3, 1), (7, 2), (12, 3)]
            ),
            ["v=1,et=3 v=2,et=7", "v=3,et=12"]
        );
        // An aggregate's argument is read row by row; the group's own value is the window end.
        assert_eq!(
            messages(
                "SELECT last_value(event_time(), true) AS last, event_time() AS et FROM s \
                 GROUP BY TUMBLINGWINDOW(ms, 10)",
                &[(3, 1), (7, 2), (12, 3)]
            ),
            ["last=7,et=10", "last=12,et=20"]
        );
    }

    #[test]
    fn window_trigger_is_the_time_the_window_fired() {
        // eKuiper gives the window's trigger time, its end, to rows and groups alike.
        assert_eq!(
            messages(
                "SELECT v, window_trigger() AS wt, event_time() AS et FROM s \
                 GROUP BY TUMBLINGWINDOW(ms, 10)",
                &[(3, 1), (12, 3)]
            ),
            ["v=1,wt=10,et=3", "v=3,wt=20,et=12"]
        );
        assert_eq!(
            messages(
                "SELECT count(*) AS n, window_trigger() FROM s GROUP BY TUMBLINGWINDOW(ms, 10)",
                &[(3, 1), (7, 2), (12, 3)]
            ),
            ["n=2,window_trigger=10", "n=1,window_trigger=20"]
        );
        let streams = Streams::of(TIMED);
        let err = super::super::compile("SELECT window_trigger() FROM s", &streams).unwrap_err();
        assert_eq!(err.message, "`window_trigger()` needs a window in GROUP BY");
    }

    #[test]
    fn rule_id_and_rule_start_are_the_rule_s_own() {
        let streams = Streams::of(UNTIMED);
        let sql = "SELECT rule_id(), rule_start() AS started, v FROM s WHERE rule_id() = 'r7'";
        let rule = super::super::RuleInfo {
            id: Arc::from("r7"),
            start_ms: 1_700_000_000_123,
        };
        let query = super::super::compile_rule(sql, &streams, &rule).unwrap();
        assert!(!query.sleeps);
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let ctx = ctx_at(5);
        let row = Row::from_pairs(vec![(Arc::from("v"), Value::Int(1))], 5);
        let mut out = Vec::new();
        assert!(
            runner
                .push(0, vec![row.clone()], &ctx, &mut out)
                .errors
                .is_empty()
        );
        let [Message::Row(sent)] = &out[..] else {
            panic!("one row expected, got {out:?}");
        };
        assert_eq!(
            sent.iter()
                .map(|(k, v)| format!("{k}={}", v.to_json()))
                .collect::<Vec<_>>(),
            ["rule_id=\"r7\"", "started=1700000000123", "v=1"]
        );
        // Compiled outside a rule, the statement cannot say which rule it runs in.
        let query = super::super::compile(sql, &streams).unwrap();
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let outcome = runner.push(0, vec![row], &ctx, &mut Vec::new());
        assert_eq!(
            outcome.errors[0].message(),
            "rule_id: the statement is not running in a rule"
        );
        let delayed = super::super::compile("SELECT delay(1, v) FROM s", &streams).unwrap();
        assert!(delayed.sleeps);
    }

    #[test]
    fn a_hop_longer_than_the_window_leaves_gaps() {
        // Windows [2, 5), [7, 10), [12, 15): 1, 6 and 11 are in none; 16 is in no window at
        // the end of the input either, so nothing more is sent for it.
        assert_eq!(
            messages(
                "SELECT v FROM s GROUP BY HOPPINGWINDOW(ms, 3, 5)",
                &[(1, 1), (3, 3), (6, 6), (8, 8), (11, 11), (13, 13), (16, 16)]
            ),
            ["v=3", "v=8", "v=13"]
        );
    }

    #[test]
    fn a_state_window_opens_and_closes_on_conditions() {
        // Begin at v = 1, end with (and including) v = 5; rows before a begin are dropped and
        // the window left open at the end is not sent.
        assert_eq!(
            messages(
                "SELECT v, window_start() AS ws, window_end() AS we FROM s \
                 GROUP BY STATEWINDOW(v = 1, v = 5)",
                &[
                    (1, 0),
                    (2, 1),
                    (3, 2),
                    (4, 5),
                    (5, 3),
                    (6, 1),
                    (7, 5),
                    (8, 1),
                    (9, 2)
                ]
            ),
            [
                "v=1,ws=2,we=4 v=2,ws=2,we=4 v=5,ws=2,we=4",
                "v=1,ws=6,we=7 v=5,ws=6,we=7"
            ]
        );
        // One condition ends a window without the row that meets it, which begins the next
        // (eKuiper's `statewindow(had_changed(true, a))` example).
        assert_eq!(
            messages(
                "SELECT v FROM s GROUP BY STATEWINDOW(had_changed(true, v))",
                &[(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3)]
            ),
            ["v=1 v=1 v=1", "v=2 v=2"]
        );
        // One window state per partition; aggregates see the window's rows.
        assert_eq!(
            messages(
                "SELECT count(*) AS c, collect(ts) AS t FROM s \
                 GROUP BY STATEWINDOW(v = 1, v = 5) OVER (PARTITION BY ts % 2)",
                &[(1, 1), (2, 1), (3, 5), (4, 7), (6, 5)]
            ),
            ["c=2,t=[1,3]", "c=3,t=[2,4,6]"]
        );
    }

    #[test]
    fn a_select_item_may_name_a_later_alias() {
        let streams = Streams::of(
            "CREATE STREAM s (size BIGINT, ts BIGINT) WITH (TYPE=\"memory\", DATASOURCE=\"t\");",
        );
        let compile = |sql: &str| super::super::compile(sql, &streams);
        let query = compile("SELECT a + 1 AS b, size AS a FROM s").unwrap();
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let ctx = ctx_at(0);
        let mut out = Vec::new();
        let row = Row::from_pairs(vec![(Arc::from("size"), Value::Int(3))], 0);
        assert!(runner.push(0, vec![row], &ctx, &mut out).errors.is_empty());
        let Some(Message::Row(row)) = out.first() else {
            panic!("{out:?}");
        };
        assert_eq!(row.get("b"), Some(&Value::Int(4)));
        assert_eq!(row.get("a"), Some(&Value::Int(3)));
        // An alias that names itself, or two that name each other, is still an unknown field.
        for sql in [
            "SELECT size + a AS a FROM s",
            "SELECT a + 1 AS b, b + 1 AS a FROM s",
        ] {
            let err = compile(sql).unwrap_err().to_string();
            assert!(err.contains("unknown field"), "{sql}: {err}");
        }
    }

    #[test]
    fn an_invisible_item_is_computed_but_not_sent() {
        // eKuiper's TestAnalyzeFuncAlias1: the hidden alias feeds a later item and an analytic
        // function, and is left out of the result.
        assert_eq!(
            messages(
                "SELECT lag(v,1,0) as temp INVISIBLE, temp + 1 as b, lag(b,1,0), v \
                 FROM s GROUP BY COUNTWINDOW(3)",
                &[(1, 3), (2, 6), (3, 2)]
            ),
            ["b=1,lag=0,v=3 b=4,lag=1,v=6 b=7,lag=4,v=2"]
        );
        // In HAVING and ORDER BY; a plain column may be hidden too; any case, before FROM or `,`.
        assert_eq!(
            messages(
                "SELECT count(*) AS c invisible, max(v) AS m, ts INVISIBLE FROM s \
                 GROUP BY TUMBLINGWINDOW(ms, 10) HAVING c > 1",
                &[(1, 3), (2, 6), (13, 2)]
            ),
            ["m=6"]
        );
        assert_eq!(
            messages(
                "SELECT v, 0 - v AS k Invisible FROM s GROUP BY TUMBLINGWINDOW(ms, 10) ORDER BY k",
                &[(1, 3), (2, 6)]
            ),
            ["v=6 v=3"]
        );
        // A column named `invisible` is still a column, and an alias may be `invisible`.
        let streams = Streams::of(UNTIMED);
        let compile = |sql: &str| super::super::compile(sql, &streams);
        let query = compile("SELECT invisible, v AS `invisible` INVISIBLE FROM s").unwrap();
        let names: Vec<String> = query
            .projection
            .items()
            .iter()
            .map(|i| match i {
                ProjectionItem::Expr { name, .. } => name.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["invisible"]);
        // A hidden unnamed expression still takes its default name's number.
        let query = compile("SELECT v + 1 INVISIBLE, v + 2 FROM s").unwrap();
        assert!(matches!(
            query.projection.items(),
            [ProjectionItem::Expr { name, .. }] if &**name == "kuiper_field_1"
        ));
        // Errors point into the statement as written.
        let err = compile("SELECT * INVISIBLE FROM s")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("line 1, column 8: INVISIBLE hides"),
            "{err}"
        );
        let err = compile("SELECT a INVISIBLE b FROM s")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 1, column 20:"), "{err}");
        let err = compile("SELECT a INVISIBLE,\n  b +, c FROM s")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 2, column 6:"), "{err}");
    }

    #[test]
    fn meta_follows_a_path_into_an_entry_and_mqtt_reads_the_stream_it_names() {
        // eKuiper's `TestMetaFunc_Apply1` 1 and 3, `TestMqttFunc_Apply2` 0.
        let streams = Streams::of(
            "CREATE STREAM a () WITH (TYPE=\"memory\", DATASOURCE=\"a\");
             CREATE STREAM b () WITH (TYPE=\"memory\", DATASOURCE=\"b\");",
        );
        let ctx = ctx_at(0);
        let row = |topic: &str| {
            let mut row = Row::from_pairs(vec![(Arc::from("id"), Value::Int(1))], 0);
            row.set_meta(Some(Arc::new(Value::from_json(serde_json::json!({
                "topic": topic,
                "temperature": {"device": "d2"},
                "Light-diming": {"device": "d3"},
            })))));
            row
        };
        let project = |sql: &str, input: StageInput| {
            let query = super::super::compile(sql, &streams).unwrap();
            let runner = QueryRunner::new(query, false, 0, HashMap::new());
            let rows = runner.project(input, None, &ctx).unwrap();
            rows[0]
                .iter()
                .map(|(k, v)| format!("{k}={}", v.to_json()))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            project(
                "SELECT meta(temperature->device) AS r, meta(`Light-diming`->device) AS l FROM a",
                StageInput::Row(row("t/a")),
            ),
            "r=\"d2\",l=\"d3\""
        );
        assert_eq!(
            project(
                "SELECT mqtt(a.topic) AS x, mqtt(b.topic) AS y FROM a LEFT JOIN b ON a.id = b.id \
                 GROUP BY TUMBLINGWINDOW(ss, 1)",
                StageInput::Window(vec![vec![Some(row("t/a")), Some(row("t/b"))]]),
            ),
            "x=\"t/a\",y=\"t/b\""
        );
    }

    #[test]
    fn meta_reads_the_row_s_own_metadata() {
        let streams = Streams::of(UNTIMED);
        let compile = |sql: &str| super::super::compile(sql, &streams);
        let meta = |topic: &str| {
            Arc::new(Value::from_json(
                serde_json::json!({"topic": topic, "qos": 1, "messageId": 7}),
            ))
        };
        let rows = || {
            ["a", "b", "a"]
                .into_iter()
                .enumerate()
                .map(|(i, topic)| {
                    let mut row =
                        Row::from_pairs(vec![(Arc::from("v"), Value::Int(i as i64))], i as i64);
                    row.set_meta(Some(meta(topic)));
                    row
                })
                .collect::<Vec<_>>()
        };
        // Row by row, with an analytic function between the source and the projection.
        let query = compile(
            "SELECT v, meta(topic) AS t, meta(messageId) AS id, lag(v) AS l FROM s \
             WHERE meta(topic) = \"a\"",
        )
        .unwrap();
        assert!(query.reads_meta());
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let ctx = ctx_at(0);
        let mut out = Vec::new();
        assert!(runner.push(0, rows(), &ctx, &mut out).errors.is_empty());
        let got: Vec<String> = out
            .iter()
            .map(|m| match m {
                Message::Row(r) => r
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.to_json()))
                    .collect::<Vec<_>>()
                    .join(","),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(got, ["v=0,t=\"a\",id=7,l=null", "v=2,t=\"a\",id=7,l=1"]);
        // A window's group reads its first row's.
        let query = compile(
            "SELECT count(*) AS n, meta(topic) AS t, meta(*) AS m FROM s GROUP BY COUNTWINDOW(3)",
        )
        .unwrap();
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let mut out = Vec::new();
        let mut input = rows();
        input.rotate_left(1);
        assert!(runner.push(0, input, &ctx, &mut out).errors.is_empty());
        let Some(Message::Rows(rows)) = out.first() else {
            panic!("{out:?}");
        };
        assert_eq!(rows[0].get("t"), Some(&Value::string("b")));
        assert_eq!(rows[0].get("m"), Some(&*meta("b")));
        // A row without metadata gives null.
        let query = compile("SELECT meta(topic) AS t FROM s").unwrap();
        assert!(compile("SELECT v FROM s").is_ok_and(|q| !q.reads_meta()));
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let mut out = Vec::new();
        let row = Row::from_pairs(vec![(Arc::from("v"), Value::Int(1))], 0);
        assert!(runner.push(0, vec![row], &ctx, &mut out).errors.is_empty());
        let Some(Message::Row(row)) = out.first() else {
            panic!("{out:?}");
        };
        assert_eq!(row.get("t"), Some(&Value::Null));
    }

    #[test]
    fn row_number_numbers_the_rows_of_each_result() {
        assert_eq!(
            messages(
                "SELECT v, row_number() FROM s GROUP BY TUMBLINGWINDOW(ms, 10)",
                &[(3, 1), (7, 2), (8, 3), (12, 4)]
            ),
            [
                "v=1,row_number=1 v=2,row_number=2 v=3,row_number=3",
                "v=4,row_number=1"
            ]
        );
        // Before ORDER BY and LIMIT, as eKuiper's window function operator runs before its
        // order operator and its projection's LIMIT; aliased.
        assert_eq!(
            messages(
                "SELECT v, row_number() AS n FROM s GROUP BY TUMBLINGWINDOW(ms, 10) ORDER BY v DESC",
                &[(3, 1), (7, 2), (8, 3)]
            ),
            ["v=3,n=3 v=2,n=2 v=1,n=1"]
        );
        assert_eq!(
            messages(
                "SELECT v, row_number() AS n FROM s GROUP BY TUMBLINGWINDOW(ms, 10) \
                 ORDER BY v DESC LIMIT 2",
                &[(3, 1), (7, 2), (8, 3)]
            ),
            ["v=3,n=3 v=2,n=2"]
        );
        let streams = Streams::of(UNTIMED);
        for (sql, want) in [
            (
                "SELECT a FROM s WHERE row_number() > 1",
                "row_number() numbers the rows of a result",
            ),
            (
                "SELECT row_number(a) FROM s",
                "`row_number` takes no argument",
            ),
            (
                "SELECT row_number() OVER (ORDER BY a) AS n, row_number() AS m FROM s \
                 GROUP BY COUNTWINDOW(4)",
                "takes no other row_number()",
            ),
            (
                "SELECT row_number() AS m, row_number() OVER (ORDER BY a) AS n FROM s \
                 GROUP BY COUNTWINDOW(4)",
                "must be the statement's only row_number()",
            ),
            (
                "SELECT row_number() OVER (ORDER BY a ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) \
                 FROM s GROUP BY COUNTWINDOW(4)",
                "takes PARTITION BY and ORDER BY, no frame",
            ),
            (
                "SELECT row_number() OVER (PARTITION BY count(*)) FROM s GROUP BY COUNTWINDOW(4)",
                "count",
            ),
        ] {
            let err = super::super::compile(sql, &streams)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{sql}: {err}");
        }
    }

    #[test]
    fn row_number_is_read_by_order_by_and_expressions_as_in_ekuiper() {
        // eKuiper's planner rewrites each `row_number()` of the SELECT list into a column its
        // window function operator sets, before its order operator: ORDER BY its alias sorts
        // on the numbers of the window's order, and an expression reads the number.
        let rows = [(1, 5), (2, 3), (3, 9)];
        assert_eq!(
            messages(
                "SELECT v, row_number() AS n FROM s GROUP BY TUMBLINGWINDOW(ms, 10) ORDER BY n DESC",
                &rows
            ),
            ["v=9,n=3 v=3,n=2 v=5,n=1"]
        );
        assert_eq!(
            messages(
                "SELECT v, row_number() AS n FROM s GROUP BY TUMBLINGWINDOW(ms, 10) \
                 ORDER BY n % 2, n DESC LIMIT 2",
                &rows
            ),
            ["v=3,n=2 v=9,n=3"]
        );
        assert_eq!(
            messages(
                "SELECT v, row_number() + 1 AS m, row_number() * 10, abs(0 - row_number()) AS a \
                 FROM s GROUP BY TUMBLINGWINDOW(ms, 10)",
                &rows
            ),
            [
                "v=5,m=2,kuiper_field_0=10,a=1 v=3,m=3,kuiper_field_0=20,a=2 v=9,m=4,kuiper_field_0=30,a=3"
            ]
        );
        // A later item reads the alias; the groups of a window are numbered as its rows.
        assert_eq!(
            messages(
                "SELECT v % 2 AS k, count(*) AS c, row_number() AS n, n * 100 AS h FROM s \
                 GROUP BY v % 2, TUMBLINGWINDOW(ms, 10) ORDER BY n DESC",
                &[(1, 5), (2, 4), (3, 9)]
            ),
            ["k=0,c=1,n=2,h=200 k=1,c=2,n=1,h=100"]
        );
        // With OVER: the numbers of its order, read in an expression and by ORDER BY.
        assert_eq!(
            messages(
                "SELECT v, row_number() OVER (ORDER BY v) + 100 AS n FROM s \
                 GROUP BY TUMBLINGWINDOW(ms, 10) ORDER BY n DESC",
                &rows
            ),
            ["v=9,n=103 v=5,n=102 v=3,n=101"]
        );
        // The rows an unnest makes of one row share its number (eKuiper's project-set
        // operator runs after the window function operator).
        let query = super::super::compile(
            "SELECT unnest(a) AS x, row_number() AS n FROM s GROUP BY COUNTWINDOW(2)",
            &Streams::of(UNTIMED),
        )
        .unwrap();
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let arrays = [vec![1, 2, 3], vec![4]].map(|a| {
            let a = Value::array(a.into_iter().map(Value::Int).collect());
            Row::from_pairs(vec![(Arc::from("a"), a)], 0)
        });
        let mut out = Vec::new();
        let outcome = runner.push(0, arrays.to_vec(), &ctx_at(0), &mut out);
        assert!(outcome.errors.is_empty(), "{outcome:?}");
        assert_eq!(messages_of(&out), ["n=1,x=1 n=1,x=2 n=1,x=3 n=2,x=4"]);
        // A row alone (no window) is 1.
        let alone = messages("SELECT v, row_number() + 1 AS m FROM s", &[(1, 5)]);
        assert_eq!(alone.len(), 1);
        assert!(alone[0].contains("values: [Int(5), Int(2)]"), "{alone:?}");
        // WHERE and HAVING run before the rows are numbered.
        let streams = Streams::of(UNTIMED);
        for (sql, want) in [
            (
                "SELECT a FROM s WHERE row_number() + 1 > 1",
                "row_number() numbers the rows of a result",
            ),
            (
                "SELECT row_number() AS n FROM s GROUP BY COUNTWINDOW(2) HAVING n > 1",
                "row_number() numbers the rows of a result",
            ),
        ] {
            let err = super::super::compile(sql, &streams)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{sql}: {err}");
        }
        // Its alias in WHERE is the column of that name, as an aggregate's alias.
        let query =
            super::super::compile("SELECT row_number() AS n FROM s WHERE n > 1", &streams).unwrap();
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let mut out = Vec::new();
        let rows = [2, 0].map(|n| Row::from_pairs(vec![(Arc::from("n"), Value::Int(n))], 0));
        runner.push(0, rows.to_vec(), &ctx_at(0), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn an_aggregate_in_where_is_computed_over_the_window_before_the_filter() {
        // eKuiper's planner adds its aggregate function operator before the filter for an
        // aggregate in WHERE: computed over the whole window (after any join, before any
        // grouping), or over the row alone without a window. (eKuiper's `fvt/rule_test.go`
        // `TestRuleAggInWhere`: `a > avg(a)` over a count window of 1 and 2 sends 2.)
        let rows = [(1, 1), (2, 2), (3, 6), (12, 4)];
        assert_eq!(
            messages(
                "SELECT v FROM s WHERE v > avg(v) GROUP BY TUMBLINGWINDOW(ms, 10)",
                &rows
            ),
            ["v=6"]
        );
        assert_eq!(
            messages(
                "SELECT v FROM s WHERE v > avg(v) GROUP BY COUNTWINDOW(2)",
                &[(1, 1), (2, 2), (3, 6), (4, 4)]
            ),
            ["v=2", "v=6"]
        );
        // WHERE's `max` sees every row of the window, the SELECT list's only those kept.
        assert_eq!(
            messages(
                "SELECT count(*) AS c, max(v) AS m FROM s WHERE v < max(v) \
                 GROUP BY TUMBLINGWINDOW(ms, 10)",
                &rows
            ),
            ["c=2,m=2"]
        );
        // Over the window, not per group of GROUP BY.
        assert_eq!(
            messages(
                "SELECT v % 2 AS k, collect(v) AS vs FROM s WHERE v * count(*) > sum(v) \
                 GROUP BY v % 2, TUMBLINGWINDOW(ms, 10)",
                &rows
            ),
            ["k=0,vs=[6]"]
        );
        // A row alone is its own group: `avg(v)` is `v`, `count(*)` is 1.
        let alone = messages("SELECT v FROM s WHERE v >= avg(v) AND count(*) = 1", &rows);
        assert_eq!(alone.len(), 4, "{alone:?}");
        assert!(messages("SELECT v FROM s WHERE count(*) > 1", &rows).is_empty());
        assert!(messages("SELECT sum(v) AS t FROM s WHERE count(*) > 1", &rows).is_empty());

        // In processing time too, where WHERE without aggregates runs before the window.
        let streams = Streams::of(UNTIMED);
        let query = super::super::compile(
            "SELECT v FROM s WHERE v > avg(v) GROUP BY TUMBLINGWINDOW(ms, 10)",
            &streams,
        )
        .unwrap();
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        assert!(!runner.where_first && runner.panes.is_none());
        let mut out = Vec::new();
        for (now, v) in [(1, 1), (2, 2), (3, 6)] {
            let ctx = ctx_at(now);
            let row = Row::from_pairs(vec![(Arc::from("v"), Value::Int(v))], now);
            assert!(runner.push(0, vec![row], &ctx, &mut out).errors.is_empty());
        }
        let ctx = ctx_at(10);
        assert!(runner.advance(10, &ctx, &mut out).errors.is_empty());
        assert_eq!(messages_of(&out), ["v=6"]);

        // Not in a window's FILTER, ON or GROUP BY; an alias of an aggregate in WHERE is the
        // column of that name, as before.
        for (sql, want) in [
            (
                "SELECT v FROM s GROUP BY TUMBLINGWINDOW(ms, 10) FILTER (WHERE v > avg(v))",
                "`avg` is an aggregate function",
            ),
            (
                "SELECT v FROM s GROUP BY sum(v), TUMBLINGWINDOW(ms, 10)",
                "`sum` is an aggregate function",
            ),
            (
                "SELECT v FROM s WHERE avg(avg(v)) > 1",
                "`avg` is an aggregate function",
            ),
            // An analytic function runs on each row before WHERE's aggregates are computed.
            (
                "SELECT v FROM s WHERE lag(avg(v)) > 1",
                "`avg` is an aggregate function",
            ),
        ] {
            let err = super::super::compile(sql, &streams)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{sql}: {err}");
        }
        let query =
            super::super::compile("SELECT avg(v) AS v FROM s WHERE v > 1", &streams).unwrap();
        assert!(query.where_aggregates.is_empty());
    }

    #[test]
    fn row_number_over_numbers_each_partition_in_its_order_as_ekuiper() {
        // Partitions in the order of their values' text, each sorted by the OVER's ORDER BY
        // and numbered from 1; the statement's ORDER BY sorts the numbered rows after.
        let rows = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)];
        assert_eq!(
            messages(
                "SELECT v, row_number() OVER (PARTITION BY v % 2 ORDER BY v DESC) AS n FROM s \
                 GROUP BY TUMBLINGWINDOW(ms, 10)",
                &rows
            ),
            ["v=4,n=1 v=2,n=2 v=5,n=1 v=3,n=2 v=1,n=3"]
        );
        assert_eq!(
            messages(
                "SELECT v, row_number() OVER (PARTITION BY v % 2 ORDER BY v DESC) AS n FROM s \
                 GROUP BY TUMBLINGWINDOW(ms, 10) ORDER BY v LIMIT 4",
                &rows
            ),
            ["v=1,n=3 v=2,n=2 v=3,n=2 v=4,n=1"]
        );
        // ORDER BY alone: the whole result sorted, then numbered.
        assert_eq!(
            messages(
                "SELECT v, row_number() OVER (ORDER BY v DESC) AS n FROM s \
                 GROUP BY TUMBLINGWINDOW(ms, 10)",
                &[(1, 2), (2, 3), (3, 1)]
            ),
            ["v=3,n=1 v=2,n=2 v=1,n=3"]
        );
        // PARTITION BY alone keeps each partition's rows in window order; partitions go by
        // text, as eKuiper sorts their keys as strings: "10," before "9,".
        assert_eq!(
            messages(
                "SELECT v, row_number() OVER (PARTITION BY v) AS n FROM s \
                 GROUP BY TUMBLINGWINDOW(ms, 10)",
                &[(1, 9), (2, 10), (3, 9)]
            ),
            ["v=10,n=1 v=9,n=1 v=9,n=2"]
        );
    }

    #[test]
    fn state_window_errors_name_the_problem() {
        let streams = Streams::of(UNTIMED);
        for (sql, want) in [
            (
                "SELECT a FROM s GROUP BY STATEWINDOW()",
                "usage: STATEWINDOW(begin[, end])",
            ),
            (
                "SELECT a FROM s GROUP BY TUMBLINGWINDOW(ss, 1) OVER (PARTITION BY a)",
                "OVER (PARTITION BY ...) applies to STATEWINDOW only",
            ),
            (
                "SELECT a FROM s GROUP BY STATEWINDOW(nope(a))",
                "unknown function `nope`",
            ),
        ] {
            let err = super::super::compile(sql, &streams)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{sql}: {err}");
        }
    }

    #[test]
    fn a_constant_json_path_is_checked_when_compiled() {
        let streams = Streams::of(UNTIMED);
        let err = super::super::compile("SELECT json_path_query(a, '$.b[') FROM s", &streams)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column 27")
                && err.contains("json_path_query: argument 2: invalid JSONPath"),
            "{err}"
        );
        let err = super::super::compile("SELECT json_path_exists(a, 3) FROM s", &streams)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("json_path_exists: argument 2: expected a JSONPath string, got bigint"),
            "{err}"
        );
        assert!(
            super::super::compile("SELECT json_path_query_first(a, '$.b[*]') FROM s", &streams)
                .is_ok()
        );
    }

    #[test]
    fn aggregation_on_arrival_matches_the_whole_window() {
        // Out of order within the tolerance, a late row, nulls, ties, mixed ints and floats,
        // and a gap of empty windows.
        let mut rows = Vec::new();
        for i in 0..200i64 {
            let ts = i * 3 + [0, 4, -4, 2][(i % 4) as usize];
            let v = match i % 7 {
                0 => Value::Null,
                1 => Value::Float(i as f64 / 4.0),
                _ => Value::Int(i % 11),
            };
            rows.push((ts, ["a", "b", "c"][(i % 3) as usize], v));
        }
        rows.push((100, "a", Value::Int(1000)));
        rows.push((2000, "d", Value::Int(5)));
        for sql in [
            "SELECT device, count(*) AS n, count(v) AS c, sum(v) AS s, avg(v) AS a, min(v) AS lo, \
             max(v) AS hi, window_end() AS e FROM s GROUP BY device, TUMBLINGWINDOW(ms, 40)",
            "SELECT count(*) AS n, sum(v) AS s, ts FROM s WHERE v > 2 GROUP BY TUMBLINGWINDOW(ms, 100)",
            "SELECT device, avg(v) AS a FROM s GROUP BY device, TUMBLINGWINDOW(ms, 50) \
             HAVING count(*) > 5 ORDER BY a DESC LIMIT 2",
            "SELECT max(v) AS m FROM s GROUP BY TUMBLINGWINDOW(ms, 250)",
        ] {
            let (on_arrival, late) = run(sql, &rows, true);
            let (whole, late_whole) = run(sql, &rows, false);
            assert!(on_arrival.len() > 2, "{sql}");
            assert_eq!(on_arrival, whole, "{sql}");
            assert_eq!((late, late_whole), (1, 1), "{sql}");
        }
    }

    /// `run`, on both paths when the statement suits aggregation on arrival.
    fn run_both(sql: &str, rows: &[(i64, &str, Value)]) -> Vec<String> {
        let (whole, _) = run(sql, rows, false);
        assert_eq!(run(sql, rows, true).0, whole, "{sql}");
        whole
    }

    #[test]
    fn a_window_left_empty_by_where_sends_nothing_and_counts_start_at_zero() {
        // eKuiper's filter operator passes nothing on when no row is left; count over an empty
        // window is 0 (window_rule_test.go, TestWindowRule1's empty windows).
        let rows = vec![(1, "a", Value::Int(1)), (25, "a", Value::Int(2))];
        let none = run_both(
            "SELECT count(*) AS n, window_end() AS e FROM s WHERE v > 100 \
             GROUP BY TUMBLINGWINDOW(ms, 10)",
            &rows,
        );
        assert!(none.is_empty(), "{none:?}");
        let counts = run_both(
            "SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ms, 10)",
            &rows,
        );
        assert_eq!(
            counts,
            [
                r#"[("n", Int(1))]"#,
                r#"[("n", Int(0))]"#,
                r#"[("n", Int(1))]"#
            ]
        );
    }

    #[test]
    fn aliases_resolve_in_having_and_later_select_items() {
        // eKuiper's analyzer: an alias is visible to later SELECT items and to HAVING/WHERE.
        let rows = vec![
            (1, "a", Value::Int(1)),
            (2, "a", Value::Int(2)),
            (3, "b", Value::Int(3)),
        ];
        let out = run_both(
            "SELECT device AS d, count(*) AS c, c + 1 AS c1 FROM s \
             GROUP BY device, TUMBLINGWINDOW(ms, 10) HAVING c > 1",
            &rows,
        );
        assert_eq!(
            out,
            [r#"[("d", String("a")), ("c", Int(2)), ("c1", Int(3))]"#]
        );
    }

    #[test]
    fn arrow_takes_an_index_and_gives_null_on_a_non_object() {
        let streams = Streams::of(UNTIMED);
        let query = super::super::compile(
            "SELECT v->b[0] AS first, v->b[1:3] AS mid, v.b.c AS deep, v AS x, x->b[3] AS y \
             FROM s WHERE s.v.b IS NOT NULL OR x IS NOT NULL",
            &streams,
        )
        .unwrap();
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let ctx = ctx_at(0);
        let mut out = Vec::new();
        for v in [serde_json::json!({"b": [1, 2, 3, 4]}), serde_json::json!(5)] {
            let row = Row::from_pairs(vec![(Arc::from("v"), Value::from_json(v))], 0);
            let outcome = runner.push(0, vec![row], &ctx, &mut out);
            assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        }
        let rows: Vec<String> = out.iter().map(|m| format!("{m:?}")).collect();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows[0].contains("Int(1), Array([Int(2), Int(3)]), Null, Object"),
            "{rows:?}"
        );
        assert!(rows[0].ends_with("Int(4)], timestamp_ms: 0 })"), "{rows:?}");
        assert!(
            rows[1].contains("values: [Null, Null, Null, Int(5), Null]"),
            "{rows:?}"
        );
    }

    #[test]
    fn event_time_without_a_window_orders_rows_and_counts_late_ones() {
        // eKuiper's watermark operator: rows go on in time order once the watermark (latest
        // time minus lateTolerance) passes them; a row behind the watermark is dropped.
        let streams = Streams::of(TIMED);
        let query = super::super::compile("SELECT ts FROM s", &streams).unwrap();
        let mut runner = QueryRunner::new(query, true, 5, HashMap::new());
        let ctx = ctx_at(0);
        let mut out = Vec::new();
        for ts in [10, 3, 8, 20, 16, 12, 30] {
            let row = Row::from_pairs(vec![(Arc::from("ts"), Value::Int(ts))], ts);
            assert!(runner.push(0, vec![row], &ctx, &mut out).errors.is_empty());
        }
        let before_end = out.len();
        assert!(runner.finish(&ctx, &mut out).errors.is_empty());
        let times: Vec<String> = out
            .iter()
            .map(|m| format!("{m:?}"))
            .map(|m| {
                m[m.find("values: [Int(").unwrap() + 13..]
                    .split(')')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(times, ["8", "10", "16", "20", "30"]);
        assert_eq!(before_end, 4, "30 waits for the end of the input");
        assert_eq!(runner.late(), 2, "3 (behind 5) and 12 (behind 15)");
    }

    /// Runs `sql` over two streams `a` and `b` (event time, 1000 ms tolerance), their rows
    /// `(stream, ts, v)` pushed one chunk at a time in the given order; returns the messages and
    /// the late count.
    fn run_two(sql: &str, chunks: &[(usize, i64, i64)]) -> (Vec<String>, u64) {
        let streams = Streams::of(
            "CREATE STREAM a () WITH (TYPE=\"memory\", DATASOURCE=\"a\", TIMESTAMP=\"ts\");\n\
             CREATE STREAM b () WITH (TYPE=\"memory\", DATASOURCE=\"b\", TIMESTAMP=\"ts\");",
        );
        let query = super::super::compile(sql, &streams).unwrap();
        let mut runner = QueryRunner::new(query, true, 1000, HashMap::new());
        let ctx = ctx_at(0);
        let mut out = Vec::new();
        for &(stream, ts, v) in chunks {
            let row = Row::from_pairs(
                vec![
                    (Arc::from("ts"), Value::Int(ts)),
                    (Arc::from("v"), Value::Int(v)),
                ],
                ts,
            );
            assert!(
                runner
                    .push(stream, vec![row], &ctx, &mut out)
                    .errors
                    .is_empty()
            );
        }
        for stream in [0, 1] {
            assert!(runner.end_source(stream, &ctx, &mut out).errors.is_empty());
        }
        assert!(runner.finish(&ctx, &mut out).errors.is_empty());
        (
            out.iter().map(|m| format!("{m:?}")).collect(),
            runner.late(),
        )
    }

    #[test]
    fn two_streams_in_event_time_give_the_same_output_however_they_interleave() {
        // Each stream's rows in its own order; the late row (b at 1200, after b reached 2500)
        // is late by its own stream alone, whatever the other stream has sent.
        let a = [
            (0, 1000, 1),
            (0, 2000, 2),
            (0, 1500, 3),
            (0, 3000, 4),
            (0, 9000, 5),
        ];
        let b = [
            (1, 1000, 10),
            (1, 2500, 20),
            (1, 1200, 30),
            (1, 2000, 40),
            (1, 9000, 50),
        ];
        let sql = "SELECT a.v AS x, b.v AS y FROM a INNER JOIN b ON a.ts = b.ts \
                   GROUP BY SlidingWindow(ss, 1) OVER (WHEN a.ts - last_hit_time() > 400 \
                   OR b.ts - last_hit_time() > 400)";
        let orders: Vec<Vec<(usize, i64, i64)>> = vec![
            a.iter().chain(&b).copied().collect(),
            b.iter().chain(&a).copied().collect(),
            a.iter().zip(&b).flat_map(|(x, y)| [*x, *y]).collect(),
            b.iter().zip(&a).flat_map(|(x, y)| [*x, *y]).collect(),
            vec![a[0], b[0], b[1], a[1], a[2], b[2], b[3], a[3], b[4], a[4]],
        ];
        let first = run_two(sql, &orders[0]);
        assert_eq!(first.1, 1, "{first:?}");
        assert!(!first.0.is_empty());
        for order in &orders[1..] {
            assert_eq!(run_two(sql, order), first, "order {order:?}");
        }
        let tumbling = "SELECT count(*) AS c, sum(b.v) AS s FROM a INNER JOIN b ON a.ts = b.ts \
                        GROUP BY TumblingWindow(ss, 1)";
        let first = run_two(tumbling, &orders[0]);
        for order in &orders[1..] {
            assert_eq!(run_two(tumbling, order), first, "order {order:?}");
        }
    }

    #[test]
    fn having_without_aggregates_keeps_or_drops_a_window_whole() {
        let rows = [(0, 1000, 1), (0, 1500, 2), (0, 2500, 3), (0, 3200, 4)];
        let count = |sql: &str| run_two(sql, &rows).0.len();
        assert_eq!(count("SELECT v FROM a GROUP BY TumblingWindow(ss, 1)"), 3);
        assert_eq!(
            count("SELECT v FROM a GROUP BY TumblingWindow(ss, 1) HAVING last_agg_hit_count() < 1"),
            1
        );
        let (out, _) = run_two(
            "SELECT v FROM a GROUP BY TumblingWindow(ss, 1) HAVING v > 2",
            &rows,
        );
        assert_eq!(
            out.len(),
            2,
            "the first window's first row has v = 1: {out:?}"
        );
    }

    #[test]
    fn an_aggregate_error_fails_the_window_either_way() {
        let rows = vec![
            (1, "a", Value::Int(1)),
            (2, "a", Value::string("x")),
            (50, "a", Value::Int(3)),
        ];
        let sql = "SELECT sum(v) AS s FROM s GROUP BY TUMBLINGWINDOW(ms, 10)";
        let (on_arrival, _) = run(sql, &rows, true);
        assert_eq!(on_arrival, run(sql, &rows, false).0);
        assert!(
            on_arrival
                .iter()
                .any(|w| w.contains("sum: expected numbers, got string")),
            "{on_arrival:?}"
        );
    }

    /// Runs `sql` over `rows` in event time, stopping after `cut` rows to checkpoint the state
    /// into a new runner (`None`: without a stop). Returns every result.
    fn run_with_checkpoint(sql: &str, rows: &[(i64, i64)], cut: Option<usize>) -> Vec<String> {
        run_restored(sql, rows, cut, true)
    }

    /// [`run_with_checkpoint`], restoring the analytic functions' state too when `functions`.
    fn run_restored(
        sql: &str,
        rows: &[(i64, i64)],
        cut: Option<usize>,
        functions: bool,
    ) -> Vec<String> {
        let streams = Streams::of(TIMED);
        let query = || super::super::compile(sql, &streams).unwrap();
        let ctx = ctx_at(0);
        let row = |ts: i64, v: i64| {
            Row::from_pairs(
                vec![
                    (Arc::from("ts"), Value::Int(ts)),
                    (Arc::from("v"), Value::Int(v)),
                ],
                ts,
            )
        };
        let mut runner = QueryRunner::checkpointable(query(), true, 5, HashMap::new());
        let mut out = Vec::new();
        for (i, &(ts, v)) in rows.iter().enumerate() {
            if Some(i) == cut {
                let held: Vec<(usize, Row)> = runner
                    .held_rows()
                    .expect("a time window's state is its rows")
                    .into_iter()
                    .map(|(s, r)| (s, Row::clone(&r)))
                    .collect();
                let state = runner.function_state();
                runner = QueryRunner::checkpointable(query(), true, 5, HashMap::new());
                if functions {
                    runner.restore_with(held, state, &ctx).unwrap();
                } else {
                    runner.restore(held, &ctx);
                }
            }
            runner.push(0, vec![row(ts, v)], &ctx, &mut out);
        }
        runner.finish(&ctx, &mut out);
        out.iter().map(|m| format!("{m:?}")).collect()
    }

    #[test]
    fn a_restored_checkpoint_gives_the_same_results() {
        let rows: Vec<(i64, i64)> = (0..120i64)
            .map(|i| (i * 7 + [0, 3, -3][(i % 3) as usize], i % 13))
            .collect();
        for sql in [
            "SELECT count(*) AS n, sum(v) AS s, window_end() AS e FROM s GROUP BY TUMBLINGWINDOW(ms, 100)",
            "SELECT count(*) AS n, max(v) AS m FROM s GROUP BY HOPPINGWINDOW(ms, 100, 30)",
            "SELECT count(*) AS n FROM s GROUP BY SLIDINGWINDOW(ms, 50)",
            "SELECT count(*) AS n, min(v) AS m FROM s GROUP BY SESSIONWINDOW(ms, 10, 200)",
        ] {
            let whole = run_with_checkpoint(sql, &rows, None);
            assert!(whole.len() > 3, "{sql}");
            for cut in [1, 37, 50, 119] {
                assert_eq!(
                    run_with_checkpoint(sql, &rows, Some(cut)),
                    whole,
                    "{sql}, cut {cut}"
                );
            }
        }
    }

    #[test]
    fn a_restored_checkpoint_keeps_the_analytic_and_state_functions_state() {
        let rows: Vec<(i64, i64)> = (0..120i64)
            .map(|i| (i * 7 + [0, 3, -3][(i % 3) as usize], (i * 5) % 13))
            .collect();
        for sql in [
            "SELECT v, lag(v) AS p, latest(v) AS l, changed_col(true, v % 3) AS c, \
             had_changed(true, v % 4) AS h, acc_sum(v) AS s, \
             acc_avg(v) OVER (PARTITION BY v % 2) AS a, acc_count(v, v > 5, v > 10) AS n, \
             acc_min(v) AS mi, acc_max(v) AS ma FROM s",
            "SELECT v, lag(v, 2, -1) OVER (PARTITION BY v % 3 WHEN v > 1) AS p, \
             last_hit_count() AS h, last_hit_time() AS t FROM s WHERE v > 3",
            "SELECT changed_cols(\"c_\", true, v, v > 20) FROM s",
            "SELECT count(*) AS n, collect(lag(v)) AS c, last_agg_hit_count() AS ah, \
             last_agg_hit_time() AS at FROM s GROUP BY TUMBLINGWINDOW(ms, 100)",
            "SELECT count(*) AS n, sum(acc_sum(v)) AS s FROM s GROUP BY HOPPINGWINDOW(ms, 100, 30)",
            "SELECT v, lag(v) AS p, acc_count(v) AS n FROM s \
             GROUP BY SLIDINGWINDOW(ms, 50) OVER (WHEN v > 8)",
        ] {
            let whole = run_with_checkpoint(sql, &rows, None);
            assert!(whole.len() > 3, "{sql}");
            for cut in [1, 37, 50, 119] {
                assert_eq!(
                    run_with_checkpoint(sql, &rows, Some(cut)),
                    whole,
                    "{sql}, cut {cut}"
                );
            }
            // Without the functions' state the results differ: the test can tell.
            assert_ne!(run_restored(sql, &rows, Some(50), false), whole, "{sql}");
        }
    }

    #[test]
    fn a_function_state_of_another_statement_is_refused_naming_the_functions() {
        let streams = Streams::of(UNTIMED);
        let query = |sql| super::super::compile(sql, &streams).unwrap();
        let lag = QueryRunner::checkpointable(
            query("SELECT lag(v) AS p FROM s"),
            false,
            0,
            HashMap::new(),
        );
        let state = lag.function_state();
        let err = QueryRunner::check_function_state(
            &query("SELECT latest(v) AS p, changed_cols(\"c_\", true, v) FROM s"),
            &state,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "it holds the state of the analytic functions `lag`, the rule now has `latest`, \
             `changed_cols`"
        );
        let mut wrong = state.clone();
        wrong.calls[0]
            .1
            .push(("self".into(), CallState::Last(Value::Int(1))));
        let err = QueryRunner::check_function_state(&query("SELECT lag(v) AS p FROM s"), &wrong)
            .unwrap_err();
        assert!(
            err.contains("`lag`: the state of partition `self`"),
            "{err}"
        );
    }

    #[test]
    fn a_join_key_that_cannot_be_compared_fails_the_join_as_ekuiper() {
        // eKuiper's `TestCrossJoinPlanError` 1: the pairs are compared one by one, and the
        // first that `=` cannot compare fails the join, also where Oort looks keys up.
        let streams = Streams::of(
            "CREATE STREAM a () WITH (TYPE=\"memory\", DATASOURCE=\"a\");
             CREATE STREAM b () WITH (TYPE=\"memory\", DATASOURCE=\"b\");",
        );
        let ctx = ctx_at(0);
        let row = |k: &str, v: Value| Row::from_pairs(vec![(Arc::from(k), v)], 0);
        let rows = || {
            vec![
                (0, row("x", Value::Int(1))),
                (1, row("y", Value::Int(1))),
                (1, row("y", Value::string("3"))),
                (1, row("y", Value::Int(2))),
            ]
        };
        for on in ["a.x = b.y", "b.y = a.x", "a.x = b.y AND true"] {
            let sql = format!("SELECT * FROM a FULL JOIN b ON {on} GROUP BY TUMBLINGWINDOW(ss, 1)");
            let query = super::super::compile(&sql, &streams).unwrap();
            let runner = QueryRunner::new(query, false, 0, HashMap::new());
            let err = runner.join(rows(), None, &ctx).unwrap_err();
            let want = if on.starts_with("b.") {
                "run Join error: invalid operation string(3) = int64(1)"
            } else {
                "run Join error: invalid operation int64(1) = string(3)"
            };
            assert_eq!(err.sent(), want, "{on}");
        }
        // Keys of one kind never fail.
        let query = super::super::compile(
            "SELECT * FROM a FULL JOIN b ON a.x = b.y GROUP BY TUMBLINGWINDOW(ss, 1)",
            &streams,
        )
        .unwrap();
        let runner = QueryRunner::new(query, false, 0, HashMap::new());
        let mut rows = rows();
        rows.remove(2);
        let joined = runner.join(rows, None, &ctx).unwrap();
        assert_eq!(joined, vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn errors_are_placed_among_the_messages_and_worded_as_ekuiper_sends_them() {
        let streams = Streams::of(UNTIMED);
        let ctx = ctx_at(0);
        let rows = || {
            [Value::Int(1), Value::string("x"), Value::Int(2)]
                .into_iter()
                .map(|v| Row::from_pairs(vec![(Arc::from("v"), v)], 0))
                .collect::<Vec<_>>()
        };
        for (sql, sent) in [
            (
                "SELECT v FROM s WHERE v > 0",
                "run Where error: invalid operation string(x) > int64(0)",
            ),
            (
                "SELECT v * 2 FROM s",
                "run Select error: expr: binaryExpr:{ s.v * 2 } meet error, \
                 err:invalid operation string(x) * int64(2)",
            ),
            (
                "SELECT v, (v * 2) AS d FROM s",
                "run Select error: alias: d expr: parenExpr:{ binaryExpr:{ s.v * 2 } } meet \
                 error, err:invalid operation string(x) * int64(2)",
            ),
        ] {
            let query = super::super::compile(sql, &streams).unwrap();
            let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
            let mut out = Vec::new();
            let outcome = runner.push(0, rows(), &ctx, &mut out);
            assert_eq!(out.len(), 2, "{sql}");
            let [error] = &outcome.errors[..] else {
                panic!("{sql}: one error expected, got {:?}", outcome.errors)
            };
            assert_eq!(error.place(), 1, "{sql}: after the first row's message");
            assert_eq!(error.sent(), sent);
            // Logs keep Oort's text.
            assert!(error.to_string().contains("string(\"x\")"), "{error}");
        }
    }

    #[test]
    fn a_count_window_or_an_on_arrival_aggregate_has_no_checkpointable_state() {
        let streams = Streams::of(UNTIMED);
        let query = |sql| super::super::compile(sql, &streams).unwrap();
        let count = query("SELECT count(*) FROM s GROUP BY COUNTWINDOW(3)");
        assert!(
            QueryRunner::checkpointable(count, false, 0, HashMap::new())
                .held_rows()
                .is_none()
        );
        let tumbling = || query("SELECT count(*) FROM s GROUP BY TUMBLINGWINDOW(ss, 1)");
        assert!(
            QueryRunner::new(tumbling(), false, 0, HashMap::new())
                .held_rows()
                .is_none()
        );
        let runner = QueryRunner::checkpointable(tumbling(), false, 0, HashMap::new());
        assert_eq!(runner.held_rows().map(|r| r.len()), Some(0));
    }

    #[test]
    fn a_table_fed_while_running_keeps_its_latest_rows_and_joins_each_row_with_them() {
        let streams = Streams::of(
            "CREATE STREAM s () WITH (TYPE=\"memory\", DATASOURCE=\"s\");\
             CREATE TABLE t () WITH (TYPE=\"memory\", DATASOURCE=\"t\", RETAIN_SIZE=\"2\");",
        );
        let query =
            super::super::compile("SELECT s.k, t.v FROM s INNER JOIN t ON s.k = t.k", &streams)
                .unwrap();
        let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
        let ctx = ctx_at(0);
        let row = |k: i64, v: Option<&str>| {
            let mut pairs = vec![(Arc::from("k"), Value::Int(k))];
            if let Some(v) = v {
                pairs.push((Arc::from("v"), Value::string(v)));
            }
            Row::from_pairs(pairs, 0)
        };
        let joined = |runner: &mut QueryRunner, k: i64| {
            let mut out = Vec::new();
            assert!(
                runner
                    .push(0, vec![row(k, None)], &ctx, &mut out)
                    .errors
                    .is_empty()
            );
            rendered(&out)
        };
        // Nothing in the table yet: the inner join has nothing to say.
        assert!(joined(&mut runner, 1).is_empty());
        runner.table_rows(1, vec![row(1, Some("a"))], 2);
        assert_eq!(joined(&mut runner, 1).len(), 1);
        // The table is indexed once for the rows that follow, until it takes rows again.
        assert!(runner.table_index.borrow()[0].is_some());
        assert_eq!(joined(&mut runner, 1).len(), 1);
        // Two more rows: the first is evicted (RETAIN_SIZE 2), in one chunk or row by row.
        runner.table_rows(1, vec![row(2, Some("b")), row(3, Some("c"))], 2);
        assert!(runner.table_index.borrow()[0].is_none());
        assert_eq!(runner.table_len(1), 2);
        assert!(joined(&mut runner, 1).is_empty());
        assert!(joined(&mut runner, 2)[0].contains("\"b\""));
        runner.table_rows(1, vec![row(4, Some("d"))], 2);
        assert!(joined(&mut runner, 2).is_empty());
        assert_eq!(joined(&mut runner, 3).len(), 1);
        runner.table_rows(1, (5..10).map(|k| row(k, Some("x"))).collect(), 2);
        assert_eq!(runner.table_len(1), 2);
        assert!(joined(&mut runner, 7).is_empty());
        assert_eq!(joined(&mut runner, 9).len(), 1);
    }

    #[test]
    fn a_store_whose_key_is_not_in_its_rows_joins_every_row_it_finds() {
        /// Like redis: the rows under a key do not hold it.
        struct Store;
        impl Lookup for Store {
            fn get(&self, key: &Value) -> Result<Vec<Row>, String> {
                let v = |v: &str| Row::from_pairs(vec![(Arc::from("v"), Value::string(v))], 0);
                Ok(match key {
                    Value::Int(1) => vec![v("a"), v("b")],
                    _ => Vec::new(),
                })
            }
            fn rows_hold_key(&self) -> bool {
                false
            }
        }
        let streams = Streams::of(
            "CREATE STREAM s () WITH (TYPE=\"memory\", DATASOURCE=\"s\");\
             CREATE TABLE t () WITH (TYPE=\"memory\", DATASOURCE=\"t\", KEY=\"k\", KIND=\"lookup\");",
        );
        let ctx = ctx_at(0);
        let row = |k: i64| Row::from_pairs(vec![(Arc::from("k"), Value::Int(k))], 0);
        let query = super::super::compile(
            "SELECT s.k, t.v FROM s INNER JOIN t ON s.k = t.id",
            &streams,
        )
        .unwrap();
        let mut runner =
            QueryRunner::new(query, false, 0, HashMap::new()).with_lookup(1, Arc::new(Store));
        let mut out = Vec::new();
        runner.push(0, vec![row(1), row(2)], &ctx, &mut out);
        // Key 1 finds both rows, one message of two (as every row-by-row table join sends);
        // key 2 finds none, and the inner join sends nothing for it.
        let sent = rendered(&out);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(
            sent[0].contains("\"a\"") && sent[0].contains("\"b\""),
            "{sent:?}"
        );
    }

    #[test]
    fn lookup_keys_are_equal_as_numbers_are() {
        assert_eq!(
            LookupKey::of(&Value::Int(1)),
            LookupKey::of(&Value::Float(1.0))
        );
        assert_ne!(
            LookupKey::of(&Value::Int(1)),
            LookupKey::of(&Value::Float(1.5))
        );
        assert_ne!(
            LookupKey::of(&Value::Int(1)),
            LookupKey::of(&Value::string("1"))
        );
        assert_eq!(LookupKey::of(&Value::Null), None);
    }

    #[test]
    fn a_lookup_table_is_asked_per_row_and_its_failure_fails_the_row() {
        struct Store;
        impl Lookup for Store {
            fn get(&self, key: &Value) -> Result<Vec<Row>, String> {
                match key {
                    Value::Int(1) => Ok(vec![Row::from_pairs(
                        vec![
                            (Arc::from("k"), Value::Int(1)),
                            (Arc::from("v"), Value::string("a")),
                        ],
                        0,
                    )]),
                    Value::Int(9) => Err("the store is out of reach".into()),
                    _ => Ok(Vec::new()),
                }
            }
        }
        let streams = Streams::of(
            "CREATE STREAM s () WITH (TYPE=\"memory\", DATASOURCE=\"s\");\
             CREATE TABLE t () WITH (TYPE=\"memory\", DATASOURCE=\"t\", KEY=\"k\", KIND=\"lookup\");",
        );
        let ctx = ctx_at(0);
        let row = |k: i64| Row::from_pairs(vec![(Arc::from("k"), Value::Int(k))], 0);
        let query =
            super::super::compile("SELECT s.k, t.v FROM s LEFT JOIN t ON s.k = t.k", &streams)
                .unwrap();
        assert!(query.sources[1].lookup);
        let mut runner =
            QueryRunner::new(query, false, 0, HashMap::new()).with_lookup(1, Arc::new(Store));
        let mut out = Vec::new();
        let outcome = runner.push(0, vec![row(1), row(2), row(9)], &ctx, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(format!("{:?}", out[0]).contains("\"a\""), "{out:?}");
        assert_eq!(outcome.errors.len(), 1);
        // eKuiper's lookup node sends the lookup's own error, without a prefix.
        assert_eq!(outcome.errors[0].to_string(), "the store is out of reach");
        // eKuiper's planner refuses a lookup join without an equality with a table field.
        for (sql, on) in [
            (
                "SELECT s.k, t.v FROM s LEFT JOIN t ON s.k > t.k",
                "binaryExpr:{ s.k > t.k }",
            ),
            (
                "SELECT s.k, t.v FROM s JOIN t ON s.k = 1 AND t.v > 'a'",
                "binaryExpr:{ binaryExpr:{ s.k = 1 } AND binaryExpr:{ t.v > a } }",
            ),
        ] {
            let err = super::super::compile(sql, &streams)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!(
                    "join condition {on} is invalid, at least one equi-join predicate is required"
                )),
                "{sql}: {err}"
            );
        }
        // The other conditions of ON filter the looked-up tuples after the lookup, as
        // eKuiper's planner puts them in a filter: a LEFT JOIN's row that found nothing fails
        // them too.
        let query = super::super::compile(
            "SELECT s.k, t.v FROM s LEFT JOIN t ON t.v = 'a' AND s.k = t.k",
            &streams,
        )
        .unwrap();
        let mut runner =
            QueryRunner::new(query, false, 0, HashMap::new()).with_lookup(1, Arc::new(Store));
        let mut out = Vec::new();
        let outcome = runner.push(0, vec![row(1), row(2)], &ctx, &mut out);
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(format!("{:?}", out[0]).contains("\"a\""), "{out:?}");
        let query = super::super::compile(
            "SELECT s.k, t.v FROM s JOIN t ON s.k = t.k AND t.v = 'b'",
            &streams,
        )
        .unwrap();
        let mut runner =
            QueryRunner::new(query, false, 0, HashMap::new()).with_lookup(1, Arc::new(Store));
        let mut out = Vec::new();
        let outcome = runner.push(0, vec![row(1)], &ctx, &mut out);
        assert!(outcome.errors.is_empty() && out.is_empty(), "{out:?}");
        // A constant is looked up as well (eKuiper takes any expression beside the key).
        let query =
            super::super::compile("SELECT s.k, t.v FROM s JOIN t ON t.k = 1", &streams).unwrap();
        let mut runner =
            QueryRunner::new(query, false, 0, HashMap::new()).with_lookup(1, Arc::new(Store));
        let outcome = runner.push(0, vec![row(5)], &ctx, &mut out);
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn star_except_leaves_fields_out_of_each_row() {
        let streams = Streams::of(UNTIMED);
        let query = super::super::compile(
            "SELECT collect(* EXCEPT(ts, v)) AS c, count(* EXCEPT(v)) AS n, \
             merge_agg(* EXCEPT(device)) AS m FROM s GROUP BY TUMBLINGWINDOW(ms, 10)",
            &streams,
        )
        .unwrap();
        let runner = QueryRunner::new(query, false, 0, HashMap::new());
        let ctx = ctx_at(0);
        let row = |device: &str, v: i64| {
            Some(Row::from_pairs(
                vec![
                    (Arc::from("ts"), Value::Int(1)),
                    (Arc::from("device"), Value::string(device)),
                    (Arc::from("v"), Value::Int(v)),
                ],
                1,
            ))
        };
        let input = StageInput::Window(vec![vec![row("a", 1)], vec![row("b", 2)]]);
        let rows = runner.project(input, Some((0, 10)), &ctx).unwrap();
        assert_eq!(
            rows[0].to_object().to_json().to_string(),
            r#"{"c":[{"device":"a"},{"device":"b"}],"m":{"ts":1,"v":2},"n":2}"#
        );
    }
}
