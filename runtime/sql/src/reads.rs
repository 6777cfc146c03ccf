//! Which fields of its input rows a compiled statement reads, so that a source can decode only
//! those and skip the rest of each message without building values for them.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::aggregate::AggFunc;
use crate::expr::Expr;
use crate::query::{ProjectionItem, Query};

/// The input fields a statement reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldsRead {
    /// Every field: `*`, `stream.*`, or an aggregate over whole rows (`collect(*)`,
    /// `deduplicate`).
    All,
    /// Only these top-level fields (as named in the statement: a source matches them the way
    /// a column lookup does, exactly or else ignoring ASCII case).
    Only(BTreeSet<Arc<str>>),
}

impl Query {
    /// The top-level input fields the statement reads, of any of its streams.
    pub fn fields_read(&self) -> FieldsRead {
        let mut names = BTreeSet::new();
        let mut exprs: Vec<&Expr> = Vec::new();
        for item in self.projection.items() {
            match item {
                // `changed_cols` may compare every column: decode them all.
                ProjectionItem::Wildcard(_) | ProjectionItem::Cols(_) => return FieldsRead::All,
                ProjectionItem::Expr { expr, .. } | ProjectionItem::Unnest { expr, .. } => {
                    exprs.push(expr)
                }
                // Only beside a `*`, which reads everything anyway.
                ProjectionItem::Except(_) => {}
            }
        }
        for call in &self.aggregates {
            if (call.func == AggFunc::Collect && call.star) || call.func == AggFunc::Deduplicate {
                return FieldsRead::All;
            }
            exprs.extend(&call.args);
        }
        for call in &self.analytics {
            exprs.extend(&call.args);
            exprs.extend(&call.partition);
            exprs.extend(call.when.as_ref());
        }
        exprs.extend(self.joins.iter().filter_map(|j| j.on.as_ref()));
        exprs.extend(self.filter.as_ref());
        exprs.extend(&self.group_by);
        exprs.extend(self.having.as_ref());
        exprs.extend(self.order_by.iter().map(|(e, _)| e));
        if let Some(window) = &self.window {
            exprs.extend(window.filter.as_ref());
            exprs.extend(window.trigger.as_ref());
            if let Some(state) = &window.state {
                exprs.push(&state.begin);
                exprs.extend(state.end.as_ref());
                exprs.extend(&state.partition);
            }
        }
        for expr in exprs {
            columns(expr, &mut names);
        }
        FieldsRead::Only(names)
    }
}

/// Adds the names of the columns `expr` reads.
fn columns(expr: &Expr, names: &mut BTreeSet<Arc<str>>) {
    match expr {
        Expr::Column(c) => {
            names.insert(Arc::clone(&c.name));
        }
        Expr::Literal(_) | Expr::Aggregate(_) | Expr::WindowStart | Expr::WindowEnd => {}
        Expr::Unary(_, e) | Expr::IsNull(e, _) | Expr::Field(e, _) => columns(e, names),
        Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::Like(a, b, _) => {
            columns(a, names);
            columns(b, names);
        }
        Expr::Index(a, b) => {
            columns(a, names);
            columns(b, names);
        }
        Expr::Between(a, b, c, _) => {
            columns(a, names);
            columns(b, names);
            columns(c, names);
        }
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => {
            for e in operand.iter().chain(otherwise) {
                columns(e, names);
            }
            for (w, t) in whens {
                columns(w, names);
                columns(t, names);
            }
        }
        Expr::InList(e, list, _) => {
            columns(e, names);
            for item in list {
                columns(item, names);
            }
        }
        Expr::Call(_, args) => {
            for arg in args {
                columns(arg, names);
            }
        }
        Expr::Slice(e, start, end) => {
            columns(e, names);
            for bound in start.iter().chain(end) {
                columns(bound, names);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::stream::{StreamDef, parse_streams};
    use crate::{Catalog, compile};

    struct Streams(Vec<StreamDef>);

    impl Catalog for Streams {
        fn stream(&self, name: &str) -> Option<&StreamDef> {
            self.0.iter().find(|d| &*d.name == name)
        }
    }

    fn reads(sql: &str) -> FieldsRead {
        let ddl = "CREATE STREAM s () WITH (TYPE=\"memory\", DATASOURCE=\"t\");\n\
                   CREATE STREAM r () WITH (TYPE=\"memory\", DATASOURCE=\"u\");";
        let streams = Streams(parse_streams(ddl, "streams.sql", Path::new(".")).unwrap());
        compile(sql, &streams).unwrap().fields_read()
    }

    fn only(names: &[&str]) -> FieldsRead {
        FieldsRead::Only(names.iter().map(|n| Arc::from(*n)).collect())
    }

    #[test]
    fn every_clause_counts() {
        assert_eq!(
            reads("SELECT a, upper(b) AS u FROM s WHERE c > 1 AND d IN (e, 2)"),
            only(&["a", "b", "c", "d", "e"])
        );
        assert_eq!(
            reads(
                "SELECT k, avg(t) AS m, count(*) AS n FROM s GROUP BY k, TUMBLINGWINDOW(ss, 10) \
                 HAVING max(h) > 1 ORDER BY k"
            ),
            only(&["h", "k", "t"])
        );
        assert_eq!(
            reads("SELECT o->x AS x, arr[i] AS y, CASE WHEN z THEN w END AS c FROM s"),
            only(&["arr", "i", "o", "w", "z"])
        );
        assert_eq!(
            reads(
                "SELECT s.a, b FROM s INNER JOIN r ON s.id = r.id GROUP BY TUMBLINGWINDOW(ss, 1)"
            ),
            only(&["a", "b", "id"])
        );
        assert_eq!(reads("SELECT 1 AS one FROM s"), only(&[]));
    }

    #[test]
    fn whole_rows_read_everything() {
        assert_eq!(reads("SELECT * FROM s"), FieldsRead::All);
        assert_eq!(reads("SELECT a, * FROM s WHERE b > 1"), FieldsRead::All);
        assert_eq!(
            reads("SELECT collect(*) AS rows FROM s GROUP BY TUMBLINGWINDOW(ss, 1)"),
            FieldsRead::All
        );
        assert_eq!(
            reads("SELECT deduplicate(a, false) AS d FROM s GROUP BY TUMBLINGWINDOW(ss, 1)"),
            FieldsRead::All
        );
    }
}
