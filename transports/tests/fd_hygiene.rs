//! Conformance cases that count or limit this process's descriptors. They run in one test, in
//! their own process, so no other test opens descriptors meanwhile.

mod common;

use sinew_transports::Backend;

#[test]
fn descriptor_hygiene_on_every_backend() {
    for backend in [Backend::Uring, Backend::Mio] {
        common::cancel_in_flight(backend);
        common::drop_with_ops_in_flight(backend);
        common::emfile_backoff(backend);
        common::datagram_cancel_in_flight(backend);
        common::multishot_cancel_in_flight(backend);
    }
    // The simulated network has no descriptors, but the same buffers must come back.
    common::cancel_in_flight(Backend::Sim);
    common::drop_with_ops_in_flight(Backend::Sim);
}
