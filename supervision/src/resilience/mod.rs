//! Resilience policies as sans-I/O state machines (the caller passes `now` and reports
//! outcomes), so they run identically in virtual time and plug into pool supervisors:
//! circuit breakers, retries with budgets, admission limits, load balancing, discovery.

pub mod balance;
pub mod breaker;
pub mod discovery;
pub mod ratelimit;
pub mod retry;
