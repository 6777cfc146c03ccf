//! The record of where an action cut its batches under `qos: 2`, so that a restart from a
//! checkpoint cuts the rows it reads again into the same batches with the same numbers.
//!
//! Under `qos: 2` a sink skips a batch whose sequence number is not above the one it last wrote
//! (see [`super::sequence`]), so a batch delivered again after a crash must hold exactly the
//! payloads it held the first time. Cuts made without a batch size (whatever was waiting when
//! the sink was free) or by `lingerInterval` depend on timing, so each cut is *recorded* before
//! its batch can reach the sink: its sequence number and its size in payloads, one row of the
//! `batch_cuts` table of the rule's checkpoint database. A restart from a checkpoint *replays*
//! the recorded cuts from the checkpoint's next number on: each such batch is cut at exactly its
//! recorded size, waiting for as many payloads as that takes, never by time; after the last
//! recorded one the action cuts freely again (and records again).
//!
//! With `batchSize` alone a cut by count repeats by itself (the payloads after a checkpoint come
//! again in the same order, and the checkpoint holds the batch being filled,
//! [`crate::checkpoint::ActionCheckpoint::pending`]), so it is not recorded. What a restart must
//! know is how far an earlier run may have gone: a batch it cuts short of that (at the end of
//! the run) could clash with a full one the sink has under the same number. So the action
//! records its *reach*, the highest number it may hand on, [`REACH_AHEAD`] numbers at a time
//! (`batch_reach`), and a cut not by count (the partial batch at the end of the run) is
//! recorded as above. Up to an earlier run's reach a restart cuts by count or as recorded only,
//! and a stop keeps an incomplete batch with the checkpoint for the next run.
//!
//! The records live with the checkpoints (`checkpoints.redb`) rather than in an action's own
//! cache database because the checkpoint is what holds the numbering under `qos: 2` (its next
//! sequence number): the transaction that writes a checkpoint also drops the cuts it covers
//! (numbers below its next one), so the two never disagree, and an action without a cache needs
//! no database of its own.
//!
//! Each record must be durable before its batch is handed on, and a commit waits for the disk.
//! Records are therefore committed in groups on a blocking thread: while one group commits,
//! the records asked for meanwhile (by any action of the run) wait and go in the next
//! transaction together, so records become durable in the order they were asked for. An
//! action cuts its next batch when its last record is durable, so left to themselves the
//! actions of a run fall out of step: one's record commits while another's waits, then the
//! other way round, and nearly every commit holds one record. So before it takes the next
//! group, the committer waits for the actions whose records the last commit made durable to
//! answer (queue their next record, or [`CutLog::pass`] when they have none to cut), at most
//! as long as that commit took ([`MAX_GATHER`] at most): a second commit would cost that much.
//! The actions' records then share each commit (see [`CutStore::commits`]), and so do the
//! rules' checkpoints, written in the same database ([`CutStore::write_blocking`]). Each
//! transaction commits with redb's [`redb::Durability::Immediate`] (its default), the level
//! redb documents as persistent once `commit` returns: one `fsync` of the file after the pages
//! and the header (with its checksums) are written, so the record survives a `kill -9` and a
//! power loss alike (as far as the disk honours `fsync`). `Durability::None` would not do: such
//! a commit is not persisted unless an `Immediate` one follows, so neither a kill nor a power
//! loss would keep it.
//!
//! An action does not wait for its records ([`CutLog::start_record`]): the batcher keeps
//! cutting and filling batches while they commit and hands each to the sink once its record is
//! durable, in order (see [`super::batching`]), so a record's commit overlaps the sink's work
//! on the batch before it, and the rows that arrive while a record commits join the next
//! batch. The slower the disk, the larger the batches: the cost per row falls as the load
//! rises.
//!
//! A crash between a record and the sink's write replays the record: the sink gets the batch
//! it never wrote. A crash between the sink's write and its acknowledgement replays it too: the
//! sink skips the batch by its number. Payloads taken out of a batch after the cut (values of a
//! templated prop outside the action's grants, dead-lettered on their own) are taken out again
//! by the replay, since the record counts the payloads cut, before any is taken out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, Table, TableDefinition};
use tokio::sync::oneshot;

