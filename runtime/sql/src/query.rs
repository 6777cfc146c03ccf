//! A compiled `SELECT`: its sources and joins, window, filters, grouping, ordering and
//! projection. [`crate::sql::run`] executes it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::aggregate::AggCall;
use super::analytic::{AnalyticCall, ChangedCols, is_hidden};
use super::expr::{EvalCtx, EvalError, Expr, Scope};
use super::scoped::Extra;
use super::window::WindowSpec;
use crate::value::{Row, Schema, Value};

/// One item of the `SELECT` list.
#[derive(Debug, Clone)]
pub enum ProjectionItem {
    /// `*`: every field of the row (of every joined stream); `stream.*`: that stream's fields.
    Wildcard(Option<usize>),
    /// An expression and the name its result gets.
    Expr {
        /// Output field name (the alias, or eKuiper's default name).
        name: Arc<str>,
        /// The expression.
        expr: Expr,
    },
    /// `changed_cols(...)`: the columns that changed, spread into the result.
    Cols(ChangedCols),
    /// `unnest(array) [AS name]`: one result row per element; an element that is an object
    /// spreads its fields, any other is the field `name`. `extract(object)`: one result row,
    /// with the object's fields spread.
    Unnest {
        /// The field an element that is not an object becomes.
        name: Arc<str>,
        /// The array (the object for `extract`).
        expr: Expr,
        /// Whether this is `extract`.
        extract: bool,
    },
    /// `* EXCEPT(names)`: these fields are left out of the `*` of the list.
    Except(Vec<Arc<str>>),
}

/// Where one output field comes from.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Input(usize),
    Item(usize),
}

/// The `SELECT` list, with the output layout worked out once per input layout.
#[derive(Debug)]
pub struct Projection {
    items: Vec<ProjectionItem>,
    /// The output layout when it does not depend on the input (no `*`).
    fixed: Option<(Arc<Schema>, Vec<usize>)>,
    /// For projections with `*`: the last input layout and the output built for it.
    cache: RefCell<Option<Layout>>,
    /// The fields `* EXCEPT(...)` leaves out.
    except: Vec<Arc<str>>,
    /// Whether the output names change from row to row (`changed_cols`, `unnest`).
    dynamic: bool,
    /// Whether one input gives any number of result rows (`unnest`).
    set: bool,
    /// Per item, how eKuiper names it when it fails (`alias: c expr: ... meet error, err:`).
    labels: Vec<Option<Arc<str>>>,
}

/// An input layout, the output layout built for it, and where each output field comes from.
type Layout = (Arc<Schema>, Arc<Schema>, Vec<Origin>);

impl Clone for Projection {
    fn clone(&self) -> Self {
        Self::new(self.items.clone()).labelled(self.labels.clone())
    }
}

