//! A scope that adds to another what the statement computes beside its rows: the values of
//! `WHERE`'s aggregates (over the window, or the row alone) and the number `row_number()` gives.

use std::sync::Arc;

use crate::expr::{Column, Scope};
use crate::value::Value;

/// `inner`, with `WHERE`'s aggregate values (read by slot in `Query::where_aggregates`)
/// and the row's number in its result, where the statement has them.
pub(crate) struct Extra<'a, S: ?Sized> {
    /// The row, joined tuple or group.
    pub inner: &'a S,
    /// The values of `WHERE`'s aggregates, if `WHERE` is evaluated.
    pub aggregates: Option<&'a [Value]>,
    /// The number `row_number()` gives, if numbered.
    pub number: Option<i64>,
}

impl<'a, S: Scope + ?Sized> Extra<'a, S> {
    /// `inner` read by `WHERE`, whose aggregates are `aggregates`.
    pub(crate) fn filtered(inner: &'a S, aggregates: &'a [Value]) -> Self {
        Self {
            inner,
            aggregates: Some(aggregates),
            number: None,
        }
    }

    /// `inner`, numbered `number` in its result.
    pub(crate) fn numbered(inner: &'a S, number: i64) -> Self {
        Self {
            inner,
            aggregates: None,
            number: Some(number),
        }
    }
}

impl<S: Scope + ?Sized> Scope for Extra<'_, S> {
    fn column(&self, col: &Column) -> Option<&Value> {
        self.inner.column(col)
    }

    fn timestamp_ms(&self) -> i64 {
        self.inner.timestamp_ms()
    }

    fn aggregate(&self, slot: usize) -> Option<&Value> {
        match self.aggregates {
            Some(values) => values.get(slot),
            None => self.inner.aggregate(slot),
        }
    }

    fn window(&self) -> Option<(i64, i64)> {
        self.inner.window()
    }

    fn event_time_ms(&self) -> i64 {
        self.inner.event_time_ms()
    }

    fn fields(&self, stream: Option<usize>, visit: &mut dyn FnMut(&Arc<str>, &Value)) {
        self.inner.fields(stream, visit);
    }

    fn meta(&self) -> Option<&Value> {
        self.inner.meta()
    }

    fn source_meta(&self, source: usize) -> Option<&Value> {
        self.inner.source_meta(source)
    }

    fn row_number(&self) -> Option<i64> {
        self.number.or_else(|| self.inner.row_number())
    }
}
