//! Running a compiled statement: rows in, messages out.
//!
//! A row-by-row statement maps each row to a message. A windowed statement hands rows to its
//! [`WindowOperator`]; each window that fires goes through eKuiper's operator order: join,
//! `WHERE`, `GROUP BY` and aggregates, `HAVING`, `ORDER BY`, `LIMIT`, projection, and becomes one
//! message holding the window's result rows. A stream joined with a table (no window) pairs each
//! row with the table's rows.

use std::collections::HashMap;
use std::sync::Arc;

use super::expr::{BinOp, Column, EvalCtx, EvalError, Scope, binary};
use super::query::{JoinKind, Query};
use super::window::{Fired, WindowKind, WindowOperator};
use crate::message::Message;
use crate::value::{Row, Value};

/// One combination of rows, one per source (a missing side of an outer join is `None`).
#[derive(Debug, Clone)]
pub struct Tuple {
    rows: Vec<Option<Row>>,
    timestamp_ms: i64,
    window: Option<(i64, i64)>,
}

impl Tuple {
    fn single(sources: usize, source: usize, row: Row, window: Option<(i64, i64)>) -> Self {
        let mut rows = vec![None; sources];
        let timestamp_ms = row.timestamp_ms;
        rows[source] = Some(row);
        Self {
            rows,
            timestamp_ms,
            window,
        }
    }

    fn with(&self, source: usize, row: &Row) -> Self {
        let mut t = self.clone();
        t.timestamp_ms = t.timestamp_ms.max(row.timestamp_ms);
        t.rows[source] = Some(row.clone());
        t
    }
}

impl Scope for Tuple {
    fn column(&self, col: &Column) -> Option<&Value> {
        match col.stream {
            Some(i) => self.rows.get(i)?.as_ref().and_then(|r| col.lookup(r)),
            // Unqualified, over schemaless streams: the first row that has the field.
            None => self.rows.iter().flatten().find_map(|r| col.lookup(r)),
        }
    }

    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    fn window(&self) -> Option<(i64, i64)> {
        self.window
    }

    fn fields(&self, stream: Option<usize>, visit: &mut dyn FnMut(&Arc<str>, &Value)) {
        match stream {
            Some(i) => {
                if let Some(Some(row)) = self.rows.get(i) {
                    row.fields(None, visit);
                }
            }
            None => {
                // On a name clash the first (left) stream wins, as in eKuiper.
                let mut seen: Vec<&Arc<str>> = Vec::new();
                for row in self.rows.iter().flatten() {
                    for (k, v) in row.iter() {
                        if !seen.contains(&k) {
                            seen.push(k);
                            visit(k, v);
                        }
                    }
                }
            }
        }
    }
}

/// A group: columns read from its first tuple, aggregates from the computed values.
struct Group<'a> {
    first: Option<&'a Tuple>,
    aggregates: &'a [Value],
    window: Option<(i64, i64)>,
    timestamp_ms: i64,
}

impl Scope for Group<'_> {
    fn column(&self, col: &Column) -> Option<&Value> {
        self.first?.column(col)
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
}

/// What one call produced besides messages: errors (per row or per window) and counts.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Rows or windows whose evaluation failed.
    pub errors: Vec<EvalError>,
    /// Rows `WHERE` (or a window's `FILTER`) dropped.
    pub filtered: u64,
}

/// A running statement.
pub struct QueryRunner {
    query: Query,
    window: Option<WindowOperator>,
    /// Snapshot rows of table sources, by source index.
    tables: HashMap<usize, Arc<Vec<Row>>>,
    fired: Vec<Fired>,
}

impl QueryRunner {
    /// A runner for `query`, with `tables` holding the rows of its table sources.
    pub fn new(
        query: Query,
        event_time: bool,
        late_tolerance_ms: i64,
        tables: HashMap<usize, Arc<Vec<Row>>>,
    ) -> Self {
        let streams = query.sources.len();
        let window = query
            .window
            .as_ref()
            .map(|w| WindowOperator::new(w.kind, event_time, late_tolerance_ms, streams));
        Self {
            query,
            window,
            tables,
            fired: Vec::new(),
        }
    }