impl Projection {
    /// A projection of these items. When two items produce the same name, the later one wins
    /// (as it does in eKuiper's result maps).
    pub fn new(items: Vec<ProjectionItem>) -> Self {
        let fixed = if items
            .iter()
            .any(|i| !matches!(i, ProjectionItem::Expr { .. }))
        {
            None
        } else {
            let mut names: Vec<Arc<str>> = Vec::new();
            let mut which: Vec<usize> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let ProjectionItem::Expr { name, .. } = item {
                    match names.iter().position(|n| n == name) {
                        Some(at) => which[at] = i,
                        None => {
                            names.push(Arc::clone(name));
                            which.push(i);
                        }
                    }
                }
            }
            Some((Arc::new(Schema::new(names)), which))
        };
        let except = items
            .iter()
            .flat_map(|i| match i {
                ProjectionItem::Except(names) => names.clone(),
                _ => Vec::new(),
            })
            .collect();
        let set = items
            .iter()
            .any(|i| matches!(i, ProjectionItem::Unnest { .. }));
        let dynamic = set || items.iter().any(|i| matches!(i, ProjectionItem::Cols(_)));
        Self {
            items,
            fixed,
            cache: RefCell::new(None),
            except,
            dynamic,
            set,
            labels: Vec::new(),
        }
    }

    /// Names each item as eKuiper's errors do (by position; `None` for items without one).
    pub(crate) fn labelled(mut self, labels: Vec<Option<Arc<str>>>) -> Self {
        self.labels = labels;
        self
    }

    /// Item `i` failed with `e`: the error as eKuiper's projection reports it.
    fn failed(&self, i: usize, e: EvalError) -> EvalError {
        match self.labels.get(i).and_then(Option::as_deref) {
            Some(label) => e.within(&format!("run Select error: {label}")),
            None => e.within("run Select error: "),
        }
    }

    /// Aggregate `slot` failed with `e`: the error as eKuiper's projection reports it, named by
    /// the first item that reads the aggregate (eKuiper computes an aggregate as part of the
    /// item's expression); as it is when no item reads it.
    pub(crate) fn aggregate_failed(&self, slot: usize, e: EvalError) -> EvalError {
        let reads = |expr: &Expr| {
            let mut found = false;
            crate::reads::walk(expr, &mut |x| {
                found |= matches!(x, Expr::Aggregate(s) if *s == slot);
            });
            found
        };
        let item = self.items.iter().position(|item| match item {
            ProjectionItem::Expr { expr, .. } => reads(expr),
            ProjectionItem::Unnest { expr, .. } => reads(expr),
            _ => false,
        });
        match item {
            Some(i) => self.failed(i, e),
            None => e,
        }
    }

    /// Whether one input may give any number of result rows (`unnest`).
    pub fn is_set(&self) -> bool {
        self.set
    }

    fn excepted(&self, name: &str) -> bool {
        self.except.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Applies the projection, giving one row, or one per element of `unnest`'s array.
    pub fn apply_set<S: Scope + ?Sized>(
        &self,
        scope: &S,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Row>, EvalError> {
        if !self.set {
            return Ok(vec![self.apply_scope(scope, ctx)?]);
        }
        let base = self.pairs(scope, ctx)?;
        let ts = scope.timestamp_ms();
        let mut rows = Vec::new();
        for item in &self.items {
            let ProjectionItem::Unnest {
                name,
                expr,
                extract,
            } = item
            else {
                continue;
            };
            // As eKuiper: a null argument is an error too (its set operator gets no array).
            let items = match (expr.eval(scope, ctx)?, extract) {
                (Value::Array(items), false) => items,
                (object @ Value::Object(_), true) => Arc::new(vec![object]),
                (Value::Null, _) => {
                    return Err(EvalError::new(format!(
                        "the argument for the {} function should be array",
                        if *extract { "extract" } else { "unnest" }
                    )));
                }
                (_, false) => {
                    return Err(EvalError::new(
                        "the argument for the unnest function should be array".into(),
                    ));
                }
                (_, true) => return Err(EvalError::new("extract should use map".into())),
            };
            for element in items.iter() {
                let mut pairs = base.clone();
                match element {
                    Value::Object(map) => {
                        for (k, v) in map.iter() {
                            put(&mut pairs, k, v.clone());
                        }
                    }
                    other => put(&mut pairs, name, other.clone()),
                }
                rows.push(Row::from_pairs(pairs, ts));
            }
        }
        Ok(rows)
    }

    /// The items, in order.
    pub fn items(&self) -> &[ProjectionItem] {
        &self.items
    }

    /// The output field names when they are known without seeing a row (no `*`).
    pub fn fixed_names(&self) -> Option<&[Arc<str>]> {
        self.fixed.as_ref().map(|(s, _)| s.names())
    }

    /// Applies the projection to any scope (a joined tuple, a group): the general path.
    pub fn apply_scope<S: Scope + ?Sized>(
        &self,
        scope: &S,
        ctx: &EvalCtx<'_>,
    ) -> Result<Row, EvalError> {
        if let Some((schema, which)) = &self.fixed {
            let mut values = Vec::with_capacity(which.len());
            for &i in which {
                if let ProjectionItem::Expr { expr, .. } = &self.items[i] {
                    values.push(expr.eval(scope, ctx).map_err(|e| self.failed(i, e))?);
                }
            }
            return Ok(Row::new(Arc::clone(schema), values, scope.timestamp_ms()));
        }
        Ok(Row::from_pairs(
            self.pairs(scope, ctx)?,
            scope.timestamp_ms(),
        ))
    }

    /// The named values of the general path (without `unnest`).
    fn pairs<S: Scope + ?Sized>(
        &self,
        scope: &S,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<(Arc<str>, Value)>, EvalError> {
        let mut pairs: Vec<(Arc<str>, Value)> = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            match item {
                ProjectionItem::Wildcard(stream) => {
                    let mut fields = Vec::new();
                    scope.fields(*stream, &mut |k, v| {
                        if !self.excepted(k) {
                            fields.push((Arc::clone(k), v.clone()))
                        }
                    });
                    for (k, v) in fields {
                        put(&mut pairs, &k, v);
                    }
                }
                ProjectionItem::Expr { name, expr } => {
                    let value = expr.eval(scope, ctx).map_err(|e| self.failed(i, e))?;
                    put(&mut pairs, name, value);
                }
                ProjectionItem::Cols(cols) => {
                    for (k, v) in cols.eval(scope, ctx).map_err(|e| self.failed(i, e))? {
                        put(&mut pairs, &k, v);
                    }
                }
                ProjectionItem::Unnest { .. } | ProjectionItem::Except(_) => {}
            }
        }
        Ok(pairs)
    }

    /// Applies the projection to one row (the fast path of single-stream statements).
    pub fn apply(&self, row: &Row, ctx: &EvalCtx<'_>) -> Result<Row, EvalError> {
        if let Some((schema, which)) = &self.fixed {
            let mut values = Vec::with_capacity(which.len());
            for &i in which {
                if let ProjectionItem::Expr { expr, .. } = &self.items[i] {
                    values.push(expr.eval(row, ctx).map_err(|e| self.failed(i, e))?);
                }
            }
            return Ok(Row::new(Arc::clone(schema), values, row.timestamp_ms));
        }
        if self.dynamic {
            // Its names change from row to row.
            return self.apply_scope(row, ctx);
        }
        let (schema, sources) = self.layout(row.schema());
        let mut evaluated: Vec<Option<Value>> = vec![None; self.items.len()];
        for source in &sources {
            if let Origin::Item(i) = source
                && let ProjectionItem::Expr { expr, .. } = &self.items[*i]
            {
                evaluated[*i] = Some(expr.eval(row, ctx).map_err(|e| self.failed(*i, e))?);
            }
        }
        let values = sources
            .iter()
            .map(|s| match s {
                Origin::Input(i) => row.at(*i).clone(),
                Origin::Item(i) => evaluated[*i].take().unwrap_or(Value::Null),
            })
            .collect();
        Ok(Row::new(schema, values, row.timestamp_ms))
    }

    fn layout(&self, input: &Arc<Schema>) -> (Arc<Schema>, Vec<Origin>) {
        if let Some((seen, out, sources)) = &*self.cache.borrow()
            && Arc::ptr_eq(seen, input)
        {
            return (Arc::clone(out), sources.clone());
        }
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut sources: Vec<Origin> = Vec::new();
        let mut at: HashMap<Arc<str>, usize> = HashMap::new();
        let mut put = |name: &Arc<str>, source: Origin| match at.get(name) {
            Some(&i) => sources[i] = source,
            None => {
                at.insert(Arc::clone(name), names.len());
                names.push(Arc::clone(name));
                sources.push(source);
            }
        };
        for (i, item) in self.items.iter().enumerate() {
            match item {
                ProjectionItem::Wildcard(_) => {
                    for (j, name) in input.names().iter().enumerate() {
                        if !is_hidden(name) && !self.excepted(name) {
                            put(name, Origin::Input(j));
                        }
                    }
                }
                ProjectionItem::Expr { name, .. } => put(name, Origin::Item(i)),
                ProjectionItem::Cols(_)
                | ProjectionItem::Unnest { .. }
                | ProjectionItem::Except(_) => {}
            }
        }
        let out = Arc::new(Schema::new(names));
        *self.cache.borrow_mut() = Some((Arc::clone(input), Arc::clone(&out), sources.clone()));
        (out, sources)
    }
}

/// Sets field `name` of `pairs` (in place when it is there already: a later item wins).
fn put(pairs: &mut Vec<(Arc<str>, Value)>, name: &Arc<str>, value: Value) {
    match pairs.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value,
        None => pairs.push((Arc::clone(name), value)),
    }
}

