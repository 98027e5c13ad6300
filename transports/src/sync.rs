//! Atomics behind one name so the lock-free return of lent receive buffers can be
//! model-checked with loom (`RUSTFLAGS="--cfg loom"`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicU8;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicU8;

pub(crate) use std::sync::atomic::Ordering;