/// Recorded cuts: (rule, action, sequence number) → payloads in the batch.
const CUTS: TableDefinition<(&str, &str, u64), u64> = TableDefinition::new("batch_cuts");

/// With `batchSize` alone: (rule, action) → the highest number the action may have handed on
/// by count (reserved ahead, see [`REACH_AHEAD`]).
const REACH: TableDefinition<(&str, &str), u64> = TableDefinition::new("batch_reach");

/// Numbers reserved at a time as the reach of batches cut by count.
pub const REACH_AHEAD: u64 = 1024;

/// The longest the committer waits for the actions of the last commit to answer before it
/// commits what waits without them (it waits no longer than that commit took).
pub const MAX_GATHER: Duration = Duration::from_millis(10);

/// The cuts of one database (the checkpoint store's), committed in groups.
pub struct CutStore {
    db: Arc<Database>,
    queue: Mutex<Queue>,
    /// Signalled when an action the committer waits for answers.
    answered: Condvar,
    /// Transactions committed, and the records they held.
    commits: AtomicU64,
    records: AtomicU64,
    /// Tests hold this to keep commits from starting (a record "committing" for as long as
    /// they like).
    #[cfg(test)]
    gate: std::sync::RwLock<()>,
}

impl std::fmt::Debug for CutStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CutStore")
    }
}

/// An action, by rule and name.
type ActionKey = (Arc<str>, Arc<str>);

/// Records waiting for the next commit.
#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// A commit (and the loop that commits what waits behind it) is running.
    committing: bool,
    /// The actions whose records the last commit made durable and that have not answered
    /// since (queued a record or passed): the next commit waits for them, within bounds.
    owed: Vec<ActionKey>,
    /// How long the last commit took: the longest the next one waits for `owed`.
    last_commit: Duration,
    /// Tests set how long the committer waits for `owed` (a loaded machine may take longer
    /// than a commit to wake an action).
    #[cfg(test)]
    gather: Option<Duration>,
    /// Tests read what each commit held: (action, sequence number) per record.
    #[cfg(test)]
    groups: Vec<Vec<(String, u64)>>,
}

impl Queue {
    /// `action` answered: the committer no longer waits for it.
    fn answered(&mut self, rule: &str, action: &str) -> bool {
        let before = self.owed.len();
        self.owed.retain(|(r, a)| !(&**r == rule && &**a == action));
        self.owed.len() != before
    }
}

/// One record waiting to be committed, and who waits for it.
struct Waiting {
    rule: Arc<str>,
    action: Arc<str>,
    record: Record,
    done: Done,
}

/// Who learns the outcome of a commit: a task, or a thread blocked on it.
enum Done {
    Task(oneshot::Sender<Result<(), String>>),
    Thread(std::sync::mpsc::SyncSender<Result<(), String>>),
}

impl Done {
    fn send(self, outcome: Result<(), String>) {
        match self {
            Done::Task(tx) => {
                let _ = tx.send(outcome);
            }
            Done::Thread(tx) => {
                let _ = tx.send(outcome);
            }
        }
    }
}

/// What is recorded.
enum Record {
    /// Batch `sequence` was cut at `size` payloads.
    Cut { sequence: u64, size: u64 },
    /// Batches up to this number may be handed on, cut by count.
    Reach(u64),
    /// Another write to the same database (a rule's checkpoint), made in the group's
    /// transaction; taken when it is made.
    Write(Option<WriteJob>),
}

/// A write made in a group commit's transaction.
pub(crate) type WriteJob =
    Box<dyn FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send>;

impl CutStore {
    /// The cuts kept in `db`.
    pub fn new(db: Arc<Database>) -> Self {
        Self {
            db,
            queue: Mutex::default(),
            answered: Condvar::new(),
            commits: AtomicU64::new(0),
            records: AtomicU64::new(0),
            #[cfg(test)]
            gate: std::sync::RwLock::default(),
        }
    }

    /// Action `action` of rule `rule`'s cuts.
    pub fn log(self: &Arc<Self>, rule: &str, action: &str) -> CutLog {
        CutLog {
            store: Arc::clone(self),
            rule: Arc::from(rule),
            action: Arc::from(action),
        }
    }

