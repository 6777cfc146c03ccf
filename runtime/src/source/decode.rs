//! Decoding one message into a row per the stream's `FORMAT`, fitting it to the declared
//! columns, and taking its event time from the `TIMESTAMP` field.
//!
//! A JSON message is decoded only as far as the rule needs: the fields its statement reads
//! (and the `TIMESTAMP` field), of a stream with declared columns only the declared ones among
//! them; every other field is skipped without building a value.

use std::sync::Arc;

use crate::json::{Keep, RowDecoder};
use crate::sql::FieldsRead;
use crate::stream::{
    ColumnDef, Format, StreamDef, columns_read, conform, conform_laid_out, distinct_ignoring_case,
};
use crate::value::{Row, Schema, Value};

/// A message could not be decoded or does not fit the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Decodes a stream's messages.
pub struct Decoder {
    format: Format,
    delimiter: u8,
    /// Every declared column, in declared order (a delimited message holds one value each).
    declared: Option<Vec<ColumnDef>>,
    /// The declared columns a row carries, and its schema: those the statement reads (all of
    /// them for `SELECT *`). The others would be `NULL` and are never looked at: leaving them
    /// out spares building, checking and dropping a value per column and row.
    columns: Option<(Vec<ColumnDef>, Arc<Schema>)>,
    strict: bool,
    /// No two carried columns have names equal but for case: values move into their columns.
    distinct: bool,
    /// The JSON decoder lays rows out by the declared columns and reads values of their
    /// kinds: a row it reports fitted needs nothing more, another is converted in place.
    laid_out: bool,
    /// Whether the row [`Decoder::decode`] gave last is laid out and fitted; taken by
    /// [`Decoder::finish`], so that a row handed in already decoded is always converted.
    fitted: bool,
    json: RowDecoder,
    timestamp: Option<String>,
    /// The position of the `TIMESTAMP` field in the last schema a row had: consecutive rows
    /// share their schema, so the field is looked up by name once per schema, not per row.
    timestamp_at: Option<(Arc<Schema>, Option<usize>)>,
}

impl Decoder {
    /// A decoder for `def` keeping every field; with `event_time`, rows take their time from
    /// `TIMESTAMP`.
    pub fn new(def: &StreamDef, event_time: bool) -> Self {
        Self::reading(def, event_time, &FieldsRead::All)
    }

    /// A decoder for `def` for a statement that reads `reads`: a JSON message's other fields
    /// are skipped (of a stream with declared columns, those the statement does not read are
    /// skipped too and left out of the row, not checked, as eKuiper prunes them: the statement
    /// never looks them up, and a lookup would find `NULL`).
    pub fn reading(def: &StreamDef, event_time: bool, reads: &FieldsRead) -> Self {
        let timestamp = event_time.then(|| def.options.timestamp.clone()).flatten();
        let read = def
            .columns
            .as_deref()
            .map(|c| columns_read(c, reads, timestamp.as_deref()))
            .unwrap_or_default();
        let keep = match (&def.columns, reads) {
            // The columns the statement does not read are not carried whatever the message
            // holds: they are skipped like undeclared fields.
            (Some(columns), _) => Keep::only(
                columns
                    .iter()
                    .zip(&read)
                    .filter(|(_, read)| **read)
                    .map(|(c, _)| c.name.as_str()),
            ),
            (None, FieldsRead::All) => Keep::All,
            (None, FieldsRead::Only(names)) => {
                Keep::only(names.iter().map(|n| &**n).chain(timestamp.as_deref()))
            }
        };
        let columns = def.columns.as_ref().map(|cols| {
            let carried: Vec<ColumnDef> = cols
                .iter()
                .zip(&read)
                .filter(|(_, read)| **read)
                .map(|(c, _)| c.clone())
                .collect();
            let schema = Arc::new(Schema::new(
                carried.iter().map(|c| Arc::from(c.name.as_str())).collect(),
            ));
            (carried, schema)
        });
        let distinct = columns
            .as_ref()
            .is_none_or(|(carried, _)| distinct_ignoring_case(carried));
        let mut json = RowDecoder::keeping(keep);
        // A JSON message's fields go straight to their columns, unless two columns may take
        // the same field (names equal but for case): `conform` copies it to each.
        let laid_out = distinct && def.options.format == Format::Json;
        if let Some((carried, schema)) = columns.as_ref().filter(|_| laid_out) {
            let kinds: Vec<_> = carried.iter().map(|c| c.ty.kind()).collect();
            json = json.in_columns(Arc::clone(schema)).of_kinds(kinds);
        }
        Self {
            format: def.options.format,
            delimiter: def.options.delimiter,
            declared: def.columns.clone(),
            columns,
            strict: def.options.strict_validation,
            distinct,
            laid_out,
            fitted: false,
            json,
            timestamp,
            timestamp_at: None,
        }
    }

