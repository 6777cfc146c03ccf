//! The `file` sink: eKuiper's file action (`path`, `fileType`, `hasHeader`) as a wasm component.
//!
//! It may touch exactly one file, the one its `path` prop names: its manifest declares `path` as
//! a writable file, and the host grants that file and nothing else.

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
    generation: u32,
    out: Option<BufWriter<File>>,
    /// Whether the file is ready for this instance's writes. A replacement instance (after a
    /// trap, or a new build swapped in) is opened while the previous one may still be writing;
    /// it takes the file over at its first batch, when the previous one has closed.
    ready: bool,
    /// Whether a message was written since the file was (re)started: separators go between.
    written: bool,
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
        Ok(Self {
            config,
            generation: ctx.generation,
            out: None,
            ready: false,
            written: false,
        })
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
        if self.generation == 0 {
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
