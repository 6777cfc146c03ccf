//! Which WASI interfaces an instance gets, by its grants, and how much the host may hold for it.
//!
//! `wasi:http` is linked only for an action with an `http` grant, and `wasi:sockets` (with the
//! resolver) only for one with a `sockets` grant: every host-side resource an ungranted sink
//! could pile up (request bodies, header fields, sockets) is out of its reach. A component that
//! imports an interface it was not granted still instantiates: the interface's functions trap
//! when called (naming the function and the missing grant), and the instance is replaced like
//! after any trap. There is one linker per [`Linking`], and each plugin is pre-instantiated
//! once per `Linking` when it is loaded (its [`Pres`]), so an instance starts as fast as with
//! one linker.
//!
//! What the host holds for a guest outside its linear memory is bounded by the action's
//! `maxMemory`: every resource the store hands out takes a slot in its resource table, and
//! the table has [`max_handles`] slots, so that no more than `maxMemory` bytes (4 MiB at
//! least) fit in `wasi:http` bodies and fields at [`HTTP_RESOURCE_BYTES`] each. Past it, the
//! call that would create one more traps. This budget is beside linear memory's, not shared
//! with it.

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasData, InstancePre, Linker, ResourceTable, ResourceType};
use wasmtime::{Engine, Store};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::{cli, clocks, random, sockets};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};

use super::bindings::{SinkWorld, SinkWorldPre, WitVersion, v0_1};
use super::grants::Grants;
use super::state::InstanceState;

/// The most bytes one `wasi:http` resource can hold in the host: an outgoing body buffers at
/// most two chunks of [`HTTP_BODY_CHUNK_BYTES`], a `fields` at most this many bytes of names
/// and values.
pub const HTTP_RESOURCE_BYTES: usize = 64 << 10;

/// The chunk an outgoing `wasi:http` body is written in (two may wait in its buffer).
pub const HTTP_BODY_CHUNK_BYTES: usize = HTTP_RESOURCE_BYTES / 2;

/// The fewest resource-table slots an instance gets, however small its `maxMemory`.
const MIN_HANDLES: usize = 64;
/// The most resource-table slots an instance gets (wasmtime's own limit is 1,000,000).
const MAX_HANDLES: usize = 1024;

/// Resource-table slots for an instance whose `maxMemory` is `max_memory` bytes: as many
/// `wasi:http` resources as fit in it, within [`MIN_HANDLES`]..=[`MAX_HANDLES`].
pub fn max_handles(max_memory: usize) -> usize {
    (max_memory / HTTP_RESOURCE_BYTES).clamp(MIN_HANDLES, MAX_HANDLES)
}

/// The resource table of an instance whose `maxMemory` is `max_memory` bytes.
pub fn resource_table(max_memory: usize) -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(max_handles(max_memory));
    table
}

/// The optional interfaces an instance is linked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linking {
    /// `wasi:http/{types,outgoing-handler}`.
    pub http: bool,
    /// `wasi:sockets` and its resolver.
    pub sockets: bool,
}

impl Linking {
    /// What `grants` need linked.
    pub fn of(grants: &Grants) -> Self {
        Self {
            http: !grants.http.is_empty(),
            sockets: !grants.sockets.is_empty(),
        }
    }

    /// Everything: what a component is type-checked against when it is loaded.
    pub const ALL: Self = Self {
        http: true,
        sockets: true,
    };

    fn index(self) -> usize {
        usize::from(self.http) * 2 + usize::from(self.sockets)
    }

    /// Every `Linking`, in [`Self::index`] order.
    const EACH: [Self; 4] = [
        Self {
            http: false,
            sockets: false,
        },
        Self {
            http: false,
            sockets: true,
        },
        Self {
            http: true,
            sockets: false,
        },
        Self::ALL,
    ];
}

/// One linker per [`Linking`].
pub struct Linkers([Linker<InstanceState>; 4]);

impl Linkers {
    /// Builds the four linkers.
    pub fn new(engine: &Engine) -> wasmtime::Result<Self> {
        let mut linkers = Vec::with_capacity(4);
        for linking in Linking::EACH {
            let mut linker = Linker::new(engine);
            InstanceState::add_to_linker(&mut linker, linking)?;
            linkers.push(linker);
        }
        let linkers: [Linker<InstanceState>; 4] = linkers
            .try_into()
            .map_err(|_| wasmtime::Error::msg("four linkers"))?;
        Ok(Self(linkers))
    }

    /// The linker for `linking`.
    pub fn get(&self, linking: Linking) -> &Linker<InstanceState> {
        &self.0[linking.index()]
    }
}

/// A component pre-instantiated for the version of `oort:sink` it targets.
#[derive(Clone)]
pub enum VersionedPre {
    /// `oort:sink@0.1.0`.
    V0_1(v0_1::SinkWorldPre<InstanceState>),
    /// `oort:sink@0.2.0`.
    V0_2(SinkWorldPre<InstanceState>),
}

/// An instance's exports, at the version its component targets.
pub enum VersionedBindings {
    /// `oort:sink@0.1.0`.
    V0_1(v0_1::SinkWorld),
    /// `oort:sink@0.2.0`.
    V0_2(SinkWorld),
}

impl VersionedPre {
    /// Type-checks `pre`'s exports against the world of `version`.
    pub fn new(version: WitVersion, pre: InstancePre<InstanceState>) -> wasmtime::Result<Self> {
        Ok(match version {
            WitVersion::V0_1 => Self::V0_1(v0_1::SinkWorldPre::new(pre)?),
            WitVersion::V0_2 => Self::V0_2(SinkWorldPre::new(pre)?),
        })
    }

