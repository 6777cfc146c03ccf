//! JSON in and out of rows: a decoder that reuses the previous row's schema, and an encoder
//! whose output matches eKuiper's (sorted keys, Go's number formatting).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::value::{Map, Row, Schema, Value};

mod flat;

/// Which top-level fields of an object a [`RowDecoder`] keeps; the others are skipped
/// (checked to be well-formed JSON, but no value is built for them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Keep {
    /// Every field.
    #[default]
    All,
    /// Only fields whose name matches one of these, exactly or ignoring ASCII case (the way a
    /// column lookup, [`Schema::index_of`], matches names).
    Only(Arc<[Box<str>]>),
}

impl Keep {
    /// Keeps only the fields these names match.
    pub fn only<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        Self::Only(names.into_iter().map(|n| n.as_ref().into()).collect())
    }

    /// Whether the field `key` is kept.
    pub fn keeps(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.iter().any(|n| n.eq_ignore_ascii_case(key)),
        }
    }
}

/// The kind of value a declared column holds as it is: what the decoder reads for the column
/// either is of that kind (and the row needs no second look) or is left for the caller to
/// convert, with the caller's conversions and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Whole numbers (`bigint`).
    Int,
    /// Floating point numbers (`float`): a whole number read for the column is read as a float,
    /// `n as f64`, the conversion every reader of the column makes.
    Float,
    /// Text (`string`).
    String,
    /// `true` / `false` (`boolean`).
    Bool,
    /// Bytes (`bytea`).
    Bytes,
    /// A point in time (`datetime`): a number or a text, kept as it is.
    Time,
    /// Any other type (arrays, structs): always left for the caller to convert.
    Other,
}

impl ColumnKind {
    /// Whether `v` (not `NULL`) is kept as it is in a column of this kind.
    pub fn holds(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (Self::Int, Value::Int(_))
                | (Self::Float, Value::Float(_))
                | (Self::String, Value::String(_))
                | (Self::Bool, Value::Bool(_))
                | (Self::Bytes, Value::Bytes(_))
                | (
                    Self::Time,
                    Value::Int(_) | Value::Float(_) | Value::String(_)
                )
        )
    }

    /// Makes `v` a value of this kind where that needs no choice (a whole number for a float
    /// column); whether it then fits (`NULL` always does).
    #[inline]
    fn fit(self, v: &mut Value) -> bool {
        match (self, &*v) {
            (_, Value::Null) => true,
            (Self::Float, Value::Int(i)) => {
                *v = Value::Float(*i as f64);
                true
            }
            _ => self.holds(v),
        }
    }
}

/// The keys of the last object decoded, which of them were kept and where each kept value goes
/// in the row, and the row's schema.
struct Layout {
    keys: Vec<Arc<str>>,
    /// Per key, whether [`Keep`] keeps it (the serde path decodes its value).
    kept: Vec<bool>,
    /// Per key, the position of its value in the row ([`SKIPPED`] for a key not kept).
    slots: Vec<u32>,
    /// With declared kinds, per key the kind of the column its value goes to (that of a key
    /// not kept is never looked at).
    kinds: Option<Box<[ColumnKind]>>,
    schema: Arc<Schema>,
    /// Whether every key can be matched in the input as it is (see [`flat`]).
    plain: bool,
    /// Per key, the bytes that lead to its value when the message has no whitespace (see
    /// [`flat::tokens`]).
    tokens: Vec<Box<[u8]>>,
    /// Whether the kept keys fill the row's positions in order, one each (`0, 1, 2, ...`), as
    /// they always do without declared columns: the fast path then pushes the values as they
    /// come rather than filling a row of `NULL`s.
    in_order: bool,
    /// Counts the layouts a decoder has recorded: tells a new layout from the last one when
    /// both have the same schema (always so with declared columns).
    generation: u64,
}

/// The slot of a key whose value is not kept.
const SKIPPED: u32 = u32::MAX;

