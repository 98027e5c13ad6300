//! # sinew-protocols
//!
//! Sans-I/O protocol codecs and connection state machines (bytes in, events out): HTTP/1.1, HTTP/2, gRPC, RESP, PostgreSQL, Kafka, WebSocket, TLS. Nothing here touches a socket.
//!
//! This crate is part of the Sinew workspace layout (see `docs/ARCHITECTURE.md`). Its
//! contents arrive with the issue named below; until then it only names its layer so the
//! dependency graph of the workspace is in place and checked by CI.
//!
//! Filled in by the issue "I/O actors, NUMA I/O groups, and HTTP/1.1 server and client" and the protocol issues after it.
//!
//! ```
//! assert_eq!(sinew_protocols::LAYER, "protocols");
//! ```

/// The name of this layer, as used in diagnostics and docs.
pub const LAYER: &str = "protocols";
