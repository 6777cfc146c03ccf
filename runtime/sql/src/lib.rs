//! The rule's SQL: parsed with `sqlparser` in eKuiper's dialect, checked against the stream
//! definitions, and compiled into a [`Query`] the rule engine runs row by row.
//!
//! Every error carries the line and column of the offending part of the statement.
//!
//! The streams a statement reads are [`stream::StreamDef`]s, parsed from eKuiper's
//! `CREATE STREAM` statements; the [`Catalog`] trait is how the compiler finds them, so the
//! caller decides where definitions live.
//!
//! ```
//! use std::collections::HashMap;
//! use std::path::Path;
//! use std::sync::Arc;
//!
//! use oort_sql::stream::{StreamDef, parse_streams};
//! use oort_sql::{Catalog, EvalCtx, QueryRunner, compile};
//! use oort_value::{Message, Row, Value};
//!
//! struct Streams(Vec<StreamDef>);
//!
//! impl Catalog for Streams {
//!     fn stream(&self, name: &str) -> Option<&StreamDef> {
//!         self.0.iter().find(|d| &*d.name == name)
//!     }
//! }
//!
//! let ddl = r#"CREATE STREAM demo (temp FLOAT) WITH (TYPE="memory", DATASOURCE="t");"#;
//! let streams = Streams(parse_streams(ddl, "streams.sql", Path::new("."))?);
//! let query = compile("SELECT temp * 2 AS double FROM demo WHERE temp > 20", &streams)?;
//!
//! let mut runner = QueryRunner::new(query, false, 0, HashMap::new());
//! let ctx = EvalCtx { now_ms: 0, meta: &Value::Null };
//! let rows = [10.0, 25.5].map(|t| Row::from_pairs(vec![(Arc::from("temp"), Value::Float(t))], 0));
//! let mut out = Vec::new();
//! let outcome = runner.push(0, rows.to_vec(), &ctx, &mut out);
//! assert_eq!(outcome.filtered, 1);
//! match &out[..] {
//!     [Message::Row(row)] => assert_eq!(row.get("double"), Some(&Value::Float(51.0))),
//!     other => panic!("one row expected, got {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod aggregate;
pub mod analytic;
mod arity;
mod dialect;
pub mod expr;
pub mod functions;
pub mod interrupt;
mod query;
mod reads;
pub mod run;
mod scoped;
pub mod stream;
pub mod window;
mod wording;

use std::fmt;
use std::sync::Arc;

use sqlparser::ast::{self as ast, Spanned};

use oort_value::{json, message, value};

pub use aggregate::{AggCall, AggFunc};
pub use analytic::{AnalyticCall, AnalyticFunc, CallState, ChangedCols, Hits};
pub use dialect::EkuiperDialect;
pub use expr::{BinOp, Column, EvalCtx, EvalError, Expr, UnaryOp};
pub use interrupt::Interrupt;
pub use query::{Join, JoinKind, Projection, ProjectionItem, Query, RowNumberOver, Source};
pub use reads::FieldsRead;
pub use run::{FunctionState, Lookup, LookupKey, Outcome, QueryRunner, StageInput, Tuple, Unsent};
pub use window::{Fired, StateInput, StateSpec, WindowKind, WindowOperator, WindowSpec, unit_ms};

use crate::stream::{StreamDef, StreamKind};

/// The SQL of a rule is wrong. Lines and columns start at 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SqlError {
    /// Line of the error in the statement (0 when unknown).
    pub line: u64,
    /// Column of the error in the statement (0 when unknown).
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "line {}, column {}: {}",
                self.line, self.column, self.message
            )
        } else {
            f.write_str(&self.message)
        }
    }
}

impl SqlError {
    fn at(span: sqlparser::tokenizer::Span, message: impl Into<String>) -> Self {
        Self {
            line: span.start.line,
            column: span.start.column,
            message: message.into(),
        }
    }

    /// A parser error; sqlparser puts the position in the text (`... at Line: 1, Column: 8`).
    fn from_parser(err: sqlparser::parser::ParserError) -> Self {
        let text = match err {
            sqlparser::parser::ParserError::TokenizerError(s)
            | sqlparser::parser::ParserError::ParserError(s) => s,
            sqlparser::parser::ParserError::RecursionLimitExceeded => {
                "the statement nests too deeply".to_string()
            }
        };
        let (message, line, column) = match text.rfind(" at Line: ") {
            Some(at) => {
                let pos = &text[at + " at Line: ".len()..];
                let mut parts = pos.split(", Column: ");
                let line = parts
                    .next()
                    .and_then(|l| l.trim().parse().ok())
                    .unwrap_or(0);
                let column = parts
                    .next()
                    .and_then(|c| c.trim().parse().ok())
                    .unwrap_or(0);
                (text[..at].to_string(), line, column)
            }
            None => (text, 0, 0),
        };
        Self {
            line,
            column,
            message: message.replacen("sql parser error: ", "", 1),
        }
    }
}

/// Line and column just past the last character of `text`.
fn end_of(text: &str) -> (u64, u64) {
    let trimmed = text.trim_end();
    let line = trimmed.lines().count().max(1) as u64;
    let column = trimmed.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
    (line, column)
}

/// The streams a statement may read from.
pub trait Catalog {
    /// The stream named `name`, if it is defined.
    fn stream(&self, name: &str) -> Option<&StreamDef>;
}

/// The key `meta(key)` or `mqtt(key)` names bare: `topic`, `a.b`, or a path into an entry,
/// `temperature->device` (eKuiper's `meta(a->b)`), as the text the functions look up.
fn bare_meta_key(e: &ast::Expr) -> Option<String> {
    match e {
        ast::Expr::Identifier(id) => Some(id.value.clone()),
        ast::Expr::CompoundIdentifier(ids) => Some(
            ids.iter()
                .map(|id| id.value.as_str())
                .collect::<Vec<_>>()
                .join("."),
        ),
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Arrow,
            right,
        } => Some(format!(
            "{}->{}",
            bare_meta_key(left)?,
            bare_meta_key(right)?
        )),
        _ => None,
    }
}

/// The rule a statement is compiled for: what `rule_id()` and `rule_start()` give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The rule's id.
    pub id: Arc<str>,
    /// When the rule started, in milliseconds since the Unix epoch.
    pub start_ms: i64,
}

/// Parses and compiles one `SELECT` statement, outside any rule (checks, tools): `rule_id()` and
/// `rule_start()` then fail when evaluated.
pub fn compile(sql: &str, catalog: &dyn Catalog) -> Result<Query, SqlError> {
    compile_statement(sql, catalog, None)
}

/// Parses and compiles the `SELECT` statement of a rule that starts now: `rule_id()` and
/// `rule_start()` become the rule's id and start time.
pub fn compile_rule(sql: &str, catalog: &dyn Catalog, rule: &RuleInfo) -> Result<Query, SqlError> {
    compile_statement(sql, catalog, Some(rule))
}

fn compile_statement(
    sql: &str,
    catalog: &dyn Catalog,
    rule: Option<&RuleInfo>,
) -> Result<Query, SqlError> {
    let (statements, invisible) = dialect::parse_with_invisible(sql).map_err(|e| {
        let mut err = SqlError::from_parser(e);
        if err.line == 0 {
            // The parser gives no position when the statement ends too early: point at its end.
            let (line, column) = end_of(sql);
            err.line = line;
            err.column = column;
        }
        err
    })?;
    let statement = match statements.as_slice() {
        [one] => one,
        [] => {
            return Err(SqlError {
                line: 0,
                column: 0,
                message: "the rule has no SQL statement".into(),
            });
        }
        [_, second, ..] => {
            return Err(SqlError::at(
                second.span(),
                "a rule holds exactly one SELECT statement",
            ));
        }
    };
    let ast::Statement::Query(query) = statement else {
        return Err(SqlError::at(
            statement.span(),
            "a rule's SQL must be a SELECT statement",
        ));
    };
    let mut compiler = Compiler::new(catalog);
    compiler.invisible = invisible;
    compiler.rule = rule;
    compiler.query(query)
}

/// `e.f1.f2...`: fields of an object value.
fn nested(e: Expr, fields: &[ast::Ident]) -> Expr {
    fields.iter().fold(e, |e, f| {
        Expr::Field(Box::new(e), Arc::from(f.value.as_str()))
    })
}

/// A source as the compiler knows it.
struct SourceInfo<'a> {
    def: &'a StreamDef,
    alias: Option<String>,
}

/// Where aggregate calls may appear.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clause {
    /// The SELECT list, HAVING, ORDER BY: aggregates allowed.
    Result,
    /// WHERE, FILTER, OVER, ON, GROUP BY keys, aggregate arguments: no aggregates.
    Row,
}

