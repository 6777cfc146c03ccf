//! eKuiper's wording of the errors a rule sends to its actions under `sendError`: values as Go
//! prints them with `%T(%v)` (`int64(3)`, `string(red)`), expressions as eKuiper's syntax tree
//! prints itself (`binaryExpr:{ demo.size * 3 }`). Users moving rules over match on these
//! texts, so the messages sent keep them; logs keep Oort's own texts.
//!
//! Values print through the template engine's Go `fmt` printing; the expression printer is
//! hand-written because the format is eKuiper's `ast` package's: no crate prints it.

use sqlparser::ast;

use crate::value::Value;

/// Go's `%T` of the value eKuiper would hold: `<nil>` for a missing value, as `fmt` prints a
/// nil interface, else the template engine's Go type name (`int64`, `string`).
pub fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        other => oort_template::go_type(other),
    }
}

/// Go's `%v` of the value eKuiper would hold (the template engine's Go printing).
pub fn go_value(v: &Value) -> String {
    oort_template::go_value(v)
}

/// `%T(%v)`, as eKuiper's errors show an operand.
pub fn go_typed(v: &Value) -> String {
    format!("{}({})", go_type(v), go_value(v))
}

/// How eKuiper's syntax tree prints `e` (its `String()`), in a statement over `stream`: a
/// column is bound to its stream (`demo.size`), an operation is `binaryExpr:{ l op r }`, a call
/// `Call:{ name:f, args:[...] }`. Forms it prints otherwise fall back to the SQL text.
pub fn expr_text(e: &ast::Expr, stream: &str) -> String {
    let text = |e: &ast::Expr| expr_text(e, stream);
    match e {
        ast::Expr::Identifier(id) => format!("{stream}.{}", id.value),
        ast::Expr::CompoundIdentifier(parts) => parts
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join("."),
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            ast::Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        },
        // `x->f`, and `x->f[0]`: the access applies to the field.
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Arrow,
            right,
        } => {
            let (field, chain) = match right.as_ref() {
                ast::Expr::Identifier(f) => (f, &[][..]),
                ast::Expr::CompoundFieldAccess { root, access_chain } => match root.as_ref() {
                    ast::Expr::Identifier(f) => (f, access_chain.as_slice()),
                    _ => return e.to_string(),
                },
                _ => return e.to_string(),
            };
            let base = format!(
                "binaryExpr:{{ {} -> jsonFieldName:{} }}",
                text(left),
                field.value
            );
            access_text(base, chain, stream)
        }
        ast::Expr::CompoundFieldAccess { root, access_chain } => {
            access_text(text(root), access_chain, stream)
        }
        ast::Expr::Nested(inner) => format!("parenExpr:{{ {} }}", text(inner)),
        ast::Expr::BinaryOp { left, op, right } => {
            let op = match op {
                ast::BinaryOperator::NotEq => "!=".to_string(),
                other => other.to_string(),
            };
            format!("binaryExpr:{{ {} {op} {} }}", text(left), text(right))
        }
        ast::Expr::Function(f) => {
            let mut args = Vec::new();
            if let ast::FunctionArguments::List(list) = &f.args {
                for arg in &list.args {
                    match arg {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)) => {
                            args.push(text(a));
                        }
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => {
                            args.push("*".into());
                        }
                        // What the dialect hands over beside the arguments (`OVER`, `EXCEPT`).
                        ast::FunctionArg::Named { name, .. } if name.value.starts_with("__") => {}
                        other => args.push(other.to_string()),
                    }
                }
            }
            let name = f.name.to_string().to_lowercase();
            if args.is_empty() {
                format!("Call:{{ name:{name} }}")
            } else {
                format!("Call:{{ name:{name}, args:[{}] }}", args.join(", "))
            }
        }
        other => other.to_string(),
    }
}

/// `base` with each access of `chain` applied, as eKuiper prints a bracket: `binaryExpr:{
/// x[0] }`, `binaryExpr:{ x[ColonExpr:{ start:{ 1 }, end:{ 3 } }] }`.
fn access_text(mut base: String, chain: &[ast::AccessExpr], stream: &str) -> String {
    for access in chain {
        base = match access {
            ast::AccessExpr::Subscript(ast::Subscript::Index { index }) => {
                format!("binaryExpr:{{ {base}[{}] }}", expr_text(index, stream))
            }
            ast::AccessExpr::Subscript(ast::Subscript::Slice {
                lower_bound,
                upper_bound,
                ..
            }) => {
                let mut parts = Vec::new();
                if let Some(s) = lower_bound {
                    parts.push(format!("start:{{ {} }}", expr_text(s, stream)));
                }
                if let Some(e) = upper_bound {
                    parts.push(format!("end:{{ {} }}", expr_text(e, stream)));
                }
                format!(
                    "binaryExpr:{{ {base}[ColonExpr:{{ {} }}] }}",
                    parts.join(", ")
                )
            }
            ast::AccessExpr::Dot(field) => format!("{base}.{field}"),
        };
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_go_prints_them() {
        assert_eq!(go_typed(&Value::Int(3)), "int64(3)");
        assert_eq!(go_typed(&Value::string("red")), "string(red)");
        assert_eq!(go_typed(&Value::Float(2.5)), "float64(2.5)");
        assert_eq!(go_typed(&Value::Bool(true)), "bool(true)");
        assert_eq!(go_typed(&Value::Null), "<nil>(<nil>)");
        assert_eq!(go_value(&Value::Float(1_000_000.0)), "1e+06");
        assert_eq!(go_value(&Value::Float(123_456.0)), "123456");
        assert_eq!(go_value(&Value::Float(0.000_015)), "1.5e-05");
        assert_eq!(go_value(&Value::Float(0.0001)), "0.0001");
        assert_eq!(
            go_value(&Value::array(vec![Value::Int(1), Value::string("a")])),
            "[1 a]"
        );
        assert_eq!(
            go_value(&Value::from_json(serde_json::json!({"b": 1, "a": [true]}))),
            "map[a:[true] b:1]"
        );
    }

    #[test]
    fn expressions_print_as_ekuipers_syntax_tree() {
        use sqlparser::dialect::GenericDialect;
        use sqlparser::parser::Parser;
        let expr = |sql: &str| {
            Parser::new(&GenericDialect {})
                .try_with_sql(sql)
                .unwrap()
                .parse_expr()
                .unwrap()
        };
        assert_eq!(
            expr_text(&expr("size * 3"), "ldemo"),
            "binaryExpr:{ ldemo.size * 3 }"
        );
        assert_eq!(
            expr_text(&expr("abs(d.size) + (a <> 'x')"), "d"),
            "binaryExpr:{ Call:{ name:abs, args:[d.size] } + parenExpr:{ binaryExpr:{ d.a != x } } }"
        );
        assert_eq!(expr_text(&expr("a[0]"), "t"), "binaryExpr:{ t.a[0] }");
        assert_eq!(
            expr_text(&expr("a->b"), "t"),
            "binaryExpr:{ t.a -> jsonFieldName:b }"
        );
        assert_eq!(
            expr_text(&expr("a[1:3]"), "t"),
            "binaryExpr:{ t.a[ColonExpr:{ start:{ 1 }, end:{ 3 } }] }"
        );
    }
}