/// A stream or table the statement reads.
#[derive(Debug, Clone)]
pub struct Source {
    /// The stream's (or table's) name.
    pub stream: Arc<str>,
    /// The alias given in FROM, if any.
    pub alias: Option<Arc<str>>,
    /// Whether it is a table (a snapshot joined with each row or window) rather than a stream.
    pub table: bool,
    /// Whether it is a lookup table (`KIND="lookup"`): looked up by its key for each row.
    pub lookup: bool,
}

/// How a join pairs rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// `[INNER] JOIN`: pairs that meet the condition.
    Inner,
    /// `LEFT [OUTER] JOIN`: every left row, with its matches or alone.
    Left,
    /// `RIGHT [OUTER] JOIN`: every right row, with its matches or alone.
    Right,
    /// `FULL [OUTER] JOIN`: both.
    Full,
    /// `CROSS JOIN`: every pair.
    Cross,
}

/// One join of the FROM clause, applied left to right.
#[derive(Debug, Clone)]
pub struct Join {
    /// The kind.
    pub kind: JoinKind,
    /// The joined source (index into the statement's sources).
    pub source: usize,
    /// The `ON` condition.
    pub on: Option<Expr>,
}

/// A compiled statement.
#[derive(Debug, Clone)]
pub struct Query {
    /// The sources, in FROM order (the first, then each joined one).
    pub sources: Vec<Source>,
    /// The joins.
    pub joins: Vec<Join>,
    /// The window of `GROUP BY`, if any.
    pub window: Option<WindowSpec>,
    /// `WHERE`.
    pub filter: Option<Expr>,
    /// The aggregate calls of `WHERE`, by slot (`Expr::Aggregate` in `filter` reads these):
    /// computed over the whole window (or the joined rows, or the row alone) before `WHERE`
    /// filters it, as eKuiper's planner adds its aggregate function operator for them.
    pub where_aggregates: Vec<AggCall>,
    /// `GROUP BY` keys (beside the window).
    pub group_by: Vec<Expr>,
    /// The aggregate calls of the statement, by slot.
    pub aggregates: Vec<AggCall>,
    /// `HAVING`.
    pub having: Option<Expr>,
    /// `ORDER BY`: expressions, and whether ascending.
    pub order_by: Vec<(Expr, bool)>,
    /// `LIMIT`.
    pub limit: Option<usize>,
    /// The `SELECT` list.
    pub projection: Projection,
    /// The analytic calls, by slot: run on every row as it enters, before `WHERE`.
    pub analytics: Vec<AnalyticCall>,
    /// Whether `last_hit_count()`/`last_hit_time()` are read.
    pub hits: bool,
    /// Whether `last_agg_hit_count()`/`last_agg_hit_time()` are read.
    pub agg_hits: bool,
    /// The first function of the statement that keeps state from row to row, if any (its
    /// state is part of a checkpoint: see [`crate::QueryRunner::function_state`]).
    pub stateful: Option<String>,
    /// `row_number() OVER (PARTITION BY ... ORDER BY ...)`: how a result's rows are
    /// partitioned and ordered before they are numbered.
    pub row_number_over: Option<RowNumberOver>,
    /// Whether the statement calls `delay`, which sleeps while the rule evaluates it.
    pub sleeps: bool,
}

