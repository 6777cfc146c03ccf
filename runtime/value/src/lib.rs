//! Oort's data model, shared by the rule engine, its SQL layer and the sink templates.
//!
//! A [`Row`] is a shared [`Schema`] (field names in arrival order) plus its [`Value`]s;
//! [`json`] reads rows from JSON and writes values the way eKuiper does (sorted keys, Go's
//! number formatting); [`Message`] is what a rule hands its actions; [`base64`] holds the
//! base64 readings and writings eKuiper's functions and `bytea` columns use; [`path`] resolves
//! the paths rules name against the folder of the file that names them.
//!
//! ```
//! use oort_value::json::{self, RowDecoder};
//! use oort_value::Value;
//!
//! let row = RowDecoder::new().decode(br#"{"b": 2, "a": "x"}"#, 0)?;
//! assert_eq!(row.get("a"), Some(&Value::from("x")));
//!
//! let mut out = Vec::new();
//! json::write_row(&mut out, &row, &json::sorted_order(row.schema()));
//! assert_eq!(out, br#"{"a":"x","b":2}"#);
//! # Ok::<(), serde_json::Error>(())
//! ```

#![deny(missing_docs)]

pub mod base64;
pub mod json;
pub mod message;
pub mod path;
pub mod value;

pub use message::Message;
pub use value::{Map, Row, Schema, Value};