    /// The statement.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Rows that arrived after the watermark (event time), counted rather than windowed.
    pub fn late(&self) -> u64 {
        self.window.as_ref().map_or(0, |w| w.late)
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
        rows: &[Row],
        ctx: &EvalCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        if self.query.is_row_by_row() {
            for row in rows {
                match self.query.process(row, ctx) {
                    Ok(Some(result)) => out.push(Message::Row(result)),
                    Ok(None) => outcome.filtered += 1,
                    Err(e) => outcome.errors.push(e),
                }
            }
            return outcome;
        }
        if self.window.is_none() {
            // A stream joined with tables, row by row.
            for row in rows {
                let tuple = Tuple::single(self.query.sources.len(), source, row.clone(), None);
                match self.joined(vec![tuple], &HashMap::new(), ctx) {
                    Ok(tuples) => match self.rows_of(tuples, None, ctx, &mut outcome) {
                        Ok(rows) if !rows.is_empty() => out.push(Message::Rows(Arc::new(rows))),
                        Ok(_) => {}
                        Err(e) => outcome.errors.push(e),
                    },
                    Err(e) => outcome.errors.push(e),
                }
            }
            return outcome;
        }
        let spec = self.query.window.as_ref();
        let (filter, trigger) = (
            spec.and_then(|w| w.filter.as_ref()),
            spec.and_then(|w| w.trigger.as_ref()),
        );
        for row in rows {
            if let Some(f) = filter {
                match f.eval(row, ctx) {
                    Ok(v) if v.is_true() => {}
                    Ok(_) => {
                        outcome.filtered += 1;
                        continue;
                    }
                    Err(e) => {
                        outcome.errors.push(e);
                        continue;
                    }
                }
            }
            let triggers = match trigger {
                Some(t) => match t.eval(row, ctx) {
                    Ok(v) => v.is_true(),
                    Err(e) => {
                        outcome.errors.push(e);
                        false
                    }
                },
                None => true,
            };
            if let Some(window) = self.window.as_mut() {
                window.push(source, row.clone(), triggers, &mut self.fired);
            }
        }
        self.emit(ctx, out, &mut outcome);
        outcome
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

    /// Source `source` has ended.
    pub fn end_source(
        &mut self,
        source: usize,
        ctx: &EvalCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        if let Some(window) = self.window.as_mut() {
            window.end_stream(source, &mut self.fired);
        }
        self.emit(ctx, out, &mut outcome);
        outcome
    }

    /// Every input has ended: fires every open window.
    pub fn finish(&mut self, ctx: &EvalCtx<'_>, out: &mut Vec<Message>) -> Outcome {
        let mut outcome = Outcome::default();
        if let Some(window) = self.window.as_mut() {
            window.finish(&mut self.fired);
        }
        self.emit(ctx, out, &mut outcome);
        outcome
    }

    fn emit(&mut self, ctx: &EvalCtx<'_>, out: &mut Vec<Message>, outcome: &mut Outcome) {
        for fired in std::mem::take(&mut self.fired) {
            match self.window_result(fired, ctx, outcome) {
                Ok(Some(rows)) => out.push(Message::Rows(Arc::new(rows))),
                Ok(None) => {}
                Err(e) => outcome.errors.push(e),
            }
        }
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
        let mut by_source: HashMap<usize, Vec<Row>> = HashMap::new();
        for (source, row) in fired.rows {
            by_source.entry(source).or_default().push(row);
        }
        let tuples = if self.query.joins.is_empty() {
            by_source
                .remove(&0)
                .unwrap_or_default()
                .into_iter()
                .map(|row| Tuple::single(n, 0, row, range))
                .collect()
        } else {
            let left = by_source.remove(&0).unwrap_or_default();
            let start = left
                .into_iter()
                .map(|row| Tuple::single(n, 0, row, range))
                .collect();
            self.joined(start, &by_source, ctx)?
        };
        let rows = self.rows_of(tuples, range, ctx, outcome)?;
        // As in eKuiper, an empty window is still a result unless something after the window
        // (WHERE, GROUP BY keys, HAVING, a join) has nothing to say about it.
        let suppress_empty = self.query.filter.is_some()
            || !self.query.group_by.is_empty()
            || self.query.having.is_some()
            || !self.query.joins.is_empty()
            || matches!(
                self.query.window.as_ref().map(|w| w.kind),
                Some(
                    WindowKind::Sliding { .. }
                        | WindowKind::Session { .. }
                        | WindowKind::Count { .. }
                )
            );
        if rows.is_empty() && suppress_empty {
            return Ok(None);
        }
        Ok(Some(rows))
    }

    /// Applies the joins, left to right, to `tuples` (rows of the first source).
    fn joined(
        &self,
        mut tuples: Vec<Tuple>,
        windowed: &HashMap<usize, Vec<Row>>,
        ctx: &EvalCtx<'_>,
    ) -> Result<Vec<Tuple>, EvalError> {
        let empty = Vec::new();
        for join in &self.query.joins {
            let right: &[Row] = match self.tables.get(&join.source) {
                Some(table) => table,
                None => windowed.get(&join.source).unwrap_or(&empty),
            };
            let matches = |t: &Tuple| -> Result<bool, EvalError> {
                match &join.on {
                    Some(on) => Ok(on.eval(t, ctx)?.is_true()),
                    None => Ok(true),
                }
            };
            let mut out = Vec::new();
            match join.kind {
                JoinKind::Inner | JoinKind::Cross => {
                    for left in &tuples {
                        for row in right {
                            let t = left.with(join.source, row);
                            if join.kind == JoinKind::Cross || matches(&t)? {
                                out.push(t);
                            }
                        }
                    }
                }
                JoinKind::Left | JoinKind::Full => {
                    let mut right_used = vec![false; right.len()];
                    for left in &tuples {
                        let mut any = false;
                        for (i, row) in right.iter().enumerate() {
                            let t = left.with(join.source, row);
                            if matches(&t)? {
                                any = true;
                                right_used[i] = true;
                                out.push(t);
                            }
                        }
                        if !any {
                            out.push(left.clone());
                        }
                    }
                    if join.kind == JoinKind::Full {
                        let width = self.query.sources.len();
                        let window = tuples.first().and_then(|t| t.window);
                        for (row, used) in right.iter().zip(right_used) {
                            if !used {
                                out.push(Tuple::single(width, join.source, row.clone(), window));
                            }
                        }
                    }
                }
                JoinKind::Right => {
                    let width = self.query.sources.len();
                    let window = tuples.first().and_then(|t| t.window);
                    for row in right {
                        let mut any = false;
                        for left in &tuples {
                            let t = left.with(join.source, row);
                            if matches(&t)? {
                                any = true;
                                out.push(t);
                            }
                        }
                        if !any {
                            out.push(Tuple::single(width, join.source, row.clone(), window));
                        }
                    }
                }
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
        let mut kept = Vec::with_capacity(tuples.len());
        for t in tuples {
            match &q.filter {
                Some(f) => match f.eval(&t, ctx) {
                    Ok(v) if v.is_true() => kept.push(t),
                    Ok(_) => outcome.filtered += 1,
                    Err(e) => outcome.errors.push(e),
                },
                None => kept.push(t),
            }
        }
        // (sort keys, projected row) for each result row.
        let mut results: Vec<(Vec<Value>, Row)> = Vec::new();
        if q.is_aggregate() {
            let mut groups: Vec<(Vec<Value>, Vec<Tuple>)> = Vec::new();
            let mut index: HashMap<String, usize> = HashMap::new();
            for t in kept {
                let key = q
                    .group_by
                    .iter()
                    .map(|k| k.eval(&t, ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                let text = key
                    .iter()
                    .map(|v| format!("{}:{}", v.type_name(), v.to_text()))
                    .collect::<Vec<_>>()
                    .join("\u{1f}");
                match index.get(&text) {
                    Some(&i) => groups[i].1.push(t),
                    None => {
                        index.insert(text, groups.len());
                        groups.push((key, vec![t]));
                    }
                }
            }
            // Without GROUP BY keys, an empty window is one (empty) group.
            if groups.is_empty() && q.group_by.is_empty() {
                groups.push((Vec::new(), Vec::new()));
            }
            for (_, members) in &groups {
                let aggregates = q
                    .aggregates
                    .iter()
                    .map(|a| a.compute(members, ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                let scope = Group {
                    first: members.first(),
                    aggregates: &aggregates,
                    window,
                    timestamp_ms: members
                        .iter()
                        .map(|m| m.timestamp_ms)
                        .max()
                        .unwrap_or_else(|| window.map_or(0, |w| w.1)),
                };
                if let Some(having) = &q.having
                    && !having.eval(&scope, ctx)?.is_true()
                {
                    continue;
                }
                let keys = q
                    .order_by
                    .iter()
                    .map(|(e, _)| e.eval(&scope, ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                results.push((keys, q.projection.apply_scope(&scope, ctx)?));
            }
        } else {
            for t in &kept {
                let keys = q
                    .order_by
                    .iter()
                    .map(|(e, _)| e.eval(t, ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                match q.projection.apply_scope(t, ctx) {
                    Ok(row) => results.push((keys, row)),
                    Err(e) => outcome.errors.push(e),
                }
            }
        }
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
fn sort_results(results: &mut [(Vec<Value>, Row)], ascending: &[bool]) -> Result<(), EvalError> {
    for (i, _) in ascending.iter().enumerate() {
        let mut kind: Option<&'static str> = None;
        for (keys, _) in results.iter() {
            let k = match &keys[i] {
                Value::Null => continue,
                Value::Int(_) | Value::Float(_) => "number",
                Value::String(_) => "string",
                Value::Bool(_) => "boolean",
                other => {
                    return Err(EvalError(format!(
                        "ORDER BY cannot sort values of type {}",
                        other.type_name()
                    )));
                }
            };
            match kind {
                None => kind = Some(k),
                Some(seen) if seen != k => {
                    return Err(EvalError(format!(
                        "ORDER BY: incompatible types for comparison: {seen} and {k}"
                    )));
                }
                Some(_) => {}
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
