//! The conformance suite, instantiated once per backend.

mod common;

macro_rules! conformance {
    ($backend_mod:ident, $backend:expr, [$($case:ident),* $(,)?]) => {
        mod $backend_mod {
            $(
                #[test]
                fn $case() {
                    crate::common::$case($backend);
                }
            )*
        }
    };
}

macro_rules! every_backend {
    ($($case:ident),* $(,)?) => {
        conformance!(uring, sinew_transports::Backend::Uring, [$($case),*]);
        conformance!(mio, sinew_transports::Backend::Mio, [$($case),*]);
    };
}

every_backend!(
    echo,
    short_reads,
    short_read_then_eof,
    partial_writes,
    half_close,
    peer_reset,
    thousand_connections,
    large_transfer,
    echo_peers,
    partial_writes_peers,
    quiet_sends_peers,
    half_close_peers,
    peer_reset_peers,
    unix_stream,
    unix_connect_refused,
    seqpacket,
    udp,
    unix_datagram,
    paused_reader_stalls_sender,
    multishot_large_transfer,
    multishot_emulated,
    multishot_many_connections,
    multishot_control,
    zero_copy_send,
    zero_copy_disabled,
    recv_timeout,
    connect_timeout,
    connection_info,
    registered_send
);

// The simulated network has no real peers: it runs the cases whose peers are its own sockets.
// Its deadlines are virtual time and its multishot chunks are segments (not pool buffers): the
// sim's own tests (src/sim/tests.rs) cover those.
conformance!(
    sim,
    sinew_transports::Backend::Sim,
    [
        echo_peers,
        partial_writes_peers,
        quiet_sends_peers,
        half_close_peers,
        peer_reset_peers,
        thousand_connections,
        large_transfer,
        seqpacket,
        multishot_large_transfer,
        multishot_control,
        registered_send
    ]
);
