//! What each sink instance's store holds: one context per host interface (each defined in its
//! own module), wasi's context and resource table, memory limits, and the call deadline.

use wasmtime::StoreLimits;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use super::bindings::oort;
use super::fs_guard::{self, FileGuard, FileGuardView, Guarded};
use super::http::{self, HttpCtx};
use super::linking::{self, Linking};
use super::log::{self, LogCtx, LogView};
use super::mqtt::{self, MqttCtx, MqttView};

/// The data of one instance's store.
pub struct InstanceState {
    /// WASI p2: nothing granted but the sink's files (preopened folders) and sockets.
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// `oort:sink/host`: the tag of the instance's log lines and their budget.
    pub(crate) log: LogCtx,
    /// `oort:sink/mqtt`: the granted broker and topics.
    pub(crate) mqtt: MqttCtx,
    /// `wasi:http`: the granted schemes and authorities.
    pub(crate) http: HttpCtx,
    /// `wasi:filesystem`: the granted names in the preopened folders.
    pub(crate) files: FileGuard,
    /// Set when a call ran past its deadline, so the trap can say so.
    pub(crate) deadline_hit: bool,
    /// Epoch ticks the current call may still run.
    pub(crate) ticks_left: u64,
}

impl InstanceState {
    /// Links the interfaces a sink may import, each to its context in the state: WASI p2 with
    /// nothing granted (`wasi:sockets` only with `linking.sockets`), outgoing `wasi:http` only
    /// with `linking.http`, the guarded filesystem, and the `oort:sink` imports.
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
        log::add_to_linker(linker)?;
        mqtt::add_to_linker(linker)?;
        Ok(())
    }
}

/// `oort:sink/types` declares types only: there is nothing to implement.
impl oort::sink::types::Host for InstanceState {}

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
