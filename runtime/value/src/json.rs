//! JSON in and out of rows: a decoder that reuses the previous row's schema, and an encoder
//! whose output matches eKuiper's (sorted keys, Go's number formatting).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::value::{Map, Row, Schema, Value};

/// Decodes JSON objects into rows. Consecutive rows with the same keys in the same order share
/// one [`Schema`], which is what makes column lookups cheap downstream.
#[derive(Default)]
pub struct RowDecoder {
    last: Option<Arc<Schema>>,
}

impl RowDecoder {
    /// A decoder with no schema seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one JSON object.
    pub fn decode(&mut self, bytes: &[u8], timestamp_ms: i64) -> Result<Row, serde_json::Error> {
        // Checking UTF-8 once for the whole message is cheaper than the parser checking every
        // string in it.
        match std::str::from_utf8(bytes) {
            Ok(text) => self.decode_str(text, timestamp_ms),
            Err(_) => self.decode_from(serde_json::Deserializer::from_slice(bytes), timestamp_ms),
        }
    }

    /// Decodes one JSON object from text.
    pub fn decode_str(&mut self, text: &str, timestamp_ms: i64) -> Result<Row, serde_json::Error> {
        self.decode_from(serde_json::Deserializer::from_str(text), timestamp_ms)
    }

    fn decode_from<'de, R: serde_json::de::Read<'de>>(
        &mut self,
        mut de: serde_json::Deserializer<R>,
        timestamp_ms: i64,
    ) -> Result<Row, serde_json::Error> {
        let row = RowSeed {
            decoder: self,
            timestamp_ms,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(row)
    }

    /// Decodes a JSON array of objects.
    pub fn decode_array(
        &mut self,
        bytes: &[u8],
        timestamp_ms: i64,
    ) -> Result<Vec<Row>, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let rows = de.deserialize_seq(RowsVisitor {
            decoder: self,
            timestamp_ms,
        })?;
        de.end()?;
        Ok(rows)
    }

    fn schema_for(&mut self, keys: Vec<Arc<str>>) -> Arc<Schema> {
        let schema = Arc::new(Schema::new(keys));
        self.last = Some(Arc::clone(&schema));
        schema
    }
}

struct RowsVisitor<'a> {
    decoder: &'a mut RowDecoder,
    timestamp_ms: i64,
}

impl<'de> Visitor<'de> for RowsVisitor<'_> {
    type Value = Vec<Row>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(row) = seq.next_element_seed(RowSeed {
            decoder: self.decoder,
            timestamp_ms: self.timestamp_ms,
        })? {
            rows.push(row);
        }
        Ok(rows)
    }
}

struct RowSeed<'a> {
    decoder: &'a mut RowDecoder,
    timestamp_ms: i64,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Row;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Row, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let last = self.decoder.last.clone();
        let empty = Vec::new();
        let expected: &[Arc<str>] = match &last {
            Some(schema) => schema.names(),
            None => &empty,
        };
        let mut values = Vec::with_capacity(expected.len().max(4));
        // Keys are compared against the previous schema as they arrive; only a row whose
        // layout differs allocates its own key list.
        let mut fresh: Option<Vec<Arc<str>>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let i = values.len();
            match &mut fresh {
                None if expected.get(i).is_some_and(|k| **k == *key) => {}
                None => {
                    let mut keys: Vec<Arc<str>> = expected[..i].to_vec();
                    keys.push(Arc::from(&*key));
                    fresh = Some(keys);
                }
                Some(keys) => keys.push(Arc::from(&*key)),
            }
            values.push(map.next_value_seed(ValueSeed)?);
        }
        let schema = match (fresh, &last) {
            (None, Some(schema)) if schema.len() == values.len() => Arc::clone(schema),
            (None, _) => self.decoder.schema_for(expected[..values.len()].to_vec()),
            (Some(keys), _) => {
                let mut seen = std::collections::HashSet::with_capacity(keys.len());
                if keys.iter().any(|k| !seen.insert(k.clone())) {
                    return Err(de::Error::custom("duplicate key in JSON object"));
                }
                self.decoder.schema_for(keys)
            }
        };
        Ok(Row::new(schema, values, self.timestamp_ms))
    }
}

/// Reads an object key without allocating when the input holds it unescaped.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Deserializes any JSON value into a [`Value`].
pub struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.into()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(ValueSeed)? {
            items.push(item);
        }
        Ok(Value::array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key_seed(KeySeed)? {
            let value = access.next_value_seed(ValueSeed)?;
            map.insert(Arc::from(&*key), value);
        }
        Ok(Value::object(map))
    }
}

