//! The `file` sink: eKuiper's file action (`path`, `fileType`, `hasHeader`) as a wasm component.
//!
//! It may touch exactly one file, the one its `path` prop names, and its sequence marker beside
//! it (`<path>.seq`): its manifest declares `path` as a writable file with that companion, and
//! the host grants those two files and nothing else.
//!
//! Exactly once: after each batch is written and flushed, the marker holds the batch's
//! sequence number; a batch whose number is not above the marker was written already (its
//! acknowledgement was lost to a crash or a trap) and is skipped. When the host says the
//! numbering continues (`open` with a delivered sequence), a new run appends to the file rather
//! than starting it afresh; when it starts afresh, so do the file and the marker. A crash
//! between writing a batch and its marker can still repeat that one batch.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

use oort_sdk::serde::Deserialize;
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink};

/// The action's props.
#[derive(Debug, Deserialize)]
#[serde(
    crate = "oort_sdk::serde",
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct Config {
    /// The file to write. Relative paths are resolved by the host against the rule file's folder.
    pub path: String,
    /// `lines` (one message per line, the default), `json` (one JSON array), or `csv`.
    #[serde(default)]
    pub file_type: FileType,
    /// For `csv`: write a header line naming the columns first.
    #[serde(default)]
    pub has_header: bool,
    /// Accepted for eKuiper compatibility: every batch is flushed when `collect` returns, so
    /// there is nothing left to check on an interval.
    #[serde(default)]
    pub check_interval: Option<u64>,
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

/// The sink's state.
pub struct FileSink {
    config: Config,
    /// Whether this instance starts the file afresh: the action's first instance, in a run
    /// whose numbering starts afresh too.
    afresh: bool,
    out: Option<BufWriter<File>>,
    /// Whether the file is ready for this instance's writes. A replacement instance (after a
    /// trap, or a new build swapped in) is opened while the previous one may still be writing;
    /// it takes the file over at its first batch, when the previous one has closed.
    ready: bool,
    /// Whether a message was written since the file was (re)started: separators go between.
    written: bool,
    /// The sequence marker beside the file, and the last sequence it records as written.
    marker: Option<File>,
    last_written: u64,
}

/// The suffix of the sequence marker's name (the manifest grants `<path>` + this).
pub const MARKER_SUFFIX: &str = ".seq";

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
        Ok(Self {
            config,
            afresh: ctx.generation == 0,
            out: None,
            ready: false,
            written: false,
            marker: None,
            last_written: 0,
        })
    }

    fn open_after(&mut self, delivered: Option<u64>) -> Result<(), SinkError> {
        let path = format!("{}{MARKER_SUFFIX}", self.config.path);
        let open_err = |e: std::io::Error| SinkError::transient(format!("cannot open {path}: {e}"));
        let mut marker = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(open_err)?;
        let mut text = String::new();
        marker.read_to_string(&mut text).map_err(open_err)?;
        self.last_written = match delivered {
            // A fresh numbering: what the marker says belongs to an earlier one.
            None => 0,
            Some(_) => text.trim().parse().unwrap_or(0),
        };
        self.marker = Some(marker);
        // When the numbering continues an earlier run's, so does the file.
        self.afresh &= delivered.is_none();
        self.open()?;
        if self.afresh {
            self.save_marker(0)?;
        }
        Ok(())
    }

    fn open(&mut self) -> Result<(), SinkError> {
        let path = &self.config.path;
        let open_err = |e: std::io::Error| SinkError::transient(format!("cannot open {path}: {e}"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(open_err)?;
        if self.afresh {
            // A new run of the rule starts the file afresh, as eKuiper's file sink does.
            file.set_len(0).map_err(open_err)?;
            if self.config.file_type == FileType::Json {
                file.write_all(b"[")?;
            }
            self.ready = true;
        }
        self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let sequence = batch.sequence();
        if sequence != 0 && sequence <= self.last_written {
            // Written before a crash or a trap lost its acknowledgement.
            return Ok(());
        }
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| SinkError::transient("the file is not open"))?;
        if !self.ready {
            // A replacement continues where the previous instance stopped.
            let file = out.get_mut();
            self.written = resume(file, self.config.file_type).map_err(|e| {
                SinkError::transient(format!("cannot resume {}: {e}", self.config.path))
            })?;
            file.seek(SeekFrom::End(0))?;
            self.ready = true;
        }
        for message in batch {
            if !self.written {
                if self.config.file_type == FileType::Csv
                    && self.config.has_header
                    && let Some(header) = batch.header()
                {
                    out.write_all(header.as_bytes())?;
                    out.write_all(b"\n")?;
                }
            } else {
                out.write_all(match self.config.file_type {
                    FileType::Json => b",",
                    FileType::Lines | FileType::Csv => b"\n",
                })?;
            }
            out.write_all(message.payload)?;
            self.written = true;
        }
        out.flush()?;
        if sequence != 0 {
            self.save_marker(sequence)?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        if !self.ready {
            // Never took the file over: it belongs to another instance.
            return Ok(());
        }
        if let Some(mut out) = self.out.take() {
            match self.config.file_type {
                FileType::Json => out.write_all(b"]")?,
                FileType::Lines | FileType::Csv if self.written => out.write_all(b"\n")?,
                FileType::Lines | FileType::Csv => {}
            }
            out.flush()?;
        }
        Ok(())
    }
}

impl FileSink {
    /// Records `sequence` as the last batch written.
    fn save_marker(&mut self, sequence: u64) -> Result<(), SinkError> {
        if let Some(marker) = self.marker.as_mut() {
            marker.seek(SeekFrom::Start(0))?;
            marker.set_len(0)?;
            marker.write_all(sequence.to_string().as_bytes())?;
            marker.flush()?;
        }
        self.last_written = sequence;
        Ok(())
    }
}

/// Prepares a file written by an earlier instance for appending; returns whether it already
/// holds a message.
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
                file.write_all(b"[")?;
                return Ok(false);
            }
            // A clean close left the array closed: reopen it.
            let mut open_len = len;
            if ends_with(file, &mut last)? == b']' {
                open_len -= 1;
                file.set_len(open_len)?;
            }
            // Anything after the opening `[` is a message.
            Ok(open_len > 1)
        }
        FileType::Lines | FileType::Csv => {
            if len == 0 {
                return Ok(false);
            }
            // A clean close ended the last line: the next message must not add a blank one.
            if ends_with(file, &mut last)? == b'\n' {
                file.set_len(len - 1)?;
            }
            Ok(true)
        }
    }
}

export_sink!(FileSink);
