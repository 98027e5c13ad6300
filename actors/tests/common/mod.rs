//! Shared helpers for the runtime's integration tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::Duration;

use sinew_actors::{System, SystemBuilder};

/// A small system for tests: two workers, short spin.
pub fn system(workers: usize) -> System {
    builder(workers).build().expect("system starts")
}

/// A builder for a small test system.
pub fn builder(workers: usize) -> SystemBuilder {
    System::builder()
        .workers(workers)
        .spin(Duration::from_micros(20))
}

/// Waits for an event with a generous timeout; a test that would hang fails instead.
pub fn recv<T>(rx: &mpsc::Receiver<T>) -> T {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("event did not arrive within 10 s")
}

/// Asserts that nothing arrives for a short while (used only to check absence).
pub fn assert_silent<T: std::fmt::Debug>(rx: &mpsc::Receiver<T>) {
    if let Ok(v) = rx.recv_timeout(Duration::from_millis(50)) {
        panic!("unexpected event: {v:?}");
    }
}
