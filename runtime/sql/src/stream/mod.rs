//! Stream definitions: eKuiper's `CREATE STREAM name (columns) WITH (options)` statements, parsed
//! into [`StreamDef`]s, and the schema a declared stream imposes on its rows.

mod ddl;
mod schema;

use std::path::PathBuf;
use std::sync::Arc;

pub use ddl::{DdlError, parse_streams};
pub use schema::{
    ColumnDef, DataType, columns_read, conform, conform_laid_out, distinct_ignoring_case,
};

/// Whether a definition is a stream (unbounded rows) or a table (a snapshot to join with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `CREATE STREAM`.
    Stream,
    /// `CREATE TABLE`.
    Table,
}

/// Where a stream's rows come from (`TYPE=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    /// A file: JSON array, JSON lines or CSV.
    File,
    /// Standard input, one message per line.
    Stdin,
    /// An in-process topic fed by `memory` actions of other rules.
    Memory,
    /// An MQTT topic (eKuiper's default type).
    Mqtt,
    /// A redis database, for lookup tables only (`DATASOURCE` is the database number).
    Redis,
}

/// How a message's bytes encode a row (`FORMAT=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON object per message.
    Json,
    /// Values separated by `DELIMITER`, in the order of the stream's columns.
    Delimited,
    /// The whole message as one `bytea` field, `self` (eKuiper's `FORMAT="BINARY"`).
    Binary,
}

/// How a file source's file is laid out (from its extension, or `FILETYPE=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// One JSON array of objects (`.json`).
    Json,
    /// One message per line (`.jsonl`, `.ndjson`, `.lines`, `.txt`).
    Lines,
    /// CSV with a header line (`.csv`).
    Csv,
}

/// The `WITH (...)` options of a definition.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// `TYPE`.
    pub source_type: SourceType,
    /// `DATASOURCE`: a path, topic, ... depending on the type.
    pub datasource: String,
    /// `FORMAT`.
    pub format: Format,
    /// `DELIMITER` for the delimited format and CSV files.
    pub delimiter: u8,
    /// `FILETYPE` (an Oort extension): overrides the file type the extension implies.
    pub file_type: Option<FileType>,
    /// `TIMESTAMP`: the field holding each row's event time.
    pub timestamp: Option<String>,
    /// `TIMESTAMP_FORMAT`.
    pub timestamp_format: Option<String>,
    /// `KEY`.
    pub key: Option<String>,
    /// `CONF_KEY`: the named source configuration to use.
    pub conf_key: Option<String>,
    /// `SHARED`: `Some(true)`, one reading shared by every rule reading the stream;
    /// `Some(false)`, a reading per rule; `None` (not given), shared where no rule could tell
    /// the difference (the runtime decides, by source type).
    pub shared: Option<bool>,
    /// `STRICT_VALIDATION`: a row that does not fit the schema is an error rather than
    /// converted.
    pub strict_validation: bool,
    /// `RETAIN_SIZE` (tables).
    pub retain_size: Option<u64>,
    /// `KIND="lookup"` (tables): looked up by `KEY` for each row rather than scanned.
    pub lookup: bool,
}

/// One stream (or table) definition.
#[derive(Debug, Clone)]
pub struct StreamDef {
    /// Its name.
    pub name: Arc<str>,
    /// Stream or table.
    pub kind: StreamKind,
    /// Declared columns; `None` for a schemaless stream (`()`).
    pub columns: Option<Vec<ColumnDef>>,
    /// The `WITH` options.
    pub options: StreamOptions,
    /// The folder of the file that defines it: relative `DATASOURCE` paths start here.
    pub base_dir: PathBuf,
    /// Where it was defined (file and line), for messages.
    pub origin: String,
}

impl StreamDef {
    /// The file a `file` stream reads: `DATASOURCE` resolved against the defining file's folder.
    pub fn datasource_path(&self) -> PathBuf {
        oort_value::path::absolute(
            &self.base_dir,
            std::path::Path::new(&self.options.datasource),
        )
    }

    /// The layout of a `file` stream's file: `FILETYPE`, else from the extension.
    pub fn file_type(&self) -> FileType {
        if let Some(t) = self.options.file_type {
            return t;
        }
        match std::path::Path::new(&self.options.datasource)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => FileType::Json,
            Some("csv") => FileType::Csv,
            _ => FileType::Lines,
        }
    }
}