/// How many messages the fast path is left untried after it declined one that has the
/// previous layout (a stream whose messages hold nested values would otherwise pay for both
/// paths on every message).
const FLAT_PAUSE: u32 = 64;

/// Decodes JSON objects into rows. Consecutive rows with the same keys in the same order share
/// one [`Schema`], which is what makes column lookups cheap downstream. Fields that the
/// decoder's [`Keep`] leaves out are skipped without allocating.
///
/// A decoder [`in_columns`](RowDecoder::in_columns) lays every row out by the declared columns
/// instead: each kept field goes straight to its column, absent columns are `NULL`.
#[derive(Default)]
pub struct RowDecoder {
    keep: Keep,
    /// The declared columns rows are laid out by, if any.
    columns: Option<Arc<Schema>>,
    /// Per declared column, the kind of value it holds as it is, when the caller gave them.
    kinds: Option<Arc<[ColumnKind]>>,
    /// Whether the last row decoded holds only values of its columns' kinds (see
    /// [`RowDecoder::fitted`]).
    fitted: bool,
    last: Option<Layout>,
    /// Messages left before the fast path is tried again.
    flat_pause: u32,
    /// Layouts recorded so far.
    layouts: u64,
}

impl RowDecoder {
    /// A decoder keeping every field, with no schema seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder keeping only the fields `keep` names.
    pub fn keeping(keep: Keep) -> Self {
        Self {
            keep,
            ..Self::default()
        }
    }

    /// Lays every row out by `columns` (declared columns, no two equal but for case): each
    /// column holds the kept field a lookup of its name ([`Schema::index_of`]) would find among
    /// the kept fields, or `NULL`. The values are those the decoder would give; converting them
    /// to the columns' types is the caller's part.
    pub fn in_columns(mut self, columns: Arc<Schema>) -> Self {
        self.columns = Some(columns);
        self.last = None;
        self
    }

    /// Of a decoder [`in_columns`](RowDecoder::in_columns): the kind of value each column
    /// holds as it is (one per column). A whole number read for a [`ColumnKind::Float`] column
    /// is read as a float, and [`RowDecoder::fitted`] tells whether a row needs converting.
    pub fn of_kinds(mut self, kinds: impl Into<Arc<[ColumnKind]>>) -> Self {
        let kinds = kinds.into();
        debug_assert_eq!(
            Some(kinds.len()),
            self.columns.as_ref().map(|c| c.len()),
            "one kind per declared column"
        );
        self.kinds = Some(kinds);
        self.last = None;
        self
    }

    /// Whether every column of the row [`decode`](RowDecoder::decode) gave last is `NULL` or
    /// holds a value of its [kind](RowDecoder::of_kinds), so that the caller has nothing to
    /// convert. `false` when it may not be so (no kinds were given, or a value of another
    /// kind was read): the caller converts the row as it would without kinds.
    pub fn fitted(&self) -> bool {
        self.fitted
    }

    /// Decodes one JSON object.
    pub fn decode(&mut self, bytes: &[u8], timestamp_ms: i64) -> Result<Row, serde_json::Error> {
        self.fitted = false;
        let declined = match self.flat(bytes, timestamp_ms) {
            Ok(row) => return Ok(row),
            Err(declined) => declined,
        };
        // Checking UTF-8 once for the whole message is cheaper than the parser checking every
        // string in it.
        let row = match std::str::from_utf8(bytes) {
            Ok(text) => self.decode_from(serde_json::Deserializer::from_str(text), timestamp_ms),
            Err(_) => self.decode_from(serde_json::Deserializer::from_slice(bytes), timestamp_ms),
        }?;
        self.after_decline(declined);
        Ok(row)
    }

    /// Decodes one JSON object from text.
    pub fn decode_str(&mut self, text: &str, timestamp_ms: i64) -> Result<Row, serde_json::Error> {
        self.fitted = false;
        let declined = match self.flat(text.as_bytes(), timestamp_ms) {
            Ok(row) => return Ok(row),
            Err(declined) => declined,
        };
        let row = self.decode_from(serde_json::Deserializer::from_str(text), timestamp_ms)?;
        self.after_decline(declined);
        Ok(row)
    }

