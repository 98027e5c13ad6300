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
    partial_writes,
    half_close,
    peer_reset,
    thousand_connections,
    large_transfer
);
