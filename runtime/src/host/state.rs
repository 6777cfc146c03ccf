//! What each sink instance's store holds: one context per host interface (each defined in its
//! own module), wasi's context and resource table, memory limits, and the call deadline.
//!
//! The memory limit is the instance's, not each memory's: a component may be made of several
//! core modules, each with its own linear memory (and tables), and [`SinkLimits`] counts them
//! all together, so four memories cannot take four times the limit.

use wasmtime::ResourceLimiter;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use super::bindings::{oort, v0_1};
use super::fs_guard::{self, FileGuard, FileGuardView, Guarded};
use super::http::{self, HttpCtx};
use super::linking::{self, Linking};
use super::log::{self, LogCtx, LogView};
use super::mqtt::{self, MqttCtx, MqttView};
use super::resolver::{GrantedNames, ResolverView, ResolverViewOf};
use super::sockets::{CappedSockets, SocketCap, SocketCapView};

/// The data of one instance's store.
pub struct InstanceState {
    /// WASI p2: nothing granted but the sink's files (preopened folders) and sockets.
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: SinkLimits,
    /// `oort:sink/host`: the tag of the instance's log lines and their budget.
    pub(crate) log: LogCtx,
    /// `oort:sink/mqtt`: the granted broker and topics.
    pub(crate) mqtt: MqttCtx,
    /// `wasi:http`: the granted schemes and authorities.
    pub(crate) http: HttpCtx,
    /// `wasi:filesystem`: the granted names in the preopened folders.
    pub(crate) files: FileGuard,
    /// `wasi:sockets`: how many TCP sockets the instance holds and may hold.
    pub(crate) sockets: SocketCap,
    /// `wasi:sockets/ip-name-lookup`: the granted names and what the host resolved them to.
    pub(crate) names: GrantedNames,
    /// Set when a call ran past its deadline, so the trap can say so.
    pub(crate) deadline_hit: bool,
    /// Epoch ticks the current call may still run.
    pub(crate) ticks_left: u64,
    /// Set when a call starts, cleared at its first epoch tick: the call yields at a tick only
    /// once it has run through a whole one (see `instance::instantiate`).
    pub(crate) before_first_tick: bool,
}

impl InstanceState {
    /// Links the interfaces a sink may import, each to its context in the state: WASI p2 with
    /// nothing granted (`wasi:sockets` only with `linking.sockets`), outgoing `wasi:http` only
    /// with `linking.http`, the guarded filesystem, and the `oort:sink` imports (at 0.2.0 and
    /// 0.1.0).
    pub(crate) fn add_to_linker(
        linker: &mut Linker<Self>,
        linking: Linking,
    ) -> wasmtime::Result<()> {
        linking::add_wasi_to_linker(linker, linking.sockets)?;
        if linking.http {
            http::add_to_linker(linker)?;
        }
        // The filesystem is linked only through a guard that lets a sink name just the files
        // it was granted (wasmtime-wasi's own bindings are left out).
        fs_guard::add_to_linker(linker)?;
        oort::sink::types::add_to_linker::<Self, wasmtime::component::HasSelf<Self>>(
            linker,
            |state| state,
        )?;
        v0_1::oort::sink::types::add_to_linker::<Self, wasmtime::component::HasSelf<Self>>(
            linker,
            |state| state,
        )?;
        log::add_to_linker(linker)?;
        mqtt::add_to_linker(linker)?;
        Ok(())
    }
}

/// The most table elements all the tables of one instance may hold together (a table element is
/// a pointer: this is some megabytes). Sinks built by the usual toolchains hold some thousands.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The resource limits of one instance's store, each counted over the whole instance: the bytes
/// of all its linear memories and the elements of all its tables. A growth past either traps.
#[derive(Debug)]
pub struct SinkLimits {
    /// The most bytes all the instance's memories may take together.
    max_memory_bytes: usize,
    /// The bytes they take now (as granted by `memory_growing`).
    memory_bytes: usize,
    /// The most elements all the instance's tables may hold together.
    max_table_elements: usize,
    /// The elements they hold now.
    table_elements: usize,
}