    /// The fast path (see [`flat`]), when the last layout allows it; otherwise the layout it
    /// declined with, if it was tried.
    fn flat(&mut self, bytes: &[u8], timestamp_ms: i64) -> Result<Row, Option<u64>> {
        let Some(layout) = self.last.as_ref().filter(|l| l.plain) else {
            return Err(None);
        };
        if self.flat_pause > 0 {
            self.flat_pause -= 1;
            return Err(None);
        }
        let laid_out = !layout.in_order;
        match flat::decode(
            bytes,
            &layout.tokens,
            &layout.slots,
            layout.kinds.as_deref(),
            layout.schema.len(),
            laid_out,
        ) {
            Some((values, fitted)) => {
                self.fitted = fitted;
                Ok(Row::new(Arc::clone(&layout.schema), values, timestamp_ms))
            }
            None => Err(Some(layout.generation)),
        }
    }

    /// After the serde path decoded a message the fast path declined: when the layout is the
    /// same, what the message holds is beyond the fast path, and the next ones likely are too,
    /// so it rests. A new layout is tried at once.
    fn after_decline(&mut self, declined: Option<u64>) {
        if declined.is_some() && declined == self.last.as_ref().map(|l| l.generation) {
            self.flat_pause = FLAT_PAUSE;
        }
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
        self.fitted = false;
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let rows = de.deserialize_seq(RowsVisitor {
            decoder: self,
            timestamp_ms,
        })?;
        de.end()?;
        Ok(rows)
    }

