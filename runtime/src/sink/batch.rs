//! The host's batch of encoded messages: the WIT `batch` record (payloads packed back to back,
//! their end offsets and timestamps) behind a type that keeps its offsets consistent, so the
//! pipeline builds and walks batches without touching offsets, and hands the record to a wasm
//! sink by reference, without copying.

use crate::host::bindings::{WitBatch, WitDynamicProp};

/// A batch of encoded messages, in order, with an optional header (`delimited` format).
///
/// Built with [`Batch::push`]; read with [`Batch::iter`]; lent to a wasm sink as the WIT record
/// with [`Batch::as_wit`].
#[derive(Debug, Clone)]
pub struct Batch {
    wit: WitBatch,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self {
            wit: WitBatch {
                payloads: Vec::new(),
                ends: Vec::new(),
                timestamps: Vec::new(),
                header: None,
                sequence: 0,
                dynamic: Vec::new(),
            },
        }
    }

    /// A batch from the WIT record, if its offsets are consistent: as many ends, timestamps (and
    /// values of each templated prop) as messages, ends in order, the last one at the end of the payloads.
    pub fn from_wit(wit: WitBatch) -> Option<Self> {
        let consistent = wit.ends.len() == wit.timestamps.len()
            && wit.dynamic.iter().all(|p| p.values.len() == wit.ends.len())
            && wit.ends.windows(2).all(|w| w[0] <= w[1])
            && wit.ends.last().map_or(0, |&end| end as usize) == wit.payloads.len();
        consistent.then_some(Self { wit })
    }

    /// The WIT record, lent as it is (what a wasm sink's `collect` takes).
    pub fn as_wit(&self) -> &WitBatch {
        &self.wit
    }

    /// The WIT record, given up.
    pub fn into_wit(self) -> WitBatch {
        self.wit
    }

    /// Adds one payload at the end.
    pub fn push(&mut self, payload: &[u8], timestamp_ms: i64) {
        self.wit.payloads.extend_from_slice(payload);
        self.wit.ends.push(self.wit.payloads.len() as u32);
        self.wit.timestamps.push(timestamp_ms);
    }

    /// Empties the batch (and its header), keeping its buffers.
    pub fn clear(&mut self) {
        self.wit.payloads.clear();
        self.wit.ends.clear();
        self.wit.timestamps.clear();
        self.wit.header = None;
        self.wit.sequence = 0;
        self.wit.dynamic.clear();
    }

    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.wit.ends.len()
    }

    /// True when the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.wit.ends.is_empty()
    }

    /// Bytes of all payloads together.
    pub fn payload_bytes(&self) -> usize {
        self.wit.payloads.len()
    }

    /// Each message's payload and timestamp (ms), in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            batch: &self.wit,
            start: 0,
            index: 0,
        }
    }

    /// Each message's payload, in order.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.iter().map(|(payload, _)| payload)
    }

    /// The timestamps (ms) of the messages, in order.
    pub fn timestamps(&self) -> &[i64] {
        &self.wit.timestamps
    }

    /// The header line (`delimited` format).
    pub fn header(&self) -> Option<&str> {
        self.wit.header.as_deref()
    }

    /// Sets the header line.
    pub fn set_header(&mut self, header: Option<String>) {
        self.wit.header = header;
    }

    /// The batch's sequence number (0 until the action numbers it).
    pub fn sequence(&self) -> u64 {
        self.wit.sequence
    }

    /// Numbers the batch.
    pub fn set_sequence(&mut self, sequence: u64) {
        self.wit.sequence = sequence;
    }

    /// The values of the action's templated props, one entry per prop, one value per message.
    pub fn dynamic(&self) -> &[WitDynamicProp] {
        &self.wit.dynamic
    }

    /// Sets the values of the templated props (one value per message for each).
    pub fn set_dynamic(&mut self, dynamic: Vec<WitDynamicProp>) {
        self.wit.dynamic = dynamic;
    }

    /// Takes the values of the templated props out.
    pub fn take_dynamic(&mut self) -> Vec<WitDynamicProp> {
        std::mem::take(&mut self.wit.dynamic)
    }

    /// The value of templated prop `name` for each message, if the action has it.
    pub fn dynamic_values(&self, name: &str) -> Option<&[String]> {
        self.wit
            .dynamic
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.values.as_slice())
    }

    /// Takes the header line out.
    pub fn take_header(&mut self) -> Option<String> {
        self.wit.header.take()
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = (&'a [u8], i64);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The messages of a [`Batch`]: payload and timestamp (ms), in order.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    batch: &'a WitBatch,
    start: usize,
    index: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], i64);

    fn next(&mut self) -> Option<Self::Item> {
        let end = *self.batch.ends.get(self.index)? as usize;
        let ts = self.batch.timestamps[self.index];
        let payload = &self.batch.payloads[self.start..end];
        self.start = end;
        self.index += 1;
        Some((payload, ts))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.ends.len() - self.index;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_payloads_come_back_in_order() {
        let mut b = Batch::new();
        assert!(b.is_empty() && b.iter().next().is_none());
        b.push(b"one", 1);
        b.push(b"", 2);
        b.push(b"three", 3);
        assert_eq!(b.len(), 3);
        assert_eq!(b.payload_bytes(), 8);
        let all: Vec<_> = b.iter().collect();
        assert_eq!(all, [(&b"one"[..], 1), (&b""[..], 2), (&b"three"[..], 3)]);
        assert_eq!(b.payloads().len(), 3);
        assert_eq!(b.timestamps(), [1, 2, 3]);
        assert_eq!(b.as_wit().ends, [3, 3, 8]);
    }

    #[test]
    fn clear_keeps_nothing_but_the_buffers() {
        let mut b = Batch::new();
        b.push(b"abc", 1);
        b.set_header(Some("a,b".into()));
        b.clear();
        assert!(b.is_empty() && b.header().is_none() && b.payload_bytes() == 0);
        b.push(b"x", 2);
        assert_eq!(b.iter().collect::<Vec<_>>(), [(&b"x"[..], 2)]);
    }

    #[test]
    fn only_consistent_records_become_batches() {
        let record = |payloads: &[u8], ends: Vec<u32>, timestamps: Vec<i64>| WitBatch {
            payloads: payloads.to_vec(),
            ends,
            timestamps,
            header: None,
            sequence: 0,
            dynamic: Vec::new(),
        };
        let good = Batch::from_wit(record(b"abcd", vec![1, 4], vec![7, 8])).unwrap();
        assert_eq!(good.payloads().collect::<Vec<_>>(), [&b"a"[..], b"bcd"]);
        assert!(Batch::from_wit(record(b"", vec![], vec![])).is_some());
        assert!(Batch::from_wit(record(b"abcd", vec![1, 3], vec![7, 8])).is_none());
        assert!(Batch::from_wit(record(b"abcd", vec![3, 1, 4], vec![7, 8, 9])).is_none());
        assert!(Batch::from_wit(record(b"abcd", vec![4], vec![7, 8])).is_none());
    }
}
