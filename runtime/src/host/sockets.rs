//! `wasi:sockets/tcp-create-socket` with a cap: an instance holds at most so many TCP sockets
//! at once; past it, creating one fails with `new-socket-limit` (where the connection may go is
//! the socket address check's business, set up in `instance.rs`).

use std::collections::HashSet;

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddressFamily};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket;
use wasmtime_wasi::p2::{SocketError, SocketResult, TcpSocket};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use super::log::InstanceTag;

/// The sockets one instance holds and how many it may.
pub struct SocketCap {
    /// Handles of the sockets created, some perhaps dropped since (pruned on the next create).
    live: HashSet<u32>,
    /// How many the instance may hold at once.
    max: usize,
    /// Whose refusals are logged.
    tag: InstanceTag,
}

impl SocketCap {
    /// At most `max` sockets at once; refusals are logged under `tag`.
    pub fn new(max: usize, tag: InstanceTag) -> Self {
        Self {
            live: HashSet::new(),
            max,
            tag,
        }
    }

    /// The view the bindings work on: wasi's sockets and this cap.
    pub fn view<'a>(&'a mut self, inner: WasiSocketsCtxView<'a>) -> CappedSockets<'a> {
        CappedSockets { inner, cap: self }
    }
}

/// What `tcp-create-socket` sees: wasmtime-wasi's sockets and the cap.
pub struct CappedSockets<'a> {
    inner: WasiSocketsCtxView<'a>,
    cap: &'a mut SocketCap,
}

/// A store whose socket creation is capped.
pub trait SocketCapView: Send {
    /// The capped view (see [`SocketCap::view`]).
    fn capped_sockets(&mut self) -> CappedSockets<'_>;
}

/// The [`HasData`] of the capped `tcp-create-socket`.
struct Capped;

impl HasData for Capped {
    type Data<'a> = CappedSockets<'a>;
}

/// Links the capped `wasi:sockets/tcp-create-socket`, in place of wasmtime-wasi's own.
pub fn add_to_linker<T: SocketCapView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    tcp_create_socket::add_to_linker::<T, Capped>(linker, T::capped_sockets)
}

/// The error conversions the socket bindings need: wasmtime-wasi's own.
impl network::Host for CappedSockets<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.inner, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.inner, err)
    }
}

impl network::HostNetwork for CappedSockets<'_> {
    fn drop(&mut self, this: Resource<network::Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.inner, this)
    }
}

impl tcp_create_socket::Host for CappedSockets<'_> {
    fn create_tcp_socket(
        &mut self,
        address_family: IpAddressFamily,
    ) -> SocketResult<Resource<TcpSocket>> {
        // A handle is live while the table still holds a socket under it (a handle reused for
        // a new socket is that socket's, and counted once).
        let table = &*self.inner.table;
        self.cap
            .live
            .retain(|&rep| table.get(&Resource::<TcpSocket>::new_borrow(rep)).is_ok());
        if self.cap.live.len() >= self.cap.max {
            let tag = &self.cap.tag;
            tracing::warn!(
                rule = %tag.rule,
                action = %tag.action,
                instance = tag.instance,
                "sink: new socket refused: it holds {} sockets, its limit (`maxSockets`, \
                 `--max-sockets`)",
                self.cap.live.len()
            );
            return Err(SocketError::from(ErrorCode::NewSocketLimit));
        }
        let socket = tcp_create_socket::Host::create_tcp_socket(&mut self.inner, address_family)?;
        self.cap.live.insert(socket.rep());
        Ok(socket)
    }
}