/// Compiles expressions in the context of the statement's sources.
struct Compiler<'a> {
    catalog: &'a dyn Catalog,
    sources: Vec<SourceInfo<'a>>,
    /// The names each source can be referred to by (its name and its alias) -> its index.
    qualifiers: Vec<(String, usize)>,
    aggregates: Vec<AggCall>,
    /// The aggregate calls of `WHERE`, by slot.
    where_aggregates: Vec<AggCall>,
    /// Whether `WHERE` is being compiled (outside an aggregate's arguments and an alias):
    /// an aggregate there is one of `where_aggregates`.
    in_where: bool,
    clause: Clause,
    has_window: bool,
    unnamed: usize,
    /// The SELECT list's aliases and the expressions they name: an unqualified name that is an
    /// alias stands for its expression (eKuiper: in WHERE, ON, GROUP BY, HAVING and in later
    /// SELECT items, an alias wins over a column of that name).
    aliases: Vec<(String, ast::Expr)>,
    /// How many of `aliases` are visible: in the SELECT list, those of earlier items only.
    visible_aliases: usize,
    /// The aliases being expanded: inside its own expression an alias is the column again.
    expanding: Vec<usize>,
    /// The analytic calls, by slot.
    analytics: Vec<AnalyticCall>,
    /// Whether `last_hit_count()`/`last_hit_time()` are read.
    hits: bool,
    /// Whether `last_agg_hit_count()`/`last_agg_hit_time()` are read.
    agg_hits: bool,
    /// The first function that keeps state across rows, for an error that names it.
    stateful: Option<String>,
    /// Whether `row_number()` may be compiled here: in the SELECT list and `ORDER BY`, which
    /// eKuiper evaluates after its window function operator numbered the rows.
    numbering: bool,
    /// How many `row_number()` calls the statement makes (outside an alias's expansion).
    row_number_calls: usize,
    /// The `OVER` of a `row_number()`, if it has one.
    row_number_over: Option<RowNumberOver>,
    /// The indexes of the SELECT items marked `INVISIBLE`: computed, not sent.
    invisible: Vec<usize>,
    /// The rule the statement is compiled for, if any.
    rule: Option<&'a RuleInfo>,
    /// Whether the statement calls `delay`.
    sleeps: bool,
}

fn unsupported(span: sqlparser::tokenizer::Span, what: &str) -> SqlError {
    SqlError::at(span, format!("{what} is not supported"))
}

impl<'a> Compiler<'a> {
    fn new(catalog: &'a dyn Catalog) -> Self {
        Self {
            catalog,
            sources: Vec::new(),
            qualifiers: Vec::new(),
            aggregates: Vec::new(),
            where_aggregates: Vec::new(),
            in_where: false,
            clause: Clause::Row,
            has_window: false,
            unnamed: 0,
            aliases: Vec::new(),
            visible_aliases: 0,
            expanding: Vec::new(),
            analytics: Vec::new(),
            hits: false,
            agg_hits: false,
            stateful: None,
            numbering: false,
            row_number_calls: 0,
            row_number_over: None,
            invisible: Vec::new(),
            rule: None,
            sleeps: false,
        }
    }

