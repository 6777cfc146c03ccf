//! An action's cache of undelivered batches (eKuiper's `enableCache`): a FIFO whose newest part
//! is in memory (`memoryCacheThreshold` messages) and whose older part is in an embedded
//! database on disk (`maxDiskCache` messages, written `bufferPageSize` messages at a time), so it
//! survives a crash or a restart of `oort` and is resent, in order, by the next run.
//!
//! Every batch on disk is older than every batch in memory: when memory is over its threshold,
//! its oldest batches move to the tail of the disk part. Resending reads from the head (disk
//! first). A batch leaves the cache only once it was delivered (or dead-lettered), so a crash
//! mid-resend sends it again rather than losing it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::batch::Batch;
use crate::host::bindings::WitBatch;

/// Cached batches by sequence number, encoded with [`encode`].
const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");

/// The cache settings of an action (eKuiper's names in the comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// `memoryCacheThreshold`: messages kept in memory before older ones go to disk.
    pub memory_threshold: u64,
    /// `maxDiskCache`: messages the disk part may hold; when memory and disk are full, the
    /// action stops taking new messages (back-pressure) until resending makes room.
    pub max_disk: u64,
    /// `bufferPageSize`: messages moved to disk at a time.
    pub page_size: u64,
    /// `resendInterval`: pause between two resends, in milliseconds.
    pub resend_interval_ms: u64,
    /// `cleanCacheAtStop`: drop what is still cached when the rule stops (counted as failed).
    pub clean_at_stop: bool,
    /// `resendAlterQueue`: new messages go straight to the sink while the cache is resent
    /// beside them (otherwise they queue behind the cache, keeping the order).
    pub alter_queue: bool,
    /// `resendPriority` (with `resendAlterQueue`): 1 resends before new messages, -1 only when
    /// no new message waits, 0 alternates.
    pub priority: i8,
    /// `resendIndicatorField`: set to `true` in resent JSON payloads.
    pub indicator_field: Option<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_threshold: 1024,
            max_disk: 1_024_000,
            page_size: 256,
            resend_interval_ms: 0,
            clean_at_stop: false,
            alter_queue: false,
            priority: 0,
            indicator_field: None,
        }
    }
}

/// The disk cache could not be used. Names the file.
#[derive(Debug, thiserror::Error)]
#[error("the action's disk cache {path}: {reason}")]
pub struct CacheError {
    /// The database file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// One action's cache.
pub struct ActionCache {
    config: CacheConfig,
    path: PathBuf,
    db: std::sync::Arc<Database>,
    /// Sequence numbers on disk: `head..tail`.
    head: u64,
    tail: u64,
    disk_messages: u64,
    /// Messages of each batch on disk, oldest first (to count without reading them back).
    disk_sizes: VecDeque<u64>,
    memory: VecDeque<Batch>,
    memory_messages: u64,
}

impl std::fmt::Debug for ActionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionCache")
            .field("path", &self.path)
            .field("disk_messages", &self.disk_messages)
            .field("memory_messages", &self.memory_messages)
            .finish_non_exhaustive()
    }
}