    /// Transactions committed so far, and the records they held.
    pub fn commits(&self) -> (u64, u64) {
        (
            self.commits.load(Ordering::Relaxed),
            self.records.load(Ordering::Relaxed),
        )
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits what waits, one transaction per group, until nothing waits (on a blocking
    /// thread). Before it takes a group, it waits for the actions of the last commit to answer,
    /// so that their next records go in the same transaction.
    fn commit_waiting(&self) {
        let mut queue = self.queue();
        loop {
            if queue.waiting.is_empty() {
                queue.committing = false;
                return;
            }
            queue = self.gather(queue);
            let mut group = std::mem::take(&mut queue.waiting);
            queue.owed.clear();
            #[cfg(test)]
            queue.groups.push(
                group
                    .iter()
                    .map(|w| match w.record {
                        Record::Cut { sequence, .. } => (w.action.to_string(), sequence),
                        Record::Reach(upto) => (w.action.to_string(), upto),
                        Record::Write(_) => (String::new(), 0),
                    })
                    .collect(),
            );
            drop(queue);
            let started = Instant::now();
            let result = self.write(&mut group).map_err(|e| e.to_string());
            let elapsed = started.elapsed();
            self.commits.fetch_add(1, Ordering::Relaxed);
            self.records
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            tracing::debug!(
                records = group.len(),
                elapsed_us = elapsed.as_micros() as u64,
                "batch cuts committed"
            );
            queue = self.queue();
            queue.last_commit = elapsed;
            // Owed before they learn their records are durable: an answer is never missed.
            // One whose next record already waits has answered; a checkpoint owes nothing.
            for w in group
                .iter()
                .filter(|w| !matches!(w.record, Record::Write(_)))
            {
                let key = (Arc::clone(&w.rule), Arc::clone(&w.action));
                let queued = queue
                    .waiting
                    .iter()
                    .any(|q| q.rule == key.0 && q.action == key.1);
                if !queued && !queue.owed.contains(&key) {
                    queue.owed.push(key);
                }
            }
            drop(queue);
            for waiting in group {
                waiting.done.send(result.clone());
            }
            queue = self.queue();
        }
    }

    /// Waits until every action owed an answer has answered, or as long as the last commit
    /// took (at most [`MAX_GATHER`]).
    fn gather<'a>(
        &self,
        mut queue: std::sync::MutexGuard<'a, Queue>,
    ) -> std::sync::MutexGuard<'a, Queue> {
        let bound = queue.last_commit.min(MAX_GATHER);
        #[cfg(test)]
        let bound = queue.gather.unwrap_or(bound);
        let deadline = Instant::now() + bound;
        while !queue.owed.is_empty() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            if left.is_zero() {
                break;
            }
            queue = match self.answered.wait_timeout(queue, left) {
                Ok((queue, _)) => queue,
                Err(e) => e.into_inner().0,
            };
        }
        queue
    }

    /// Tests: how long the committer waits for the actions of the last commit.
    #[cfg(test)]
    pub(crate) fn gather_for(&self, bound: Duration) {
        self.queue().gather = Some(bound);
    }

    /// Tests: what each commit held, (action, sequence number) per record.
    #[cfg(test)]
    pub(crate) fn groups(&self) -> Vec<Vec<(String, u64)>> {
        self.queue().groups.clone()
    }

    fn write(&self, group: &mut [Waiting]) -> Result<(), redb::Error> {
        #[cfg(test)]
        let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let txn = self.db.begin_write()?;
        {
            let mut cuts = txn.open_table(CUTS)?;
            let mut reach = txn.open_table(REACH)?;
            for w in group.iter() {
                match w.record {
                    Record::Cut { sequence, size } => {
                        cuts.insert((&*w.rule, &*w.action, sequence), size)?;
                    }
                    Record::Reach(upto) => {
                        reach.insert((&*w.rule, &*w.action), upto)?;
                    }
                    Record::Write(_) => {}
                }
            }
        }
        for w in group.iter_mut() {
            if let Record::Write(job) = &mut w.record
                && let Some(job) = job.take()
            {
                job(&txn)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Makes `job`'s write (a checkpoint of rule `rule`) in the next group commit, beside the
    /// records waiting, and returns once it is durable. Blocks: called on a blocking thread
    /// (outside a tokio runtime, it commits the group itself when no commit is running).
    pub(crate) fn write_blocking(
        self: &Arc<Self>,
        rule: &str,
        job: WriteJob,
    ) -> Result<(), String> {
        let (done, committed) = std::sync::mpsc::sync_channel(1);
        let lead = {
            let mut queue = self.queue();
            queue.waiting.push(Waiting {
                rule: Arc::from(rule),
                action: Arc::from(""),
                record: Record::Write(Some(job)),
                done: Done::Thread(done),
            });
            !std::mem::replace(&mut queue.committing, true)
        };
        if lead {
            match tokio::runtime::Handle::try_current() {
                // The committer's loop goes on while records come: not on the caller's thread.
                Ok(runtime) => {
                    let store = Arc::clone(self);
                    runtime.spawn_blocking(move || store.commit_waiting());
                }
                Err(_) => self.commit_waiting(),
            }
        }
        committed
            .recv()
            .map_err(|_| "the group commit stopped".to_string())
            .and_then(|result| result)
    }
}

/// Drops, in a checkpoint's transaction, the cuts of `action` of `rule` it covers: those
/// numbered below `next`.
pub(crate) fn drop_covered(
    txn: &redb::WriteTransaction,
    rule: &str,
    action: &str,
    next: u64,
) -> Result<(), redb::Error> {
    let mut table = txn.open_table(CUTS)?;
    table
        .retain_in::<(&str, &str, u64), _>((rule, action, 0)..(rule, action, next), |_, _| false)?;
    Ok(())
}

/// Drops every cut of `rule` (its checkpoint is forgotten).
pub(crate) fn forget_rule(txn: &redb::WriteTransaction, rule: &str) -> Result<(), redb::Error> {
    let mut table: Table<(&str, &str, u64), u64> = txn.open_table(CUTS)?;
    table.retain(|(r, _, _), _| r != rule)?;
    let mut reach: Table<(&str, &str), u64> = txn.open_table(REACH)?;
    reach.retain(|(r, _), _| r != rule)?;
    Ok(())
}

/// What a resumed action replays.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The recorded cuts from the checkpoint's next number on: number → payloads.
    pub cuts: BTreeMap<u64, u64>,
    /// The highest number an earlier run may have handed on cut by count (`batchSize` alone;
    /// 0: none).
    pub reach: u64,
}

/// One action's recorded cuts.
#[derive(Clone)]
pub struct CutLog {
    store: Arc<CutStore>,
    rule: Arc<str>,
    action: Arc<str>,
}

impl std::fmt::Debug for CutLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CutLog({}/{})", self.rule, self.action)
    }
}