    /// Records a new layout of keys (already checked to be distinct).
    fn layout_for(&mut self, keys: Vec<Arc<str>>) -> &Layout {
        let kept: Vec<bool> = keys.iter().map(|k| self.keep.keeps(k)).collect();
        let mut slots = vec![SKIPPED; keys.len()];
        let schema = match &self.columns {
            None => {
                let mut names = Vec::new();
                for ((key, &kept), slot) in keys.iter().zip(&kept).zip(&mut slots) {
                    if kept {
                        *slot = names.len() as u32;
                        names.push(Arc::clone(key));
                    }
                }
                Arc::new(Schema::new(names))
            }
            Some(columns) => {
                // Each column takes the kept key its name finds (exactly, else ignoring case);
                // a kept key no column finds (another spelling of a found one) has no slot.
                let found = Schema::new(
                    keys.iter()
                        .zip(&kept)
                        .filter(|(_, kept)| **kept)
                        .map(|(k, _)| Arc::clone(k))
                        .collect(),
                );
                let key_at: Vec<usize> = (0..keys.len()).filter(|&i| kept[i]).collect();
                for (column, name) in columns.names().iter().enumerate() {
                    if self.keep.keeps(name)
                        && let Some(at) = found.index_of(name)
                    {
                        slots[key_at[at]] = column as u32;
                    }
                }
                Arc::clone(columns)
            }
        };
        let mut filled = slots.iter().filter(|&&slot| slot != SKIPPED);
        let in_order = (0..schema.len()).all(|at| filled.next() == Some(&(at as u32)))
            && filled.next().is_none();
        let kinds = self.kinds.as_ref().map(|kinds| {
            slots
                .iter()
                .map(|&slot| {
                    kinds
                        .get(slot as usize)
                        .copied()
                        .unwrap_or(ColumnKind::Other)
                })
                .collect()
        });
        self.layouts += 1;
        self.last.insert(Layout {
            kinds,
            in_order,
            plain: keys.iter().all(|k| flat::plain_key(k)),
            tokens: flat::tokens(&keys),
            keys,
            kept,
            slots,
            schema,
            generation: self.layouts,
        })
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
        let decoder = self.decoder;
        let (expected, kept, capacity): (&[Arc<str>], &[bool], usize) = match &decoder.last {
            Some(layout) => (&layout.keys, &layout.kept, layout.schema.len()),
            None => (&[], &[], 4),
        };
        let mut values = Vec::with_capacity(capacity);
        // With declared columns, the key of each value kept, to put it in its column once the
        // layout is known.
        let mut keys_kept: Vec<usize> = Vec::new();
        let in_columns = decoder.columns.is_some();
        // Keys are compared against the previous layout as they arrive; only a row whose
        // layout differs allocates its own key list.
        let mut fresh: Option<Vec<Arc<str>>> = None;
        let mut i = 0;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let keep = match &mut fresh {
                None if expected.get(i).is_some_and(|k| **k == *key) => kept[i],
                None => {
                    let mut keys: Vec<Arc<str>> = expected[..i].to_vec();
                    keys.push(Arc::from(&*key));
                    fresh = Some(keys);
                    decoder.keep.keeps(&key)
                }
                Some(keys) => {
                    keys.push(Arc::from(&*key));
                    decoder.keep.keeps(&key)
                }
            };
            if keep {
                values.push(map.next_value_seed(ValueSeed)?);
                if in_columns {
                    keys_kept.push(i);
                }
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
            i += 1;
        }
        let layout = match (fresh, &decoder.last) {
            (None, Some(layout)) if layout.keys.len() == i => {
                decoder.last.as_ref().unwrap_or_else(|| unreachable!())
            }
            (None, _) => {
                let keys = expected[..i].to_vec();
                decoder.layout_for(keys)
            }
            (Some(keys), _) => {
                let mut seen = std::collections::HashSet::with_capacity(keys.len());
                if keys.iter().any(|k| !seen.insert(k.clone())) {
                    return Err(de::Error::custom("duplicate key in JSON object"));
                }
                decoder.layout_for(keys)
            }
        };
        if in_columns {
            let mut columns = vec![Value::Null; layout.schema.len()];
            for (value, key) in values.into_iter().zip(keys_kept) {
                if let Some(column) = columns.get_mut(layout.slots[key] as usize) {
                    *column = value;
                }
            }
            values = columns;
        }
        Ok(Row::new(
            Arc::clone(&layout.schema),
            values,
            self.timestamp_ms,
        ))
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
/// Fields whose value is `NULL` are left out, as eKuiper does. `order` is
/// [`sorted_order`] of the row's schema.
pub fn write_row(out: &mut Vec<u8>, row: &Row, order: &RowOrder) {
    out.push(b'{');
    let mut first = true;
    for (&i, key) in order.positions.iter().zip(&order.keys) {
        let value = row.at(i);
        if value.is_null() {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(key);
        write_value(out, value);
    }
    out.push(b'}');
}

/// A schema's fields in sorted key order, each with its key already written as JSON (`"name":`),
/// for [`write_row`]: a row's keys are encoded once per schema rather than once per row.
#[derive(Debug, Clone, Default)]
pub struct RowOrder {
    positions: Vec<usize>,
    keys: Vec<Box<[u8]>>,
}

/// The positions of a schema's fields in sorted key order and their encoded keys, for
/// [`write_row`].
pub fn sorted_order(schema: &Schema) -> RowOrder {
    let mut positions: Vec<usize> = (0..schema.len()).collect();
    positions.sort_by(|&a, &b| schema.names()[a].cmp(&schema.names()[b]));
    let keys = positions
        .iter()
        .map(|&i| {
            let mut key = Vec::new();
            write_str(&mut key, &schema.names()[i]);
            key.push(b':');
            key.into_boxed_slice()
        })
        .collect();
    RowOrder { positions, keys }
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
    if f.fract() == 0.0 && abs < 1e15 && (f != 0.0 || f.is_sign_positive()) {
        // A whole number (the common case of a reading or a sum): its digits, as Go writes it.
        out.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
        return;
    }
    if abs < 1e9 && write_short_decimal(out, f) {
        return;
    }
    if (1e-5..1e16).contains(&abs) {
        // ryu writes this range without an exponent, with the same shortest digits as Go.
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(f);
        out.extend_from_slice(text.strip_suffix(".0").unwrap_or(text).as_bytes());
        return;
    }
    write_float_slow(out, f, abs);
}

/// Decimal places [`write_short_decimal`] tries before leaving a float to ryu.
const SHORT_DECIMALS: usize = 6;

/// Powers of ten up to [`SHORT_DECIMALS`], each exact in an `f64`.
const POW10: [f64; SHORT_DECIMALS + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6];

/// Writes a float below 1e9 in magnitude that has at most [`SHORT_DECIMALS`] decimal places
/// in its shortest form (a reading like `30.1`, an average like `29.95`) without ryu; false,
/// writing nothing, for any other.
///
/// For `k` places it takes `m`, the integer nearest `f * 10^k`, and keeps `m / 10^k` if that
/// quotient is `f`: both are exact in an `f64` (`|m| < 2^53`), so the division is correctly
/// rounded and the text parses back to `f`. Why it is the text ryu (and Go) would write: with
/// `|f| * 10^k < 2^52`, numbers `k` places apart are farther apart than `f`'s rounding
/// interval is wide, so at most one `k`-place number parses to `f`; it lies within 0.12 of
/// `f * 10^k`, whose product is off by at most 0.07, so rounding finds it when it exists; and
/// trying `k` = 1, 2, … in turn finds the fewest digits first (no whole number parses to a
/// float with a fraction).
fn write_short_decimal(out: &mut Vec<u8>, f: f64) -> bool {
    for (k, &p) in POW10.iter().enumerate().skip(1) {
        let m = (f * p).round();
        if m == 0.0 || m / p != f {
            continue;
        }
        if f.is_sign_negative() {
            out.push(b'-');
        }
        let mut buf = itoa::Buffer::new();
        let digits = buf.format(m.abs() as u64).as_bytes();
        if digits.len() > k {
            let (whole, places) = digits.split_at(digits.len() - k);
            out.extend_from_slice(whole);
            out.push(b'.');
            out.extend_from_slice(places);
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', k - digits.len()));
            out.extend_from_slice(digits);
        }
        return true;
    }
    false
}

/// The rest of [`write_float`]: zero's sign, exponent form, and the ranges where ryu's form
/// differs from Go's.
fn write_float_slow(out: &mut Vec<u8>, f: f64, abs: f64) {
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

/// Appends a JSON string literal, escaped as Go's `json.Marshal` escapes it (what eKuiper's
/// sinks write): besides `"`, `\\` and control characters, `<`, `>` and `&` become `\u003c`,
/// `\u003e` and `\u0026`, and U+2028 and U+2029 become `\u2028` and `\u2029`.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    if plain_str(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
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
            b'<' => b"\\u003c",
            b'>' => b"\\u003e",
            b'&' => b"\\u0026",
            // U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR (E2 80 A8 and E2 80 A9).
            0xe2 if matches!(bytes.get(i + 1..i + 3), Some([0x80, 0xa8 | 0xa9])) => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(if bytes[i + 2] == 0xa8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                start = i;
                continue;
            }
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

/// Whether no byte of `bytes` needs escaping (most strings): read a word at a time, the last
/// word being the eight bytes that end the string, so that no byte is looked at on its own
/// unless the string is shorter than a word.
fn plain_str(bytes: &[u8]) -> bool {
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    if bytes.len() < 8 {
        return bytes
            .iter()
            .all(|&b| b >= 0x20 && !matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&' | 0xe2));
    }
    let last = &bytes[bytes.len() - 8..];
    bytes.chunks_exact(8).all(|c| !needs_escape(word(c))) && !needs_escape(word(last))
}

/// Whether any of the eight bytes in `word` is a control character, `"`, `\\`, `<`, `>`, `&`
/// or 0xE2 (the first byte of U+2028 and U+2029, and of other characters, which the byte-wise
/// loop then passes over).
const fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const fn has(word: u64, byte: u8) -> u64 {
        let x = word ^ (ONES * byte as u64);
        x.wrapping_sub(ONES) & !x & HIGH
    }
    (escape_mask(word) | has(word, b'<') | has(word, b'>') | has(word, b'&') | has(word, 0xe2)) != 0
}

/// Of the eight bytes in `word` (the first in the lowest byte), a mask whose lowest set bit is
/// the high bit of the first control character, `"` or `\\`; zero when there is none. (A
/// borrow can also mark a byte after the first such byte, never one before it.)
const fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const fn has_zero(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGH
    }
    // A byte below 0x20: subtracting 0x20 borrows into its high bit (bytes >= 0x80 excluded).
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    below_space | has_zero(word ^ (ONES * b'"' as u64)) | has_zero(word ^ (ONES * b'\\' as u64))
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
        assert_eq!(float(-0.0), "-0");
        assert_eq!(float(0.0), "0");
        assert_eq!(float(1e15), "1000000000000000");
        assert_eq!(float(123456789012345.6), "123456789012345.6");
        assert_eq!(float(0.00001), "0.00001");
        assert_eq!(float(0.0000099), "0.0000099");
        assert_eq!(float(1.5e16), "15000000000000000");
    }

    /// Go's formatting, the straightforward way: the fast paths must write the same text.
    fn reference(f: f64) -> String {
        let mut out = Vec::new();
        write_float_slow(&mut out, f, f.abs());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fast_float_paths_match_the_reference() {
        // Bit patterns spread over every exponent, plus whole numbers and short decimals.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let samples = [
                f64::from_bits(x),
                (x % 2_000_000) as f64 / 10.0 - 100_000.0,
                (x % 1_000_000_000) as f64,
                f64::from_bits(x) * 1e-300 * (i as f64),
                (x >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((i % 40) as i32 - 20),
                // Decimals with up to 8 places (the short path takes up to 6), and averages.
                ((x % 4_000_000_000) as f64 - 2e9) / 10f64.powi((i % 9) as i32),
                (x % 100_000) as f64 / ((x >> 20) % 19 + 1) as f64,
            ];
            for f in samples {
                if f.is_finite() {
                    assert_eq!(float(f), reference(f), "{f:e} ({:#x})", f.to_bits());
                }
            }
        }
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

    /// Laid out by declared columns, each column takes the field a lookup of its name finds
    /// (exactly, else ignoring case), on the fast path and the serde path alike, and a new
    /// layout of the message is followed.
    #[test]
    fn rows_laid_out_by_columns_hold_the_field_each_name_finds() {
        let columns = Arc::new(Schema::new(vec!["t".into(), "id".into(), "n".into()]));
        let mut d = RowDecoder::keeping(Keep::only(["t", "id"])).in_columns(Arc::clone(&columns));
        let messages: [(&str, [Value; 3]); 5] = [
            (
                r#"{"x":1,"ID":"a","t":2.5,"n":3}"#,
                [Value::Float(2.5), Value::from("a"), Value::Null],
            ),
            // The same layout: the fast path.
            (
                r#"{"x":2,"ID":"b","t":1,"n":4}"#,
                [Value::Int(1), Value::from("b"), Value::Null],
            ),
            // A nested value: the serde path.
            (
                r#"{"x":[1],"ID":"c","t":1,"n":4}"#,
                [Value::Int(1), Value::from("c"), Value::Null],
            ),
            // The exact name wins over another spelling, wherever it is.
            (
                r#"{"T":9,"id":"d","t":7}"#,
                [Value::Int(7), Value::from("d"), Value::Null],
            ),
            (
                r#"{"T":9,"id":"e","t":8}"#,
                [Value::Int(8), Value::from("e"), Value::Null],
            ),
        ];
        for (text, want) in messages {
            let row = d.decode(text.as_bytes(), 0).unwrap();
            assert!(Arc::ptr_eq(row.schema(), &columns), "{text}");
            assert_eq!(row.values(), &want, "{text}");
        }
        let row = d.decode(br#"{"T":9}"#, 0).unwrap();
        assert_eq!(row.values(), &[Value::Int(9), Value::Null, Value::Null]);
    }

    /// Columns filled in the message's order take its values as they come, in another order
    /// each goes to its place; a column no field fills is `NULL` either way.
    #[test]
    fn rows_laid_out_by_columns_in_and_out_of_the_message_order() {
        let columns = Arc::new(Schema::new(vec!["id".into(), "t".into()]));
        let mut d = RowDecoder::keeping(Keep::only(["id", "t"])).in_columns(Arc::clone(&columns));
        let messages: [(&str, [Value; 2]); 6] = [
            (
                r#"{"id":"a","x":1,"t":2.5}"#,
                [Value::from("a"), Value::Float(2.5)],
            ),
            (
                r#"{"id":"b","x":1,"t":3}"#,
                [Value::from("b"), Value::Int(3)],
            ),
            (r#"{"t":4,"id":"c"}"#, [Value::from("c"), Value::Int(4)]),
            (r#"{"t":5,"id":"d"}"#, [Value::from("d"), Value::Int(5)]),
            (r#"{"id":"e","x":1}"#, [Value::from("e"), Value::Null]),
            (r#"{"id":"f","x":2}"#, [Value::from("f"), Value::Null]),
        ];
        for (text, want) in messages {
            let row = d.decode(text.as_bytes(), 0).unwrap();
            assert!(Arc::ptr_eq(row.schema(), &columns), "{text}");
            assert_eq!(row.values(), &want, "{text}");
        }
    }

    /// With the columns' kinds, a row read on the fast path whose values are all of their
    /// columns' kinds is `fitted` (a whole number read for a float column is a float); any
    /// other row, and any row the serde path reads, is left as read for the caller to convert.
    #[test]
    fn rows_of_kinds_say_whether_they_fit() {
        let columns = Arc::new(Schema::new(vec!["t".into(), "n".into(), "s".into()]));
        let mut d = RowDecoder::keeping(Keep::only(["t", "n", "s"]))
            .in_columns(Arc::clone(&columns))
            .of_kinds([ColumnKind::Float, ColumnKind::Int, ColumnKind::String]);
        let messages: [(&str, [Value; 3], bool); 7] = [
            // A new layout: the serde path, which leaves converting to the caller.
            (
                r#"{"t":1,"n":2,"s":"a"}"#,
                [Value::Int(1), Value::Int(2), Value::from("a")],
                false,
            ),
            (
                r#"{"t":1,"n":2,"s":"a"}"#,
                [Value::Float(1.0), Value::Int(2), Value::from("a")],
                true,
            ),
            (
                r#"{"t":1.5,"n":null,"s":"b"}"#,
                [Value::Float(1.5), Value::Null, Value::from("b")],
                true,
            ),
            (
                r#"{"t":1.5,"n":2.0,"s":"b"}"#,
                [Value::Float(1.5), Value::Float(2.0), Value::from("b")],
                false,
            ),
            (
                r#"{"t":"1","n":2,"s":"b"}"#,
                [Value::from("1"), Value::Int(2), Value::from("b")],
                false,
            ),
            (
                r#"{"t":1,"n":2,"s":3}"#,
                [Value::Float(1.0), Value::Int(2), Value::Int(3)],
                false,
            ),
            (
                r#"{"t":true,"n":2,"s":"c"}"#,
                [Value::Bool(true), Value::Int(2), Value::from("c")],
                false,
            ),
        ];
        for (text, want, fitted) in messages {
            let row = d.decode(text.as_bytes(), 0).unwrap();
            assert_eq!(row.values(), &want, "{text}");
            assert_eq!(d.fitted(), fitted, "{text}");
        }
        assert!(
            ColumnKind::Time.holds(&Value::from("x")) && ColumnKind::Time.holds(&Value::Int(1))
        );
        assert!(!ColumnKind::Other.holds(&Value::array(vec![])));
    }

    #[test]
    fn skipped_fields_build_no_value_and_are_still_checked() {
        let mut d = RowDecoder::keeping(Keep::only(["a", "C"]));
        let a = d
            .decode(br#"{"a":1,"b":{"x":[1,2,"s"]},"c":"x"}"#, 0)
            .unwrap();
        let b = d.decode(br#"{"a":2,"b":null,"c":"y"}"#, 0).unwrap();
        assert_eq!(a.schema().names(), [Arc::from("a"), Arc::from("c")]);
        assert!(Arc::ptr_eq(a.schema(), b.schema()));
        assert_eq!(b.get("c"), Some(&Value::from("y")));
        assert_eq!(b.get("b"), None);
        // A shorter row, a reordered one, one with only skipped fields.
        let c = d.decode(br#"{"a":3,"b":1}"#, 0).unwrap();
        assert_eq!(c.schema().names(), [Arc::from("a")]);
        let e = d.decode(br#"{"c":"z","b":1,"a":4}"#, 0).unwrap();
        assert_eq!(e.get("a"), Some(&Value::Int(4)));
        assert!(d.decode(br#"{"b":1}"#, 0).unwrap().is_empty());
        // Skipped values must still be JSON, and duplicate keys are refused, skipped or not.
        assert!(d.decode(br#"{"a":1,"b":[1,}"#, 0).is_err());
        assert!(d.decode(br#"{"a":1,"b":1,"b":2}"#, 0).is_err());
        assert!(d.decode(br#"{"a":1,"b":1,"c":"x","b":2}"#, 0).is_err());
    }

    #[test]
    fn text_that_is_not_utf8_is_read_as_the_serde_path_reads_it() {
        let (skipped_bad, kept_bad) = (
            b"{\"a\":\"x\",\"b\":\"\xff\"}".as_slice(),
            b"{\"a\":\"\xff\",\"b\":\"y\"}".as_slice(),
        );
        // The serde path (no layout seen yet), then the fast path (same layout as before).
        for warm in [false, true] {
            let mut d = RowDecoder::keeping(Keep::only(["a"]));
            if warm {
                d.decode(br#"{"a":"w","b":"y"}"#, 0).unwrap();
            }
            let row = d.decode(skipped_bad, 0).unwrap();
            assert_eq!(row.get("a"), Some(&Value::from("x")), "warm: {warm}");
            assert!(d.decode(kept_bad, 0).is_err(), "warm: {warm}");
        }
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

    /// A string as Go's `json.Marshal` writes it: serde_json's escapes (the same for control
    /// characters, `"` and `\\`), plus Go's escapes of `<`, `>`, `&`, U+2028 and U+2029.
    fn go_json(s: &str) -> String {
        serde_json::to_string(s)
            .unwrap()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    }

    #[test]
    fn strings_escape_html_characters_and_line_separators_as_go_does() {
        // Go 1.22+: `json.Marshal("<a href=\"x\">&amp;</a>\u2028\u2029\u2027—")`.
        let mut out = Vec::new();
        write_str(&mut out, "<a href=\"x\">&amp;</a>\u{2028}\u{2029}\u{2027}—");
        // U+2027 (E2 80 A7) and the dash (E2 80 94) share the separators' first byte but stay.
        let expected = r#""\u003ca href=\"x\"\u003e\u0026amp;\u003c/a\u003e\u2028\u2029"#
            .to_string()
            + "\u{2027}—\"";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
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
        // One character to escape at each position of plain strings of each length: the words
        // checked at once (the last overlapping the one before) must all see it.
        for len in 1..=20 {
            for at in 0..len {
                for special in [
                    '"', '\\', '\n', '\u{1f}', '<', '>', '&', '\u{2028}', '\u{2029}',
                ] {
                    let s: String = (0..len)
                        .map(|i| if i == at { special } else { 'x' })
                        .collect();
                    let mut out = Vec::new();
                    write_str(&mut out, &s);
                    assert_eq!(String::from_utf8(out).unwrap(), go_json(&s), "{s:?}");
                }
            }
        }
    }
}
