//! Turns the rule's messages into an action's payloads, as eKuiper's sink pipeline does:
//! `sendSingle` split, `omitIfEmpty`, `dataTemplate`, `dataField`, `fields`/`excludeFields`, then
//! the `format` encoding (JSON or delimited).

use std::sync::Arc;

use super::props::{CommonProps, PayloadFormat};
use crate::json;
use crate::message::Message;
use crate::value::{Map, Row, Schema, Value};

/// A message could not be turned into a payload (a template or field error): counted as failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransformError(pub String);

/// What one message produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// Payloads appended.
    pub payloads: u32,
    /// Results dropped by `omitIfEmpty`.
    pub omitted: u32,
}

/// The data one payload is made from.
enum Unit<'a> {
    Row(&'a Row),
    List(&'a [Row]),
    Error(&'a str),
}

/// Per-action payload builder.
pub struct Transformer {
    props: CommonProps,
    send_nil: bool,
    /// Whether any of template / dataField / fields / excludeFields is set.
    transforms: bool,
    /// Sorted field order of the last row layout (JSON fast path).
    order: Option<(Arc<Schema>, json::RowOrder)>,
    /// Delimited columns, fixed by `fields` or by the first row (sorted keys), as eKuiper does.
    columns: Option<Vec<Arc<str>>>,
    scratch: Vec<u8>,
}

impl Transformer {
    /// A transformer for an action with these common props; `send_nil` keeps `null` fields.
    pub fn new(props: CommonProps, send_nil: bool) -> Self {
        let transforms = props.data_template.is_some()
            || props.data_field.is_some()
            || props.fields.is_some()
            || props.exclude_fields.is_some();
        let columns = props
            .fields
            .as_ref()
            .map(|f| f.iter().map(|s| Arc::from(s.as_str())).collect());
        Self {
            props,
            send_nil,
            transforms,
            order: None,
            columns,
            scratch: Vec::new(),
        }
    }

    /// The delimited header (columns joined by the delimiter), once known.
    pub fn header(&self) -> Option<String> {
        match (&self.props.format, &self.columns) {
            (PayloadFormat::Delimited { delimiter }, Some(columns)) => Some(
                columns
                    .iter()
                    .map(|c| c.as_ref())
                    .collect::<Vec<_>>()
                    .join(delimiter),
            ),
            _ => None,
        }
    }

    /// Appends the payloads of `message`, calling `emit(payload)` for each. Errors are per
    /// payload; the others are still produced.
    pub fn transform(
        &mut self,
        message: &Message,
        emit: &mut dyn FnMut(&[u8]),
        errors: &mut Vec<TransformError>,
    ) -> Produced {
        let mut produced = Produced::default();
        let single_row_as_list = self.transforms && !self.props.send_single;
        let mut run = |unit: Unit<'_>, this: &mut Self| {
            if this.props.omit_if_empty && is_empty(&unit) {
                produced.omitted += 1;
                return;
            }
            this.scratch.clear();
            let mut buf = std::mem::take(&mut this.scratch);
            match this.encode(&unit, &mut buf) {
                Ok(()) => {
                    emit(&buf);
                    produced.payloads += 1;
                }
                Err(e) => errors.push(e),
            }
            this.scratch = buf;
        };
        match message {
            Message::Row(row) if single_row_as_list => {
                run(Unit::List(std::slice::from_ref(row)), self)
            }
            Message::Row(row) => run(Unit::Row(row), self),
            Message::Rows(rows) if self.props.send_single => {
                if rows.is_empty() && self.props.omit_if_empty {
                    run(Unit::List(&[]), self);
                }
                for row in rows.iter() {
                    run(Unit::Row(row), self);
                }
            }
            Message::Rows(rows) => run(Unit::List(rows), self),
            Message::Error { message, .. } => run(Unit::Error(message), self),
        }
        produced
    }

    fn encode(&mut self, unit: &Unit<'_>, out: &mut Vec<u8>) -> Result<(), TransformError> {
        // Fast paths: plain rows, JSON, nothing to transform: each row is written straight from
        // its values in sorted key order, without building an object first.
        if let (false, PayloadFormat::Json, false) =
            (self.transforms, &self.props.format, self.send_nil)
        {
            match unit {
                Unit::Row(row) => {
                    let order = self.order_for(row);
                    json::write_row(out, row, order);
                    return Ok(());
                }
                Unit::List(rows) => {
                    out.push(b'[');
                    for (i, row) in rows.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        let order = self.order_for(row);
                        json::write_row(out, row, order);
                    }
                    out.push(b']');
                    return Ok(());
                }
                Unit::Error(_) => {}
            }
        }
        if let (Unit::Row(row), false, PayloadFormat::Json) =
            (unit, self.transforms, &self.props.format)
        {
            json::write_value(out, &row_object(row, true));
            return Ok(());
        }
        let mut value = match unit {
            Unit::Row(row) => row_object(row, self.send_nil),
            Unit::List(rows) => {
                Value::array(rows.iter().map(|r| row_object(r, self.send_nil)).collect())
            }
            Unit::Error(message) => {
                let mut map = Map::new();
                map.insert(Arc::from("error"), Value::string(*message));
                Value::object(map)
            }
        };
        if let Some(template) = &self.props.data_template {
            let mut rendered = Vec::new();
            template
                .render(&value, &mut rendered)
                .map_err(|e| TransformError(format!("dataTemplate: {e}")))?;
            if self.props.data_field.is_none()
                && self.props.fields.is_none()
                && self.props.exclude_fields.is_none()
            {
                out.extend_from_slice(&rendered);
                return Ok(());
            }
            value = json::parse_value(&rendered).map_err(|e| {
                TransformError(format!(
                    "the dataTemplate output is not JSON, so fields/dataField cannot apply: {e}"
                ))
            })?;
        }
        if let Some(field) = &self.props.data_field {
            value = match &value {
                Value::Object(map) => map.get(field.as_str()).cloned().unwrap_or(Value::Null),
                Value::Array(items) => items
                    .first()
                    .and_then(|first| first.field(field))
                    .cloned()
                    .unwrap_or(Value::Null),
                other => {
                    return Err(TransformError(format!(
                        "dataField `{field}`: the result is a {}, not an object",
                        other.type_name()
                    )));
                }
            };
        }
        if self.props.fields.is_some() || self.props.exclude_fields.is_some() {
            value = self.select(value)?;
        }
        match &self.props.format {
            PayloadFormat::Json => json::write_value(out, &value),
            PayloadFormat::Delimited { delimiter } => {
                let delimiter = delimiter.clone();
                match &value {
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                out.push(b'\n');
                            }
                            self.delimited(item, &delimiter, out)?;
                        }
                    }
                    other => self.delimited(other, &delimiter, out)?,
                }
            }
        }
        Ok(())
    }

    fn order_for(&mut self, row: &Row) -> &json::RowOrder {
        if !matches!(&self.order, Some((s, _)) if Arc::ptr_eq(s, row.schema())) {
            self.order = None;
        }
        &self
            .order
            .get_or_insert_with(|| (Arc::clone(row.schema()), json::sorted_order(row.schema())))
            .1
    }

    fn select(&self, value: Value) -> Result<Value, TransformError> {
        let pick = |map: &Map| -> Map {
            match (&self.props.fields, &self.props.exclude_fields) {
                (Some(fields), _) => fields
                    .iter()
                    .filter_map(|f| map.get_key_value(f.as_str()))
                    .map(|(k, v)| (Arc::clone(k), v.clone()))
                    .collect(),
                (None, Some(exclude)) => map
                    .iter()
                    .filter(|(k, _)| !exclude.iter().any(|e| e.as_str() == &***k))
                    .map(|(k, v)| (Arc::clone(k), v.clone()))
                    .collect(),
                (None, None) => map.clone(),
            }
        };
        match value {
            Value::Object(map) => Ok(Value::object(pick(&map))),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::Object(map) => Ok(Value::object(pick(map))),
                    other => Err(TransformError(format!(
                        "fields: the result holds a {}, not objects",
                        other.type_name()
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::array),
            Value::Null => Ok(Value::Null),
            other => Err(TransformError(format!(
                "fields: the result is a {}, not an object",
                other.type_name()
            ))),
        }
    }

    fn delimited(
        &mut self,
        value: &Value,
        delimiter: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), TransformError> {
        let Value::Object(map) = value else {
            return Err(TransformError(format!(
                "the delimited format needs an object, got a {}",
                value.type_name()
            )));
        };
        let columns = self
            .columns
            .get_or_insert_with(|| map.keys().cloned().collect());
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(delimiter.as_bytes());
            }
            if let Some(v) = map.get(column) {
                out.extend_from_slice(v.to_text().as_bytes());
            }
        }
        Ok(())
    }
}

