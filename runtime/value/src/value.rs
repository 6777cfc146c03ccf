//! The dynamic values and rows that flow from sources through the rule engine to the sinks.
//!
//! eKuiper is schemaless by default: a row is a map from field names to values whose types are
//! only known at run time. Oort keeps that model but stores a row as a shared [`Schema`] (the
//! field names, in arrival order) plus a `Vec<Value>`, so rows that share a layout (the common
//! case for a stream) share one schema and a column lookup is an index, not a hash.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A nested JSON object. Keys are kept sorted, which is also the order eKuiper emits them in.
pub type Map = BTreeMap<Arc<str>, Value>;

/// One dynamically typed value, as eKuiper's SQL sees it.
#[derive(Clone, Debug, Default)]
pub enum Value {
    /// SQL `NULL`, a missing field or JSON `null`.
    #[default]
    Null,
    /// `boolean`.
    Bool(bool),
    /// `bigint`: whole numbers.
    Int(i64),
    /// `float`.
    Float(f64),
    /// `string`.
    String(Arc<str>),
    /// `bytea`: raw bytes (JSON encodes them as base64).
    Bytes(Arc<[u8]>),
    /// `array(...)`.
    Array(Arc<Vec<Value>>),
    /// `struct(...)`: a nested object.
    Object(Arc<Map>),
}

impl Value {
    /// Builds a string value.
    pub fn string(s: impl Into<Arc<str>>) -> Self {
        Self::String(s.into())
    }

    /// Builds an array value.
    pub fn array(items: Vec<Value>) -> Self {
        Self::Array(Arc::new(items))
    }

    /// Builds an object value.
    pub fn object(map: Map) -> Self {
        Self::Object(Arc::new(map))
    }

