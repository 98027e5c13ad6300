//! # sinew-supervision
//!
//! Supervisors as actors: child specs, strategies (one-for-one, one-for-all, rest-for-one, simple-one-for-one), restart intensity, backoff; later circuit breakers, pools, retry budgets, rate limits and load balancing.
//!
//! This crate is part of the Sinew workspace layout (see `docs/ARCHITECTURE.md`). Its
//! contents arrive with the issue named below; until then it only names its layer so the
//! dependency graph of the workspace is in place and checked by CI.
//!
//! Filled in by the issue "Supervision trees".
//!
//! ```
//! assert_eq!(sinew_supervision::LAYER, "supervision");
//! ```

/// The name of this layer, as used in diagnostics and docs.
pub const LAYER: &str = "supervision";
