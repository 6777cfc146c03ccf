//! The `file` sink: eKuiper's file action (`path`, `fileType`, `hasHeader`, the rolling props
//! and `compressAlgorithm`) as a wasm component.
//!
//! It may touch only what its grant covers: with a fixed `path`, that file and its sequence
//! marker beside it (`<path>.seq`); with a templated `path` (`"out/{{.device}}.csv"`, a
//! dynamic prop the host evaluates per message) or a rolling name pattern, every file directly
//! in the folder of the path's fixed prefix. It keeps one file open per distinct path (at most
//! [`MAX_OPEN_PATHS`], closing the least recently used one past that; a path seen again is
//! appended to).
//!
//! Exactly once: after the messages of a batch are written and flushed, the marker of each path
//! they went to holds the batch's sequence number; a message whose batch number is not above its
//! path's marker was written already (its acknowledgement was lost to a crash or a trap) and is
//! skipped. When the host says the numbering continues (`open` with a delivered sequence), a new
//! run appends to the files rather than starting them afresh; when it starts afresh, so do the
//! files and the markers.
//!
//! The marker is rewritten in place with one write (`<sequence> <length>`, padded), so a crash
//! leaves the old one or the new one, never an empty one. Its length is the file's after the
//! batch (for an uncompressed file whose name has no rolling timestamp; 0 is a length too, that
//! of a fresh file whose first batch a crash cut off): a continuing run that
//! finds the file longer cuts it back to that length, because what follows was written by a
//! batch whose marker a crash prevented, which the host delivers again. A compressed or
//! timestamped file records no length, so a crash between its batch and its marker can still
//! repeat that one batch.
//!
//! Rolling (eKuiper's props): a file is closed after `rollingCount` messages or once it has
//! been open `rollingInterval` milliseconds (checked when a message comes); with
//! `rollingNamePattern` `prefix` or `suffix` the next one gets a new name holding the time in
//! milliseconds (`1700000000000-a.csv`, `a-1700000000000.csv`), otherwise the next message
//! appends to the same file (nothing written is ever truncated away by a roll).
//! `compressAlgorithm` `gzip` writes each file as gzip: each batch is flushed, and a file closed
//! and reopened gets a new gzip member (concatenated members read back as one stream).
//! `zstd` writes each batch of a file as one zstd frame (`ruzstd`, pure Rust, at its fastest
//! level, the one it implements), compressed in memory and then written, so a failed write is
//! an error rather than a trap; concatenated frames read back as one stream too.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;
use oort_sdk::serde::Deserialize;
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink};
use ruzstd::encoding::{CompressionLevel, compress_to_vec};

/// Files one instance keeps open at once (each with its marker: twice as many descriptors,
/// within the host's default `maxOpenFiles`); past it the least recently used one is closed.
pub const MAX_OPEN_PATHS: usize = 16;

/// The action's props.
#[derive(Debug, Deserialize)]
#[serde(
    crate = "oort_sdk::serde",
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct Config {
    /// The file to write: a path, or a data template evaluated per message
    /// (`"out/{{.device}}.csv"`) whose folder part is fixed. Relative paths are resolved by the
    /// host against the rule file's folder.
    pub path: String,
    /// `lines` (one message per line, the default), `json` (one JSON array), or `csv`.
    #[serde(default)]
    pub file_type: FileType,
    /// For `csv`: write a header line naming the columns first.
    #[serde(default)]
    pub has_header: bool,
    /// Accepted for eKuiper compatibility: every batch is flushed when `collect` returns, and
    /// the rolling interval is checked when a message comes.
    #[serde(default)]
    pub check_interval: Option<u64>,
    /// Close a file once it has been open this many milliseconds (0: never).
    #[serde(default)]
    pub rolling_interval: u64,
    /// Close a file once it holds this many messages (0: never).
    #[serde(default)]
    pub rolling_count: u64,
    /// Where the time goes in the name of each new file: `prefix`, `suffix` or `none`.
    #[serde(default)]
    pub rolling_name_pattern: Option<NamePattern>,
    /// `gzip` or `zstd` to compress the files (empty or absent: none).
    #[serde(default)]
    pub compress_algorithm: Option<String>,
}