    /// Instantiates the component in `store`.
    pub async fn instantiate_async(
        &self,
        store: &mut Store<InstanceState>,
    ) -> wasmtime::Result<VersionedBindings> {
        Ok(match self {
            Self::V0_1(pre) => VersionedBindings::V0_1(pre.instantiate_async(store).await?),
            Self::V0_2(pre) => VersionedBindings::V0_2(pre.instantiate_async(store).await?),
        })
    }
}

/// A plugin's pre-instantiated component, one per [`Linking`], all made when it is loaded (so
/// starting an instance only picks one).
pub struct Pres([VersionedPre; 4]);

impl Pres {
    /// Pre-instantiates `component` (which targets `version`) for each [`Linking`]; `all` is
    /// the one for [`Linking::ALL`], made when the component was type-checked. In the others,
    /// the interfaces the component imports but the `Linking` leaves out trap when called.
    pub fn new(
        linkers: &Linkers,
        component: &Component,
        version: WitVersion,
        all: VersionedPre,
    ) -> wasmtime::Result<Self> {
        let mut pres = Vec::with_capacity(4);
        for linking in Linking::EACH {
            if linking == Linking::ALL {
                pres.push(all.clone());
                continue;
            }
            let mut linker = linkers.get(linking).clone();
            stub_ungranted(&mut linker, component, linking)?;
            pres.push(VersionedPre::new(
                version,
                linker.instantiate_pre(component)?,
            )?);
        }
        let pres: [VersionedPre; 4] = pres
            .try_into()
            .map_err(|_| wasmtime::Error::msg("four pre-instantiations"))?;
        Ok(Self(pres))
    }

    /// The pre-instantiated component for `linking`.
    pub fn get(&self, linking: Linking) -> &VersionedPre {
        &self.0[linking.index()]
    }
}

/// The type of the resources of an interface the sink was not granted (none is ever made).
struct Ungranted;

/// Defines, in `linker`, the interfaces `component` imports that `linking` leaves out
/// (`wasi:http/*`, `wasi:sockets/*`): each function traps, naming itself, when called.
///
/// (wasmtime's `define_unknown_imports_as_traps` is too broad here: it also stubs the linked
/// interfaces the component imports at another semver-compatible version, and the resources
/// they share with the stubbed ones.)
fn stub_ungranted(
    linker: &mut Linker<InstanceState>,
    component: &Component,
    linking: Linking,
) -> wasmtime::Result<()> {
    let engine = component.engine().clone();
    let ty = component.component_type();
    // Resources already defined by an earlier import: a later interface that uses one only
    // refers to it, and must not define it again.
    let mut defined: Vec<ResourceType> = Vec::new();
    for (name, import) in ty.imports(&engine) {
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            continue;
        };
        let ungranted = (!linking.http && name.starts_with("wasi:http/"))
            || (!linking.sockets && name.starts_with("wasi:sockets/"));
        if !ungranted {
            defined.extend(instance.exports(&engine).filter_map(|(_, e)| match e.ty {
                ComponentItem::Resource(r) => Some(r),
                _ => None,
            }));
            continue;
        }
        let grant = if name.starts_with("wasi:http/") {
            "an `http`"
        } else {
            "a `sockets`"
        };
        let mut stubs = linker.instance(name)?;
        for (export, item) in instance.exports(&engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let message = format!("`{name}#{export}` called without {grant} grant");
                    stubs.func_new(export, move |_, _, _, _| {
                        Err(wasmtime::Error::msg(message.clone()))
                    })?;
                }
                ComponentItem::Resource(r) if !defined.contains(&r) => {
                    defined.push(r);
                    stubs.resource(export, ResourceType::host::<Ungranted>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// `wasi:io` on the store's resource table.
struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// WASI p2 as `wasmtime_wasi::p2::add_to_linker_async` links it (nothing granted is in the
/// context), without `wasi:filesystem` (the guard links its own) and with `wasi:sockets` only
/// when `sockets`.
pub fn add_wasi_to_linker(
    linker: &mut Linker<InstanceState>,
    sockets: bool,
) -> wasmtime::Result<()> {
    type T = InstanceState;
    let l = linker;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, HasTable>(l, |t| &mut t.table)?;
    wasmtime_wasi_io::bindings::wasi::io::poll::add_to_linker::<T, HasTable>(l, |t| &mut t.table)?;
    wasmtime_wasi_io::bindings::wasi::io::streams::add_to_linker::<T, HasTable>(l, |t| {
        &mut t.table
    })?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    if sockets {
        let options = sockets::network::LinkOptions::default();
        // Sockets are created through the per-instance cap (`host/sockets.rs`).
        super::sockets::add_to_linker(l)?;
        sockets::instance_network::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
        sockets::network::add_to_linker::<T, WasiSockets>(l, &options, T::sockets)?;
        // Names are looked up by the host, never for the guest (`host/resolver.rs`).
        super::resolver::add_to_linker(l)?;
        sockets::tcp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
        sockets::udp::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
        sockets::udp_create_socket::add_to_linker::<T, WasiSockets>(l, T::sockets)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_linking_has_its_own_slot() {
        let each = Linking::EACH;
        for (i, linking) in each.iter().enumerate() {
            assert_eq!(linking.index(), i);
        }
        assert_eq!(each[Linking::ALL.index()], Linking::ALL);
    }

    #[test]
    fn handles_follow_max_memory_within_bounds() {
        assert_eq!(max_handles(16 << 20), 256);
        assert_eq!(max_handles(64 << 20), 1024);
        assert_eq!(max_handles(1 << 30), MAX_HANDLES);
        assert_eq!(max_handles(1 << 20), MIN_HANDLES);
        assert_eq!(resource_table(16 << 20).max_capacity(), 256);
    }
}