    /// Decodes one message (not yet fitted: see [`Decoder::finish`]).
    pub fn decode(&mut self, bytes: &[u8], now_ms: i64) -> Result<Row, DecodeError> {
        self.fitted = false;
        match self.format {
            Format::Json => {
                let row = self
                    .json
                    .decode(bytes, now_ms)
                    .map_err(|e| DecodeError(format!("invalid JSON: {e}")))?;
                self.fitted = self.laid_out && self.json.fitted();
                Ok(row)
            }
            Format::Delimited => {
                let Some(cols) = &self.declared else {
                    return Err(DecodeError(
                        "the delimited format needs declared columns".into(),
                    ));
                };
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| DecodeError(format!("not UTF-8 text: {e}")))?
                    .trim_end_matches('\r');
                let parts: Vec<&str> = text.split(self.delimiter as char).collect();
                if parts.len() != cols.len() {
                    return Err(DecodeError(format!(
                        "expected {} delimited values, found {}",
                        cols.len(),
                        parts.len()
                    )));
                }
                Ok(Row::from_pairs(
                    cols.iter()
                        .zip(parts)
                        .map(|(c, p)| (Arc::from(c.name.as_str()), Value::string(p)))
                        .collect(),
                    now_ms,
                ))
            }
            Format::Binary => Ok(Row::from_pairs(
                vec![(Arc::from("self"), Value::Bytes(Arc::from(bytes)))],
                now_ms,
            )),
        }
    }

    /// Fits a decoded row to the declared columns and stamps its event time.
    pub fn finish(&mut self, row: Row) -> Result<Row, DecodeError> {
        let fitted = std::mem::take(&mut self.fitted);
        let mut row = match &self.columns {
            // Decoded straight into the columns' layout, each value of its column's type.
            Some((_, schema)) if fitted && Arc::ptr_eq(row.schema(), schema) => row,
            // Decoded straight into the columns' layout: only the types are left to fit.
            Some((cols, schema)) if self.laid_out && Arc::ptr_eq(row.schema(), schema) => {
                let mut row = row;
                conform_laid_out(&mut row, cols, self.strict, &[]).map_err(DecodeError)?;
                row
            }
            Some((cols, schema)) => {
                conform(row, cols, schema, self.strict, &[], self.distinct).map_err(DecodeError)?
            }
            None => row,
        };
        if let Some(field) = &self.timestamp {
            let at = match &self.timestamp_at {
                Some((schema, at)) if Arc::ptr_eq(schema, row.schema()) => *at,
                _ => {
                    let at = row.schema().index_of(field);
                    self.timestamp_at = Some((Arc::clone(row.schema()), at));
                    at
                }
            };
            row.timestamp_ms = match at.map(|i| row.at(i)) {
                Some(Value::Int(ms)) => *ms,
                Some(Value::Float(ms)) => *ms as i64,
                Some(Value::String(s)) => s.trim().parse().map_err(|_| {
                    DecodeError(format!(
                        "TIMESTAMP field `{field}` is not epoch milliseconds: {s:?}"
                    ))
                })?,
                Some(other) => {
                    return Err(DecodeError(format!(
                        "TIMESTAMP field `{field}` is a {}, not epoch milliseconds",
                        other.type_name()
                    )));
                }
                None => {
                    return Err(DecodeError(format!(
                        "the row has no TIMESTAMP field `{field}`"
                    )));
                }
            };
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::Decoder;
    use crate::sql::FieldsRead;
    use crate::stream::{StreamDef, parse_streams};
    use crate::value::Value;

    fn stream(format: &str) -> StreamDef {
        let text = format!(
            "CREATE STREAM s (a bigint, b string, c bigint) WITH (TYPE=\"memory\", \
             DATASOURCE=\"t\", FORMAT=\"{format}\", STRICT_VALIDATION=\"true\")"
        );
        parse_streams(&text, "streams.sql", Path::new("/no/such/folder"))
            .unwrap()
            .remove(0)
    }

    fn reading(names: &[&str]) -> FieldsRead {
        FieldsRead::Only(names.iter().map(|n| Arc::from(*n)).collect())
    }

    /// A row carries the declared columns the statement reads, checked against their types; the
    /// others are neither carried nor checked, and `*` carries them all.
    #[test]
    fn rows_carry_the_declared_columns_read() {
        let mut d = Decoder::reading(&stream("json"), false, &reading(&["C", "a"]));
        for _ in 0..2 {
            // Twice: the general decoder, then the fast path for the same layout.
            let row = d.decode(br#"{"a":1,"b":"x","c":7}"#, 0).unwrap();
            let row = d.finish(row).unwrap();
            let names: Vec<&str> = row.schema().names().iter().map(|n| &**n).collect();
            assert_eq!(names, ["a", "c"]);
            assert_eq!(row.values(), &[Value::Int(1), Value::Int(7)]);
        }
        let row = d.decode(br#"{"a":"x","b":1,"c":2}"#, 0).unwrap();
        let err = d.finish(row).unwrap_err().0;
        assert!(err.contains("field a type mismatch"), "{err}");

        let mut all = Decoder::reading(&stream("json"), false, &FieldsRead::All);
        let row = all.decode(br#"{"c":3,"a":1}"#, 0).unwrap();
        let row = all.finish(row).unwrap();
        assert_eq!(row.values(), &[Value::Int(1), Value::Null, Value::Int(3)]);

        // A delimited message still holds a value per declared column.
        let mut d = Decoder::reading(&stream("delimited"), false, &reading(&["b"]));
        let row = d.decode(b"1,x,3", 0).unwrap();
        assert_eq!(d.finish(row).unwrap().values(), &[Value::from("x")]);
        let err = d.decode(b"1,x", 0).unwrap_err().0;
        assert_eq!(err, "expected 3 delimited values, found 2");
    }

    /// A declared column's values come out as `conform` makes them from the message's values,
    /// with its errors, whichever path decodes the message and whether or not the decoder
    /// reads them as the column's type already: reading a value as fitting must never skip a
    /// conversion or an error.
    #[test]
    fn declared_columns_convert_as_conform_does_on_every_path() {
        use crate::json::RowDecoder;
        use crate::stream::conform;

        let types = ["bigint", "float", "string", "datetime", "boolean", "bytea"];
        let values = [
            "1",
            "-0",
            "0",
            "2.0",
            "2.5",
            "-3",
            "999999999999999999",
            "1e3",
            "true",
            "false",
            "null",
            r#""7""#,
            r#""2.5""#,
            r#""x""#,
            r#""true""#,
            r#""aGk=""#,
            r#""""#,
        ];
        for ty in types {
            for strict in [false, true] {
                let text = format!(
                    "CREATE STREAM s (v {ty}, w bigint) WITH (TYPE=\"memory\", \
                     DATASOURCE=\"t\", FORMAT=\"json\", STRICT_VALIDATION=\"{strict}\")"
                );
                let def = parse_streams(&text, "streams.sql", Path::new("/no/such/folder"))
                    .unwrap()
                    .remove(0);
                let columns = def.columns.clone().unwrap();
                assert_eq!(columns[0].ty.name(), ty);
                let schema = Arc::new(crate::value::Schema::new(vec!["v".into(), "w".into()]));
                for value in values {
                    let mut d = Decoder::reading(&def, false, &FieldsRead::All);
                    let message = format!(r#"{{"v":{value},"w":1}}"#);
                    let want = RowDecoder::new()
                        .decode(message.as_bytes(), 0)
                        .map_err(|e| e.to_string())
                        .and_then(|row| conform(row, &columns, &schema, strict, &[], true));
                    // Three times: a new layout (the serde path), then the fast path.
                    for _ in 0..3 {
                        let got = d
                            .decode(message.as_bytes(), 0)
                            .and_then(|row| d.finish(row))
                            .map_err(|e| e.0);
                        let case = format!("{ty} {value} strict: {strict}");
                        match (&got, &want) {
                            (Ok(got), Ok(want)) => {
                                let kinds = |r: &crate::value::Row| {
                                    r.values().iter().map(|v| v.type_name()).collect::<Vec<_>>()
                                };
                                assert_eq!(kinds(got), kinds(want), "{case}");
                                assert_eq!(got.values(), want.values(), "{case}");
                            }
                            _ => assert_eq!(
                                got.map(|_| ()),
                                want.as_ref().map(|_| ()).map_err(|e| e.clone()),
                                "{case}"
                            ),
                        }
                    }
                }
            }
        }
    }
}