/// The `OVER` of `row_number()`, as eKuiper's window function operator applies it to a
/// window's rows (before `ORDER BY` and the projection): the rows are put in partitions by the
/// text of their `PARTITION BY` values (Go's `%v` of each, followed by a comma), the partitions
/// in the order of that text, each sorted by its `ORDER BY` and numbered from 1; with no
/// `PARTITION BY`, the whole result is sorted and numbered.
#[derive(Debug, Clone)]
pub struct RowNumberOver {
    /// `PARTITION BY` expressions, evaluated on each row before the projection.
    pub partition: Vec<Expr>,
    /// `ORDER BY` expressions and whether each is ascending.
    pub order: Vec<(Expr, bool)>,
}

impl Query {
    /// The first source's stream name (the only one, for a single-stream statement).
    pub fn stream(&self) -> &Arc<str> {
        &self.sources[0].stream
    }

    /// The `SELECT` list.
    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// Whether results are computed per group (aggregates or `GROUP BY` keys).
    pub fn is_aggregate(&self) -> bool {
        !self.aggregates.is_empty() || !self.group_by.is_empty()
    }

    /// Whether a row can be processed on its own (no window, no join, no aggregate). Without a
    /// window `ORDER BY` has one row to sort, as in eKuiper: its keys are not evaluated.
    pub fn is_row_by_row(&self) -> bool {
        self.window.is_none() && self.joins.is_empty() && !self.is_aggregate()
    }

