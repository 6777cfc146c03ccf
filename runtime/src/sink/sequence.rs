//! An action's batch sequence numbers (`oort:sink@0.2.0`): each batch the action hands out gets
//! the next number, a batch delivered again keeps its own, and the highest number acknowledged
//! by the sink is tracked so a fresh instance can be told it at `open` (sinks skip what they
//! wrote before a crash or a trap by comparing numbers).
//!
//! With a disk cache, the numbering survives restarts: the numbers are reserved in blocks of
//! [`RESERVE`] in the cache's database before they are handed out, so a crash never lets the
//! next run hand out a number twice (it starts past the last reserved block, skipping the rest
//! of it), and the highest acknowledged number is saved with each reservation and at the end of
//! the run. Without a cache every run numbers afresh from 1.
//!
//! Under `qos: 2` a restart from a checkpoint pins the numbering instead ([`Sequencer::pin`]):
//! it continues at the number the checkpoint recorded, below the reserved block, because the
//! rows after the checkpoint are read again and cut into the same batches, which must get the
//! same numbers for the sinks to recognise them.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::{Database, ReadableDatabase, TableDefinition};

/// Numbers reserved on disk at a time.
pub const RESERVE: u64 = 1024;

/// The numbering's state in the cache database: `next` (first number not yet reserved) and
/// `delivered`.
const SEQUENCE: TableDefinition<&str, u64> = TableDefinition::new("sequence");

/// Where an action's numbering is kept between runs: its cache's database.
#[derive(Clone)]
pub struct SequenceStore {
    db: Arc<Database>,
}

impl std::fmt::Debug for SequenceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SequenceStore")
    }
}

impl SequenceStore {
    /// The store in `db`.
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    /// What an earlier run saved: the first number it had not reserved, and the highest one
    /// acknowledged; `None` when nothing was saved yet.
    pub fn load(&self) -> Result<Option<(u64, u64)>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = match txn.open_table(SEQUENCE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let get = |key: &str| -> Result<Option<u64>, String> {
            Ok(table
                .get(key)
                .map_err(|e| e.to_string())?
                .map(|v| v.value()))
        };
        Ok(match (get("next")?, get("delivered")?) {
            (Some(next), delivered) => Some((next, delivered.unwrap_or(0))),
            (None, _) => None,
        })
    }

    /// Saves the first number not reserved and the highest acknowledged one.
    pub fn save(&self, next: u64, delivered: u64) -> Result<(), String> {
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = txn.open_table(SEQUENCE).map_err(|e| e.to_string())?;
            table.insert("next", next).map_err(|e| e.to_string())?;
            table
                .insert("delivered", delivered)
                .map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())
    }
}

/// One action's numbering, shared by its batcher, its delivery and its sink instances.
#[derive(Debug)]
pub struct Sequencer {
    /// The next number to hand out.
    next: AtomicU64,
    /// The highest number acknowledged (0: none).
    delivered: AtomicU64,
    /// Whether the numbering continues an earlier run's.
    continued: AtomicBool,
    /// Whether the numbering is pinned to the rows by a checkpoint (`qos: 2`).
    pinned: AtomicBool,
    /// Where numbers are reserved, and the first number past the reserved block.
    store: Option<(SequenceStore, Mutex<u64>)>,
}

impl Default for Sequencer {
    fn default() -> Self {
        Self::fresh()
    }
}

impl Sequencer {
    /// A numbering from 1 that is not kept between runs.
    pub fn fresh() -> Self {
        Self {
            next: AtomicU64::new(1),
            delivered: AtomicU64::new(0),
            continued: AtomicBool::new(false),
            pinned: AtomicBool::new(false),
            store: None,
        }
    }

    /// The numbering kept in `store`: continues an earlier run's if it saved one.
    pub fn kept(store: SequenceStore) -> Result<Self, String> {
        let (next, delivered, continued) = match store.load()? {
            Some((next, delivered)) => (next.max(1), delivered, true),
            None => (1, 0, false),
        };
        Ok(Self {
            next: AtomicU64::new(next),
            delivered: AtomicU64::new(delivered),
            continued: AtomicBool::new(continued),
            pinned: AtomicBool::new(false),
            store: Some((store, Mutex::new(next))),
        })
    }

