//! Write Oort sinks in Rust.
//!
//! A sink is a type that implements [`Sink`]: it receives its typed configuration once, then
//! batches of messages, and is compiled to a WebAssembly component that Oort runs in a sandbox.
//! This crate hides the component plumbing (the `oort:sink` WIT world and `wit-bindgen`): a
//! sink depends on `oort-sdk` alone.
//!
//! ```
//! use oort_sdk::{Batch, Context, Sink, SinkError, export_sink, serde::Deserialize};
//!
//! /// Logs every message with a prefix.
//! #[derive(Deserialize)]
//! #[serde(crate = "oort_sdk::serde", deny_unknown_fields)]
//! struct Config {
//!     prefix: String,
//! }
//!
//! struct Echo(Config);
//!
//! impl Sink for Echo {
//!     type Config = Config;
//!
//!     fn configure(_ctx: &Context, config: Config) -> Result<Self, SinkError> {
//!         Ok(Self(config))
//!     }
//!
//!     fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
//!         for message in batch {
//!             oort_sdk::log::info(&format!("{}{}", self.0.prefix, message.as_str()?));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_sink!(Echo);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (the crate must be a `cdylib`)
//! and copy `target/wasm32-wasip2/release/<name>.wasm` to `plugins/sinks/Echo.wasm`.
#![deny(missing_docs)]

extern crate self as oort_sdk;

use std::fmt;

pub use serde;
pub use serde_json;

mod batch;
mod config;
pub mod log;
pub mod mqtt;

pub use batch::{Batch, Message};

/// Who this sink instance works for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The rule's `id`.
    pub rule_id: String,
    /// The action's name within the rule, e.g. `file_0`.
    pub action: String,
    /// Which of the action's `concurrency` instances this is, from 0.
    pub instance: u32,
    /// How each message payload is encoded: `json` or `delimited`.
    pub format: String,
    /// 0 for the action's first instance in this run; one more each time the host replaces the
    /// instance (after a trap or a hot reload). Reset the target (truncate a file...) only at 0.
    pub generation: u32,
}

/// Why a call failed. The kind tells the host what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// The props are wrong: the rule does not start. Name the prop in the message.
    InvalidConfig(String),
    /// A passing fault: the host retries the batch with backoff, then caches it.
    Transient(String),
    /// The target refuses this batch for good: it goes to the dead-letter output.
    Rejected(String),
}

impl SinkError {
    /// An [`SinkError::InvalidConfig`] from anything printable.
    pub fn invalid_config(message: impl fmt::Display) -> Self {
        Self::InvalidConfig(message.to_string())
    }

    /// A [`SinkError::Transient`] from anything printable.
    pub fn transient(message: impl fmt::Display) -> Self {
        Self::Transient(message.to_string())
    }

    /// A [`SinkError::Rejected`] from anything printable.
    pub fn rejected(message: impl fmt::Display) -> Self {
        Self::Rejected(message.to_string())
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidConfig(m) => write!(f, "invalid config: {m}"),
            Self::Transient(m) => write!(f, "transient: {m}"),
            Self::Rejected(m) => write!(f, "rejected: {m}"),
        }
    }
}

impl std::error::Error for SinkError {}

impl From<std::io::Error> for SinkError {
    /// I/O failures are treated as passing faults: the host retries.
    fn from(err: std::io::Error) -> Self {
        Self::Transient(err.to_string())
    }
}