    fn query(mut self, query: &ast::Query) -> Result<Query, SqlError> {
        if let Some(with) = &query.with {
            return Err(unsupported(with.span(), "WITH"));
        }
        let ast::SetExpr::Select(select) = query.body.as_ref() else {
            return Err(unsupported(
                query.body.span(),
                "this kind of query (UNION, VALUES...)",
            ));
        };
        let mut plan = self.select(select)?;
        if let Some(order) = &query.order_by {
            let ast::OrderByKind::Expressions(items) = &order.kind else {
                return Err(unsupported(order.span(), "ORDER BY ALL"));
            };
            // Without a window, eKuiper's order operator hands a row on as it is (one row is
            // already in order); its keys are compiled, so an unknown name is still an error.
            // A stream joined with tables makes a list of joined rows per stream row, which it
            // sorts as a window's rows.
            self.clause = Clause::Result;
            for item in items {
                // An output alias names the expression it stands for.
                let aliased = match &item.expr {
                    ast::Expr::Identifier(id) => {
                        plan.projection.items().iter().find_map(|p| match p {
                            ProjectionItem::Expr { name, expr } if **name == *id.value => {
                                Some(expr.clone())
                            }
                            _ => None,
                        })
                    }
                    _ => None,
                };
                let expr = match aliased {
                    Some(e) => e,
                    None => {
                        // eKuiper sorts after its window function operator numbered the rows.
                        self.numbering = true;
                        let expr = self.expr(&item.expr);
                        self.numbering = false;
                        expr?
                    }
                };
                let asc = !matches!(item.options.sort, Some(ast::OrderBySort::Desc));
                plan.order_by.push((expr, asc));
            }
        }
        if let Some(limit) = &query.limit_clause {
            let expr = match limit {
                ast::LimitClause::LimitOffset {
                    limit: Some(expr),
                    offset: None,
                    limit_by,
                } if limit_by.is_empty() => expr,
                other => return Err(unsupported(other.span(), "OFFSET or this LIMIT form")),
            };
            let n = match expr {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => n.parse::<usize>().ok(),
                    _ => None,
                },
                _ => None,
            }
            .ok_or_else(|| SqlError::at(expr.span(), "LIMIT takes a whole number"))?;
            // Without a window eKuiper's projection keeps a row whatever the limit (one row is
            // within it), an unnested row's results are cut to it, and `LIMIT 0` hands on
            // nothing; the joined rows of a stream row and tables are limited as a window's rows.
            plan.limit = Some(n);
        }
        plan.aggregates = std::mem::take(&mut self.aggregates);
        plan.analytics = std::mem::take(&mut self.analytics);
        plan.hits = self.hits;
        plan.agg_hits = self.agg_hits;
        plan.stateful = self.stateful.take();
        plan.sleeps = self.sleeps;
        Ok(plan)
    }

    fn add_source(&mut self, relation: &ast::TableFactor) -> Result<usize, SqlError> {
        let (name, alias) = match relation {
            ast::TableFactor::Table { name, alias, .. } => (
                object_name(name)?,
                alias.as_ref().map(|a| a.name.value.clone()),
            ),
            other => {
                return Err(unsupported(
                    other.span(),
                    "a subquery or table function in FROM",
                ));
            }
        };
        let def = self.catalog.stream(&name).ok_or_else(|| {
            SqlError::at(
                relation.span(),
                format!("unknown stream `{name}`: define it with CREATE STREAM or CREATE TABLE"),
            )
        })?;
        let index = self.sources.len();
        for q in [Some(def.name.to_string()), Some(name), alias.clone()]
            .into_iter()
            .flatten()
        {
            if self.qualifiers.iter().any(|(n, i)| *n == q && *i != index) {
                return Err(SqlError::at(
                    relation.span(),
                    format!("`{q}` names two sources of the statement: give one an alias"),
                ));
            }
            self.qualifiers.push((q, index));
        }
        self.sources.push(SourceInfo { def, alias });
        Ok(index)
    }

    /// A table named first in FROM (`FROM table1 INNER JOIN demo ON ...`), as eKuiper allows:
    /// the stream joined to it drives the rule, so it becomes the first source and the first
    /// join turns round (`table1 LEFT JOIN demo` is `demo RIGHT JOIN table1`). Names keep
    /// qualifying the source they name.
    fn stream_first(
        &mut self,
        relation: &ast::TableFactor,
        joins: &mut [(
            JoinKind,
            usize,
            Option<&ast::Expr>,
            sqlparser::tokenizer::Span,
        )],
    ) -> Result<(), SqlError> {
        let table = self.sources[0].def.name.to_string();
        let second = self
            .sources
            .get(1)
            .map(|s| (s.def.kind, s.def.name.to_string()));
        match (second, joins.first_mut()) {
            (Some((StreamKind::Stream, _)), Some(first)) => {
                self.sources.swap(0, 1);
                for (_, index) in &mut self.qualifiers {
                    *index = match *index {
                        0 => 1,
                        1 => 0,
                        other => other,
                    };
                }
                first.0 = match first.0 {
                    JoinKind::Left => JoinKind::Right,
                    JoinKind::Right => JoinKind::Left,
                    other => other,
                };
                Ok(())
            }
            (Some((_, other)), _) => Err(SqlError::at(
                relation.span(),
                format!(
                    "`{table}` and `{other}` are tables: a rule reads a stream, named first or \
                     second in FROM, and joins tables to it"
                ),
            )),
            (None, _) => Err(SqlError::at(
                relation.span(),
                format!(
                    "`{table}` is a table: a rule reads a stream, and joins tables to it \
                     (FROM stream JOIN {table} ON ...)"
                ),
            )),
        }
    }

    fn select(&mut self, select: &ast::Select) -> Result<Query, SqlError> {
        if let Some(distinct) = &select.distinct {
            return Err(unsupported(
                select.select_token.0.span.union(&distinct_span(distinct)),
                "DISTINCT",
            ));
        }
        let from = match select.from.as_slice() {
            [] => {
                return Err(SqlError::at(
                    select.select_token.0.span,
                    "the statement has no FROM clause naming a stream",
                ));
            }
            [one] => one,
            [_, second, ..] => {
                return Err(SqlError::at(
                    second.span(),
                    "several streams in FROM: join them with JOIN ... ON",
                ));
            }
        };
        self.aliases = select
            .projection
            .iter()
            .filter_map(|item| match item {
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    Some((alias.value.clone(), expr.clone()))
                }
                _ => None,
            })
            .collect();
        self.visible_aliases = self.aliases.len();
        self.add_source(&from.relation)?;
        let mut join_specs = Vec::new();
        for join in &from.joins {
            let index = self.add_source(&join.relation)?;
            use ast::JoinOperator as J;
            let (kind, constraint) = match &join.join_operator {
                J::Join(c) | J::Inner(c) => (JoinKind::Inner, c),
                J::Left(c) | J::LeftOuter(c) => (JoinKind::Left, c),
                J::Right(c) | J::RightOuter(c) => (JoinKind::Right, c),
                J::FullOuter(c) => (JoinKind::Full, c),
                J::CrossJoin(c) => (JoinKind::Cross, c),
                _ => return Err(unsupported(join.span(), "this kind of join")),
            };
            let on = match constraint {
                ast::JoinConstraint::On(e) => Some(e),
                ast::JoinConstraint::None => None,
                _ => return Err(unsupported(join.span(), "USING or NATURAL")),
            };
            join_specs.push((kind, index, on, join.span()));
        }
        if self.sources[0].def.kind == StreamKind::Table {
            self.stream_first(&from.relation, &mut join_specs)?;
        }

        // The window and the grouping keys.
        let mut window = None;
        let mut group_keys = Vec::new();
        match &select.group_by {
            ast::GroupByExpr::Expressions(exprs, modifiers) => {
                if !modifiers.is_empty() {
                    return Err(unsupported(
                        select.select_token.0.span,
                        "GROUP BY modifiers",
                    ));
                }
                for e in exprs {
                    match e {
                        ast::Expr::Function(f) if is_window_function(&function_name(f)) => {
                            if window.is_some() {
                                return Err(SqlError::at(e.span(), "a statement has one window"));
                            }
                            window = Some(self.window(f)?);
                        }
                        other => group_keys.push(other),
                    }
                }
            }
            ast::GroupByExpr::All(_) => {
                return Err(unsupported(select.select_token.0.span, "GROUP BY ALL"));
            }
        }
        self.has_window = window.is_some();

        let has_stream_join = join_specs
            .iter()
            .any(|(_, i, _, _)| self.sources[*i].def.kind == StreamKind::Stream);
        if has_stream_join && window.is_none() {
            return Err(SqlError::at(
                join_specs[0].3,
                "joining two streams needs a window: add one to GROUP BY (e.g. TUMBLINGWINDOW(ss, 10))",
            ));
        }

        self.clause = Clause::Row;
        let mut joins = Vec::new();
        for (kind, source, on_ast, span) in join_specs {
            let on = on_ast.map(|e| self.expr(e)).transpose()?;
            // eKuiper's planner refuses a lookup join without an equality between a field of
            // the table and the rows joined so far (`LookupPlan.validateAndExtractCondition`).
            let def = self.sources[source].def;
            if def.kind == StreamKind::Table
                && def.options.lookup
                && on.as_ref().is_none_or(|e| !run::looks_up(e, source))
            {
                let text = on_ast.map_or_else(
                    || "%!s(<nil>)".to_owned(),
                    |e| wording::expr_text(e, self.default_stream()),
                );
                return Err(SqlError::at(
                    span,
                    format!(
                        "join condition {text} is invalid, at least one equi-join predicate is \
                         required"
                    ),
                ));
            }
            joins.push(Join { kind, source, on });
        }
        // eKuiper's planner computes an aggregate in WHERE over the window (or the joined
        // rows, or the row alone) before the filter (`AggFuncPlan`).
        self.in_where = true;
        let filter = select.selection.as_ref().map(|e| self.expr(e)).transpose();
        self.in_where = false;
        let filter = filter?;
        let group_by = group_keys
            .into_iter()
            .map(|e| self.expr(e))
            .collect::<Result<Vec<_>, _>>()?;

        self.clause = Clause::Result;
        let projection = self.projection(&select.projection)?;
        self.visible_aliases = self.aliases.len();
        let having = select.having.as_ref().map(|e| self.expr(e)).transpose()?;
        // Without a window each row is alone (eKuiper's planner adds no aggregate operator
        // then): an aggregate sees a group of that one row. eKuiper's analyzer refuses GROUP BY
        // keys without a window (`select stmt group by should be used with window`). A stream
        // joined with tables makes a list of joined rows per stream row, which eKuiper's
        // projection aggregates whole, as one group (`JoinTuples.GroupRange`).
        if !group_by.is_empty() && window.is_none() {
            let span = group_span(&select.group_by).unwrap_or(select.select_token.0.span);
            return Err(SqlError::at(
                span,
                "GROUP BY keys group the rows of a window: add one to GROUP BY \
                 (e.g. TUMBLINGWINDOW(ss, 10))",
            ));
        }
        // eKuiper's having operator takes a window's rows (or groups) only: without a window
        // it fails every row (`run Having error: invalid input *xsql.Tuple(...)`), so the rule
        // could never send anything. Refused here, where the statement is compiled.
        if let (Some(h), None) = (&select.having, &window) {
            return Err(SqlError::at(
                h.span(),
                "HAVING works on the rows of a window: add one to GROUP BY \
                 (e.g. TUMBLINGWINDOW(ss, 10)), or use WHERE to filter each row",
            ));
        }

        Ok(Query {
            sources: self
                .sources
                .iter()
                .map(|s| Source {
                    stream: Arc::clone(&s.def.name),
                    alias: s.alias.as_deref().map(Arc::from),
                    table: s.def.kind == StreamKind::Table,
                    lookup: s.def.kind == StreamKind::Table && s.def.options.lookup,
                })
                .collect(),
            joins,
            window,
            filter,
            where_aggregates: std::mem::take(&mut self.where_aggregates),
            group_by,
            aggregates: Vec::new(),
            having,
            order_by: Vec::new(),
            limit: None,
            projection,
            analytics: Vec::new(),
            hits: false,
            agg_hits: false,
            stateful: None,
            row_number_over: self.row_number_over.take(),
            sleeps: false,
        })
    }

    /// `XWINDOW(unit, n, ...) [FILTER (WHERE c)] [OVER (WHEN c)]`.
    fn window(&mut self, f: &ast::Function) -> Result<WindowSpec, SqlError> {
        let name = function_name(f);
        let span = f.name.span();
        let mut args = Vec::new();
        let mut trigger = None;
        let mut partition = Vec::new();
        if let ast::FunctionArguments::List(list) = &f.args {
            for arg in &list.args {
                match arg {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => args.push(e),
                    ast::FunctionArg::Named {
                        name,
                        arg: ast::FunctionArgExpr::Expr(e),
                        ..
                    } if name.value == dialect::PARTITION_ARG => partition.push(e),
                    ast::FunctionArg::Named {
                        name,
                        arg: ast::FunctionArgExpr::Expr(e),
                        ..
                    } if name.value == dialect::OVER_WHEN_ARG => trigger = Some(e),
                    other => return Err(unsupported(other.span(), "this window argument")),
                }
            }
        }
        let number = |e: &ast::Expr| -> Result<i64, SqlError> {
            match e {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => n.parse::<i64>().ok().filter(|n| *n > 0),
                    _ => None,
                },
                _ => None,
            }
            .ok_or_else(|| SqlError::at(e.span(), "expected a positive whole number"))
        };
        let unit = |e: &ast::Expr| -> Result<i64, SqlError> {
            let text = match e {
                ast::Expr::Identifier(id) => Some(id.value.as_str()),
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                        Some(s.as_str())
                    }
                    _ => None,
                },
                _ => None,
            };
            text.and_then(unit_ms)
                .ok_or_else(|| SqlError::at(e.span(), "expected a time unit: dd, hh, mi, ss or ms"))
        };
        // A duration: `unit` times a positive count, checked so that no timestamp arithmetic
        // on it can overflow (at most a hundred years).
        let duration = |u: &ast::Expr, n: &ast::Expr| -> Result<i64, SqlError> {
            const MAX_MS: i64 = 100 * 366 * 86_400_000;
            let (u, count) = (unit(u)?, number(n)?);
            u.checked_mul(count)
                .filter(|d| *d <= MAX_MS)
                .ok_or_else(|| {
                    SqlError::at(n.span(), "the duration is too long (at most 100 years)")
                })
        };
        let arity = |min: usize, max: usize, usage: &str| -> Result<(), SqlError> {
            if args.len() < min || args.len() > max {
                Err(SqlError::at(span, format!("usage: {usage}")))
            } else {
                Ok(())
            }
        };
        let kind = match name.as_str() {
            "tumblingwindow" => {
                arity(2, 2, "TUMBLINGWINDOW(unit, size)")?;
                WindowKind::Tumbling {
                    size: duration(args[0], args[1])?,
                }
            }
            "hoppingwindow" => {
                arity(3, 3, "HOPPINGWINDOW(unit, size, hop)")?;
                let (size, hop) = (duration(args[0], args[1])?, duration(args[0], args[2])?);
                if size / hop > 100_000 {
                    return Err(SqlError::at(
                        span,
                        "a row would be in more than 100000 windows: make the hop longer",
                    ));
                }
                WindowKind::Hopping { size, hop }
            }
            "slidingwindow" => {
                arity(2, 3, "SLIDINGWINDOW(unit, size[, delay])")?;
                let delay = match args.get(2) {
                    Some(d) => duration(args[0], d)?,
                    None => 0,
                };
                WindowKind::Sliding {
                    size: duration(args[0], args[1])?,
                    delay,
                }
            }
            "sessionwindow" => {
                // eKuiper's order: the second argument is the longest a session may last, the
                // third the gap (timeout) that ends it.
                arity(3, 3, "SESSIONWINDOW(unit, max, timeout)")?;
                WindowKind::Session {
                    max: duration(args[0], args[1])?,
                    timeout: duration(args[0], args[2])?,
                }
            }
            "countwindow" => {
                arity(1, 2, "COUNTWINDOW(count[, interval])")?;
                let size = number(args[0])? as usize;
                let interval = match args.get(1) {
                    Some(i) => number(i)? as usize,
                    None => size,
                };
                if interval > size {
                    return Err(SqlError::at(span, "the interval must not exceed the count"));
                }
                WindowKind::Count { size, interval }
            }
            "statewindow" => {
                arity(1, 2, "STATEWINDOW(begin[, end])")?;
                WindowKind::State {
                    single: args.len() == 1,
                }
            }
            _ => return Err(SqlError::at(span, format!("unknown window `{name}`"))),
        };
        if !partition.is_empty() && !matches!(kind, WindowKind::State { .. }) {
            return Err(SqlError::at(
                span,
                "OVER (PARTITION BY ...) applies to STATEWINDOW only",
            ));
        }
        if trigger.is_some() && !matches!(kind, WindowKind::Sliding { .. }) {
            return Err(SqlError::at(
                span,
                "OVER (WHEN ...) applies to SLIDINGWINDOW only",
            ));
        }
        self.clause = Clause::Row;
        let filter = f.filter.as_ref().map(|e| self.expr(e)).transpose()?;
        let trigger = trigger.map(|e| self.expr(e)).transpose()?;
        let state = match kind {
            WindowKind::State { .. } => Some(StateSpec {
                begin: self.expr(args[0])?,
                end: args.get(1).map(|e| self.expr(e)).transpose()?,
                partition: partition
                    .iter()
                    .map(|e| self.expr(e))
                    .collect::<Result<_, _>>()?,
            }),
            _ => None,
        };
        Ok(WindowSpec {
            kind,
            filter,
            trigger,
            state,
        })
    }

    fn projection(&mut self, items: &[ast::SelectItem]) -> Result<Projection, SqlError> {
        let mut out = Vec::with_capacity(items.len());
        let mut labels: Vec<Option<Arc<str>>> = Vec::new();
        self.visible_aliases = 0;
        self.numbering = true;
        let done = self.projection_items(items, &mut out, &mut labels);
        self.numbering = false;
        done?;
        Ok(Projection::new(out).labelled(labels))
    }

    fn projection_items(
        &mut self,
        items: &[ast::SelectItem],
        out: &mut Vec<ProjectionItem>,
        labels: &mut Vec<Option<Arc<str>>>,
    ) -> Result<(), SqlError> {
        for (index, item) in items.iter().enumerate() {
            if self.invisible.contains(&index) {
                // eKuiper: the item is computed and its alias usable by later items and
                // clauses, but it is not sent.
                match item {
                    ast::SelectItem::UnnamedExpr(e)
                    | ast::SelectItem::ExprWithAlias { expr: e, .. }
                        if !matches!(e, ast::Expr::Function(f)
                            if matches!(function_name(f).as_str(), "unnest" | "extract" | "row_number" | "changed_cols")) =>
                    {
                        self.expr(e)?;
                        if matches!(item, ast::SelectItem::ExprWithAlias { .. }) {
                            self.visible_aliases += 1;
                        } else {
                            // It takes its `kuiper_field_<n>` all the same, as in eKuiper.
                            self.default_name(e);
                        }
                    }
                    other => {
                        return Err(SqlError::at(
                            other.span(),
                            "INVISIBLE hides an expression [AS alias], not `*`, unnest, \
                             row_number or changed_cols",
                        ));
                    }
                }
                continue;
            }
            match item {
                ast::SelectItem::Wildcard(options) => {
                    if options.opt_exclude.is_some()
                        || options.opt_rename.is_some()
                        || options.opt_ilike.is_some()
                    {
                        return Err(unsupported(item.span(), "this modifier on `*`"));
                    }
                    out.push(ProjectionItem::Wildcard(None));
                    if let Some(except) = &options.opt_except {
                        out.push(ProjectionItem::Except(
                            std::iter::once(&except.first_element)
                                .chain(&except.additional_elements)
                                .map(|id| Arc::from(id.value.as_str()))
                                .collect(),
                        ));
                    }
                    if let Some(replace) = &options.opt_replace {
                        for element in &replace.items {
                            let expr = self.expr(&element.expr)?;
                            out.push(ProjectionItem::Expr {
                                name: Arc::from(element.column_name.value.as_str()),
                                expr,
                            });
                        }
                    }
                }
                ast::SelectItem::UnnamedExpr(ast::Expr::Function(f))
                    if matches!(function_name(f).as_str(), "unnest" | "extract") =>
                {
                    let (expr, extract) = self.unnest(f, out)?;
                    out.push(ProjectionItem::Unnest {
                        name: Arc::from(if extract { "extract" } else { "unnest" }),
                        expr,
                        extract,
                    });
                }
                ast::SelectItem::ExprWithAlias {
                    expr: ast::Expr::Function(f),
                    alias,
                } if matches!(function_name(f).as_str(), "unnest" | "extract") => {
                    let (expr, extract) = self.unnest(f, out)?;
                    self.visible_aliases += 1;
                    out.push(ProjectionItem::Unnest {
                        name: Arc::from(alias.value.as_str()),
                        expr,
                        extract,
                    });
                }
                ast::SelectItem::QualifiedWildcard(kind, _) => {
                    let qualifier = match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(name) => {
                            object_name(name)?
                        }
                        ast::SelectItemQualifiedWildcardKind::Expr(e) => {
                            return Err(unsupported(e.span(), "`expr.*`"));
                        }
                    };
                    let Some(index) = self.source_index(&qualifier) else {
                        return Err(SqlError::at(
                            item.span(),
                            format!("unknown stream `{qualifier}` in `{qualifier}.*`"),
                        ));
                    };
                    out.push(ProjectionItem::Wildcard(
                        (self.sources.len() > 1).then_some(index),
                    ));
                }
                ast::SelectItem::UnnamedExpr(ast::Expr::Function(f))
                    if function_name(f) == "changed_cols" =>
                {
                    out.push(ProjectionItem::Cols(self.changed_cols(f)?));
                }
                ast::SelectItem::UnnamedExpr(e) => {
                    let name = self.default_name(e);
                    let expr = self.expr(e)?;
                    labels.resize(out.len(), None);
                    labels.push(Some(Arc::from(format!(
                        "expr: {} meet error, err:",
                        wording::expr_text(e, self.default_stream())
                    ))));
                    out.push(ProjectionItem::Expr { name, expr });
                }
                ast::SelectItem::ExprWithAlias { expr: e, alias } => {
                    let expr = self.expr(e)?;
                    self.visible_aliases += 1;
                    labels.resize(out.len(), None);
                    labels.push(Some(Arc::from(format!(
                        "alias: {} expr: {} meet error, err:",
                        alias.value,
                        wording::expr_text(e, self.default_stream())
                    ))));
                    out.push(ProjectionItem::Expr {
                        name: Arc::from(alias.value.as_str()),
                        expr,
                    });
                }
                other => return Err(unsupported(other.span(), "this projection")),
            }
        }
        Ok(())
    }

    /// `row_number()` in the SELECT list (or in `ORDER BY` through its alias): the runner
    /// numbers the rows (or groups) of each result 1, 2, ... (eKuiper's window function
    /// operator, which runs after `HAVING` and before `ORDER BY` and the projection); a row
    /// alone is 1.
    fn row_number(&mut self, f: &ast::Function) -> Result<Expr, SqlError> {
        if !self.numbering {
            return Err(SqlError::at(
                f.name.span(),
                "row_number() numbers the rows of a result after WHERE, GROUP BY and HAVING: \
                 use it in the SELECT list (ORDER BY may name its alias)",
            ));
        }
        // An alias's expression compiled again where the alias is read: the same call.
        if !self.expanding.is_empty() {
            return Ok(Expr::RowNumber);
        }
        if let ast::FunctionArguments::List(list) = &f.args
            && !list.args.is_empty()
        {
            return Err(SqlError::at(
                f.name.span(),
                "`row_number` takes no argument",
            ));
        }
        // eKuiper's `row_number() OVER (PARTITION BY ... ORDER BY ...)` numbers each
        // partition in its own order. Its window function operators run one after the other,
        // each reordering the rows; Oort takes one `OVER` per statement.
        match &f.over {
            None if self.row_number_over.is_some() => {
                return Err(SqlError::at(
                    f.name.span(),
                    "a statement with `row_number() OVER (...)` takes no other row_number()",
                ));
            }
            None => {}
            Some(_) if self.row_number_calls > 0 => {
                return Err(SqlError::at(
                    f.name.span(),
                    "`row_number() OVER (...)` must be the statement's only row_number()",
                ));
            }
            Some(ast::WindowType::NamedWindow(w)) => {
                return Err(unsupported(w.span, "a named window in OVER"));
            }
            Some(ast::WindowType::WindowSpec(spec)) => {
                if let Some(w) = &spec.window_name {
                    return Err(unsupported(w.span, "a named window in OVER"));
                }
                if spec.window_frame.is_some() {
                    return Err(SqlError::at(
                        f.name.span(),
                        "`row_number() OVER (...)` takes PARTITION BY and ORDER BY, no frame",
                    ));
                }
                // Evaluated on each row, as WHERE is: no aggregates.
                let clause = std::mem::replace(&mut self.clause, Clause::Row);
                let over = (|| {
                    let partition = spec
                        .partition_by
                        .iter()
                        .map(|e| self.expr(e))
                        .collect::<Result<Vec<_>, _>>()?;
                    let order = spec
                        .order_by
                        .iter()
                        .map(|o| {
                            let asc = !matches!(o.options.sort, Some(ast::OrderBySort::Desc));
                            Ok((self.expr(&o.expr)?, asc))
                        })
                        .collect::<Result<Vec<_>, SqlError>>()?;
                    Ok::<_, SqlError>(RowNumberOver { partition, order })
                })();
                self.clause = clause;
                self.row_number_over = Some(over?);
            }
        }
        self.row_number_calls += 1;
        Ok(Expr::RowNumber)
    }

    /// The stream an unqualified column is bound to in eKuiper's printed expressions.
    fn default_stream(&self) -> &str {
        self.sources.first().map_or("", |s| &*s.def.name)
    }

    /// The visible alias `name` is, unless it is being expanded.
    fn alias_of(&self, name: &str) -> Option<usize> {
        self.aliases[..self.visible_aliases]
            .iter()
            .position(|(a, _)| a.eq_ignore_ascii_case(name))
            .filter(|k| !self.expanding.contains(k))
    }

    /// In the SELECT list, the alias `name` of a later item, unless it is being expanded.
    fn later_alias(&self, name: &str) -> Option<usize> {
        (self.visible_aliases..self.aliases.len())
            .find(|&k| self.aliases[k].0.eq_ignore_ascii_case(name))
            .filter(|k| !self.expanding.contains(k))
    }

    /// The expression alias `k` names, compiled where `id` stands. Where rows are filtered or
    /// joined, an alias of something that cannot be computed there (an aggregate) leaves `id`
    /// the column it names.
    fn expand_alias(&mut self, k: usize, id: &ast::Ident) -> Result<Expr, SqlError> {
        let aliased = self.aliases[k].1.clone();
        self.expanding.push(k);
        // An alias of an aggregate in WHERE names the column, as before.
        let in_where = std::mem::replace(&mut self.in_where, false);
        let compiled = self.expr(&aliased);
        self.in_where = in_where;
        self.expanding.pop();
        match compiled {
            Err(_) if self.clause == Clause::Row => self.column(None, id),
            other => other,
        }
    }

    fn source_index(&self, qualifier: &str) -> Option<usize> {
        self.qualifiers
            .iter()
            .find(|(n, _)| n == qualifier)
            .map(|(_, i)| *i)
    }

    /// eKuiper's name for an unaliased projection: the field's name, the function's name, or
    /// `kuiper_field_<n>` for anything else.
    fn default_name(&mut self, e: &ast::Expr) -> Arc<str> {
        match e {
            ast::Expr::Identifier(id) => Arc::from(id.value.as_str()),
            ast::Expr::CompoundIdentifier(parts) => {
                Arc::from(parts.last().map_or("", |p| p.value.as_str()))
            }
            ast::Expr::Function(f) => Arc::from(function_name(f)),
            _ => {
                let name = format!("kuiper_field_{}", self.unnamed);
                self.unnamed += 1;
                Arc::from(name)
            }
        }
    }

    fn column(&self, qualifier: Option<&ast::Ident>, name: &ast::Ident) -> Result<Expr, SqlError> {
        let declares = |s: &SourceInfo<'_>| {
            s.def.columns.as_ref().map(|cols| {
                cols.iter()
                    .any(|c| c.name.eq_ignore_ascii_case(&name.value))
            })
        };
        let names = || {
            self.sources
                .iter()
                .map(|s| format!("`{}`", s.def.name))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let stream = match qualifier {
            Some(q) => {
                let Some(index) = self.source_index(&q.value) else {
                    return Err(SqlError::at(
                        q.span,
                        format!(
                            "unknown stream `{}` (the statement reads {})",
                            q.value,
                            names()
                        ),
                    ));
                };
                if declares(&self.sources[index]) == Some(false) {
                    return Err(SqlError::at(
                        name.span,
                        format!(
                            "unknown field `{}` in stream `{}`",
                            name.value, self.sources[index].def.name
                        ),
                    ));
                }
                (self.sources.len() > 1).then_some(index)
            }
            None => {
                let found: Vec<usize> = (0..self.sources.len())
                    .filter(|&i| declares(&self.sources[i]) == Some(true))
                    .collect();
                let schemaless = self.sources.iter().any(|s| s.def.columns.is_none());
                match (found.as_slice(), schemaless) {
                    ([], false) => {
                        return Err(SqlError::at(
                            name.span,
                            format!("unknown field `{}` in stream {}", name.value, names()),
                        ));
                    }
                    ([first, _, ..], _) => {
                        return Err(SqlError::at(
                            name.span,
                            format!(
                                "ambiguous field `{}`: several streams have it, qualify it (e.g. `{}.{}`)",
                                name.value, self.sources[*first].def.name, name.value
                            ),
                        ));
                    }
                    ([one], false) if self.sources.len() > 1 => Some(*one),
                    _ => None,
                }
            }
        };
        let mut column = Column::new(
            qualifier.map(|q| Arc::from(q.value.as_str())),
            Arc::from(name.value.as_str()),
        );
        column.stream = stream;
        Ok(Expr::Column(column))
    }

    fn expr(&mut self, e: &ast::Expr) -> Result<Expr, SqlError> {
        let compiled = match e {
            ast::Expr::Identifier(id) => match self.alias_of(&id.value) {
                Some(k) => self.expand_alias(k, id)?,
                None => match self.column(None, id) {
                    Ok(column) => column,
                    // eKuiper: a SELECT item may name a later item's alias when no column has
                    // that name (`a + 1 AS b, size AS a`).
                    Err(e) => match self.later_alias(&id.value) {
                        Some(k) => self.expand_alias(k, id)?,
                        None => return Err(e),
                    },
                },
            },
            // `stream.column`, and as eKuiper's JSON access `column.field...` and
            // `stream.column.field...`.
            ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [q, name, fields @ ..] if self.source_index(&q.value).is_some() => {
                    let column = self.column(Some(q), name)?;
                    nested(column, fields)
                }
                [first, fields @ ..] if !fields.is_empty() => match self.column(None, first) {
                    Ok(column) => nested(column, fields),
                    Err(_) => self.column(Some(first), &fields[0])?,
                },
                _ => return Err(unsupported(e.span(), "this name")),
            },
            ast::Expr::Value(v) => Expr::Literal(literal(&v.value, v.span)?),
            ast::Expr::Nested(inner) => self.expr(inner)?,
            ast::Expr::UnaryOp { op, expr } => {
                let inner = self.expr(expr)?;
                match op {
                    ast::UnaryOperator::Not => Expr::Unary(UnaryOp::Not, Box::new(inner)),
                    ast::UnaryOperator::Minus => Expr::Unary(UnaryOp::Neg, Box::new(inner)),
                    ast::UnaryOperator::Plus => inner,
                    ast::UnaryOperator::BitwiseNot => Expr::Unary(UnaryOp::BitNot, Box::new(inner)),
                    other => return Err(unsupported(e.span(), &format!("the operator `{other}`"))),
                }
            }
            ast::Expr::BinaryOp { left, op, right } => self.binary(e, left, op, right)?,
            ast::Expr::IsNull(inner) => Expr::IsNull(Box::new(self.expr(inner)?), false),
            ast::Expr::IsNotNull(inner) => Expr::IsNull(Box::new(self.expr(inner)?), true),
            ast::Expr::In {
                expr,
                target,
                negated,
                ..
            } => {
                let list = match target {
                    ast::InTarget::List(list) => list,
                    // `x IN arr` (see the dialect): membership in the array `arr` gives.
                    ast::InTarget::Unnest(array) => {
                        return Ok(fold(Expr::InArray(
                            Box::new(self.expr(expr)?),
                            Box::new(self.expr(array)?),
                            *negated,
                        )));
                    }
                    _ => return Err(unsupported(e.span(), "IN with a subquery")),
                };
                Expr::InList(
                    Box::new(self.expr(expr)?),
                    list.iter()
                        .map(|i| self.expr(i))
                        .collect::<Result<_, _>>()?,
                    *negated,
                )
            }
            ast::Expr::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between(
                Box::new(self.expr(expr)?),
                Box::new(self.expr(low)?),
                Box::new(self.expr(high)?),
                *negated,
            ),
            ast::Expr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return Err(unsupported(e.span(), "LIKE ANY / ESCAPE"));
                }
                Expr::Like(
                    Box::new(self.expr(expr)?),
                    Box::new(self.expr(pattern)?),
                    *negated,
                )
            }
            ast::Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => Expr::Case {
                operand: operand
                    .as_ref()
                    .map(|o| self.expr(o).map(Box::new))
                    .transpose()?,
                whens: conditions
                    .iter()
                    .map(|w| Ok((self.expr(&w.condition)?, self.expr(&w.result)?)))
                    .collect::<Result<_, SqlError>>()?,
                otherwise: else_result
                    .as_ref()
                    .map(|o| self.expr(o).map(Box::new))
                    .transpose()?,
            },
            ast::Expr::Function(f) => self.function(f)?,
            ast::Expr::CompoundFieldAccess { root, access_chain } => {
                let root = self.expr(root)?;
                self.access(root, access_chain)?
            }
            other => {
                return Err(unsupported(
                    other.span(),
                    &format!("the expression `{other}`"),
                ));
            }
        };
        Ok(fold(compiled))
    }

    /// `e[i]`, `e[a:b]` and `e.field` applied in turn to `out`.
    fn access(&mut self, mut out: Expr, chain: &[ast::AccessExpr]) -> Result<Expr, SqlError> {
        for access in chain {
            out = match access {
                ast::AccessExpr::Subscript(ast::Subscript::Index { index }) => {
                    Expr::Index(Box::new(out), Box::new(self.expr(index)?))
                }
                ast::AccessExpr::Subscript(ast::Subscript::Slice {
                    lower_bound,
                    upper_bound,
                    stride: None,
                }) => Expr::Slice(
                    Box::new(out),
                    lower_bound
                        .as_ref()
                        .map(|b| self.expr(b).map(Box::new))
                        .transpose()?,
                    upper_bound
                        .as_ref()
                        .map(|b| self.expr(b).map(Box::new))
                        .transpose()?,
                ),
                ast::AccessExpr::Dot(ast::Expr::Identifier(field)) => {
                    Expr::Field(Box::new(out), Arc::from(field.value.as_str()))
                }
                other => return Err(unsupported(other.span(), "this field access")),
            };
        }
        Ok(out)
    }

    fn binary(
        &mut self,
        whole: &ast::Expr,
        left: &ast::Expr,
        op: &ast::BinaryOperator,
        right: &ast::Expr,
    ) -> Result<Expr, SqlError> {
        use ast::BinaryOperator as B;
        if matches!(op, B::Arrow) {
            // `a->b`, and `a->b[0]`, `a->b[1:3]`, `a->b.c` (the access binds to the field).
            let (field, chain) = match right {
                ast::Expr::Identifier(field) => (field, &[][..]),
                ast::Expr::CompoundFieldAccess { root, access_chain } => match root.as_ref() {
                    ast::Expr::Identifier(field) => (field, access_chain.as_slice()),
                    _ => {
                        return Err(SqlError::at(
                            right.span(),
                            "`->` must be followed by a field name",
                        ));
                    }
                },
                ast::Expr::CompoundIdentifier(parts) if !parts.is_empty() => {
                    let mut out = Expr::Field(
                        Box::new(self.expr(left)?),
                        Arc::from(parts[0].value.as_str()),
                    );
                    for p in &parts[1..] {
                        out = Expr::Field(Box::new(out), Arc::from(p.value.as_str()));
                    }
                    return Ok(out);
                }
                _ => {
                    return Err(SqlError::at(
                        right.span(),
                        "`->` must be followed by a field name",
                    ));
                }
            };
            let out = Expr::Field(Box::new(self.expr(left)?), Arc::from(field.value.as_str()));
            return self.access(out, chain);
        }
        let op = match op {
            B::And | B::Or => None,
            B::Plus => Some(BinOp::Add),
            B::Minus => Some(BinOp::Sub),
            B::Multiply => Some(BinOp::Mul),
            B::Divide => Some(BinOp::Div),
            B::Modulo => Some(BinOp::Mod),
            B::Eq => Some(BinOp::Eq),
            B::NotEq => Some(BinOp::NotEq),
            B::Lt => Some(BinOp::Lt),
            B::LtEq => Some(BinOp::LtEq),
            B::Gt => Some(BinOp::Gt),
            B::GtEq => Some(BinOp::GtEq),
            B::BitwiseAnd => Some(BinOp::BitAnd),
            B::BitwiseOr => Some(BinOp::BitOr),
            B::BitwiseXor | B::PGBitwiseXor => Some(BinOp::BitXor),
            other => {
                return Err(unsupported(
                    whole.span(),
                    &format!("the operator `{other}`"),
                ));
            }
        }
        .ok_or(op);
        let l = Box::new(self.expr(left)?);
        let r = Box::new(self.expr(right)?);
        Ok(match op {
            Ok(op) => Expr::Binary(op, l, r),
            Err(B::And) => Expr::And(l, r),
            Err(_) => Expr::Or(l, r),
        })
    }

    fn function(&mut self, f: &ast::Function) -> Result<Expr, SqlError> {
        let span = f.name.span();
        let name = function_name(f);
        if let Some((func, min, max)) = AnalyticFunc::lookup(&name) {
            return self.analytic(f, func, min, max);
        }
        if name == "row_number" {
            return self.row_number(f);
        }
        if f.over.is_some() || !f.within_group.is_empty() {
            return Err(unsupported(span, "OVER on a function"));
        }
        if let Some(hidden) = match name.as_str() {
            "last_hit_count" => Some(analytic::HIT_COUNT),
            "last_hit_time" => Some(analytic::HIT_TIME),
            "last_agg_hit_count" => Some(analytic::AGG_HIT_COUNT),
            "last_agg_hit_time" => Some(analytic::AGG_HIT_TIME),
            _ => None,
        } {
            if !matches!(&f.args, ast::FunctionArguments::None)
                && !matches!(&f.args, ast::FunctionArguments::List(l) if l.args.is_empty())
            {
                return Err(SqlError::at(span, format!("`{name}` takes no argument")));
            }
            if name.starts_with("last_agg") {
                if !self.has_window {
                    return Err(SqlError::at(
                        span,
                        format!(
                            "`{name}()` reads the windows the rule sent: add a window to GROUP BY"
                        ),
                    ));
                }
                self.agg_hits = true;
            } else {
                self.hits = true;
            }
            self.stateful.get_or_insert(name.clone());
            return Ok(Expr::Column(Column::new(None, Arc::from(hidden))));
        }
        if name == "changed_cols" || name == "unnest" || name == "extract" {
            return Err(SqlError::at(
                span,
                format!(
                    "`{name}` gives columns or rows, not a value: use it as an item of the SELECT list"
                ),
            ));
        }
        if is_window_function(&name) {
            return Err(SqlError::at(
                span,
                format!("`{name}` is a window: it belongs in GROUP BY"),
            ));
        }
        let args = match &f.args {
            ast::FunctionArguments::None => Vec::new(),
            ast::FunctionArguments::List(list) => {
                if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                    return Err(unsupported(span, "DISTINCT or clauses inside a call"));
                }
                list.args.iter().collect()
            }
            ast::FunctionArguments::Subquery(q) => return Err(unsupported(q.span(), "a subquery")),
        };
        if let Some((func, min, max)) = AggFunc::lookup(&name) {
            return self.aggregate(f, &name, func, &args, min, max);
        }
        if f.filter.is_some() {
            return Err(unsupported(span, "FILTER on a scalar function"));
        }
        if matches!(
            name.as_str(),
            "window_start" | "window_end" | "window_trigger"
        ) && args.is_empty()
        {
            if !self.has_window {
                return Err(SqlError::at(
                    span,
                    format!("`{name}()` needs a window in GROUP BY"),
                ));
            }
            // eKuiper's window fires at its end: `window_trigger()` is that time.
            return Ok(if name == "window_start" {
                Expr::WindowStart
            } else {
                Expr::WindowEnd
            });
        }
        // The rule's constants.
        if let Some(rule) = self.rule
            && args.is_empty()
        {
            match name.as_str() {
                "rule_id" => return Ok(Expr::Literal(Value::string(&*rule.id))),
                "rule_start" => return Ok(Expr::Literal(Value::Int(rule.start_ms))),
                _ => {}
            }
        }
        self.sleeps |= name == "delay";
        let Some(def) = functions::lookup(&name) else {
            return Err(SqlError::at(span, format!("unknown function `{name}`")));
        };
        if args.len() < def.min_args || def.max_args.is_some_and(|max| args.len() > max) {
            return Err(arity_error(
                span,
                &name,
                def.min_args,
                def.max_args,
                args.len(),
            ));
        }
        let mut compiled = Vec::with_capacity(args.len());
        for (i, arg) in args.iter().enumerate() {
            let bare_key = (name == "meta" || name == "mqtt") && i == 0;
            // eKuiper's `meta(*)`: all of the row's metadata.
            if bare_key
                && name == "meta"
                && matches!(
                    arg,
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)
                )
            {
                compiled.push(Expr::Literal(Value::string("*")));
                continue;
            }
            let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = arg else {
                return Err(unsupported(arg.span(), "a named or `*` argument here"));
            };
            // eKuiper's `meta(key)` names the key bare (`meta(topic)`, `meta(a.b)`).
            if bare_key {
                // `meta(stream.key)`: the key of that stream's row (in a join, or the
                // statement's own stream), as eKuiper binds the field to its stream.
                if let ast::Expr::CompoundIdentifier(ids) = e
                    && let [q, rest @ ..] = ids.as_slice()
                    && !rest.is_empty()
                    && let Some(source) = self.source_index(&q.value)
                {
                    let key = rest
                        .iter()
                        .map(|id| id.value.as_str())
                        .collect::<Vec<_>>()
                        .join(".");
                    compiled.push(Expr::Literal(Value::string(key)));
                    compiled.push(Expr::Literal(Value::Int(source as i64)));
                    continue;
                }
                if let Some(key) = bare_meta_key(e) {
                    compiled.push(Expr::Literal(Value::string(key)));
                    continue;
                }
            }
            let arg = self.expr(e)?;
            // A constant JSONPath is checked now: a bad one is refused with its position.
            if name.starts_with("json_path_") && i == 1 {
                match &arg {
                    Expr::Literal(Value::String(path)) => functions::check_json_path(path)
                        .map_err(|m| SqlError::at(e.span(), format!("{name}: argument 2: {m}")))?,
                    Expr::Literal(v) if !v.is_null() => {
                        return Err(SqlError::at(
                            e.span(),
                            format!(
                                "{name}: argument 2: expected a JSONPath string, got {}",
                                v.type_name()
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            // A literal of the wrong type is refused now, as eKuiper's validation does.
            if let Expr::Literal(v) = &arg
                && !v.is_null()
            {
                functions::check_literal_arg(&name, i, v)
                    .map_err(|m| SqlError::at(e.span(), format!("{name}: {m}")))?;
            }
            // So is the type of a cast.
            if name == "cast"
                && i == 1
                && let Expr::Literal(Value::String(target)) = &arg
            {
                functions::check_cast_type(target)
                    .map_err(|m| SqlError::at(e.span(), format!("cast: {m}")))?;
            }
            compiled.push(arg);
        }
        if name == "object_construct" && !compiled.len().is_multiple_of(2) {
            return Err(SqlError::at(
                span,
                "object_construct: the args must be key value pairs",
            ));
        }
        Ok(Expr::Call(def, compiled))
    }

    /// An analytic call: its arguments, `PARTITION BY` and `WHEN` are evaluated on each row as it
    /// enters; the call becomes the hidden column holding its result.
    fn analytic(
        &mut self,
        f: &ast::Function,
        func: AnalyticFunc,
        min: usize,
        max: usize,
    ) -> Result<Expr, SqlError> {
        let span = f.name.span();
        let name = func.name();
        let ast::FunctionArguments::List(list) = &f.args else {
            return Err(arity_error(
                span,
                name,
                min,
                (max != usize::MAX).then_some(max),
                0,
            ));
        };
        let clause = std::mem::replace(&mut self.clause, Clause::Row);
        let mut args = Vec::new();
        let mut partition = Vec::new();
        let mut when = None;
        let mut compile = |this: &mut Self| -> Result<(), SqlError> {
            for arg in &list.args {
                match arg {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                        args.push(this.expr(e)?)
                    }
                    // `changed_col(true, *)`: the whole row is the value.
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => {
                        args.push(Expr::Row)
                    }
                    ast::FunctionArg::Named {
                        name,
                        arg: ast::FunctionArgExpr::Expr(e),
                        ..
                    } if name.value == dialect::PARTITION_ARG => partition.push(this.expr(e)?),
                    ast::FunctionArg::Named {
                        name,
                        arg: ast::FunctionArgExpr::Expr(e),
                        ..
                    } if name.value == dialect::OVER_WHEN_ARG => when = Some(this.expr(e)?),
                    other => return Err(unsupported(other.span(), "this argument")),
                }
            }
            Ok(())
        };
        // Analytic functions run on each row as it enters, before WHERE's aggregates exist.
        let in_where = std::mem::replace(&mut self.in_where, false);
        let compiled = compile(self);
        self.in_where = in_where;
        self.clause = clause;
        compiled?;
        let acc = name.starts_with("acc_");
        if args.len() < min || args.len() > max || (acc && args.len() == 2) {
            let max = (max != usize::MAX).then_some(max);
            return Err(arity_error(span, name, min, max, args.len()));
        }
        check_analytic_literals(func, &list.args)?;
        if func == AnalyticFunc::Lag
            && let Some(Expr::Literal(v)) = args.get(1)
            && v.as_i64().is_none_or(|n| n < 0)
        {
            return Err(SqlError::at(
                span,
                "lag: the offset (second argument) must be a whole number ≥ 0",
            ));
        }
        self.stateful.get_or_insert_with(|| name.to_string());
        let slot = self.analytics.len();
        self.analytics
            .push(AnalyticCall::new(func, args, partition, when));
        Ok(Expr::Column(Column::new(
            None,
            analytic::analytic_field(slot),
        )))
    }

    /// The argument of `unnest(array)` or `extract(object)` (then `true`), the one
    /// set-returning function of the SELECT list.
    fn unnest(
        &mut self,
        f: &ast::Function,
        items: &[ProjectionItem],
    ) -> Result<(Expr, bool), SqlError> {
        let span = f.name.span();
        let name = function_name(f);
        if items
            .iter()
            .any(|i| matches!(i, ProjectionItem::Unnest { .. }))
        {
            return Err(SqlError::at(
                span,
                "a SELECT list holds one set-returning function (`unnest` or `extract`)",
            ));
        }
        let expr = match &f.args {
            ast::FunctionArguments::List(list) => match list.args.as_slice() {
                [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))] => self.expr(e),
                args => Err(arity_error(span, &name, 1, Some(1), args.len())),
            },
            _ => Err(arity_error(span, &name, 1, Some(1), 0)),
        }?;
        Ok((expr, name == "extract"))
    }

    /// `changed_cols(prefix, ignore_null, col, ...)` (a column may be `*`).
    fn changed_cols(&mut self, f: &ast::Function) -> Result<ChangedCols, SqlError> {
        let span = f.name.span();
        let args: Vec<&ast::FunctionArg> = match &f.args {
            ast::FunctionArguments::List(list) => list.args.iter().collect(),
            _ => Vec::new(),
        };
        if args.len() < 3 {
            return Err(arity_error(span, "changed_cols", 3, None, args.len()));
        }
        let mut exprs = Vec::new();
        let mut cols = Vec::new();
        for (i, arg) in args.iter().enumerate() {
            match arg {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) if i >= 2 => {
                    cols.push(None)
                }
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) if i >= 2 => {
                    let name = self.default_name(e);
                    cols.push(Some((name, self.expr(e)?)));
                }
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                    let compiled = self.expr(e)?;
                    // eKuiper's validation: a literal prefix is a string, ignore_null a boolean.
                    let (ok, expect) = match (&compiled, i) {
                        (Expr::Literal(v), 0) => {
                            (matches!(v, Value::String(_) | Value::Null), "string")
                        }
                        (Expr::Literal(v), _) => {
                            (matches!(v, Value::Bool(_) | Value::Null), "bool")
                        }
                        _ => (true, ""),
                    };
                    if !ok {
                        return Err(SqlError::at(
                            e.span(),
                            format!("changed_cols: Expect {expect} type for parameter {}", i + 1),
                        ));
                    }
                    exprs.push(compiled)
                }
                other => return Err(unsupported(other.span(), "this argument")),
            }
        }
        self.stateful
            .get_or_insert_with(|| "changed_cols".to_string());
        let ignore_null = exprs.pop().unwrap_or(Expr::Literal(Value::Null));
        let prefix = exprs.pop().unwrap_or(Expr::Literal(Value::Null));
        Ok(ChangedCols::new(prefix, ignore_null, cols))
    }

    fn aggregate(
        &mut self,
        f: &ast::Function,
        name: &str,
        func: AggFunc,
        args: &[&ast::FunctionArg],
        min: usize,
        max: usize,
    ) -> Result<Expr, SqlError> {
        let span = f.name.span();
        let in_where = self.in_where && self.clause == Clause::Row;
        if self.clause != Clause::Result && !in_where {
            return Err(SqlError::at(
                span,
                format!(
                    "`{name}` is an aggregate function: it may appear in the SELECT list, WHERE, \
                     HAVING or ORDER BY, not in ON, GROUP BY, a window's FILTER or OVER, or \
                     another aggregate"
                ),
            ));
        }
        if f.filter.is_some() {
            return Err(unsupported(span, "FILTER on an aggregate"));
        }
        // `f(* EXCEPT(a, b))`: the fields left out of each row (see the dialect).
        let mut except = Vec::new();
        let args: Vec<&ast::FunctionArg> = args
            .iter()
            .copied()
            .filter(|a| match a {
                ast::FunctionArg::Named {
                    name,
                    arg: ast::FunctionArgExpr::Expr(ast::Expr::Identifier(field)),
                    ..
                } if name.value == dialect::EXCEPT_ARG => {
                    except.push(Arc::from(field.value.as_str()));
                    false
                }
                _ => true,
            })
            .collect();
        let args = args.as_slice();
        if args.len() < min || args.len() > max {
            return Err(arity_error(span, name, min, Some(max), args.len()));
        }
        let star = matches!(
            args.first(),
            Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard))
        );
        let func = match (func, star) {
            (AggFunc::Count, true) => AggFunc::CountStar,
            (AggFunc::Collect | AggFunc::MergeAgg, true) => func,
            (_, true) => return Err(SqlError::at(span, format!("`{name}(*)` is not supported"))),
            (f, false) => f,
        };
        // As eKuiper's validator: `last_value`'s `ignore_null` is written as a condition.
        if func == AggFunc::LastValue
            && let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))) = args.get(1)
            && !is_boolean_arg(e)
        {
            return Err(SqlError::at(
                e.span(),
                format!("{name}: argument 2 must be a boolean (`true`, `false` or a condition)"),
            ));
        }
        // Arguments are evaluated per row: no aggregates inside them.
        let clause = std::mem::replace(&mut self.clause, Clause::Row);
        self.in_where = false;
        let compiled: Result<Vec<Expr>, SqlError> = args
            .iter()
            .enumerate()
            .map(|(i, arg)| match arg {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) if i == 0 => {
                    Ok(Expr::Literal(Value::Null))
                }
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => self.expr(e),
                other => Err(unsupported(other.span(), "this argument")),
            })
            .collect();
        self.clause = clause;
        self.in_where = in_where;
        let call = AggCall {
            func,
            args: compiled?,
            star,
            except,
        };
        let list = if in_where {
            &mut self.where_aggregates
        } else {
            &mut self.aggregates
        };
        list.push(call);
        Ok(Expr::Aggregate(list.len() - 1))
    }
}

