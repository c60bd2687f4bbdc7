//! Tests that read process-wide state: the metrics recorder (one per process, shared by
//! every app a test binary starts) and the process's connection limits. A binary of
//! their own, so that no test of `tests/api` moves the gauges and series they read.

#[path = "../api/common/mod.rs"]
#[allow(dead_code)] // The harness is tests/api's; these tests use part of it.
mod common;

mod circuit_breaker;
mod decision_log;
mod drift;
mod metrics_at_start;
mod ruleset_limits;
mod slow_clients;