/// Parses one JSON text into a [`Value`].
pub fn parse_value(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = ValueSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Appends the JSON text of a row: an object with keys in sorted order, as eKuiper writes it.
/// Fields whose value is `NULL` are left out, as eKuiper does.
pub fn write_row(out: &mut Vec<u8>, row: &Row, order: &[usize]) {
    out.push(b'{');
    let mut first = true;
    for &i in order {
        let value = row.at(i);
        if value.is_null() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, &row.schema().names()[i]);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// The positions of a schema's fields in sorted key order, for [`write_row`].
pub fn sorted_order(schema: &Schema) -> Vec<usize> {
    let mut order: Vec<usize> = (0..schema.len()).collect();
    order.sort_by(|&a, &b| schema.names()[a].cmp(&schema.names()[b]));
    order
}

/// Appends the JSON text of a value.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Float(f) => write_float(out, *f),
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => write_str(out, &crate::base64::encode(b)),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, v);
            }
            out.push(b'}');
        }
    }
}

/// Appends a float the way Go's `encoding/json` does: no `.0` on whole numbers, exponent form
/// below 1e-6 and from 1e21 on, `null` for NaN and infinities (which JSON cannot hold).
pub fn write_float(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Go: 1e+21, 1.5e-7.
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, exp)) => {
                out.extend_from_slice(mantissa.as_bytes());
                out.push(b'e');
                if !exp.starts_with('-') {
                    out.push(b'+');
                }
                out.extend_from_slice(exp.as_bytes());
            }
            None => out.extend_from_slice(text.as_bytes()),
        }
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(f);
    if text.contains('e') {
        // ryu switches to exponent form earlier than Go does; Display never does.
        out.extend_from_slice(f.to_string().as_bytes());
    } else {
        out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
    }
}

/// Appends a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip eight bytes at a time while none of them needs escaping.
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                i += 1;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any of the eight bytes in `word` is a control character, `"` or `\\`.
const fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const fn has_zero(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGH
    }
    // A byte below 0x20: subtracting 0x20 borrows into its high bit (bytes >= 0x80 excluded).
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    below_space != 0
        || has_zero(word ^ (ONES * b'"' as u64)) != 0
        || has_zero(word ^ (ONES * b'\\' as u64)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(f: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, f);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats_print_like_go() {
        assert_eq!(float(25.0), "25");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(-3.5), "-3.5");
        assert_eq!(float(1e21), "1e+21");
        assert_eq!(float(1.5e-7), "1.5e-7");
        assert_eq!(float(1e20), "100000000000000000000");
        assert_eq!(float(0.000001), "0.000001");
        assert_eq!(float(f64::NAN), "null");
    }

    #[test]
    fn rows_share_a_schema_when_keys_repeat() {
        let mut d = RowDecoder::new();
        let a = d.decode(br#"{"a":1,"b":"x"}"#, 0).unwrap();
        let b = d.decode(br#"{"a":2,"b":"y"}"#, 0).unwrap();
        let c = d.decode(br#"{"a":2}"#, 0).unwrap();
        let e = d.decode(br#"{"b":2,"a":1}"#, 0).unwrap();
        assert!(Arc::ptr_eq(a.schema(), b.schema()));
        assert_eq!(c.schema().names().len(), 1);
        assert_eq!(e.get("a"), Some(&Value::Int(1)));
        assert!(d.decode(br#"{"a":1,"a":2}"#, 0).is_err());
    }

    #[test]
    fn rows_encode_with_sorted_keys_and_without_nulls() {
        let mut d = RowDecoder::new();
        let row = d
            .decode(br#"{"b":1.0,"a":"q\"","n":null,"o":{"z":1,"y":[true]}}"#, 0)
            .unwrap();
        let mut out = Vec::new();
        write_row(&mut out, &row, &sorted_order(row.schema()));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"q\"","b":1,"o":{"y":[true],"z":1}}"#
        );
    }

    #[test]
    fn strings_escape_like_json() {
        let mut out = Vec::new();
        let text = "plain ascii text, long enough \"quoted\" \\ back\nline\u{1}ctl é ünïcode tail";
        write_str(&mut out, text);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, text);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(text).unwrap()
        );
        for len in 0..20 {
            let s: String = "a\"b\\c\u{7}".chars().cycle().take(len).collect();
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap()
            );
        }
    }
}
