//! The black-box tests: the real server on a real socket, a real Redis started on a free
//! port, the real binary where a command is under test. One binary with a module per
//! feature, so the suite links once; `cargo test --test api MODULE` runs one feature.
//! Two kinds of test have binaries of their own: `tests/config.rs` changes the process's
//! working directory and environment, and `tests/process` reads process-wide metrics.

mod common;

mod bigcommerce_webhooks;
mod binary;
mod catalog_api;
mod console;
mod console_editing;
mod container;
mod customer_tokens;
mod decide_properties;
mod decisioning;
mod decisions;
mod durability;
mod errors_and_access;
mod eval;
mod events_api;
mod experiment_results;
mod experiments;
mod full_answers;
mod identities;
mod import;
mod live_trend;
mod money;
mod ops_and_lifecycle;
mod overrides;
mod pinned_answers;
mod promotions;
mod readme;
mod realtime;
mod recommend_api;
mod recommend_properties;
mod redis_faults;
mod router;
mod rules_oracle;
mod shopify_proxy;
mod shopify_webhooks;
mod store_conformance;
mod store_reset;
mod train;
