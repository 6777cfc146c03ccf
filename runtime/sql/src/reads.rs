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
        for item in self.projection.items() {
            // `changed_cols` may compare every column: decode them all.
            if matches!(item, ProjectionItem::Wildcard(_) | ProjectionItem::Cols(_)) {
                return FieldsRead::All;
            }
        }
        for call in self.aggregates.iter().chain(&self.where_aggregates) {
            if (call.func == AggFunc::Collect && call.star) || call.func == AggFunc::Deduplicate {
                return FieldsRead::All;
            }
        }
        // `*` as a function's argument (`changed_col(true, *)`) reads the whole row.
        let mut whole_row = false;
        for expr in self.exprs() {
            walk(expr, &mut |e| whole_row |= matches!(e, Expr::Row));
        }
        if whole_row {
            return FieldsRead::All;
        }
        let mut names = BTreeSet::new();
        for expr in self.exprs() {
            walk(expr, &mut |e| {
                if let Expr::Column(c) = e {
                    names.insert(Arc::clone(&c.name));
                }
            });
        }
        FieldsRead::Only(names)
    }

    /// Whether the statement reads its rows' source metadata (`meta(...)`, `mqtt(...)`), so
    /// that a source attaches it to the rows only then.
    pub fn reads_meta(&self) -> bool {
        let mut found = false;
        for expr in self.exprs() {
            walk(expr, &mut |e| {
                if let Expr::Call(def, _) = e {
                    found |= matches!(def.name, "meta" | "mqtt");
                }
            });
        }
        found
    }

    /// Every expression of the statement, in any clause.
    fn exprs(&self) -> Vec<&Expr> {
        let mut exprs: Vec<&Expr> = Vec::new();
        for item in self.projection.items() {
            match item {
                ProjectionItem::Expr { expr, .. } | ProjectionItem::Unnest { expr, .. } => {
                    exprs.push(expr)
                }
                ProjectionItem::Cols(cols) => {
                    exprs.push(&cols.prefix);
                    exprs.push(&cols.ignore_null);
                    exprs.extend(cols.cols.iter().flatten().map(|(_, e)| e));
                }
                ProjectionItem::Wildcard(_) | ProjectionItem::Except(_) => {}
            }
        }
        for call in self.aggregates.iter().chain(&self.where_aggregates) {
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
        exprs
    }
}

/// Visits `expr` and every expression inside it.
pub(crate) fn walk(expr: &Expr, visit: &mut dyn FnMut(&Expr)) {
    visit(expr);
    match expr {
        Expr::Column(_)
        | Expr::Literal(_)
        | Expr::Aggregate(_)
        | Expr::WindowStart
        | Expr::WindowEnd
        | Expr::Row
        | Expr::RowNumber => {}
        Expr::Unary(_, e) | Expr::IsNull(e, _) | Expr::Field(e, _) => walk(e, visit),
        Expr::Binary(_, a, b)
        | Expr::And(a, b)
        | Expr::Or(a, b)
        | Expr::Like(a, b, _)
        | Expr::InArray(a, b, _)
        | Expr::Index(a, b) => {
            walk(a, visit);
            walk(b, visit);
        }
        Expr::Between(a, b, c, _) => {
            walk(a, visit);
            walk(b, visit);
            walk(c, visit);
        }
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => {
            for e in operand.iter().chain(otherwise) {
                walk(e, visit);
            }
            for (w, t) in whens {
                walk(w, visit);
                walk(t, visit);
            }
        }
        Expr::InList(e, list, _) => {
            walk(e, visit);
            for item in list {
                walk(item, visit);
            }
        }
        Expr::Call(_, args) => {
            for arg in args {
                walk(arg, visit);
            }
        }
        Expr::Slice(e, start, end) => {
            walk(e, visit);
            for bound in start.iter().chain(end) {
                walk(bound, visit);
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
    fn meta_is_attached_only_when_read() {
        let ddl = "CREATE STREAM s () WITH (TYPE=\"memory\", DATASOURCE=\"t\");";
        let streams = Streams(parse_streams(ddl, "streams.sql", Path::new(".")).unwrap());
        let reads_meta = |sql: &str| compile(sql, &streams).unwrap().reads_meta();
        assert!(reads_meta("SELECT a FROM s WHERE meta(topic) = \"x\""));
        assert!(reads_meta("SELECT upper(mqtt(topic)) AS t FROM s"));
        assert!(reads_meta(
            "SELECT count(*) AS n FROM s GROUP BY TUMBLINGWINDOW(ss, 1) HAVING meta(file) > \"\""
        ));
        assert!(!reads_meta("SELECT a, lower(b) AS l FROM s WHERE c > 1"));
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