    /// Whether eKuiper's `sendMetaToSink` applies: one stream, no window and no `GROUP BY`
    /// (eKuiper's planner refuses the option otherwise: `it can not be applied to window`).
    pub fn can_send_meta_to_sink(&self) -> bool {
        self.sources.len() == 1 && self.window.is_none() && self.group_by.is_empty()
    }

    /// Whether each row is a group of its own: aggregates without a window or a join (eKuiper
    /// evaluates an aggregate on one row as on a group of that row: `count(*)` is 1).
    pub fn is_row_alone_aggregate(&self) -> bool {
        self.window.is_none() && self.joins.is_empty() && self.is_aggregate()
    }

    /// Runs a row-by-row statement on one row: `Ok(None)` when the filter drops it.
    pub fn process(&self, row: &Row, ctx: &EvalCtx<'_>) -> Result<Option<Row>, EvalError> {
        if !self.keeps_row(row, ctx)? {
            return Ok(None);
        }
        self.projection.apply(row, ctx).map(Some)
    }

    /// Whether `WHERE` keeps a row alone (no window, no join): its aggregates see a group of
    /// that one row, as eKuiper's aggregate function operator computes them over one tuple.
    pub fn keeps_row<S: Scope>(&self, row: &S, ctx: &EvalCtx<'_>) -> Result<bool, EvalError> {
        self.keeps(row, std::slice::from_ref(row), ctx)
    }

    /// Whether `WHERE` keeps `row`, one of `members` (a window's rows or joined tuples, or
    /// the row alone) over which its aggregates are computed.
    pub(crate) fn keeps<S: Scope>(
        &self,
        row: &S,
        members: &[S],
        ctx: &EvalCtx<'_>,
    ) -> Result<bool, EvalError> {
        let Some(filter) = &self.filter else {
            return Ok(true);
        };
        let values = self.where_aggregate_values(members, ctx)?;
        self.keeps_with(filter, row, &values, ctx)
    }

    /// `WHERE`'s aggregates over `members` (none computed when it has none). An error is
    /// sent as eKuiper's aggregate function operator returns it, without a prefix.
    pub(crate) fn where_aggregate_values<S: Scope>(
        &self,
        members: &[S],
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Value>, EvalError> {
        self.where_aggregates
            .iter()
            .map(|a| a.compute(members, ctx))
            .collect()
    }

    /// Whether `filter` (the statement's `WHERE`) keeps `row`, its aggregates being `values`.
    pub(crate) fn keeps_with<S: Scope + ?Sized>(
        &self,
        filter: &Expr,
        row: &S,
        values: &[Value],
        ctx: &EvalCtx<'_>,
    ) -> Result<bool, EvalError> {
        let keeps = if self.where_aggregates.is_empty() {
            filter.eval(row, ctx)
        } else {
            filter.eval(&Extra::filtered(row, values), ctx)
        };
        Ok(keeps.map_err(EvalError::in_where)?.is_true())
    }

    /// Runs a row-by-row statement with `unnest` on one row: its result rows (none when the
    /// filter drops it, `Ok(None)`).
    pub fn process_set(&self, row: &Row, ctx: &EvalCtx<'_>) -> Result<Option<Vec<Row>>, EvalError> {
        if !self.keeps_row(row, ctx)? {
            return Ok(None);
        }
        self.projection.apply_set(row, ctx).map(Some)
    }
}