    /// True for [`Value::Null`].
    pub const fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The eKuiper type name of this value, for error messages.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "boolean",
            Self::Int(_) => "bigint",
            Self::Float(_) => "float",
            Self::String(_) => "string",
            Self::Bytes(_) => "bytea",
            Self::Array(_) => "array",
            Self::Object(_) => "struct",
        }
    }

    /// The value as a float, for numeric values only.
    pub const fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as an integer, for integers and floats without a fraction.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(*f as i64),
            _ => None,
        }
    }

    /// The value as a string slice, for strings only.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean, for booleans only.
    pub const fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// SQL truth: only `true` is true; `NULL`, `false` and anything else is not.
    pub const fn is_true(&self) -> bool {
        matches!(self, Self::Bool(true))
    }

    /// The field `key` of an object value.
    pub fn field(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Object(map) => map.get(key),
            _ => None,
        }
    }

    /// Converts a `serde_json` value.
    pub fn from_json(json: serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Self::Null,
            serde_json::Value::Bool(b) => Self::Bool(b),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Self::Int)
                .unwrap_or_else(|| Self::Float(n.as_f64().unwrap_or(f64::NAN))),
            serde_json::Value::String(s) => Self::String(s.into()),
            serde_json::Value::Array(items) => {
                Self::array(items.into_iter().map(Self::from_json).collect())
            }
            serde_json::Value::Object(map) => Self::object(
                map.into_iter()
                    .map(|(k, v)| (Arc::from(k), Self::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Converts into a `serde_json` value (floats that JSON cannot hold become `null`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Null => serde_json::Value::Null,
            Self::Bool(b) => serde_json::Value::Bool(*b),
            Self::Int(i) => serde_json::Value::from(*i),
            Self::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Self::String(s) => serde_json::Value::String(s.to_string()),
            Self::Bytes(b) => serde_json::Value::String(crate::base64::encode(b)),
            Self::Array(items) => {
                serde_json::Value::Array(items.iter().map(Self::to_json).collect())
            }
            Self::Object(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(k, v)| (k.to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Renders the value the way eKuiper's `cast(x, "string")` and the delimited format do:
    /// strings bare, everything else as its JSON text.
    pub fn to_text(&self) -> String {
        match self {
            Self::String(s) => s.to_string(),
            Self::Null => String::new(),
            other => {
                let mut out = Vec::new();
                crate::json::write_value(&mut out, other);
                String::from_utf8(out).unwrap_or_default()
            }
        }
    }
}

impl PartialEq for Value {
    /// SQL-style equality: numbers compare by value across `bigint` and `float`.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Int(a), Self::Int(b)) => a == b,
            (Self::Int(_) | Self::Float(_), Self::Int(_) | Self::Float(_)) => {
                self.as_f64() == other.as_f64()
            }
            (Self::String(a), Self::String(b)) => a == b,
            (Self::Bytes(a), Self::Bytes(b)) => a == b,
            (Self::Array(a), Self::Array(b)) => a == b,
            (Self::Object(a), Self::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Self::Float(f)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::String(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::String(s.into())
    }
}

/// The field names of a row, in the order they arrived. Shared by every row with this layout.
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    names: Vec<Arc<str>>,
}

impl Schema {
    /// A schema with these field names (which must be distinct).
    pub fn new(names: Vec<Arc<str>>) -> Self {
        Self { names }
    }

    /// The field names, in order.
    pub fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the schema has no field.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Position of field `name`. Field names are matched exactly first, then case-insensitively,
    /// as eKuiper does for schemaless streams.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| &**n == name)
            .or_else(|| self.names.iter().position(|n| n.eq_ignore_ascii_case(name)))
    }
}

/// One row of a stream, or one result row of a query.
#[derive(Clone)]
pub struct Row {
    schema: Arc<Schema>,
    values: Vec<Value>,
    /// Event or arrival time in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// What its source says about the message it came from (an object: an MQTT message's
    /// topic, a file's path), shared by every row of that message or file.
    meta: Option<Arc<Value>>,
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Row");
        s.field("schema", &self.schema)
            .field("values", &self.values)
            .field("timestamp_ms", &self.timestamp_ms);
        // Most rows have none: their output stays as short as it was.
        if let Some(meta) = &self.meta {
            s.field("meta", meta);
        }
        s.finish()
    }
}

impl Row {
    /// A row of `values` laid out by `schema` (one value per field).
    pub fn new(schema: Arc<Schema>, values: Vec<Value>, timestamp_ms: i64) -> Self {
        debug_assert_eq!(schema.len(), values.len());
        Self {
            schema,
            values,
            timestamp_ms,
            meta: None,
        }
    }

    /// The source's metadata of the message the row came from, if its source gives any.
    pub fn meta(&self) -> Option<&Arc<Value>> {
        self.meta.as_ref()
    }

    /// Attaches (or clears) the source's metadata.
    pub fn set_meta(&mut self, meta: Option<Arc<Value>>) {
        self.meta = meta;
    }

    /// A row from `(name, value)` pairs.
    pub fn from_pairs(pairs: Vec<(Arc<str>, Value)>, timestamp_ms: i64) -> Self {
        let (names, values) = pairs.into_iter().unzip();
        Self::new(Arc::new(Schema::new(names)), values, timestamp_ms)
    }

    /// The row's layout.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The row's values, in schema order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The value of field `name`, if the row has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.schema.index_of(name).map(|i| &self.values[i])
    }

    /// The value at position `index`.
    pub fn at(&self, index: usize) -> &Value {
        &self.values[index]
    }

    /// The row's values, in schema order, to change in place.
    pub fn values_mut(&mut self) -> &mut [Value] {
        &mut self.values
    }

    /// Takes the value at position `index` out of the row, leaving `NULL` in its place.
    pub fn take_at(&mut self, index: usize) -> Value {
        std::mem::take(&mut self.values[index])
    }

    /// `(name, value)` pairs in schema order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Value)> {
        self.schema.names.iter().zip(self.values.iter())
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the row has no field.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The row as a nested object value.
    pub fn to_object(&self) -> Value {
        Value::object(
            self.iter()
                .map(|(k, v)| (Arc::clone(k), v.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_across_types() {
        assert_eq!(Value::Int(2), Value::Float(2.0));
        assert_ne!(Value::Int(2), Value::string("2"));
    }

    #[test]
    fn schema_lookup_falls_back_to_case_insensitive() {
        let schema = Schema::new(vec!["Temp".into(), "temp".into(), "Hum".into()]);
        assert_eq!(schema.index_of("temp"), Some(1));
        assert_eq!(schema.index_of("HUM"), Some(2));
        assert_eq!(schema.index_of("x"), None);
    }
}