impl ActionCache {
    /// Opens (or creates) the cache file at `path`; what a previous run left in it is kept and
    /// comes out first.
    pub fn open(path: &Path, config: CacheConfig) -> Result<Self, CacheError> {
        let fail = |reason: String| CacheError {
            path: path.to_owned(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        }
        let db = Database::create(path).map_err(|e| fail(e.to_string()))?;
        let mut head = 1u64 << 40;
        let mut tail = head;
        let mut disk_sizes = VecDeque::new();
        {
            let txn = db.begin_write().map_err(|e| fail(e.to_string()))?;
            txn.open_table(BATCHES).map_err(|e| fail(e.to_string()))?;
            txn.commit().map_err(|e| fail(e.to_string()))?;
        }
        {
            let txn = db.begin_read().map_err(|e| fail(e.to_string()))?;
            let table = txn.open_table(BATCHES).map_err(|e| fail(e.to_string()))?;
            let mut first = true;
            for entry in table.iter().map_err(|e| fail(e.to_string()))? {
                let (key, value) = entry.map_err(|e| fail(e.to_string()))?;
                let messages = decode(value.value())
                    .map(|b| b.len() as u64)
                    .ok_or_else(|| fail(format!("batch {} is damaged", key.value())))?;
                if first {
                    head = key.value();
                    first = false;
                }
                tail = key.value() + 1;
                disk_sizes.push_back(messages);
            }
            if table.len().map_err(|e| fail(e.to_string()))? != disk_sizes.len() as u64 {
                return Err(fail("the batch count does not add up".into()));
            }
        }
        let disk_messages = disk_sizes.iter().sum();
        Ok(Self {
            config,
            path: path.to_owned(),
            db: std::sync::Arc::new(db),
            head,
            tail,
            disk_messages,
            disk_sizes,
            memory: VecDeque::new(),
            memory_messages: 0,
        })
    }

    /// Where the action's batch numbering is kept between runs (in the same database).
    pub fn sequence_store(&self) -> super::sequence::SequenceStore {
        super::sequence::SequenceStore::new(std::sync::Arc::clone(&self.db))
    }

    /// The settings.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Messages cached (memory and disk).
    pub fn len(&self) -> u64 {
        self.disk_messages + self.memory_messages
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages on disk.
    pub fn disk_len(&self) -> u64 {
        self.disk_messages
    }

    /// True while another batch fits without going over both limits.
    pub fn has_room(&self) -> bool {
        self.memory_messages < self.config.memory_threshold.max(1)
            || self.disk_messages < self.config.max_disk
    }

    fn err(&self, e: impl std::fmt::Display) -> CacheError {
        CacheError {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Adds a batch at the tail. When memory goes over its threshold, its oldest batches move
    /// to disk, a page at a time. Always accepts the batch (check [`Self::has_room`] first to
    /// apply back-pressure).
    pub fn push(&mut self, batch: Batch) -> Result<(), CacheError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.memory_messages += batch.len() as u64;
        self.memory.push_back(batch);
        if self.memory_messages > self.config.memory_threshold {
            let target = self
                .memory_messages
                .saturating_sub(self.config.memory_threshold)
                .max(self.config.page_size.min(self.memory_messages));
            self.spill(target)?;
        }
        Ok(())
    }

    /// Moves at least `messages` messages (whole batches, oldest first) from memory to disk, in
    /// one durable transaction.
    fn spill(&mut self, messages: u64) -> Result<(), CacheError> {
        let mut moved = Vec::new();
        let mut count = 0;
        while count < messages {
            let Some(batch) = self.memory.pop_front() else {
                break;
            };
            count += batch.len() as u64;
            moved.push(batch);
        }
        if moved.is_empty() {
            return Ok(());
        }
        let result = (|| -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(BATCHES)?;
                for (i, batch) in moved.iter().enumerate() {
                    table.insert(self.tail + i as u64, encode(batch).as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                for batch in &moved {
                    self.disk_sizes.push_back(batch.len() as u64);
                    self.tail += 1;
                }
                self.disk_messages += count;
                self.memory_messages -= count;
                Ok(())
            }
            Err(e) => {
                // Put them back where they were: nothing is lost, memory just stays fuller.
                for batch in moved.into_iter().rev() {
                    self.memory.push_front(batch);
                }
                Err(self.err(e))
            }
        }
    }

    /// The oldest cached batch, without removing it.
    pub fn front(&self) -> Result<Option<Batch>, CacheError> {
        if self.head < self.tail {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let table = txn.open_table(BATCHES).map_err(|e| self.err(e))?;
            let value = table
                .get(self.head)
                .map_err(|e| self.err(e))?
                .ok_or_else(|| self.err(format!("batch {} is missing", self.head)))?;
            return decode(value.value())
                .map(Some)
                .ok_or_else(|| self.err(format!("batch {} is damaged", self.head)));
        }
        Ok(self.memory.front().cloned())
    }

    /// Removes the oldest cached batch (after it was delivered or dead-lettered).
    pub fn pop_front(&mut self) -> Result<(), CacheError> {
        if self.head < self.tail {
            let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
            // A removal need not reach the disk at once: after a crash the batch is only sent
            // again (at least once), never lost. The next durable commit persists it.
            txn.set_durability(redb::Durability::None)
                .map_err(|e| self.err(e))?;
            {
                let mut table = txn.open_table(BATCHES).map_err(|e| self.err(e))?;
                table.remove(self.head).map_err(|e| self.err(e))?;
            }
            txn.commit().map_err(|e| self.err(e))?;
            self.head += 1;
            self.disk_messages -= self.disk_sizes.pop_front().unwrap_or(0);
            if self.head == self.tail {
                // Empty: start the numbering again so keys never run out.
                self.head = 1 << 40;
                self.tail = self.head;
            }
        } else if let Some(batch) = self.memory.pop_front() {
            self.memory_messages -= batch.len() as u64;
        }
        Ok(())
    }

    /// Writes what is in memory to disk (at a stop), whatever `maxDiskCache` says: stopping
    /// must not lose what the limit would have kept out.
    pub fn persist(&mut self) -> Result<(), CacheError> {
        let all = self.memory_messages;
        self.spill(all)
    }

    /// Drops everything (`cleanCacheAtStop`); returns the messages dropped.
    pub fn clear(&mut self) -> Result<u64, CacheError> {
        let dropped = self.len();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        txn.delete_table(BATCHES).map_err(|e| self.err(e))?;
        txn.open_table(BATCHES).map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))?;
        self.head = 1 << 40;
        self.tail = self.head;
        self.disk_messages = 0;
        self.disk_sizes.clear();
        self.memory.clear();
        self.memory_messages = 0;
        Ok(dropped)
    }
}

/// Marks the encoding that starts with the batch's sequence and dynamic values (where the
/// first encoding started with the message count, which is never this).
const WITH_SEQUENCE: u32 = u32::MAX;

/// A batch as bytes (little-endian): [`WITH_SEQUENCE`], the sequence, the dynamic values
/// (count; each: name, value count, values; every string as length then bytes), then the
/// first encoding: count, ends, timestamps, header, payloads.
fn encode(batch: &Batch) -> Vec<u8> {
    let batch = batch.as_wit();
    let header = batch.header.as_deref().unwrap_or("");
    let mut out =
        Vec::with_capacity(25 + batch.ends.len() * 12 + header.len() + batch.payloads.len());
    out.extend_from_slice(&WITH_SEQUENCE.to_le_bytes());
    out.extend_from_slice(&batch.sequence.to_le_bytes());
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    out.extend_from_slice(&(batch.dynamic.len() as u32).to_le_bytes());
    for prop in &batch.dynamic {
        string(&mut out, &prop.name);
        out.extend_from_slice(&(prop.values.len() as u32).to_le_bytes());
        for value in &prop.values {
            string(&mut out, value);
        }
    }
    out.extend_from_slice(&(batch.ends.len() as u32).to_le_bytes());
    for end in &batch.ends {
        out.extend_from_slice(&end.to_le_bytes());
    }
    for ts in &batch.timestamps {
        out.extend_from_slice(&ts.to_le_bytes());
    }
    out.push(u8::from(batch.header.is_some()));
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&batch.payloads);
    out
}

/// The batch [`encode`] (or the first encoding, without sequence) wrote; `None` if the bytes
/// are not one.
fn decode(bytes: &[u8]) -> Option<Batch> {
    let mut at = 0usize;
    let mut take = |n: usize| {
        let slice = bytes.get(at..at + n)?;
        at += n;
        Some(slice)
    };
    let u32_of = |b: &[u8]| -> Option<u32> { Some(u32::from_le_bytes(b.try_into().ok()?)) };
    let mut count = u32_of(take(4)?)?;
    let mut sequence = 0;
    let mut dynamic = Vec::new();
    if count == WITH_SEQUENCE {
        sequence = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let props = u32_of(take(4)?)?;
        for _ in 0..props {
            let len = u32_of(take(4)?)? as usize;
            let name = String::from_utf8(take(len)?.to_vec()).ok()?;
            let n = u32_of(take(4)?)?;
            let mut values = Vec::with_capacity(n.min(1 << 16) as usize);
            for _ in 0..n {
                let len = u32_of(take(4)?)? as usize;
                values.push(String::from_utf8(take(len)?.to_vec()).ok()?);
            }
            dynamic.push(crate::host::bindings::WitDynamicProp { name, values });
        }
        count = u32_of(take(4)?)?;
    }
    let count = count as usize;
    let mut ends = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        ends.push(u32_of(take(4)?)?);
    }
    let mut timestamps = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        timestamps.push(i64::from_le_bytes(take(8)?.try_into().ok()?));
    }
    let has_header = take(1)?[0] == 1;
    let header_len = u32_of(take(4)?)? as usize;
    let header = String::from_utf8(take(header_len)?.to_vec()).ok()?;
    let payloads = bytes.get(at..)?.to_vec();
    Batch::from_wit(WitBatch {
        payloads,
        ends,
        timestamps,
        header: has_header.then_some(header),
        sequence,
        dynamic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(from: u32, n: u32) -> Batch {
        let mut b = Batch::new();
        for i in from..from + n {
            b.push(format!("{{\"n\":{i}}}").as_bytes(), i64::from(i));
        }
        b
    }

    fn numbers(b: &Batch) -> Vec<i64> {
        b.timestamps().to_vec()
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("oort-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("a.redb")
    }

    #[test]
    fn batches_round_trip_through_bytes() {
        let same = |a: &Batch, b: &Batch| {
            let (a, b) = (a.as_wit(), b.as_wit());
            (&a.payloads, &a.ends, &a.timestamps, &a.header, a.sequence)
                == (&b.payloads, &b.ends, &b.timestamps, &b.header, b.sequence)
                && a.dynamic.len() == b.dynamic.len()
                && a.dynamic
                    .iter()
                    .zip(&b.dynamic)
                    .all(|(x, y)| x.name == y.name && x.values == y.values)
        };
        let mut b = batch(0, 3);
        b.set_header(Some("a,b".into()));
        b.set_sequence(77);
        b.set_dynamic(vec![crate::host::bindings::WitDynamicProp {
            name: "path".into(),
            values: vec!["a.csv".into(), "b.csv".into(), "a.csv".into()],
        }]);
        assert!(same(&decode(&encode(&b)).unwrap(), &b));
        // What an earlier version cached (no sequence, no dynamic values) still reads back.
        let old = &encode(&b)[4 + 8..];
        let skip = {
            let mut at = 4;
            let len = u32::from_le_bytes(old[at..at + 4].try_into().unwrap()) as usize;
            at += 4 + len + 4;
            for _ in 0..3 {
                let len = u32::from_le_bytes(old[at..at + 4].try_into().unwrap()) as usize;
                at += 4 + len;
            }
            at
        };
        let read = decode(&old[skip..]).unwrap();
        assert_eq!((read.sequence(), read.len()), (0, 3));
        assert!(same(
            &decode(&encode(&Batch::new())).unwrap(),
            &Batch::new()
        ));
        assert!(decode(b"\x01\0\0").is_none());
    }

    #[test]
    fn order_is_kept_across_memory_and_disk_and_a_reopen() {
        let path = temp("order");
        let config = CacheConfig {
            memory_threshold: 4,
            page_size: 2,
            ..CacheConfig::default()
        };
        let mut cache = ActionCache::open(&path, config.clone()).unwrap();
        for i in 0..5 {
            cache.push(batch(i * 2, 2)).unwrap();
        }
        assert_eq!(cache.len(), 10);
        assert!(cache.disk_len() >= 6, "{cache:?}");
        // Take two out, then "crash" with the rest in memory and on disk, persisting at stop.
        let mut seen = Vec::new();
        for _ in 0..2 {
            seen.extend(numbers(&cache.front().unwrap().unwrap()));
            cache.pop_front().unwrap();
        }
        cache.persist().unwrap();
        drop(cache);
        let mut cache = ActionCache::open(&path, config).unwrap();
        assert_eq!(cache.len(), 6);
        while let Some(b) = cache.front().unwrap() {
            seen.extend(numbers(&b));
            cache.pop_front().unwrap();
        }
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert!(cache.is_empty());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn room_runs_out_when_memory_and_disk_are_full() {
        let path = temp("room");
        let config = CacheConfig {
            memory_threshold: 2,
            max_disk: 2,
            page_size: 1,
            ..CacheConfig::default()
        };
        let mut cache = ActionCache::open(&path, config).unwrap();
        assert!(cache.has_room());
        for i in 0..4 {
            cache.push(batch(i, 1)).unwrap();
        }
        assert!(!cache.has_room());
        assert_eq!(cache.clear().unwrap(), 4);
        assert!(cache.is_empty() && cache.has_room());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
