//! The `dataTemplate` engine: Go `text/template` templates, with the sprig and eKuiper
//! functions eKuiper sinks accept, parsed once and run against Oort values.
//!
//! A sink's data is a [`Value::Object`] (one row, `sendSingle: true`) or a [`Value::Array`] of
//! objects (a window result). Objects behave like Go's `map[string]interface{}`: `.key`
//! reads a key, a missing key prints `<no value>`, `range` walks keys in sorted order, and
//! `{{.}}` prints `map[a:1 b:2]`. Numbers print as Go prints `int64` and `float64`.
//!
//! Go's syntax and execution rules are followed closely, including its error texts. Where
//! Oort differs on purpose, it is more accepting: integers and floats compare and convert
//! into each other (eKuiper's JSON numbers are all float64, Oort keeps whole numbers as
//! integers), and `toJson` writes Oort's JSON (sorted keys, no HTML escaping).
//!
//! ```
//! use oort_template::Template;
//! use oort_value::json;
//!
//! // Parsed once, when the rule starts.
//! let template = Template::parse(r#"{"content":{{json .}}}"#)?;
//! // Run for every message.
//! let row = json::parse_value(br#"{"ab": "hello"}"#)?;
//! assert_eq!(template.render_to_string(&row)?, r#"{"content":{"ab":"hello"}}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The expected outputs of the Go parity tests come from Go itself: `parity/` beside this
//! crate holds the Go program that renders every case and its README says how to regenerate
//! them.

#![deny(missing_docs)]

mod exec;
mod format;
mod funcs;
mod lexer;
mod parse;
mod sprig;
#[cfg(test)]
mod tests;

use oort_value::{json, value};

use crate::value::Value;

pub use exec::{MAX_EXEC_DEPTH, MAX_OUTPUT, MAX_TEMPLATE_DEPTH, MAX_WORK};
pub use parse::MAX_NESTING;

/// A parsed template, reusable and shareable between threads.
pub struct Template {
    parsed: parse::Parsed,
}

/// Why a template could not be parsed or run.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The text is not a valid template.
    #[error("{line}:{col}: {msg}")]
    Parse {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// Running the template failed.
    #[error("{line}:{col}: executing at <{action}>: {msg}")]
    Exec {
        /// 1-based line of the failing action.
        line: usize,
        /// 1-based column (in characters) of the failing action.
        col: usize,
        /// The source text of the failing part, such as `index . 5`.
        action: String,
        /// What went wrong.
        msg: String,
    },
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("source", &&*self.parsed.src)
            .finish_non_exhaustive()
    }
}

impl Template {
    /// Parses template text; the error says line:column and what is wrong.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        match parse::parse(text) {
            Ok(parsed) => Ok(Self { parsed }),
            Err(e) => {
                let (line, col) = line_col(text, e.pos);
                Err(TemplateError::Parse {
                    line,
                    col,
                    msg: e.msg,
                })
            }
        }
    }

    /// Runs the template with `dot` as the data, appending the output to `out`. On error,
    /// `out` is left as it was.
    pub fn render(&self, dot: &Value, out: &mut Vec<u8>) -> Result<(), TemplateError> {
        let start = out.len();
        exec::run(&self.parsed, dot, out).map_err(|e| {
            out.truncate(start);
            let src = &*self.parsed.src;
            let (line, col) = line_col(src, e.pos);
            let end = e.end.clamp(e.pos, src.len());
            TemplateError::Exec {
                line,
                col,
                action: src.get(e.pos..end).unwrap_or_default().to_owned(),
                msg: e.msg,
            }
        })
    }

    /// Runs the template and returns the output as a string.
    pub fn render_to_string(&self, dot: &Value) -> Result<String, TemplateError> {
        let mut out = Vec::new();
        self.render(dot, &mut out)?;
        Ok(String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// The template text this was parsed from.
    pub fn source(&self) -> &str {
        &self.parsed.src
    }
}

/// Go's type name of the value eKuiper would hold (`int64`, `map[string]interface {}`; a
/// missing value is an `interface {}`).
pub fn go_type(v: &Value) -> &'static str {
    format::go_type(v)
}

/// Go's `%v` of a value, as `fmt.Print` writes the value eKuiper would hold (`1e+06`,
/// `[1 a]`, `map[a:1 b:x]`), for texts that must read as eKuiper's.
pub fn go_value(v: &Value) -> String {
    format::to_v_string(v)
}

/// Names of the functions templates may call.
pub fn function_names() -> impl Iterator<Item = &'static str> {
    funcs::names()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(src.len());
    let pos = (0..=pos)
        .rev()
        .find(|&p| src.is_char_boundary(p))
        .unwrap_or(0);
    let before = &src[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
