//! Replaying recorded input in its recorded processing time (`oort run-rule --replay-time
//! FIELD`): each rule runs on a manual clock that its rows move, so processing-time windows,
//! timers and `now()`-like functions see the times the rows were recorded at, and the run's
//! messages are the same on every run.
//!
//! The rows of a rule's streams are merged into one order by their recorded time (equal times:
//! in `FROM` order), and each is handed to the statement after the clock has moved to its
//! time, firing on the way every window due before it. A row whose time is earlier than the
//! clock (the recording went back) comes at the clock's time: the clock never goes back, as a
//! live run's would not. A row without a usable time becomes an error naming the stream, the
//! row and the field, counted as the rule's exception (and sent with `sendError`) in its place.
//! A file table's rows are replayed the same way, each joining the table at its time; a table
//! row without the field is there from the start.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::source::Chunk;
use crate::value::{Row, Value};

/// What `--replay-time` asks for.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The field holding each row's recorded time, in milliseconds since the Unix epoch.
    pub field: Arc<str>,
    /// How far the clock runs on past the last row at the end of the input (firing what falls
    /// due meanwhile).
    pub after: Duration,
}

/// One thing the merge hands on, in order.
#[derive(Debug)]
pub(crate) enum Step {
    /// A row of source `index`, stamped with the time it counts at.
    Row {
        /// The source.
        index: usize,
        /// The row; its `timestamp_ms` is its recorded time.
        row: Row,
    },
    /// A message that gave no row (counted by its source already), or a row without a usable
    /// time (`replay: true`: not counted yet).
    Error {
        /// What went wrong, naming the stream and the row.
        message: String,
        /// Whether the replay found it (the row has no usable time).
        replay: bool,
    },
    /// Source `index` has ended, and everything it sent has been handed on.
    End(usize),
    /// A row that table source `index` takes now, keeping its latest `retain` rows.
    TableRow {
        /// The table.
        index: usize,
        /// The row.
        row: Row,
        /// How many of its latest rows the table keeps.
        retain: usize,
    },
}

enum Item {
    Row(Row),
    /// A message that gave no row: its source has counted it.
    DecodeError(String),
    /// A row without a usable time.
    NoTime(String),
}

/// One stream (or replayed table) of the rule.
struct Input {
    name: Arc<str>,
    /// Of a table: how many of its latest rows it keeps.
    table: Option<usize>,
    queue: VecDeque<Item>,
    /// Sends rows still (its end has not come).
    live: bool,
    /// Its end came, and has not been handed on yet.
    ending: bool,
    /// Rows taken so far, to name a row in an error.
    rows: u64,
}

/// A rule's streams, merged into the order of their recorded time.
pub(crate) struct ReplayMerge {
    field: Arc<str>,
    /// By source index; `None` for the rule's tables.
    inputs: Vec<Option<Input>>,
    /// Rows recorded earlier than the clock when they came (handed on at the clock's time).
    pub(crate) behind: u64,
}

impl ReplayMerge {
    /// A merge of the sources `streams` (by source index: the name and, for a table, how many
    /// rows it keeps; `None` for a source it does not replay), reading each row's time from
    /// `field`.
    pub(crate) fn new(field: Arc<str>, streams: Vec<Option<(Arc<str>, Option<usize>)>>) -> Self {
        Self {
            field,
            inputs: streams
                .into_iter()
                .map(|source| {
                    source.map(|(name, table)| Input {
                        name,
                        table,
                        queue: VecDeque::new(),
                        live: true,
                        ending: false,
                        rows: 0,
                    })
                })
                .collect(),
            behind: 0,
        }
    }

