//! Declared stream columns and how a row is made to fit them: fields not declared are dropped,
//! values are converted to the declared type where that is lossless, and a value that cannot
//! be converted makes the row an error (counted by the source, never silently dropped).

use std::sync::Arc;

use crate::json::ColumnKind;
use crate::reads::FieldsRead;
use crate::value::{Row, Schema, Value};

/// A declared column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: DataType,
}

/// eKuiper's column types.
#[derive(Debug, Clone, PartialEq)]
pub enum DataType {
    /// Whole numbers.
    Bigint,
    /// Floating point numbers.
    Float,
    /// Text.
    String,
    /// A point in time (kept as the source gives it: epoch milliseconds or text).
    Datetime,
    /// true / false.
    Boolean,
    /// Bytes (base64 in JSON).
    Bytea,
    /// A list of values of one type.
    Array(Box<DataType>),
    /// A nested object.
    Struct(Vec<ColumnDef>),
}

impl DataType {
    /// The type as written in a definition.
    pub fn name(&self) -> String {
        match self {
            Self::Bigint => "bigint".into(),
            Self::Float => "float".into(),
            Self::String => "string".into(),
            Self::Datetime => "datetime".into(),
            Self::Boolean => "boolean".into(),
            Self::Bytea => "bytea".into(),
            Self::Array(inner) => format!("array({})", inner.name()),
            Self::Struct(fields) => format!(
                "struct({})",
                fields
                    .iter()
                    .map(|f| format!("{} {}", f.name, f.ty.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The kind of value a column of this type keeps as it is, unconverted by [`conform`]: a
    /// JSON decoder that reads the column's values as this kind leaves nothing to convert.
    pub fn kind(&self) -> ColumnKind {
        match self {
            Self::Bigint => ColumnKind::Int,
            Self::Float => ColumnKind::Float,
            Self::String => ColumnKind::String,
            Self::Datetime => ColumnKind::Time,
            Self::Boolean => ColumnKind::Bool,
            Self::Bytea => ColumnKind::Bytes,
            Self::Array(_) | Self::Struct(_) => ColumnKind::Other,
        }
    }
}

/// Which of the declared `columns` a statement that reads `reads` needs (`timestamp`: the
/// event time field, when the rule runs on event time). As eKuiper's planner prunes a stream's
/// schema to the columns a rule reads before its preprocessor checks `STRICT_VALIDATION`, the
/// others are neither checked nor converted.
pub fn columns_read(
    columns: &[ColumnDef],
    reads: &FieldsRead,
    timestamp: Option<&str>,
) -> Vec<bool> {
    let FieldsRead::Only(names) = reads else {
        return vec![true; columns.len()];
    };
    columns
        .iter()
        .map(|c| {
            timestamp == Some(c.name.as_str())
                || names
                    .iter()
                    .any(|n| **n == *c.name || n.eq_ignore_ascii_case(&c.name))
        })
        .collect()
}

/// Reshapes `row` to the declared `columns` (laid out by `schema`, built from the same
/// columns): declared fields in declared order, converted; absent ones `NULL`. A column that
/// `read` (from [`columns_read`]; empty: all) says the statement does not read is `NULL`,
/// unchecked. The values are moved out of `row`, not copied, when no two columns' names are
/// equal but for case (`distinct`, from [`distinct_ignoring_case`]).
pub fn conform(
    mut row: Row,
    columns: &[ColumnDef],
    schema: &Arc<Schema>,
    strict: bool,
    read: &[bool],
    distinct: bool,
) -> Result<Row, String> {
    let mut values = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        if !read.get(i).copied().unwrap_or(true) {
            values.push(Value::Null);
            continue;
        }
        // Moved out, unless another declared column may find the same field (names equal but
        // for case, found by the case-insensitive fallback).
        let found = row.schema().index_of(&column.name).map(|at| {
            if distinct {
                row.take_at(at)
            } else {
                row.at(at).clone()
            }
        });
        let value = match found {
            None | Some(Value::Null) => Value::Null,
            Some(v) => fit(v, column, strict)?,
        };
        values.push(value);
    }
    Ok(Row::new(Arc::clone(schema), values, row.timestamp_ms))
}

/// [`conform`] of a row already laid out by the declared `columns` (each column holding the
/// field its name finds, or `NULL`, as a JSON decoder laying rows out by them gives it): the
/// values of the columns `read` says the statement reads are converted in place, with the same
/// errors, and the others are left `NULL`.
pub fn conform_laid_out(
    row: &mut Row,
    columns: &[ColumnDef],
    strict: bool,
    read: &[bool],
) -> Result<(), String> {
    debug_assert_eq!(row.len(), columns.len());
    for (i, (column, value)) in columns.iter().zip(row.values_mut()).enumerate() {
        if !read.get(i).copied().unwrap_or(true) {
            *value = Value::Null;
            continue;
        }
        if !value.is_null() && !of_type(value, &column.ty) {
            *value = fit(std::mem::take(value), column, strict)?;
        }
    }
    Ok(())
}

/// Whether `v` is kept as it is in a column of type `ty` (see [`convert_owned`]).
fn of_type(v: &Value, ty: &DataType) -> bool {
    ty.kind().holds(v)
}

/// A value (not `NULL`) converted for `column`, or the error naming the column.
fn fit(v: Value, column: &ColumnDef, strict: bool) -> Result<Value, String> {
    convert_owned(v, &column.ty, strict).map_err(|e| {
        if strict {
            // eKuiper's preprocessor, which checks STRICT_VALIDATION.
            format!(
                "error in preprocessor: field {} type mismatch: {e}",
                column.name
            )
        } else {
            format!("field `{}`: {e}", column.name)
        }
    })
}

/// Whether no two of `columns` have names equal but for case (so that each finds a field of
/// its own in a row).
pub fn distinct_ignoring_case(columns: &[ColumnDef]) -> bool {
    columns.iter().enumerate().all(|(i, c)| {
        columns[..i]
            .iter()
            .all(|d| !d.name.eq_ignore_ascii_case(&c.name))
    })
}

/// [`convert`] of a value the caller gives up: one of the column's type is kept as it is.
fn convert_owned(v: Value, ty: &DataType, strict: bool) -> Result<Value, String> {
    if of_type(&v, ty) {
        Ok(v)
    } else {
        convert(&v, ty, strict)
    }
}

fn convert(v: &Value, ty: &DataType, strict: bool) -> Result<Value, String> {
    let mismatch = || {
        if strict {
            strict_mismatch(v, ty)
        } else {
            format!(
                "expected {}, got {} {}",
                ty.name(),
                v.type_name(),
                v.to_text()
            )
        }
    };
    Ok(match (ty, v) {
        (_, Value::Null) => Value::Null,
        (DataType::Bigint, Value::Int(_))
        | (DataType::Float, Value::Float(_))
        | (DataType::String, Value::String(_))
        | (DataType::Boolean, Value::Bool(_))
        | (DataType::Bytea, Value::Bytes(_)) => v.clone(),
        (DataType::Datetime, Value::Int(_) | Value::Float(_) | Value::String(_)) => v.clone(),
        (DataType::Float, Value::Int(i)) => Value::Float(*i as f64),
        (_, _) if strict => return Err(mismatch()),
        (DataType::Bigint, Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
            Value::Int(*f as i64)
        }
        (DataType::Bigint, Value::String(s)) => {
            Value::Int(s.trim().parse().map_err(|_| mismatch())?)
        }
        (DataType::Float, Value::String(s)) => {
            Value::Float(s.trim().parse().map_err(|_| mismatch())?)
        }
        (DataType::Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(mismatch()),
        },
        (DataType::Boolean, Value::Int(i)) if *i == 0 || *i == 1 => Value::Bool(*i == 1),
        (DataType::String, Value::Int(_) | Value::Float(_) | Value::Bool(_)) => {
            Value::string(v.to_text())
        }
        (DataType::Bytea, Value::String(s)) => Value::Bytes(
            oort_value::base64::decode_lenient(s)
                .ok_or_else(|| format!("expected base64 text for bytea, got {s:?}"))?
                .into(),
        ),
        (DataType::Array(inner), Value::Array(items)) => Value::array(
            items
                .iter()
                .map(|i| convert(i, inner, strict))
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    if strict {
                        format!("array element type mismatch: {e}")
                    } else {
                        e
                    }
                })?,
        ),
        (DataType::Struct(fields), Value::Object(map)) => {
            let mut out = map.as_ref().clone();
            for field in fields {
                if let Some(value) = map.get(field.name.as_str()) {
                    let converted = convert(value, &field.ty, strict).map_err(|e| {
                        if strict {
                            format!("field {} type mismatch: {e}", field.name)
                        } else {
                            format!("{}: {e}", field.name)
                        }
                    })?;
                    out.insert(Arc::from(field.name.as_str()), converted);
                }
            }
            Value::object(out)
        }
        _ => return Err(mismatch()),
    })
}

/// Why `v` is not of type `ty`, in eKuiper's preprocessor's words (its type casts' errors,
/// values as Go prints them).
fn strict_mismatch(v: &Value, ty: &DataType) -> String {
    use crate::wording::{go_typed, go_value};
    let target = match ty {
        DataType::Bigint => "int64",
        DataType::Float => "float64",
        DataType::String => "string",
        DataType::Boolean => "bool",
        DataType::Bytea => "bytea",
        DataType::Datetime => "datetime",
        DataType::Array(_) => return format!("expect array but got {}", go_value(v)),
        DataType::Struct(_) => return format!("expect struct but found {}", go_typed(v)),
    };
    format!("cannot convert {} to {target}", go_typed(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns `t float, n bigint`, and their layout.
    fn columns() -> (Vec<ColumnDef>, Arc<Schema>) {
        let cols = vec![
            ColumnDef {
                name: "t".into(),
                ty: DataType::Float,
            },
            ColumnDef {
                name: "n".into(),
                ty: DataType::Bigint,
            },
        ];
        let schema = Arc::new(Schema::new(
            cols.iter().map(|c| Arc::from(c.name.as_str())).collect(),
        ));
        (cols, schema)
    }

    #[test]
    fn keeps_declared_fields_and_converts() {
        let (cols, schema) = columns();
        let row = Row::from_pairs(
            vec![
                ("n".into(), Value::string("4")),
                ("x".into(), Value::Int(1)),
                ("t".into(), Value::Int(2)),
            ],
            5,
        );
        let out = conform(row.clone(), &cols, &schema, false, &[], true).unwrap();
        assert_eq!(out.values(), &[Value::Float(2.0), Value::Int(4)]);
        assert_eq!(
            conform(row.clone(), &cols, &schema, true, &[], true).unwrap_err(),
            "error in preprocessor: field n type mismatch: cannot convert string(4) to int64"
        );
        let bad = Row::from_pairs(vec![("n".into(), Value::string("four"))], 5);
        let err = conform(bad.clone(), &cols, &schema, false, &[], true).unwrap_err();
        assert_eq!(err, "field `n`: expected bigint, got string four");
    }

    /// A row already laid out by the columns is fitted in place with `conform`'s values and
    /// errors.
    #[test]
    fn a_laid_out_row_fits_as_conform_fits_it() {
        let (cols, schema) = columns();
        for (values, strict, read) in [
            (vec![Value::Int(2), Value::string("4")], false, vec![]),
            (vec![Value::Int(2), Value::string("4")], true, vec![]),
            (
                vec![Value::Float(1.5), Value::string("x")],
                true,
                vec![true, false],
            ),
            (vec![Value::Null, Value::string("four")], false, vec![]),
            (vec![Value::Float(1.5), Value::Int(3)], true, vec![]),
        ] {
            let row = Row::new(Arc::clone(&schema), values, 5);
            let want = conform(row.clone(), &cols, &schema, strict, &read, true);
            let mut got = row;
            let got = conform_laid_out(&mut got, &cols, strict, &read).map(|()| got);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got.values(), want.values()),
                (got, want) => assert_eq!(got.map(|_| ()), want.map(|_| ())),
            }
        }
    }

    #[test]
    fn strict_validation_checks_only_the_columns_read() {
        let (cols, schema) = columns();
        let row = Row::from_pairs(
            vec![
                ("t".into(), Value::Float(1.5)),
                ("n".into(), Value::string("x")),
            ],
            5,
        );
        let only = |names: &[&str]| FieldsRead::Only(names.iter().map(|n| Arc::from(*n)).collect());
        // `n` is not read: not checked (and not kept).
        let read = columns_read(&cols, &only(&["T"]), None);
        assert_eq!(read, [true, false]);
        let out = conform(row.clone(), &cols, &schema, true, &read, true).unwrap();
        assert_eq!(out.values(), &[Value::Float(1.5), Value::Null]);
        // Read, or the event time field, or `*`: checked.
        for read in [
            columns_read(&cols, &only(&["n"]), None),
            columns_read(&cols, &only(&[]), Some("n")),
            columns_read(&cols, &FieldsRead::All, None),
        ] {
            assert_eq!(
                conform(row.clone(), &cols, &schema, true, &read, true).unwrap_err(),
                "error in preprocessor: field n type mismatch: cannot convert string(x) to int64"
            );
        }
    }

    #[test]
    fn columns_equal_but_for_case_each_find_the_field() {
        let cols = vec![
            ColumnDef {
                name: "a".into(),
                ty: DataType::Bigint,
            },
            ColumnDef {
                name: "A".into(),
                ty: DataType::Bigint,
            },
        ];
        assert!(!distinct_ignoring_case(&cols));
        assert!(distinct_ignoring_case(&cols[..1]));
        let schema = Arc::new(Schema::new(vec!["a".into(), "A".into()]));
        let row = Row::from_pairs(vec![("a".into(), Value::Int(1))], 0);
        let distinct = distinct_ignoring_case(&cols);
        let out = conform(row, &cols, &schema, false, &[], distinct).unwrap();
        assert_eq!(out.values(), &[Value::Int(1), Value::Int(1)]);
    }
}
