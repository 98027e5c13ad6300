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
    /// One recv submission yields many reads (provided buffer rings).
    pub multishot_recv: bool,
    /// Kernel-selected buffers from a registered pool.
    pub provided_buffers: bool,
    /// Zero-copy send (`SEND_ZC`) is usable.
    pub zero_copy_send: bool,
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