impl CutLog {
    /// What to replay when the action resumes from a checkpoint whose next number is `from`
    /// (`None` when it starts without one that numbered its batches): the recorded cuts from
    /// `from` on (sequence number → payloads), and the highest number an earlier run may have
    /// handed on cut by count (0: none). Records that cannot apply (below `from`, or all of
    /// them without a checkpoint) are dropped.
    pub fn resume(&self, from: Option<u64>) -> Result<Replay, String> {
        let (rule, action) = (&*self.rule, &*self.action);
        let from = from.unwrap_or(u64::MAX);
        let db = &self.store.db;
        let (stale, kept, reach) = {
            let txn = db.begin_read().map_err(|e| e.to_string())?;
            let reach = match txn.open_table(REACH) {
                Ok(table) => table
                    .get((rule, action))
                    .map_err(|e| e.to_string())?
                    .map(|v| v.value())
                    .unwrap_or(0),
                Err(redb::TableError::TableDoesNotExist(_)) => 0,
                Err(e) => return Err(e.to_string()),
            };
            let reach = if from == u64::MAX { 0 } else { reach };
            let table = match txn.open_table(CUTS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => {
                    return Ok(Replay {
                        cuts: BTreeMap::new(),
                        reach,
                    });
                }
                Err(e) => return Err(e.to_string()),
            };
            let mut stale = false;
            let mut kept = BTreeMap::new();
            for entry in table
                .range::<(&str, &str, u64)>((rule, action, 0)..=(rule, action, u64::MAX))
                .map_err(|e| e.to_string())?
            {
                let (key, size) = entry.map_err(|e| e.to_string())?;
                let sequence = key.value().2;
                if sequence < from {
                    stale = true;
                } else {
                    kept.insert(sequence, size.value());
                }
            }
            (stale, kept, reach)
        };
        if stale {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            drop_covered(&txn, rule, action, from).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())?;
        }
        Ok(Replay { cuts: kept, reach })
    }

    /// Keeps commits of the store's records from starting until the guard is dropped.
    #[cfg(test)]
    pub(crate) fn hold_commits(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.store.gate.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The store the cuts are committed to.
    #[cfg(test)]
    pub(crate) fn store(&self) -> &Arc<CutStore> {
        &self.store
    }

    /// Records that batch `sequence` was cut at `size` payloads; durable when this returns.
    pub async fn record(&self, sequence: u64, size: u64) -> Result<(), String> {
        self.start_record(sequence, size).await
    }

    /// Queues the record that batch `sequence` was cut at `size` payloads for the next group
    /// commit and returns at once: the record is durable when the returned [`Durable`]
    /// resolves. Records queued one after the other become durable in that order (a group
    /// commit takes every record queued before it began), so when one is durable, so is every
    /// record queued before it.
    pub fn start_record(&self, sequence: u64, size: u64) -> Durable {
        self.start(Record::Cut { sequence, size })
    }

    /// Records that batches up to `upto` may be handed on cut by count; durable when this
    /// returns.
    pub async fn reach(&self, upto: u64) -> Result<(), String> {
        self.commit(Record::Reach(upto)).await
    }

    async fn commit(&self, record: Record) -> Result<(), String> {
        let outcome = self.start(record).await;
        // The caller goes on with no record to queue now.
        self.pass();
        outcome
    }

    /// Tells the committer that this action, having learnt that its records are durable, has
    /// no record to queue now: the next commit need not wait for it.
    pub fn pass(&self) {
        let mut queue = self.store.queue();
        if queue.answered(&self.rule, &self.action) {
            self.store.answered.notify_all();
        }
    }

    fn start(&self, record: Record) -> Durable {
        let (done, committed) = oneshot::channel();
        let lead = {
            let mut queue = self.store.queue();
            queue.waiting.push(Waiting {
                rule: Arc::clone(&self.rule),
                action: Arc::clone(&self.action),
                record,
                done: Done::Task(done),
            });
            if queue.answered(&self.rule, &self.action) {
                self.store.answered.notify_all();
            }
            !std::mem::replace(&mut queue.committing, true)
        };
        if lead {
            let store = Arc::clone(&self.store);
            tokio::task::spawn_blocking(move || store.commit_waiting());
        }
        Durable(committed)
    }
}

