//! Oort runs eKuiper-style streaming rules whose sinks are WebAssembly components.
//!
//! Sources decode rows, the rule engine evaluates the rule's SQL over them, and each action
//! of the rule delivers the results through its sink pipeline into a sink: a built-in one
//! (`log`, `nop`, `memory`) or a wasm component run by [`host`], one sandboxed instance per
//! action.

#![deny(missing_docs)]

pub(crate) mod backoff;
pub(crate) mod blocking;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod host;
pub(crate) mod metrics;
pub(crate) mod mqtt;
pub mod reload;
pub mod replay;
pub(crate) mod report;
pub mod rule;
pub mod serve;
pub mod sink;
pub mod source;

// The data model, the SQL layer and the template engine are crates of their own; they keep
// their old module paths here.
pub(crate) use oort_sql::{self as sql, stream};
pub(crate) use oort_template as template;
pub use oort_value::{json, message, value};

/// The memory allocator the `oort` binary uses (mimalloc: the engine allocates many small rows
/// and strings, which it serves much faster than the system allocator).
pub use mimalloc::MiMalloc as Allocator;