    /// Hands out the next number (reserving a block on disk first when the reserved one is
    /// used up; if that write fails the number is still given, and the failure logged).
    pub fn issue(&self) -> u64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some((store, reserved)) = &self.store {
            let mut reserved = reserved.lock().unwrap_or_else(|e| e.into_inner());
            if n >= *reserved {
                let upto = n + RESERVE;
                match store.save(upto, self.delivered()) {
                    Ok(()) => *reserved = upto,
                    Err(e) => tracing::error!(
                        "cannot reserve batch sequence numbers in the action's cache: {e}"
                    ),
                }
            }
        }
        n
    }

    /// Continues the numbering at `next` (a checkpoint's, under `qos: 2`), whatever an earlier
    /// run reserved past it: the batches from `next` on are cut again from the same rows. Called
    /// before any number is handed out.
    pub fn pin(&self, next: u64, delivered: u64) {
        self.next.store(next.max(1), Ordering::Relaxed);
        self.delivered.fetch_max(delivered, Ordering::Relaxed);
        self.continued.store(true, Ordering::Relaxed);
        self.pinned.store(true, Ordering::Relaxed);
    }

    /// Whether the numbering is pinned to the rows (`qos: 2`): then only the batcher hands out
    /// numbers, so that they follow the rows.
    pub fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Relaxed)
    }

    /// Pins the numbering where it is (`qos: 2` from the start, without a checkpoint yet).
    pub fn pin_here(&self) {
        self.pinned.store(true, Ordering::Relaxed);
    }

    /// The number the next batch gets.
    pub fn next(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Records that the batch numbered `sequence` was acknowledged.
    pub fn acknowledge(&self, sequence: u64) {
        self.delivered.fetch_max(sequence, Ordering::Relaxed);
    }

    /// The highest number acknowledged (0: none).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// What `open` tells an instance: `None` while the numbering is fresh (no number handed
    /// out yet, none from an earlier run), else the highest number acknowledged.
    pub fn for_open(&self) -> Option<u64> {
        let issued = self.next.load(Ordering::Relaxed) > 1;
        (self.continued.load(Ordering::Relaxed) || issued).then(|| self.delivered())
    }

    /// Saves the highest acknowledged number (at the end of a run).
    pub fn save(&self) -> Result<(), String> {
        match &self.store {
            Some((store, reserved)) => {
                let reserved = *reserved.lock().unwrap_or_else(|e| e.into_inner());
                let next = self.next.load(Ordering::Relaxed).max(reserved);
                store.save(next, self.delivered())
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_numbering_says_none_until_it_hands_out_a_number() {
        let seq = Sequencer::fresh();
        assert_eq!(seq.for_open(), None);
        assert_eq!(seq.issue(), 1);
        assert_eq!(seq.issue(), 2);
        assert_eq!(seq.for_open(), Some(0));
        seq.acknowledge(2);
        seq.acknowledge(1);
        assert_eq!(seq.for_open(), Some(2));
    }

    #[test]
    fn a_kept_numbering_never_hands_out_a_number_twice_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("c.redb")).unwrap());
        let first = Sequencer::kept(SequenceStore::new(Arc::clone(&db))).unwrap();
        assert_eq!(first.for_open(), None);
        for n in 1..=5 {
            assert_eq!(first.issue(), n);
        }
        first.acknowledge(4);
        // A crash: nothing saved but the reservation.
        drop(first);
        let second = Sequencer::kept(SequenceStore::new(Arc::clone(&db))).unwrap();
        assert_eq!(second.for_open(), Some(0), "continues an earlier numbering");
        assert!(second.issue() > 5);
        second.acknowledge(second.next.load(Ordering::Relaxed) - 1);
        second.save().unwrap();
        let delivered = second.delivered();
        let third = Sequencer::kept(SequenceStore::new(db)).unwrap();
        assert_eq!(third.for_open(), Some(delivered));
        assert!(third.issue() > delivered);
    }

    #[test]
    fn a_pinned_numbering_hands_out_the_checkpoint_s_numbers_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("c.redb")).unwrap());
        let first = Sequencer::kept(SequenceStore::new(Arc::clone(&db))).unwrap();
        for n in 1..=5 {
            assert_eq!(first.issue(), n);
        }
        first.acknowledge(5);
        // A checkpoint recorded 3 as the next number; the run crashed after handing out 5.
        drop(first);
        let second = Sequencer::kept(SequenceStore::new(Arc::clone(&db))).unwrap();
        second.pin(3, 2);
        assert!(second.is_pinned());
        assert_eq!(second.for_open(), Some(2));
        assert_eq!((second.issue(), second.issue(), second.next()), (3, 4, 5));
        // The reservation still covers what is handed out: a later run starts past it.
        second.save().unwrap();
        let third = Sequencer::kept(SequenceStore::new(db)).unwrap();
        assert!(third.issue() > 5);
        let fresh = Sequencer::fresh();
        fresh.pin(9, 0);
        assert_eq!((fresh.for_open(), fresh.issue()), (Some(0), 9));
    }
}
