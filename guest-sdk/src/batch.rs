//! The batch of messages a sink receives, unpacked into plain slices.

use crate::SinkError;

/// The messages of one `collect` call, in order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    payloads: Vec<u8>,
    ends: Vec<u32>,
    timestamps: Vec<i64>,
    header: Option<String>,
    sequence: u64,
    dynamic: Vec<(String, Vec<String>)>,
}

impl Batch {
    /// A batch from packed parts (see the WIT `batch` record). Checks that the offsets fit.
    pub fn from_parts(
        payloads: Vec<u8>,
        ends: Vec<u32>,
        timestamps: Vec<i64>,
        header: Option<String>,
    ) -> Result<Self, SinkError> {
        let mut start = 0usize;
        for &end in &ends {
            let end = end as usize;
            if end < start || end > payloads.len() {
                return Err(SinkError::rejected("malformed batch: offsets out of order"));
            }
            start = end;
        }
        if timestamps.len() != ends.len() {
            return Err(SinkError::rejected(
                "malformed batch: one timestamp per message",
            ));
        }
        Ok(Self {
            payloads,
            ends,
            timestamps,
            header,
            sequence: 0,
            dynamic: Vec::new(),
        })
    }

    /// Sets the batch's sequence number and the values of the action's templated props (one
    /// value per message for each; a prop with another count is refused).
    pub fn with_sequence(
        mut self,
        sequence: u64,
        dynamic: Vec<(String, Vec<String>)>,
    ) -> Result<Self, SinkError> {
        if let Some((name, values)) = dynamic.iter().find(|(_, v)| v.len() != self.len()) {
            return Err(SinkError::rejected(format!(
                "malformed batch: {} values of `{name}` for {} messages",
                values.len(),
                self.len()
            )));
        }
        self.sequence = sequence;
        self.dynamic = dynamic;
        Ok(self)
    }

    /// The batch's sequence number, per action: it grows from batch to batch, and a batch
    /// delivered again keeps it. A sink that remembers the last one it wrote skips a batch
    /// whose number is not above it (see [`Sink::open_after`](crate::Sink::open_after)).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The value of templated prop `name` (e.g. `path` holding `{{.device}}.csv`) for each
    /// message, evaluated by the host; `None` if the prop holds no template.
    pub fn dynamic(&self, name: &str) -> Option<&[String]> {
        self.dynamic
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// A batch of these payloads, all with the same timestamp (handy in tests).
    pub fn from_payloads<'a>(
        payloads: impl IntoIterator<Item = &'a [u8]>,
        timestamp_ms: i64,
    ) -> Self {
        let mut batch = Self::default();
        for payload in payloads {
            batch.payloads.extend_from_slice(payload);
            batch.ends.push(batch.payloads.len() as u32);
            batch.timestamps.push(timestamp_ms);
        }
        batch
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Message `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<Message<'_>> {
        let end = *self.ends.get(index)? as usize;
        let start = if index == 0 {
            0
        } else {
            self.ends[index - 1] as usize
        };
        Some(Message {
            payload: &self.payloads[start..end],
            timestamp_ms: self.timestamps[index],
        })
    }

    /// The messages, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            batch: self,
            next: 0,
        }
    }

    /// For the `delimited` format: the header line naming the columns, joined by the delimiter.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// All payloads back to back, as one slice (handy for sinks that write them out as is).
    pub fn payloads(&self) -> &[u8] {
        &self.payloads
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = Message<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over a [`Batch`]'s messages.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    batch: &'a Batch,
    next: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        let message = self.batch.get(self.next)?;
        self.next += 1;
        Some(message)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// One message: its encoded payload and when it was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The payload, encoded per the action's `format` (JSON by default).
    pub payload: &'a [u8],
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl<'a> Message<'a> {
    /// The payload as text; a payload that is not UTF-8 is [`SinkError::Rejected`].
    pub fn as_str(&self) -> Result<&'a str, SinkError> {
        std::str::from_utf8(self.payload)
            .map_err(|e| SinkError::rejected(format!("payload is not UTF-8: {e}")))
    }

    /// The payload parsed as JSON into `T`; a mismatch is [`SinkError::Rejected`].
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, SinkError> {
        serde_json::from_slice(self.payload)
            .map_err(|e| SinkError::rejected(format!("payload is not the expected JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_packed_messages() {
        let batch = Batch::from_payloads([&b"a"[..], b"", b"ccc"], 7);
        let texts: Vec<_> = batch.iter().map(|m| m.as_str().unwrap()).collect();
        assert_eq!(texts, ["a", "", "ccc"]);
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.get(2).unwrap().timestamp_ms, 7);
        assert!(batch.get(3).is_none());
    }

    #[test]
    fn rejects_bad_offsets() {
        assert!(Batch::from_parts(b"abc".to_vec(), vec![2, 1], vec![0, 0], None).is_err());
        assert!(Batch::from_parts(b"abc".to_vec(), vec![4], vec![0], None).is_err());
        assert!(Batch::from_parts(b"abc".to_vec(), vec![3], vec![], None).is_err());
    }
}
