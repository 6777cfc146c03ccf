//! The rule's SQL: parsed with `sqlparser` in eKuiper's dialect, checked against the stream
//! definitions, and compiled into a [`Query`] the rule engine runs row by row.
//!
//! Every error carries the line and column of the offending part of the statement.

mod dialect;
pub mod expr;
pub mod functions;
mod query;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use sqlparser::ast::{self as ast, Spanned};
use sqlparser::parser::Parser;

pub use dialect::EkuiperDialect;
pub use expr::{BinOp, Column, EvalCtx, EvalError, Expr, UnaryOp};
pub use query::{Projection, ProjectionItem, Query};

use crate::stream::StreamDef;

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

/// Parses and compiles one `SELECT` statement.
pub fn compile(sql: &str, catalog: &dyn Catalog) -> Result<Query, SqlError> {
    let statements = Parser::parse_sql(&EkuiperDialect, sql).map_err(|e| {
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
    Compiler::new(catalog).query(query)
}

/// Compiles expressions in the context of the statement's stream.
struct Compiler<'a> {
    catalog: &'a dyn Catalog,
    stream: Option<&'a StreamDef>,
    /// The names the stream can be referred to by (its name and its alias).
    qualifiers: HashSet<String>,
    unnamed: usize,
}

fn unsupported(span: sqlparser::tokenizer::Span, what: &str) -> SqlError {
    SqlError::at(span, format!("{what} is not supported"))
}

impl<'a> Compiler<'a> {
    fn new(catalog: &'a dyn Catalog) -> Self {
        Self {
            catalog,
            stream: None,
            qualifiers: HashSet::new(),
            unnamed: 0,
        }
    }

    fn query(mut self, query: &ast::Query) -> Result<Query, SqlError> {
        if let Some(with) = &query.with {
            return Err(unsupported(with.span(), "WITH"));
        }
        if let Some(order) = &query.order_by {
            return Err(SqlError::at(
                order.span(),
                "ORDER BY needs a window (GROUP BY ...WINDOW(...)), which this version does not run yet",
            ));
        }
        if let Some(limit) = &query.limit_clause {
            return Err(SqlError::at(
                limit.span(),
                "LIMIT applies to window results, which this version does not run yet",
            ));
        }
        let ast::SetExpr::Select(select) = query.body.as_ref() else {
            return Err(unsupported(
                query.body.span(),
                "this kind of query (UNION, VALUES...)",
            ));
        };
        self.select(select)
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
                    "reading several streams is a join, which this version does not run yet",
                ));
            }
        };
        if let Some(join) = from.joins.first() {
            return Err(SqlError::at(
                join.span(),
                "joins are not supported in this version yet",
            ));
        }
        let (name, alias) = match &from.relation {
            ast::TableFactor::Table { name, alias, .. } => {
                let name = object_name(name)?;
                (name, alias.as_ref().map(|a| a.name.value.clone()))
            }
            other => {
                return Err(unsupported(
                    other.span(),
                    "a subquery or table function in FROM",
                ));
            }
        };
        let stream = self.catalog.stream(&name).ok_or_else(|| {
            SqlError::at(
                from.relation.span(),
                format!("unknown stream `{name}`: define it with CREATE STREAM"),
            )
        })?;
        self.stream = Some(stream);
        self.qualifiers.insert(stream.name.to_string());
        self.qualifiers.insert(name.clone());
        if let Some(alias) = &alias {
            self.qualifiers.insert(alias.clone());
        }

        match &select.group_by {
            ast::GroupByExpr::Expressions(exprs, _) if exprs.is_empty() => {}
            group => {
                return Err(SqlError::at(
                    group_span(group, select),
                    "GROUP BY and windows are not supported in this version yet",
                ));
            }
        }
        if let Some(having) = &select.having {
            return Err(SqlError::at(
                having.span(),
                "HAVING needs GROUP BY, which this version does not run yet",
            ));
        }

        let filter = select
            .selection
            .as_ref()
            .map(|e| self.expr(e))
            .transpose()?;
        let projection = self.projection(&select.projection)?;
        Ok(Query::new(
            Arc::from(stream.name.as_ref()),
            alias.map(Arc::from),
            projection,
            filter,
        ))
    }

    fn projection(&mut self, items: &[ast::SelectItem]) -> Result<Projection, SqlError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                ast::SelectItem::Wildcard(options) => {
                    if options.opt_exclude.is_some()
                        || options.opt_except.is_some()
                        || options.opt_replace.is_some()
                        || options.opt_rename.is_some()
                        || options.opt_ilike.is_some()
                    {
                        return Err(unsupported(item.span(), "a modifier on `*`"));
                    }
                    out.push(ProjectionItem::Wildcard);
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
                    if !self.qualifiers.contains(&qualifier) {
                        return Err(SqlError::at(
                            item.span(),
                            format!("unknown stream `{qualifier}` in `{qualifier}.*`"),
                        ));
                    }
                    out.push(ProjectionItem::Wildcard);
                }
                ast::SelectItem::UnnamedExpr(e) => {
                    let name = self.default_name(e);
                    let expr = self.expr(e)?;
                    out.push(ProjectionItem::Expr { name, expr });
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    let expr = self.expr(expr)?;
                    out.push(ProjectionItem::Expr {
                        name: Arc::from(alias.value.as_str()),
                        expr,
                    });
                }
                other => return Err(unsupported(other.span(), "this projection")),
            }
        }
        Ok(Projection::new(out))
    }

    /// eKuiper's name for an unaliased projection: the field's name, the function's name, or
    /// `kuiper_field_<n>` for anything else.
    fn default_name(&mut self, e: &ast::Expr) -> Arc<str> {
        match e {
            ast::Expr::Identifier(id) => Arc::from(id.value.as_str()),
            ast::Expr::CompoundIdentifier(parts) => {
                Arc::from(parts.last().map_or("", |p| p.value.as_str()))
            }
            ast::Expr::Function(f) => Arc::from(
                f.name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map_or("", |i| i.value.as_str())
                    .to_ascii_lowercase(),
            ),
            _ => {
                let name = format!("kuiper_field_{}", self.unnamed);
                self.unnamed += 1;
                Arc::from(name)
            }
        }
    }

    fn column(&self, qualifier: Option<&ast::Ident>, name: &ast::Ident) -> Result<Expr, SqlError> {
        if let Some(q) = qualifier
            && !self.qualifiers.contains(&q.value)
        {
            return Err(SqlError::at(
                q.span,
                format!(
                    "unknown stream `{}` (the statement reads `{}`)",
                    q.value,
                    self.stream_name()
                ),
            ));
        }
        if let Some(stream) = self.stream
            && let Some(columns) = &stream.columns
            && !columns
                .iter()
                .any(|c| c.name.eq_ignore_ascii_case(&name.value))
        {
            return Err(SqlError::at(
                name.span,
                format!("unknown field `{}` in stream `{}`", name.value, stream.name),
            ));
        }
        Ok(Expr::Column(Column::new(
            qualifier.map(|q| Arc::from(q.value.as_str())),
            Arc::from(name.value.as_str()),
        )))
    }

    fn stream_name(&self) -> &str {
        self.stream.map_or("", |s| &s.name)
    }

    fn expr(&mut self, e: &ast::Expr) -> Result<Expr, SqlError> {
        let compiled = match e {
            ast::Expr::Identifier(id) => self.column(None, id)?,
            ast::Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [q, name] => self.column(Some(q), name)?,
                _ => return Err(unsupported(e.span(), "a name with more than two parts")),
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
                let ast::InTarget::List(list) = target else {
                    return Err(unsupported(e.span(), "IN with a subquery"));
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
                let mut out = self.expr(root)?;
                for access in access_chain {
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
                        other => return Err(unsupported(other.span(), "this field access")),
                    };
                }
                out
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

    fn binary(
        &mut self,
        whole: &ast::Expr,
        left: &ast::Expr,
        op: &ast::BinaryOperator,
        right: &ast::Expr,
    ) -> Result<Expr, SqlError> {
        use ast::BinaryOperator as B;
        if matches!(op, B::Arrow) {
            let ast::Expr::Identifier(field) = right else {
                return Err(SqlError::at(
                    right.span(),
                    "`->` must be followed by a field name",
                ));
            };
            return Ok(Expr::Field(
                Box::new(self.expr(left)?),
                Arc::from(field.value.as_str()),
            ));
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
        let name = object_name(&f.name)?.to_ascii_lowercase();
        if f.over.is_some() || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(unsupported(span, "OVER / FILTER on a function"));
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
        if is_aggregate(&name) {
            return Err(SqlError::at(
                span,
                format!(
                    "`{name}` is an aggregate function: it needs GROUP BY with a window, which this version does not run yet"
                ),
            ));
        }
        if is_window_function(&name) {
            return Err(SqlError::at(
                span,
                format!(
                    "`{name}` is a window: it belongs in GROUP BY, which this version does not run yet"
                ),
            ));
        }
        let Some(def) = functions::lookup(&name) else {
            return Err(SqlError::at(span, format!("unknown function `{name}`")));
        };
        if args.len() < def.min_args || def.max_args.is_some_and(|max| args.len() > max) {
            let expected = match def.max_args {
                Some(max) if max == def.min_args => format!("{max}"),
                Some(max) => format!("{} to {max}", def.min_args),
                None => format!("at least {}", def.min_args),
            };
            return Err(SqlError::at(
                span,
                format!(
                    "`{name}` takes {expected} argument(s), got {}: {}",
                    args.len(),
                    def.doc
                ),
            ));
        }
        let mut compiled = Vec::with_capacity(args.len());
        for (i, arg) in args.iter().enumerate() {
            let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) = arg else {
                return Err(unsupported(arg.span(), "a named or `*` argument here"));
            };
            // eKuiper's `meta(key)` names the key bare.
            if name == "meta"
                && i == 0
                && let ast::Expr::Identifier(id) = e
            {
                compiled.push(Expr::Literal(Value::string(id.value.as_str())));
                continue;
            }
            compiled.push(self.expr(e)?);
        }
        Ok(Expr::Call(def, compiled))
    }
}

use crate::value::Value;

/// Aggregate functions (they run over a window's rows, not one row).
pub const AGGREGATES: &[&str] = &[
    "avg",
    "count",
    "max",
    "min",
    "sum",
    "collect",
    "deduplicate",
    "last_value",
    "median",
    "stddev",
    "stddevs",
    "var",
    "vars",
    "percentile_cont",
    "percentile_disc",
    "percentile",
    "merge_agg",
    "agg_first",
    "agg_last",
];

fn is_aggregate(name: &str) -> bool {
    AGGREGATES.contains(&name)
}

fn is_window_function(name: &str) -> bool {
    matches!(
        name,
        "tumblingwindow" | "hoppingwindow" | "slidingwindow" | "sessionwindow" | "countwindow"
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

fn group_span(group: &ast::GroupByExpr, select: &ast::Select) -> sqlparser::tokenizer::Span {
    match group {
        ast::GroupByExpr::Expressions(exprs, _) => exprs
            .first()
            .map(|e| e.span())
            .unwrap_or(select.select_token.0.span),
        ast::GroupByExpr::All(_) => select.select_token.0.span,
    }
}

/// Evaluates constant sub-expressions once, at compile time.
fn fold(e: Expr) -> Expr {
    if matches!(e, Expr::Literal(_)) || !e.is_constant() {
        return e;
    }
    let row = crate::value::Row::from_pairs(Vec::new(), 0);
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
