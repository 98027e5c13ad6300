//! What a backend can do, so callers pick strategies (multishot, zero copy) without naming it.

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
    /// TLS record encryption in the kernel or NIC.
    pub tls_offload: bool,
    /// Checksum computation in the NIC.
    pub checksum_offload: bool,
}
