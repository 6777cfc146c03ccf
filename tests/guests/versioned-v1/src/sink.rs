//! The versioned test sink's code, shared by its builds: it appends every message to the file
//! its `path` prop names, tagged with the build's version, so a test can see which build
//! delivered which row.

use std::fs::{File, OpenOptions};
use std::io::Write;

use oort_sdk::serde::Deserialize;
use oort_sdk::{Batch, Context, Sink, SinkError};

/// The action's props.
#[derive(Deserialize)]
#[serde(crate = "oort_sdk::serde", deny_unknown_fields)]
pub struct Config {
    path: String,
    /// A dynamic prop (its manifest lists it): each message's value is written beside it.
    #[serde(default, rename = "tag")]
    _tag: Option<String>,
    /// In `close`, wait this long first (a close that takes time, as a flush over a network).
    #[serde(default, rename = "closeDelayMs")]
    close_delay_ms: u64,
    /// In `close`, write a line saying which build and generation closed:
    /// `{"v":"v1","closed":0}`.
    #[serde(default, rename = "closeMark")]
    close_mark: bool,
}

/// The sink's state.
pub struct Versioned {
    path: String,
    generation: u32,
    out: Option<File>,
    close_delay_ms: u64,
    close_mark: bool,
}

impl Sink for Versioned {
    type Config = Config;

    fn configure(ctx: &Context, config: Config) -> Result<Self, SinkError> {
        if crate::FAIL == Some("configure") {
            return Err(SinkError::invalid_config(format!(
                "build {} refuses its props",
                crate::VERSION
            )));
        }
        Ok(Self {
            path: config.path,
            generation: ctx.generation,
            out: None,
            close_delay_ms: config.close_delay_ms,
            close_mark: config.close_mark,
        })
    }

    fn open(&mut self) -> Result<(), SinkError> {
        if crate::FAIL == Some("open") {
            panic!("build {} traps when it opens", crate::VERSION);
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| SinkError::transient(format!("{}: {e}", self.path)))?;
        if self.generation == 0 {
            file.set_len(0)?;
        }
        self.out = Some(file);
        Ok(())
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| SinkError::transient("not open"))?;
        let mut text = String::new();
        let tags = batch.dynamic("tag");
        for (i, message) in batch.iter().enumerate() {
            let tag = match tags.and_then(|t| t.get(i)) {
                Some(tag) => format!(",\"tag\":{tag:?}"),
                None => String::new(),
            };
            text.push_str(&format!(
                "{{\"v\":\"{}\",\"m\":{}{tag}}}\n",
                crate::VERSION,
                message.as_str()?
            ));
        }
        out.write_all(text.as_bytes())?;
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        if self.close_delay_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(self.close_delay_ms));
        }
        if let Some(mut out) = self.out.take() {
            if self.close_mark {
                writeln!(
                    out,
                    "{{\"v\":\"{}\",\"closed\":{}}}",
                    crate::VERSION,
                    self.generation
                )?;
            }
            out.flush()?;
        }
        Ok(())
    }
}
