//! A compiled `SELECT`: the filter and the projection, run on each row of the stream.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::expr::{EvalCtx, EvalError, Expr};
use crate::value::{Row, Schema, Value};

/// One item of the `SELECT` list.
#[derive(Debug, Clone)]
pub enum ProjectionItem {
    /// `*` (or `stream.*`): every field of the row.
    Wildcard,
    /// An expression and the name its result gets.
    Expr {
        /// Output field name (the alias, or eKuiper's default name).
        name: Arc<str>,
        /// The expression.
        expr: Expr,
    },
}

/// Where one output field comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
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
}

/// An input layout, the output layout built for it, and where each output field comes from.
type Layout = (Arc<Schema>, Arc<Schema>, Vec<Source>);

impl Clone for Projection {
    fn clone(&self) -> Self {
        Self::new(self.items.clone())
    }
}

impl Projection {
    /// A projection of these items. When two items produce the same name, the later one wins
    /// (as it does in eKuiper's result maps).
    pub fn new(items: Vec<ProjectionItem>) -> Self {
        let fixed = if items.iter().any(|i| matches!(i, ProjectionItem::Wildcard)) {
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
        Self {
            items,
            fixed,
            cache: RefCell::new(None),
        }
    }

    /// The items, in order.
    pub fn items(&self) -> &[ProjectionItem] {
        &self.items
    }

    /// The output field names when they are known without seeing a row (no `*`).
    pub fn fixed_names(&self) -> Option<&[Arc<str>]> {
        self.fixed.as_ref().map(|(s, _)| s.names())
    }

    /// Applies the projection to one row.
    pub fn apply(&self, row: &Row, ctx: &EvalCtx<'_>) -> Result<Row, EvalError> {
        if let Some((schema, which)) = &self.fixed {
            let mut values = Vec::with_capacity(which.len());
            for &i in which {
                if let ProjectionItem::Expr { expr, .. } = &self.items[i] {
                    values.push(expr.eval(row, ctx)?);
                }
            }
            return Ok(Row::new(Arc::clone(schema), values, row.timestamp_ms));
        }
        let (schema, sources) = self.layout(row.schema());
        let mut evaluated: Vec<Option<Value>> = vec![None; self.items.len()];
        for source in &sources {
            if let Source::Item(i) = source
                && let ProjectionItem::Expr { expr, .. } = &self.items[*i]
            {
                evaluated[*i] = Some(expr.eval(row, ctx)?);
            }
        }
        let values = sources
            .iter()
            .map(|s| match s {
                Source::Input(i) => row.at(*i).clone(),
                Source::Item(i) => evaluated[*i].take().unwrap_or(Value::Null),
            })
            .collect();
        Ok(Row::new(schema, values, row.timestamp_ms))
    }

    fn layout(&self, input: &Arc<Schema>) -> (Arc<Schema>, Vec<Source>) {
        if let Some((seen, out, sources)) = &*self.cache.borrow()
            && Arc::ptr_eq(seen, input)
        {
            return (Arc::clone(out), sources.clone());
        }
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut sources: Vec<Source> = Vec::new();
        let mut at: HashMap<Arc<str>, usize> = HashMap::new();
        let mut put = |name: &Arc<str>, source: Source| match at.get(name) {
            Some(&i) => sources[i] = source,
            None => {
                at.insert(Arc::clone(name), names.len());
                names.push(Arc::clone(name));
                sources.push(source);
            }
        };
        for (i, item) in self.items.iter().enumerate() {
            match item {
                ProjectionItem::Wildcard => {
                    for (j, name) in input.names().iter().enumerate() {
                        put(name, Source::Input(j));
                    }
                }
                ProjectionItem::Expr { name, .. } => put(name, Source::Item(i)),
            }
        }
        let out = Arc::new(Schema::new(names));
        *self.cache.borrow_mut() = Some((Arc::clone(input), Arc::clone(&out), sources.clone()));
        (out, sources)
    }
}

/// A compiled statement over one stream.
#[derive(Debug, Clone)]
pub struct Query {
    stream: Arc<str>,
    alias: Option<Arc<str>>,
    projection: Projection,
    filter: Option<Expr>,
}

impl Query {
    /// A query reading `stream`, keeping rows where `filter` is true, shaped by `projection`.
    pub fn new(
        stream: Arc<str>,
        alias: Option<Arc<str>>,
        projection: Projection,
        filter: Option<Expr>,
    ) -> Self {
        Self {
            stream,
            alias,
            projection,
            filter,
        }
    }

    /// The stream it reads.
    pub fn stream(&self) -> &Arc<str> {
        &self.stream
    }

    /// The alias given to the stream in FROM, if any.
    pub fn alias(&self) -> Option<&Arc<str>> {
        self.alias.as_ref()
    }

    /// The `SELECT` list.
    pub fn projection(&self) -> &Projection {
        &self.projection
    }

    /// Runs the statement on one row: `Ok(None)` when the filter drops it.
    pub fn process(&self, row: &Row, ctx: &EvalCtx<'_>) -> Result<Option<Row>, EvalError> {
        if let Some(filter) = &self.filter
            && !filter.eval(row, ctx)?.is_true()
        {
            return Ok(None);
        }
        self.projection.apply(row, ctx).map(Some)
    }
}
