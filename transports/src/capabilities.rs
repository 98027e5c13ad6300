//! What a backend can do, so callers pick strategies (multishot, zero copy) without naming it.

/// The shape of a socket's traffic, as the kernel's socket type says it
/// ([`ConnectionInfo::kind`](crate::ConnectionInfo::kind),
/// [`Capabilities::supports`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionKind {
    /// A connected byte stream without message boundaries (TCP, Unix `SOCK_STREAM`).
    Stream,
    /// Unconnected datagrams, each sent and received whole or lost (UDP, Unix `SOCK_DGRAM`).
    Datagram,
    /// A connected, reliable, ordered stream of messages whose boundaries are kept
    /// (Unix `SOCK_SEQPACKET`): one send is one message, one receive returns exactly one.
    SeqPacket,
}

impl Capabilities {
    /// True if this backend can open sockets of `kind`.
    pub fn supports(&self, kind: ConnectionKind) -> bool {
        match kind {
            // Every backend has connected streams (TCP, or the simulated network's).
            ConnectionKind::Stream => true,
            ConnectionKind::Datagram => self.datagrams,
            ConnectionKind::SeqPacket => self.seqpacket,
        }
    }
}

/// Features of a running backend. Later backends (AF_XDP, DPDK, RDMA) fill in the offload and
/// registered-memory fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Completions are native (io_uring) rather than readiness adapted in user space (epoll).
    pub native_completions: bool,
    /// One accept submission yields many connections.
    pub multishot_accept: bool,
    /// [`Reactor::recv_multishot`](crate::Reactor::recv_multishot) is native: one
    /// submission yields many reads into kernel-selected buffers (io_uring
    /// `IORING_RECV_MULTISHOT` with a provided buffer ring). When false the reactor emulates
    /// it (repeated reads on readiness, or one receive at a time) behind the same API.
    pub multishot_recv: bool,
    /// Kernel-selected buffers from a registered pool (io_uring provided buffer ring).
    pub provided_buffers: bool,
    /// Large sends go zero copy (io_uring `SEND_ZC` / `SENDMSG_ZC`), from
    /// [`ReactorConfig::zero_copy_threshold`](crate::ReactorConfig::zero_copy_threshold)
    /// bytes up.
    pub zero_copy_send: bool,
    /// [`Reactor::recv_timeout`](crate::Reactor::recv_timeout) and
    /// [`Reactor::connect_timeout`](crate::Reactor::connect_timeout) work (io_uring linked
    /// timeouts, or the epoll backend's timers).
    pub operation_timeouts: bool,
    /// Vectored sends (`sendmsg` with an iovec) are supported.
    pub vectored_io: bool,
    /// Completions are batched: many operations per kernel entry.
    pub batched_submit: bool,
    /// The ring defers task work to the owning thread (`DEFER_TASKRUN`).
    pub defer_taskrun: bool,
    /// Datagram sockets (UDP, Unix datagram): `bind_udp`, `send_to`, `recv_from`.
    pub datagrams: bool,
    /// Many datagrams per system call (`recvmmsg` / `sendmmsg`).
    pub batched_datagrams: bool,
    /// Unix domain sockets (stream and datagram) for IPC.
    pub unix_sockets: bool,
    /// Unix domain `SOCK_SEQPACKET` sockets ([`ConnectionKind::SeqPacket`]):
    /// [`Reactor::listen_seqpacket`](crate::Reactor::listen_seqpacket) and
    /// [`Reactor::connect_seqpacket`](crate::Reactor::connect_seqpacket).
    pub seqpacket: bool,
    /// TLS record encryption in the kernel or NIC.
    pub tls_offload: bool,
    /// Checksum computation in the NIC.
    pub checksum_offload: bool,
    /// The registered send pool ([`Reactor::fill_registered`](crate::Reactor::fill_registered))
    /// is registered with the kernel: sends from it use io_uring's fixed buffer.
    pub registered_buffers: bool,
}