fn is_empty(unit: &Unit<'_>) -> bool {
    match unit {
        Unit::Row(row) => row.values().iter().all(Value::is_null),
        Unit::List(rows) => rows.is_empty(),
        Unit::Error(_) => false,
    }
}

fn row_object(row: &Row, send_nil: bool) -> Value {
    Value::object(
        row.iter()
            .filter(|(_, v)| send_nil || !v.is_null())
            .map(|(k, v)| (Arc::clone(k), v.clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::props::split;

    fn transformer(props: &str) -> Transformer {
        let (common, _) = split(&serde_json::from_str(props).unwrap()).unwrap();
        Transformer::new(common, false)
    }

    fn row(pairs: &[(&str, Value)]) -> Row {
        Row::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (Arc::from(*k), v.clone()))
                .collect(),
            0,
        )
    }

    fn run(t: &mut Transformer, message: &Message) -> (Vec<String>, Produced) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        let produced = t.transform(
            message,
            &mut |p| out.push(String::from_utf8(p.to_vec()).unwrap()),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        (out, produced)
    }

    #[test]
    fn plain_rows_encode_as_objects_with_sorted_keys() {
        let mut t = transformer("{}");
        let (out, _) = run(
            &mut t,
            &Message::Row(row(&[("b", Value::Int(1)), ("a", Value::Null)])),
        );
        assert_eq!(out, [r#"{"b":1}"#]);
    }

    #[test]
    fn window_results_are_arrays_unless_send_single() {
        let rows = Arc::new(vec![
            row(&[("a", Value::Int(1))]),
            row(&[("a", Value::Int(2))]),
        ]);
        let (out, _) = run(&mut transformer("{}"), &Message::Rows(Arc::clone(&rows)));
        assert_eq!(out, [r#"[{"a":1},{"a":2}]"#]);
        let (out, _) = run(
            &mut transformer(r#"{"sendSingle":true}"#),
            &Message::Rows(rows),
        );
        assert_eq!(out, [r#"{"a":1}"#, r#"{"a":2}"#]);
        // Rows of different layouts in one list, unsorted keys, NULLs left out (kept with
        // sendNil, as objects are built then).
        let rows = Arc::new(vec![
            row(&[
                ("b", Value::Int(1)),
                ("a", Value::Null),
                ("c", Value::from("x")),
            ]),
            row(&[("z", Value::Float(2.5)), ("y", Value::Bool(true))]),
            row(&[
                ("b", Value::Int(3)),
                ("a", Value::Int(4)),
                ("c", Value::Null),
            ]),
        ]);
        let (out, _) = run(&mut transformer("{}"), &Message::Rows(Arc::clone(&rows)));
        assert_eq!(
            out,
            [r#"[{"b":1,"c":"x"},{"y":true,"z":2.5},{"a":4,"b":3}]"#]
        );
        let (common, _) = split(&serde_json::from_str("{}").unwrap()).unwrap();
        let (out, _) = run(&mut Transformer::new(common, true), &Message::Rows(rows));
        assert_eq!(
            out,
            [r#"[{"a":null,"b":1,"c":"x"},{"y":true,"z":2.5},{"a":4,"b":3,"c":null}]"#]
        );
    }

    #[test]
    fn fields_and_data_field_follow_ekuiper() {
        let r = row(&[("a", Value::Int(1)), ("b", Value::Int(2))]);
        // With a transform and without sendSingle, eKuiper hands the sink a list.
        let (out, _) = run(
            &mut transformer(r#"{"fields":["b"]}"#),
            &Message::Row(r.clone()),
        );
        assert_eq!(out, [r#"[{"b":2}]"#]);
        let (out, _) = run(
            &mut transformer(r#"{"fields":["b"],"sendSingle":true}"#),
            &Message::Row(r.clone()),
        );
        assert_eq!(out, [r#"{"b":2}"#]);
        let (out, _) = run(
            &mut transformer(r#"{"dataField":"a","sendSingle":true}"#),
            &Message::Row(r),
        );
        assert_eq!(out, ["1"]);
    }

    #[test]
    fn omit_if_empty_counts_what_it_drops() {
        let mut t = transformer(r#"{"omitIfEmpty":true}"#);
        let (out, produced) = run(&mut t, &Message::Rows(Arc::new(Vec::new())));
        assert!(out.is_empty());
        assert_eq!(produced.omitted, 1);
    }

    #[test]
    fn delimited_uses_sorted_columns_of_the_first_row() {
        let mut t = transformer(r#"{"format":"delimited","delimiter":";","sendSingle":true}"#);
        let (out, _) = run(
            &mut t,
            &Message::Row(row(&[("b", Value::Int(1)), ("a", Value::string("x"))])),
        );
        assert_eq!(out, ["x;1"]);
        assert_eq!(t.header().as_deref(), Some("a;b"));
    }
}