/// A record on its way to the disk: resolves once its group commit is durable (or failed).
/// Dropping it does not withdraw the record.
#[derive(Debug)]
pub struct Durable(oneshot::Receiver<Result<(), String>>);

impl Durable {
    /// The commit's outcome if it is known by now, without waiting.
    pub fn try_outcome(&mut self) -> Option<Result<(), String>> {
        match self.0.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                Some(Err("the commit of batch cuts stopped".to_string()))
            }
        }
    }
}

impl Future for Durable {
    type Output = Result<(), String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|done| {
            done.map_err(|_| "the commit of batch cuts stopped".to_string())
                .and_then(|result| result)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<CutStore>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("c.redb")).unwrap());
        (dir, Arc::new(CutStore::new(db)))
    }

    /// The committer waits for the action its last commit answered: a record that waited
    /// behind that commit goes with the action's next record rather than alone (the two
    /// actions' records would alternate, one per commit); an action that passes is not waited
    /// for.
    #[tokio::test]
    async fn a_record_waiting_behind_a_commit_shares_the_next_one_with_the_answer_of_its_action() {
        let (_dir, store) = store();
        // However long the machine takes to run this task, the committer waits for it.
        store.gather_for(Duration::from_secs(60));
        let a = store.log("r", "a");
        let b = store.log("r", "b");
        let gate = a.hold_commits();
        let a1 = a.start_record(1, 10);
        while store.groups().is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let b1 = b.start_record(1, 20);
        drop(gate);
        a1.await.unwrap();
        // However late a's answer comes, b1 waits for it.
        std::thread::sleep(Duration::from_millis(20));
        let a2 = a.start_record(2, 30);
        let (b1, a2) = tokio::join!(b1, a2);
        b1.unwrap();
        a2.unwrap();
        let record = |action: &str, sequence| (action.to_string(), sequence);
        assert_eq!(
            store.groups(),
            vec![vec![record("a", 1)], vec![record("b", 1), record("a", 2)]]
        );
        assert_eq!(store.commits(), (2, 3));
        // b has nothing to cut now: a's next record is not held for it.
        b.pass();
        let started = Instant::now();
        a.start_record(3, 1).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(store.groups().len(), 3);
        assert_eq!(
            a.resume(Some(1)).unwrap().cuts,
            BTreeMap::from([(1, 10), (2, 30), (3, 1)])
        );
        assert_eq!(b.resume(Some(1)).unwrap().cuts, BTreeMap::from([(1, 20)]));
    }

    /// A checkpoint goes in the group commit of the records waiting, and drops the cuts it
    /// covers there.
    #[tokio::test]
    async fn a_checkpoint_shares_the_commit_of_the_records_waiting() {
        let (_dir, store) = store();
        let a = store.log("r", "a");
        let gate = a.hold_commits();
        let a1 = a.start_record(1, 10);
        while store.groups().is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let a2 = a.start_record(2, 20);
        let writer = Arc::clone(&store);
        let checkpoint = tokio::task::spawn_blocking(move || {
            writer.write_blocking("r", Box::new(|txn| drop_covered(txn, "r", "a", 2)))
        });
        // The checkpoint waits behind the held commit, beside a2.
        while store.queue().waiting.len() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(gate);
        a1.await.unwrap();
        a2.await.unwrap();
        checkpoint.await.unwrap().unwrap();
        assert_eq!(store.commits(), (2, 3));
        assert_eq!(
            a.resume(Some(2)).unwrap().cuts,
            BTreeMap::from([(2, 20)]),
            "the checkpoint dropped a1"
        );
    }

    #[tokio::test]
    async fn recorded_cuts_come_back_from_the_checkpoint_s_number_on() {
        let (_dir, store) = store();
        let log = store.log("r", "file_0");
        let other = store.log("r", "file_1");
        let records: Vec<_> = (1..=5).map(|s| log.record(s, s * 10)).collect();
        futures_util::future::try_join_all(records).await.unwrap();
        other.record(3, 7).await.unwrap();
        // A checkpoint whose next number is 3 covers 1 and 2.
        {
            let txn = store.db.begin_write().unwrap();
            drop_covered(&txn, "r", "file_0", 3).unwrap();
            txn.commit().unwrap();
        }
        let cuts = |log: &CutLog, from| log.resume(from).unwrap().cuts;
        assert_eq!(
            cuts(&log, Some(3)),
            BTreeMap::from([(3, 30), (4, 40), (5, 50)])
        );
        assert_eq!(cuts(&log, Some(5)), BTreeMap::from([(5, 50)]));
        assert_eq!(
            cuts(&log, Some(3)),
            BTreeMap::from([(5, 50)]),
            "what a resume dropped is gone"
        );
        assert_eq!(cuts(&other, Some(1)), BTreeMap::from([(3, 7)]));
        other.reach(1024).await.unwrap();
        assert_eq!(other.resume(Some(2)).unwrap().reach, 1024);
        assert_eq!(log.resume(Some(2)).unwrap().reach, 0);
        // Without a numbered checkpoint nothing applies.
        assert_eq!(log.resume(None).unwrap(), Replay::default());
        assert_eq!(cuts(&log, Some(1)), BTreeMap::new());
        {
            let txn = store.db.begin_write().unwrap();
            forget_rule(&txn, "r").unwrap();
            txn.commit().unwrap();
        }
        assert_eq!(other.resume(Some(1)).unwrap(), Replay::default());
    }
}
