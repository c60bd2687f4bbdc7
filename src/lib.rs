//! Vitrine: real-time personalization for headless commerce.
//!
//! A storefront calls `/v1/recommend` on every page view with the visitor and the page
//! context, and gets recommendations, offers and content in one answer within a few
//! milliseconds. The crate is laid out the way a request flows:
//!
//! - [`http`]: routes, extractors, the error table, auth, metrics middleware;
//! - [`recommend`]: models (trending, co-occurrence) and the engine that blends them;
//! - [`decide`]: the ruleset: expressions, prices, promotions, guardrails;
//! - [`store`]: the `ProfileStore` seam and its backends;
//! - [`ingest`]: data entering the system (the generated demo shop);
//! - [`domain`]: plain types (money, products, profiles, ids) that import nothing above them;
//! - [`config`], [`app`], [`cli`], [`telemetry`]: settings, start-up and lifecycle.

pub mod app;
pub mod audit;
pub mod background;
pub mod cli;
pub mod config;
pub mod decide;
pub mod domain;
pub mod eval;
pub mod http;
pub mod ingest;
pub mod recommend;
pub mod store;
pub mod telemetry;

#[cfg(test)]
mod layering;