    /// Takes a chunk of source `index`, keeping its decode errors in their places.
    pub(crate) fn add(&mut self, index: usize, chunk: Chunk) {
        let field = Arc::clone(&self.field);
        let Some(Some(input)) = self.inputs.get_mut(index) else {
            return;
        };
        let mut errors = chunk.errors.into_iter().peekable();
        for (at, mut row) in Arc::try_unwrap(chunk.rows)
            .unwrap_or_else(|shared| (*shared).clone())
            .into_iter()
            .enumerate()
        {
            while let Some((_, message)) = errors.next_if(|(i, _)| *i <= at) {
                input.queue.push_back(Item::DecodeError(message));
            }
            input.rows += 1;
            match recorded_time(&row, &field) {
                // A table row without a time is there from the start.
                Err(_) if input.table.is_some() && row.get(&field).is_none_or(Value::is_null) => {
                    row.timestamp_ms = i64::MIN;
                    input.queue.push_back(Item::Row(row));
                }
                Ok(ms) => {
                    row.timestamp_ms = ms;
                    input.queue.push_back(Item::Row(row));
                }
                Err(why) => input.queue.push_back(Item::NoTime(format!(
                    "replay time: row {} of stream `{}`: {why}",
                    input.rows, input.name
                ))),
            }
        }
        for (_, message) in errors {
            input.queue.push_back(Item::DecodeError(message));
        }
    }

    /// Whether source `index` is a table the merge replays.
    pub(crate) fn is_table(&self, index: usize) -> bool {
        self.inputs
            .get(index)
            .and_then(Option::as_ref)
            .is_some_and(|input| input.table.is_some())
    }

    /// Source `index` has ended.
    pub(crate) fn end(&mut self, index: usize) {
        if let Some(Some(input)) = self.inputs.get_mut(index) {
            input.live = false;
            input.ending = true;
        }
    }

    /// The next step, once it is known: `None` while a stream that may still send a row has
    /// none waiting (its next row could be the earliest).
    pub(crate) fn next(&mut self) -> Option<Step> {
        // An end has no time either: a stream that ended has nothing more to wait for.
        if let Some(index) = self.inputs.iter().position(|x| {
            x.as_ref()
                .is_some_and(|input| input.ending && input.queue.is_empty())
        }) {
            let Some(Some(input)) = self.inputs.get_mut(index) else {
                return None;
            };
            input.ending = false;
            // A table keeps what it holds.
            if input.table.is_none() {
                return Some(Step::End(index));
            }
            return self.next();
        }
        let streams = self.inputs.iter().flatten();
        if streams
            .clone()
            .any(|input| input.live && input.queue.is_empty())
        {
            return None;
        }
        // An error has no time: it goes on as soon as it is at the head of its stream.
        let mut error_at = None;
        let mut earliest: Option<(i64, usize)> = None;
        for (index, input) in self.inputs.iter().enumerate() {
            match input.as_ref().and_then(|input| input.queue.front()) {
                Some(Item::DecodeError(_) | Item::NoTime(_)) => {
                    error_at = Some(index);
                    break;
                }
                Some(Item::Row(row)) if earliest.is_none_or(|(t, _)| row.timestamp_ms < t) => {
                    earliest = Some((row.timestamp_ms, index));
                }
                _ => {}
            }
        }
        if let Some(index) = error_at.or(earliest.map(|(_, index)| index)) {
            let input = self.inputs.get_mut(index)?.as_mut()?;
            return match input.queue.pop_front()? {
                Item::DecodeError(message) => Some(Step::Error {
                    message,
                    replay: false,
                }),
                Item::NoTime(message) => Some(Step::Error {
                    message,
                    replay: true,
                }),
                Item::Row(row) => Some(match input.table {
                    Some(retain) => Step::TableRow { index, row, retain },
                    None => Step::Row { index, row },
                }),
            };
        }
        None
    }
}

