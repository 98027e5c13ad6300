//! # sinew-transports
//!
//! The completion-based transport abstraction with owned buffers and its backends (io_uring, mio/epoll, an in-memory simulated network; later AF_XDP, DPDK, RDMA). Each backend implements the actor core's `Driver` trait so a worker can park in it.
//!
//! This crate is part of the Sinew workspace layout (see `docs/ARCHITECTURE.md`). Its
//! contents arrive with the issue named below; until then it only names its layer so the
//! dependency graph of the workspace is in place and checked by CI.
//!
//! Filled in by the issue "Transports: io_uring and epoll drivers behind one abstraction".
//!
//! ```
//! assert_eq!(sinew_transports::LAYER, "transports");
//! ```

/// The name of this layer, as used in diagnostics and docs.
pub const LAYER: &str = "transports";