/// A sink: what a rule action delivers its messages to.
///
/// The host calls [`Sink::configure`] once, then [`Sink::open_after`] (which calls
/// [`Sink::open`] unless overridden), then [`Sink::collect`] for
/// every batch in order, then [`Sink::close`]. A panic traps the instance: the host discards it
/// and starts a fresh one, which is configured and opened again before it gets the batch.
pub trait Sink: Sized + 'static {
    /// The action's props, deserialized from the JSON object the rule holds for the action
    /// (minus the common properties the host handles). A deserialization error becomes
    /// [`SinkError::InvalidConfig`] naming the field.
    type Config: serde::de::DeserializeOwned;

    /// Checks the config and builds the sink. Must not touch the outside world: `oort validate`
    /// calls it too.
    fn configure(ctx: &Context, config: Self::Config) -> Result<Self, SinkError>;

    /// Connects to the target (opens files, sockets). Called once, after `configure` (by the
    /// default [`Sink::open_after`]).
    fn open(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// What the host calls after `configure`: `delivered` is the highest batch
    /// [sequence](Batch::sequence) the host knows was delivered, `None` when the numbering
    /// starts afresh (forget any marker kept from an earlier run). Batches above `delivered`
    /// but not above the sink's own marker of what it wrote were written before a crash or a
    /// trap lost their acknowledgement: skip them for exactly-once output. The default just
    /// calls [`Sink::open`].
    fn open_after(&mut self, delivered: Option<u64>) -> Result<(), SinkError> {
        let _ = delivered;
        self.open()
    }

    /// Delivers one batch. `Ok` means every message in it is delivered (or buffered by the sink,
    /// which must then deliver it by [`Sink::close`]).
    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError>;

    /// Flushes and releases everything. Called once, at the end or before a hot reload.
    fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Exports a [`Sink`] implementation as the component's `oort:sink/sink` interface.
///
/// Use it once per crate, at the top level: `export_sink!(MySink);`.
#[macro_export]
macro_rules! export_sink {
    ($ty:ty) => {
        const _: () = {
            struct OortSinkExport;

            ::std::thread_local! {
                static STATE: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl $crate::__private::Guest for OortSinkExport {
                fn configure(
                    ctx: $crate::__private::WitContext,
                    props: ::std::string::String,
                ) -> ::core::result::Result<(), $crate::__private::WitError> {
                    STATE.with(|state| $crate::__private::configure::<$ty>(state, ctx, props))
                }

                fn open(
                    delivered: ::core::option::Option<u64>,
                ) -> ::core::result::Result<(), $crate::__private::WitError> {
                    STATE.with(|state| $crate::__private::open::<$ty>(state, delivered))
                }

                fn collect(
                    batch: $crate::__private::WitBatch,
                ) -> ::core::result::Result<(), $crate::__private::WitError> {
                    STATE.with(|state| $crate::__private::collect::<$ty>(state, batch))
                }

                fn close() -> ::core::result::Result<(), $crate::__private::WitError> {
                    STATE.with(|state| $crate::__private::close::<$ty>(state))
                }
            }

            // Only a wasm build exports the component's functions: a native build of a sink
            // crate (for its unit tests, or `cargo test --workspace`) links without them.
            #[cfg(target_arch = "wasm32")]
            $crate::__private::bindings::__export_sink_world!(
                OortSinkExport with_types_in $crate::__private::bindings
            );
        };

        /// Native builds export nothing; this keeps the sink's code reachable (so the compiler
        /// does not call it dead) and lets native tests drive the lifecycle.
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __oort_sink_lifecycle() -> $crate::__private::Lifecycle<$ty> {
            $crate::__private::Lifecycle::new()
        }
    };
}

#[doc(hidden)]
pub mod __private {
    //! Glue used by [`export_sink!`](crate::export_sink); not a stable API.

    use std::cell::RefCell;

    pub use wit_bindgen;

    #[expect(missing_docs, reason = "generated by wit-bindgen")]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "sink-world",
            pub_export_macro: true,
            export_macro_name: "__export_sink_world",
            default_bindings_module: "oort_sdk::__private::bindings",
            runtime_path: "oort_sdk::__private::wit_bindgen::rt",
        });
    }

    pub use bindings::exports::oort::sink::sink::Guest;
    pub use bindings::oort::sink::types::{
        Batch as WitBatch, Context as WitContext, SinkError as WitError,
    };

    use crate::{Batch, Context, Sink, SinkError};

    fn to_wit(err: SinkError) -> WitError {
        match err {
            SinkError::InvalidConfig(m) => WitError::InvalidConfig(m),
            SinkError::Transient(m) => WitError::Transient(m),
            SinkError::Rejected(m) => WitError::Rejected(m),
        }
    }

    /// The four lifecycle functions of a sink type, for native builds and tests.
    pub struct Lifecycle<T: Sink>(std::marker::PhantomData<T>, RefCell<Option<T>>);

    impl<T: Sink> Lifecycle<T> {
        pub fn new() -> Self {
            Self(std::marker::PhantomData, RefCell::new(None))
        }

        pub fn configure(&self, ctx: WitContext, props: String) -> Result<(), WitError> {
            configure::<T>(&self.1, ctx, props)
        }

        pub fn open(&self, delivered: Option<u64>) -> Result<(), WitError> {
            open::<T>(&self.1, delivered)
        }

        pub fn collect(&self, batch: WitBatch) -> Result<(), WitError> {
            collect::<T>(&self.1, batch)
        }

        pub fn close(&self) -> Result<(), WitError> {
            close::<T>(&self.1)
        }
    }

    impl<T: Sink> Default for Lifecycle<T> {
        fn default() -> Self {
            Self::new()
        }
    }

    fn not_configured() -> WitError {
        WitError::InvalidConfig("the host called the sink before `configure` succeeded".into())
    }

    pub fn configure<T: Sink>(
        state: &RefCell<Option<T>>,
        ctx: WitContext,
        props: String,
    ) -> Result<(), WitError> {
        let ctx = Context {
            rule_id: ctx.rule_id,
            action: ctx.action,
            instance: ctx.instance,
            format: ctx.format,
            generation: ctx.generation,
        };
        let config: T::Config = crate::config::decode(&props).map_err(WitError::InvalidConfig)?;
        let sink = T::configure(&ctx, config).map_err(to_wit)?;
        *state.borrow_mut() = Some(sink);
        Ok(())
    }

    pub fn open<T: Sink>(
        state: &RefCell<Option<T>>,
        delivered: Option<u64>,
    ) -> Result<(), WitError> {
        let mut state = state.borrow_mut();
        let sink = state.as_mut().ok_or_else(not_configured)?;
        sink.open_after(delivered).map_err(to_wit)
    }

    pub fn collect<T: Sink>(state: &RefCell<Option<T>>, batch: WitBatch) -> Result<(), WitError> {
        let mut state = state.borrow_mut();
        let sink = state.as_mut().ok_or_else(not_configured)?;
        let dynamic = batch
            .dynamic
            .into_iter()
            .map(|p| (p.name, p.values))
            .collect();
        let batch = Batch::from_parts(batch.payloads, batch.ends, batch.timestamps, batch.header)
            .and_then(|b| b.with_sequence(batch.sequence, dynamic))
            .map_err(to_wit)?;
        sink.collect(&batch).map_err(to_wit)
    }

    pub fn close<T: Sink>(state: &RefCell<Option<T>>) -> Result<(), WitError> {
        match state.borrow_mut().take() {
            Some(mut sink) => sink.close().map_err(to_wit),
            None => Ok(()),
        }
    }
}