/// The recorded time of `row`: its `field` as milliseconds since the Unix epoch (a whole
/// number, a float, or text holding a whole number).
fn recorded_time(row: &Row, field: &str) -> Result<i64, String> {
    match row.get(field) {
        Some(Value::Int(ms)) => Ok(*ms),
        Some(Value::Float(ms)) if ms.is_finite() => Ok(*ms as i64),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("field `{field}` is not epoch milliseconds: {s:?}")),
        None | Some(Value::Null) => Err(format!("the row has no field `{field}`")),
        Some(other) => Err(format!(
            "field `{field}` is a {}, not epoch milliseconds",
            other.type_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{ReplayMerge, Step};
    use crate::source::Chunk;
    use crate::value::{Row, Value};

    fn row(ts: Value, n: i64) -> Row {
        Row::from_pairs(
            vec![(Arc::from("ts"), ts), (Arc::from("n"), Value::Int(n))],
            0,
        )
    }

    fn chunk(rows: Vec<Row>) -> Chunk {
        Chunk::of_rows(rows)
    }

    fn drain(merge: &mut ReplayMerge) -> Vec<String> {
        std::iter::from_fn(|| merge.next())
            .map(|step| match step {
                Step::Row { index, row } => format!("{index}@{}", row.timestamp_ms),
                Step::Error { message, replay } => format!("{message} ({replay})"),
                Step::End(index) => format!("end {index}"),
                Step::TableRow { index, row, .. } => format!("table {index}@{}", row.timestamp_ms),
            })
            .collect()
    }

    #[test]
    fn streams_merge_by_recorded_time_and_wait_for_each_other() {
        let mut merge = ReplayMerge::new(
            Arc::from("ts"),
            vec![
                Some((Arc::from("a"), None)),
                None,
                Some((Arc::from("b"), None)),
            ],
        );
        merge.add(
            0,
            chunk(vec![row(Value::Int(10), 1), row(Value::Int(30), 2)]),
        );
        // `b` has sent nothing yet: its first row could come first.
        assert!(drain(&mut merge).is_empty());
        merge.add(
            2,
            chunk(vec![row(Value::Int(10), 3), row(Value::string("20"), 4)]),
        );
        // Equal times go in FROM order; then `b` has nothing left, so `a`'s 30 waits.
        assert_eq!(drain(&mut merge), ["0@10", "2@10", "2@20"]);
        merge.end(2);
        assert_eq!(drain(&mut merge), ["end 2", "0@30"]);
        merge.end(0);
        assert_eq!(drain(&mut merge), ["end 0"]);
    }

    #[test]
    fn a_row_without_a_time_is_an_error_naming_the_stream_the_row_and_the_field() {
        let mut merge = ReplayMerge::new(Arc::from("ts"), vec![Some((Arc::from("demo"), None))]);
        let mut chunk = chunk(vec![
            row(Value::Int(5), 1),
            row(Value::Null, 2),
            row(Value::Bool(true), 3),
        ]);
        chunk.errors.push((1, "demo.jsonl:2: invalid JSON".into()));
        merge.add(0, chunk);
        merge.end(0);
        assert_eq!(
            drain(&mut merge),
            [
                "0@5",
                "demo.jsonl:2: invalid JSON (false)",
                "replay time: row 2 of stream `demo`: the row has no field `ts` (true)",
                "replay time: row 3 of stream `demo`: field `ts` is a boolean, not epoch milliseconds (true)",
                "end 0"
            ]
        );
    }

    #[test]
    fn a_table_s_rows_join_it_at_their_time_and_those_without_one_at_the_start() {
        let mut merge = ReplayMerge::new(
            Arc::from("ts"),
            vec![
                Some((Arc::from("s"), None)),
                Some((Arc::from("t"), Some(3))),
            ],
        );
        merge.add(
            0,
            chunk(vec![row(Value::Int(10), 1), row(Value::Int(30), 2)]),
        );
        merge.add(1, chunk(vec![row(Value::Null, 3), row(Value::Int(20), 4)]));
        merge.end(1);
        merge.end(0);
        // The table's end is not handed on: it keeps what it holds.
        assert_eq!(
            drain(&mut merge),
            [
                format!("table 1@{}", i64::MIN),
                "0@10".into(),
                "table 1@20".into(),
                "0@30".into(),
                "end 0".into()
            ]
        );
    }
}