impl SinkLimits {
    /// Limits for an instance whose memories may take `max_memory_bytes` together.
    pub fn new(max_memory_bytes: usize) -> Self {
        Self {
            max_memory_bytes,
            memory_bytes: 0,
            max_table_elements: MAX_TABLE_ELEMENTS,
            table_elements: 0,
        }
    }
}

/// Counts one object (memory or table) growing from `current` to `desired` in `total`, refusing
/// (with the error that becomes the trap) past `limit` or the object's own `maximum`.
fn grow(
    total: &mut usize,
    limit: usize,
    current: usize,
    desired: usize,
    maximum: Option<usize>,
    what: &str,
) -> wasmtime::Result<bool> {
    let after = total.saturating_sub(current).saturating_add(desired);
    if after > limit {
        wasmtime::bail!(
            "growing one of its {what} to {desired} would make {after} for the whole instance, over its limit of {limit}"
        );
    }
    if maximum.is_some_and(|max| desired > max) {
        wasmtime::bail!("growing one of its {what} to {desired}, past its own maximum");
    }
    *total = after;
    Ok(true)
}

impl ResourceLimiter for SinkLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        grow(
            &mut self.memory_bytes,
            self.max_memory_bytes,
            current,
            desired,
            maximum,
            "memories (bytes)",
        )
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("the sink's memory could not grow"))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        grow(
            &mut self.table_elements,
            self.max_table_elements,
            current,
            desired,
            maximum,
            "tables (elements)",
        )
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("the sink's table could not grow"))
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}

/// `oort:sink/types` declares types only: there is nothing to implement.
impl oort::sink::types::Host for InstanceState {}

/// The same, at 0.1.0.
impl v0_1::oort::sink::types::Host for InstanceState {}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.http.view(&mut self.table)
    }
}

impl FileGuardView for InstanceState {
    fn guarded_fs(&mut self) -> Guarded<'_> {
        self.files.view(&mut self.wasi, &mut self.table)
    }
}

impl ResolverViewOf for InstanceState {
    fn resolver(&mut self) -> ResolverView<'_> {
        let inner = wasmtime_wasi::sockets::WasiSocketsCtxView {
            ctx: self.wasi.sockets(),
            table: &mut self.table,
        };
        ResolverView::new(inner, &mut self.names)
    }
}

impl SocketCapView for InstanceState {
    fn capped_sockets(&mut self) -> CappedSockets<'_> {
        let inner = wasmtime_wasi::sockets::WasiSocketsCtxView {
            ctx: self.wasi.sockets(),
            table: &mut self.table,
        };
        self.sockets.view(inner)
    }
}

impl LogView for InstanceState {
    fn log(&mut self) -> &mut LogCtx {
        &mut self.log
    }
}

impl MqttView for InstanceState {
    fn mqtt(&mut self) -> &mut MqttCtx {
        &mut self.mqtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_memory_of_the_instance_counts_against_one_limit() {
        let mib = 1 << 20;
        let mut limits = SinkLimits::new(64 * mib);
        // Four memories of 1 MiB each start, then grow one after another.
        for _ in 0..4 {
            assert!(limits.memory_growing(0, mib, None).unwrap());
        }
        assert!(limits.memory_growing(mib, 40 * mib, None).unwrap());
        assert_eq!(limits.memory_bytes, 43 * mib);
        let err = limits.memory_growing(mib, 30 * mib, None).unwrap_err();
        assert!(err.to_string().contains("over its limit"), "{err}");
        assert_eq!(
            limits.memory_bytes,
            43 * mib,
            "a refused growth takes nothing"
        );
        assert!(limits.memory_growing(mib, 22 * mib, None).unwrap());
        assert!(limits.memory_growing(0, mib, Some(0)).is_err());
    }

    #[test]
    fn every_table_of_the_instance_counts_against_one_limit() {
        let mut limits = SinkLimits::new(1 << 20);
        assert!(
            limits
                .table_growing(0, MAX_TABLE_ELEMENTS - 10, None)
                .unwrap()
        );
        assert!(limits.table_growing(0, 10, None).unwrap());
        assert!(limits.table_growing(10, 11, None).is_err());
    }
}
