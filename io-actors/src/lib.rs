//! # sinew-io-actors
//!
//! Server, client and hybrid I/O actors generic over a protocol: listeners, connection actors, I/O groups per NUMA node. They glue codecs to transports; they do not parse.
//!
//! This crate is part of the Sinew workspace layout (see `docs/ARCHITECTURE.md`). Its
//! contents arrive with the issue named below; until then it only names its layer so the
//! dependency graph of the workspace is in place and checked by CI.
//!
//! Filled in by the issue "I/O actors, NUMA I/O groups, and HTTP/1.1 server and client".
//!
//! ```
//! assert_eq!(sinew_io_actors::LAYER, "io-actors");
//! ```

/// The name of this layer, as used in diagnostics and docs.
pub const LAYER: &str = "io-actors";