/// How messages are laid out in the file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(crate = "oort_sdk::serde", rename_all = "lowercase")]
pub enum FileType {
    /// One message per line.
    #[default]
    Lines,
    /// One JSON array holding every message.
    Json,
    /// Comma (or `delimiter`) separated values, one message per line.
    Csv,
}

/// eKuiper's `rollingNamePattern`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(crate = "oort_sdk::serde", rename_all = "lowercase")]
pub enum NamePattern {
    /// `<ms>-<name>`.
    Prefix,
    /// `<stem>-<ms><.ext>`.
    Suffix,
    /// The name as the path gives it (also written as an empty string).
    #[serde(alias = "")]
    None,
}

/// The suffix of the sequence marker's name (the manifest grants `<path>` + this).
pub const MARKER_SUFFIX: &str = ".seq";

/// The marker's width: two `u64`s and a space, padded, so that each write covers the last.
const MARKER_WIDTH: usize = 41;

/// Where an open file's bytes go.
///
/// The uncompressed and zstd files count their length as they are written (they have one
/// writer, this instance), so recording it in the marker after each batch costs no look-up of
/// the file's length. A write or flush that fails may have put part of its bytes in the file:
/// the count is then dropped, and the next marker takes the length from the file again (a
/// marker whose length fell short of the file would have a resume cut written rows away).
enum Out {
    /// Uncompressed; `len`: the file's length once what was written is flushed (`None`:
    /// not known since a write failed).
    Plain {
        file: BufWriter<File>,
        len: Option<u64>,
    },
    Gzip(GzEncoder<BufWriter<File>>),
    /// zstd: what was written since the last flush, compressed into one frame at the flush;
    /// `len`: the file's length with the frames written so far (`None` as for `Plain`).
    Zstd {
        file: BufWriter<File>,
        pending: Vec<u8>,
        len: Option<u64>,
    },
}

impl Out {
    /// The file's length after a flush, where cutting the file back to it leaves a whole file:
    /// an uncompressed one, or a zstd one (a flush ends a frame). Not gzip (one stream).
    fn plain_len(&mut self) -> Option<u64> {
        let (file, len) = match self {
            Self::Plain { file, len } => (file, len),
            Self::Zstd { file, pending, len } if pending.is_empty() => (file, len),
            Self::Gzip(_) | Self::Zstd { .. } => return None,
        };
        if len.is_none() {
            *len = file.get_ref().metadata().ok().map(|m| m.len());
        }
        *len
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Plain { file, len } => {
                if let Err(e) = file.write_all(bytes) {
                    *len = None;
                    return Err(e);
                }
                if let Some(len) = len {
                    *len += bytes.len() as u64;
                }
                Ok(())
            }
            Self::Gzip(w) => w.write_all(bytes),
            Self::Zstd { pending, .. } => {
                pending.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    /// Pushes everything written so far to the file (for gzip, a sync flush; for zstd, one
    /// frame: what is in the file decompresses up to here).
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain { file, len } => {
                let flushed = file.flush();
                if flushed.is_err() {
                    *len = None;
                }
                flushed
            }
            Self::Gzip(w) => w.flush(),
            Self::Zstd { file, pending, len } => {
                if !pending.is_empty() {
                    let frame = compress_to_vec(pending.as_slice(), CompressionLevel::Fastest);
                    if let Err(e) = file.write_all(&frame) {
                        *len = None;
                        return Err(e);
                    }
                    if let Some(len) = len {
                        *len += frame.len() as u64;
                    }
                    pending.clear();
                }
                let flushed = file.flush();
                if flushed.is_err() {
                    *len = None;
                }
                flushed
            }
        }
    }

    /// Ends the file (the gzip trailer, the last zstd frame) and flushes it.
    fn finish(mut self) -> std::io::Result<()> {
        match self {
            Self::Plain { mut file, .. } => file.flush(),
            Self::Gzip(w) => w.finish()?.flush(),
            Self::Zstd { .. } => self.flush(),
        }
    }
}