use crate::value::Value;

/// A call of `name` with `got` arguments where it takes `min` to `max`: eKuiper's words after
/// the function's name, as its other validation errors (`round: Expect 1 or 2 arguments only`).
fn arity_error(
    span: sqlparser::tokenizer::Span,
    name: &str,
    min: usize,
    max: Option<usize>,
    got: usize,
) -> SqlError {
    SqlError::at(
        span,
        format!("{name}: {}", arity::message(name, min, max, got)),
    )
}

fn function_name(f: &ast::Function) -> String {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map_or(String::new(), |i| i.value.to_ascii_lowercase())
}

fn is_window_function(name: &str) -> bool {
    matches!(
        name,
        "tumblingwindow"
            | "hoppingwindow"
            | "slidingwindow"
            | "sessionwindow"
            | "countwindow"
            | "statewindow"
    )
}

fn object_name(name: &ast::ObjectName) -> Result<String, SqlError> {
    match name.0.as_slice() {
        [ast::ObjectNamePart::Identifier(id)] => Ok(id.value.clone()),
        _ => Err(SqlError::at(
            name.span(),
            format!("`{name}` is not a plain name"),
        )),
    }
}

/// Whether `e` is written as a boolean: a boolean literal or a comparison, logical operator,
/// `BETWEEN`, `IN` or `LIKE` (eKuiper's test for an argument that must be a boolean).
fn is_boolean_arg(e: &ast::Expr) -> bool {
    use ast::BinaryOperator as B;
    match e {
        ast::Expr::Value(v) => matches!(v.value, ast::Value::Boolean(_)),
        ast::Expr::Nested(e) => is_boolean_arg(e),
        ast::Expr::BinaryOp { op, .. } => matches!(
            op,
            B::And | B::Or | B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq
        ),
        ast::Expr::Between { .. } | ast::Expr::In { .. } | ast::Expr::Like { .. } => true,
        _ => false,
    }
}