/// One file being written.
struct OpenFile {
    /// Its path (with the rolling timestamp, if any).
    name: String,
    out: Out,
    /// Whether it holds a message: separators go between messages of a JSON array.
    written: bool,
    /// Messages written since it was opened.
    count: u64,
    opened: Instant,
    /// Where the batch being written started in it: the file's length, `written` and `count`
    /// then (`None` for gzip, whose stream cannot be cut back).
    batch_start: Option<(u64, bool, u64)>,
}

/// What the sink keeps per distinct path (the path as configured or evaluated, before any
/// rolling timestamp).
struct Target {
    file: Option<OpenFile>,
    marker: File,
    /// When it was last used, for closing the least recently used.
    used: u64,
}

/// The sink's state.
pub struct FileSink {
    config: Config,
    /// Whether this instance starts files afresh: the action's first instance, in a run whose
    /// numbering starts afresh too.
    afresh: bool,
    /// Whether the numbering starts afresh (markers of earlier runs are stale).
    fresh_numbering: bool,
    /// For a templated path, the folder its values must stay in (with a trailing `/`).
    folder: Option<String>,
    targets: HashMap<String, Target>,
    /// The last sequence written, per path seen by this instance.
    last_written: HashMap<String, u64>,
    /// Files this instance started (truncated), so it does so once each.
    started: HashSet<String>,
    tick: u64,
    /// The last rolling timestamp handed out: names stay distinct within a millisecond.
    last_stamp: u128,
    /// The bytes of the messages being written, kept between batches.
    scratch: Vec<u8>,
}

impl Sink for FileSink {
    type Config = Config;

    fn configure(ctx: &Context, config: Config) -> Result<Self, SinkError> {
        if config.path.is_empty() {
            return Err(SinkError::invalid_config("`path` must not be empty"));
        }
        if ctx.instance > 0 {
            // Two instances appending to one file would interleave (or overwrite) each other.
            return Err(SinkError::invalid_config(
                "one file takes one writer: set `concurrency` to 1 for the file sink",
            ));
        }
        match (config.file_type, ctx.format.as_str()) {
            (FileType::Csv, "delimited") | (FileType::Lines, _) | (FileType::Json, "json") => {}
            (FileType::Csv, other) => {
                return Err(SinkError::invalid_config(format!(
                    "`fileType` csv needs `format` delimited, not {other}"
                )));
            }
            (FileType::Json, other) => {
                return Err(SinkError::invalid_config(format!(
                    "`fileType` json needs `format` json, not {other}"
                )));
            }
        }
        match config.compress_algorithm.as_deref() {
            None | Some("") => {}
            Some(algorithm @ ("gzip" | "zstd")) if config.file_type == FileType::Json => {
                return Err(SinkError::invalid_config(format!(
                    "`compressAlgorithm` {algorithm} needs `fileType` lines or csv: a compressed \
                     JSON array cannot be reopened to append to it"
                )));
            }
            Some("gzip" | "zstd") => {}
            Some(other) => {
                return Err(SinkError::invalid_config(format!(
                    "`compressAlgorithm` {other:?} is not supported (expected gzip or zstd)"
                )));
            }
        }
        let folder = config.path.find("{{").map(|fixed| {
            let end = config.path[..fixed].rfind('/').map_or(0, |i| i + 1);
            config.path[..end].to_string()
        });
        Ok(Self {
            config,
            afresh: ctx.generation == 0,
            fresh_numbering: true,
            folder,
            targets: HashMap::new(),
            last_written: HashMap::new(),
            started: HashSet::new(),
            tick: 0,
            last_stamp: 0,
            scratch: Vec::new(),
        })
    }

    fn open_after(&mut self, delivered: Option<u64>) -> Result<(), SinkError> {
        self.fresh_numbering = delivered.is_none();
        // When the numbering continues an earlier run's, so do the files.
        self.afresh &= self.fresh_numbering;
        if self.afresh && self.folder.is_none() && !self.timestamped() {
            // A fixed file is started at once, as eKuiper's file sink does, even if no message
            // comes. A replacement instance touches nothing before its first batch, when the
            // previous instance has closed.
            let path = self.config.path.clone();
            self.target(&path)?;
            self.file(&path)?;
            self.save_marker(&path, 0)?;
        }
        Ok(())
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let written = self.write_batch(batch);
        if written.is_err() {
            // Part of the batch may be in a file (a write that failed part-way, a full disk):
            // cut back, so that the batch delivered again is written whole, once.
            let paths: Vec<String> = self.targets.keys().cloned().collect();
            for path in paths {
                self.cut_back(&path)?;
            }
        }
        written
    }