/// The kind of literal `e` is, if it is a number or a string literal.
fn literal_kind(e: &ast::Expr) -> Option<&'static str> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(..) => Some("number"),
            ast::Value::SingleQuotedString(_) | ast::Value::DoubleQuotedString(_) => Some("string"),
            ast::Value::Boolean(_) => Some("boolean"),
            _ => None,
        },
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus | ast::UnaryOperator::Plus,
            expr,
        } => literal_kind(expr).filter(|k| *k == "number"),
        _ => None,
    }
}

/// eKuiper's checks of analytic functions' literal arguments, when the statement is compiled:
/// `changed_col`'s and `had_changed`'s `ignore_null` and `lag`'s `ignore_null` cannot be a
/// number or a string, and `lag`'s offset must be a whole number, not a column.
fn check_analytic_literals(func: AnalyticFunc, args: &[ast::FunctionArg]) -> Result<(), SqlError> {
    let positional: Vec<&ast::Expr> = args
        .iter()
        .filter_map(|a| match a {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    let name = func.name();
    let not_boolean = |i: usize| -> Result<(), SqlError> {
        match positional.get(i) {
            Some(e) if matches!(literal_kind(e), Some("number" | "string")) => Err(SqlError::at(
                e.span(),
                format!("{name}: argument {} must be a boolean", i + 1),
            )),
            _ => Ok(()),
        }
    };
    match func {
        AnalyticFunc::ChangedCol | AnalyticFunc::HadChanged => not_boolean(0),
        AnalyticFunc::Lag => {
            if let Some(e) = positional.get(1) {
                let whole = match e {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::Number(n, _) => n.parse::<i64>().is_ok(),
                        _ => false,
                    },
                    ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => false,
                    e => !is_boolean_arg(e) && literal_kind(e).is_none(),
                };
                if !whole {
                    return Err(SqlError::at(
                        e.span(),
                        "lag: the offset (second argument) must be a whole number ≥ 0",
                    ));
                }
            }
            not_boolean(3)
        }
        _ => Ok(()),
    }
}

fn literal(v: &ast::Value, span: sqlparser::tokenizer::Span) -> Result<Value, SqlError> {
    Ok(match v {
        ast::Value::Number(text, _) => match text.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => text
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| SqlError::at(span, format!("`{text}` is not a number")))?,
        },
        ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
            Value::string(s.as_str())
        }
        ast::Value::Boolean(b) => Value::Bool(*b),
        ast::Value::Null => Value::Null,
        other => return Err(unsupported(span, &format!("the literal `{other}`"))),
    })
}

fn distinct_span(d: &ast::Distinct) -> sqlparser::tokenizer::Span {
    match d {
        ast::Distinct::On(exprs) => exprs
            .first()
            .map(|e| e.span())
            .unwrap_or(sqlparser::tokenizer::Span::empty()),
        _ => sqlparser::tokenizer::Span::empty(),
    }
}

fn group_span(group: &ast::GroupByExpr) -> Option<sqlparser::tokenizer::Span> {
    match group {
        ast::GroupByExpr::Expressions(exprs, _) => exprs.first().map(|e| e.span()),
        ast::GroupByExpr::All(_) => None,
    }
}

/// Evaluates constant sub-expressions once, at compile time.
fn fold(e: Expr) -> Expr {
    if matches!(e, Expr::Literal(_)) || !e.is_constant() {
        return e;
    }
    let row = value::Row::from_pairs(Vec::new(), 0);
    let ctx = EvalCtx {
        now_ms: 0,
        meta: &Value::Null,
    };
    match e.eval(&row, &ctx) {
        Ok(v) => Expr::Literal(v),
        // Leave it: the error is reported (per row) when it runs.
        Err(_) => e,
    }
}