    fn close(&mut self) -> Result<(), SinkError> {
        let paths: Vec<String> = self.targets.keys().cloned().collect();
        for path in paths {
            self.close_file(&path)?;
        }
        self.targets.clear();
        Ok(())
    }
}

impl FileSink {
    /// Writes `batch`: each run of messages going to one path, skipping those whose path's
    /// marker says they were written, then flushes each file written and records its marker.
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let sequence = batch.sequence();
        let paths = self.paths(batch)?;
        let mut touched: Vec<String> = Vec::new();
        // Messages are written in runs going to one path (with a fixed path, the whole batch):
        // the path's marker and file are looked up once per run, not once per message.
        let mut start = 0;
        while start < batch.len() {
            let (path, end) = match paths.get(start) {
                None => (self.config.path.clone(), batch.len()),
                Some(path) => {
                    let run = paths[start..].iter().take_while(|p| *p == path).count();
                    (path.clone(), start + run)
                }
            };
            if sequence != 0 && sequence <= self.marker(&path)? {
                // Written before a crash or a trap lost its acknowledgement.
                start = end;
                continue;
            }
            self.write_run(batch, &path, start..end)?;
            if !touched.contains(&path) {
                touched.push(path);
            }
            start = end;
        }
        for path in touched {
            if let Some(file) = self.targets.get_mut(&path).and_then(|t| t.file.as_mut()) {
                file.out.flush()?;
            }
            // An unnumbered batch keeps the marker's number and records the new length.
            let last = self.last_written.get(&path).copied().unwrap_or(0);
            self.save_marker(&path, sequence.max(last))?;
            if let Some(file) = self.targets.get_mut(&path).and_then(|t| t.file.as_mut()) {
                file.batch_start = None;
            }
        }
        Ok(())
    }

    /// After a batch failed, cuts the open file of `path` back to where the batch started in
    /// it, dropping what is still buffered (an uncompressed or zstd file; a gzip stream cannot
    /// be cut, and a file a roll closed during the batch keeps what it was given).
    fn cut_back(&mut self, path: &str) -> Result<(), SinkError> {
        let Some(target) = self.targets.get_mut(path) else {
            return Ok(());
        };
        let Some(mut open) = target.file.take() else {
            return Ok(());
        };
        let Some((len, written, count)) = open.batch_start.take() else {
            target.file = Some(open);
            return Ok(());
        };
        let (buffer, zstd) = match open.out {
            Out::Plain { file, .. } => (file, false),
            Out::Zstd { file, .. } => (file, true),
            gzip @ Out::Gzip(_) => {
                open.out = gzip;
                target.file = Some(open);
                return Ok(());
            }
        };
        // The bytes still buffered are dropped, not written.
        let (mut file, _) = buffer.into_parts();
        let name = &open.name;
        let cut = |e: std::io::Error| {
            SinkError::transient(format!(
                "cannot cut {name} back to {len} bytes after a failed write: {e}"
            ))
        };
        file.set_len(len).map_err(cut)?;
        file.seek(SeekFrom::End(0)).map_err(cut)?;
        let file = BufWriter::with_capacity(64 * 1024, file);
        open.out = if zstd {
            Out::Zstd {
                file,
                pending: Vec::new(),
                len: Some(len),
            }
        } else {
            Out::Plain {
                file,
                len: Some(len),
            }
        };
        open.written = written;
        open.count = count;
        target.file = Some(open);
        Ok(())
    }

    /// Whether new files get a timestamp in their name.
    fn timestamped(&self) -> bool {
        matches!(
            self.config.rolling_name_pattern,
            Some(NamePattern::Prefix | NamePattern::Suffix)
        )
    }

    /// The path of each message of `batch` (empty for a fixed path). Refuses the whole batch,
    /// before anything is written, when a value is empty or leaves the granted folder.
    fn paths(&self, batch: &Batch) -> Result<Vec<String>, SinkError> {
        let Some(folder) = &self.folder else {
            return Ok(Vec::new());
        };
        let values = batch.dynamic("path").ok_or_else(|| {
            SinkError::rejected(format!(
                "`path` is a template ({}) but the host gave no value for it",
                self.config.path
            ))
        })?;
        for (index, value) in values.iter().enumerate() {
            let name = value.strip_prefix(folder.as_str());
            let plain = name.is_some_and(|n| {
                !n.is_empty() && !n.contains('/') && n != "." && n != ".." && !n.ends_with(".seq")
            });
            if !plain {
                return Err(SinkError::rejected(format!(
                    "message {index}: `path` {} evaluates to {value:?}, which is not a file \
                     directly in {folder} (the folder the grant covers)",
                    self.config.path
                )));
            }
        }
        Ok(values.to_vec())
    }

    /// Writes the messages `range` of `batch` to `path`, rolling its file when due: by count
    /// after the message that fills it, by age before each message.
    fn write_run(
        &mut self,
        batch: &Batch,
        path: &str,
        range: std::ops::Range<usize>,
    ) -> Result<(), SinkError> {
        let file_type = self.config.file_type;
        let has_header = self.config.has_header;
        let rolling_count = self.config.rolling_count;
        let by_age = self.config.rolling_interval > 0;
        let mut index = range.start;
        while index < range.end {
            if by_age {
                self.roll_if_due(path)?;
            }
            // The messages that go to the file now: up to the end of the run, the one that
            // fills the file, or (rolling by age) one, whose file's age is checked again next.
            let room = match rolling_count {
                0 => u64::MAX,
                n => n.saturating_sub(self.file(path)?.count).max(1),
            };
            let take = (range.end - index).min(usize::try_from(room).unwrap_or(usize::MAX));
            let take = if by_age { take.min(1) } else { take };
            let messages = index..index + take;
            // The bytes are put together here and handed on in one write: a write per message
            // (and one per separator) costs more than the copy.
            let mut bytes = std::mem::take(&mut self.scratch);
            bytes.clear();
            let file = self.file(path)?;
            if file.batch_start.is_none() {
                let (written, count) = (file.written, file.count);
                file.batch_start = file.out.plain_len().map(|len| (len, written, count));
            }
            if file_type == FileType::Csv
                && !file.written
                && has_header
                && let Some(header) = batch.header()
            {
                bytes.extend_from_slice(header.as_bytes());
                bytes.push(b'\n');
            }
            for (i, at) in messages.enumerate() {
                let message = batch.get(at).expect("index within the batch");
                if file_type == FileType::Json {
                    if file.written || i > 0 {
                        bytes.push(b',');
                    }
                    bytes.extend_from_slice(message.payload);
                } else {
                    bytes.extend_from_slice(message.payload);
                    bytes.push(b'\n');
                }
            }
            let written = file.out.write_all(&bytes);
            if written.is_ok() {
                file.written = true;
                file.count += take as u64;
            }
            let full = rolling_count > 0 && file.count >= rolling_count;
            self.scratch = bytes;
            written?;
            index += take;
            if full {
                self.close_file(path)?;
            }
        }
        Ok(())
    }

    /// The marker of `path`: the last sequence written to it.
    fn marker(&mut self, path: &str) -> Result<u64, SinkError> {
        if let Some(&n) = self.last_written.get(path) {
            return Ok(n);
        }
        let target = self.target(path)?;
        let mut text = String::new();
        target.marker.seek(SeekFrom::Start(0))?;
        target.marker.read_to_string(&mut text)?;
        let has_file = target.file.is_some();
        // A fresh numbering: what a marker says belongs to an earlier one.
        if self.fresh_numbering {
            self.last_written.insert(path.to_string(), 0);
            return Ok(0);
        }
        let mut fields = text.split_whitespace();
        let n = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        // The file's length with every batch up to `n` in it; absent when it was not known. A
        // length of 0 is one too: a fresh file whose first batch a crash cut off.
        let len: Option<u64> = fields.next().and_then(|f| f.parse().ok());
        if let Some(len) = len
            && !has_file
            && !self.timestamped()
            && !self.gzip()
        {
            // Written after the marker by a batch a crash cut off: the host delivers it again.
            let cut = |e: std::io::Error| SinkError::transient(format!("cannot open {path}: {e}"));
            let file = OpenOptions::new().write(true).open(path).map_err(cut)?;
            if file.metadata().map_err(cut)?.len() > len {
                file.set_len(len).map_err(cut)?;
            }
        }
        self.last_written.insert(path.to_string(), n);
        Ok(n)
    }

    fn gzip(&self) -> bool {
        self.config.compress_algorithm.as_deref() == Some("gzip")
    }

    /// The target of `path`, its marker opened, closing the least recently used one if too many
    /// are open.
    fn target(&mut self, path: &str) -> Result<&mut Target, SinkError> {
        self.tick += 1;
        if !self.targets.contains_key(path) {
            if self.targets.len() >= MAX_OPEN_PATHS
                && let Some(oldest) = self
                    .targets
                    .iter()
                    .min_by_key(|(_, t)| t.used)
                    .map(|(p, _)| p.clone())
            {
                self.close_file(&oldest)?;
                self.targets.remove(&oldest);
            }
            let marker_path = format!("{path}{MARKER_SUFFIX}");
            let marker = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&marker_path)
                .map_err(|e| SinkError::transient(format!("cannot open {marker_path}: {e}")))?;
            self.targets.insert(
                path.to_string(),
                Target {
                    file: None,
                    marker,
                    used: 0,
                },
            );
        }
        let target = self.targets.get_mut(path).expect("inserted above");
        target.used = self.tick;
        Ok(target)
    }

    /// The open file of `path`, opening (or starting) it if needed.
    fn file(&mut self, path: &str) -> Result<&mut OpenFile, SinkError> {
        let has_file = self.target(path)?.file.is_some();
        if !has_file {
            let name = self.file_name(path);
            let file = self.open_file(name)?;
            self.target(path)?.file = Some(file);
        }
        Ok(self.target(path)?.file.as_mut().expect("opened above"))
    }

    /// The name of the next file for `path`, with the rolling timestamp if there is one.
    fn file_name(&mut self, path: &str) -> String {
        if !self.timestamped() {
            return path.to_string();
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        self.last_stamp = now.max(self.last_stamp + 1);
        let stamp = self.last_stamp;
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let dir = if path.contains('/') {
            format!("{dir}/")
        } else {
            String::new()
        };
        match self.config.rolling_name_pattern {
            Some(NamePattern::Prefix) => format!("{dir}{stamp}-{name}"),
            _ => match name.rsplit_once('.').filter(|(stem, _)| !stem.is_empty()) {
                Some((stem, ext)) => format!("{dir}{stem}-{stamp}.{ext}"),
                None => format!("{dir}{name}-{stamp}"),
            },
        }
    }

    /// Opens file `name`: started afresh (truncated) the first time this instance meets it when
    /// the run starts afresh, appended to otherwise.
    fn open_file(&mut self, name: String) -> Result<OpenFile, SinkError> {
        let open_err = |e: std::io::Error| SinkError::transient(format!("cannot open {name}: {e}"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&name)
            .map_err(open_err)?;
        let algorithm = self.config.compress_algorithm.as_deref();
        let compressed = matches!(algorithm, Some("gzip" | "zstd"));
        let file_type = self.config.file_type;
        // Whether the file holds a message, and its length.
        let (written, len) = if self.afresh && self.started.insert(name.clone()) {
            // A new run of the rule starts the file afresh, as eKuiper's file sink does.
            file.set_len(0).map_err(open_err)?;
            (false, 0)
        } else if compressed {
            let len = file.seek(SeekFrom::End(0)).map_err(open_err)?;
            (len > 0, len)
        } else {
            // Written by an earlier instance or run, or closed by a roll: continue it.
            let written = resume(&mut file, file_type).map_err(open_err)?;
            (written, file.seek(SeekFrom::End(0)).map_err(open_err)?)
        };
        let buffer = BufWriter::with_capacity(64 * 1024, file);
        let mut out = match algorithm {
            Some("gzip") => Out::Gzip(GzEncoder::new(buffer, Compression::default())),
            Some("zstd") => Out::Zstd {
                file: buffer,
                pending: Vec::new(),
                len: Some(len),
            },
            _ => Out::Plain {
                file: buffer,
                len: Some(len),
            },
        };
        if file_type == FileType::Json && !written {
            // On disk at once: a batch that fails is cut back to what follows it.
            out.write_all(b"[")?;
            out.flush()?;
        }
        Ok(OpenFile {
            name,
            out,
            written,
            count: 0,
            opened: Instant::now(),
            batch_start: None,
        })
    }

    /// Closes the file of `path` if it has been open `rollingInterval` or longer.
    fn roll_if_due(&mut self, path: &str) -> Result<(), SinkError> {
        let interval = self.config.rolling_interval;
        let due = interval > 0
            && self
                .targets
                .get(path)
                .and_then(|t| t.file.as_ref())
                .is_some_and(|f| f.opened.elapsed().as_millis() >= u128::from(interval));
        if due {
            self.close_file(path)?;
        }
        Ok(())
    }

    /// Ends and closes the file of `path`, if one is open (its target stays).
    fn close_file(&mut self, path: &str) -> Result<(), SinkError> {
        let file_type = self.config.file_type;
        if let Some(mut file) = self.targets.get_mut(path).and_then(|t| t.file.take()) {
            if file_type == FileType::Json {
                file.out.write_all(b"]")?;
            }
            file.out
                .finish()
                .map_err(|e| SinkError::transient(format!("cannot close {}: {e}", file.name)))?;
        }
        Ok(())
    }

    /// Records `sequence` as the last batch written to `path`, with the file's length when it
    /// is known (a file with a fixed name, not gzip), in one write over the old marker.
    fn save_marker(&mut self, path: &str, sequence: u64) -> Result<(), SinkError> {
        let fixed_name = !self.timestamped() && !self.gzip();
        let target = self.target(path)?;
        let len = match &mut target.file {
            Some(file) if fixed_name => file.out.plain_len(),
            // Closed by a roll: ended and flushed.
            None if fixed_name => match std::fs::metadata(path) {
                Ok(meta) => Some(meta.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
                Err(_) => None,
            },
            _ => None,
        };
        let text = match len {
            Some(len) => format!("{sequence} {len}"),
            None => sequence.to_string(),
        };
        let marker = &mut target.marker;
        marker.seek(SeekFrom::Start(0))?;
        marker.write_all(format!("{text:<MARKER_WIDTH$}").as_bytes())?;
        marker.flush()?;
        self.last_written.insert(path.to_string(), sequence);
        Ok(())
    }
}

/// Prepares a file written earlier for appending; returns whether it already holds a message.
fn resume(file: &mut File, file_type: FileType) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    let mut last = [0u8; 1];
    let ends_with = |file: &mut File, last: &mut [u8; 1]| -> std::io::Result<u8> {
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(last)?;
        Ok(last[0])
    };
    match file_type {
        FileType::Json => {
            if len == 0 {
                return Ok(false);
            }
            // A clean close left the array closed: reopen it.
            let mut open_len = len;
            if ends_with(file, &mut last)? == b']' {
                open_len -= 1;
                file.set_len(open_len)?;
            }
            // Anything after the opening `[` is a message.
            if open_len <= 1 {
                file.set_len(0)?;
                return Ok(false);
            }
            Ok(true)
        }
        FileType::Lines | FileType::Csv => {
            if len == 0 {
                return Ok(false);
            }
            // Every message ends its line; a file cut short mid-line gets its line ended.
            if ends_with(file, &mut last)? != b'\n' {
                file.seek(SeekFrom::End(0))?;
                file.write_all(b"\n")?;
            }
            Ok(true)
        }
    }
}

export_sink!(FileSink);
