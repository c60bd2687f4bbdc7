//! Where visitor profiles live, behind one seam.
//!
//! The serving path only sees `Arc<dyn ProfileStore>`; which backend is behind it (the
//! in-process default, or a slow or failing one in tests) is decided at start-up.
//! Store calls are the only awaits on the serving path, which is why the deadline is
//! enforced around them.

pub mod memory;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Profile, VisitorKey};

pub use memory::MemoryStore;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait ProfileStore: Send + Sync + 'static {
    /// A short, fixed name for metrics and readiness messages (`memory`, `redis`, ...).
    fn backend(&self) -> &'static str;

    async fn get(&self, key: &VisitorKey) -> Result<Option<Arc<Profile>>, StoreError>;

    async fn put(&self, key: &VisitorKey, profile: Profile) -> Result<(), StoreError>;

    /// Answers when the store can serve; `/readyz` is built on it.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Counts a read against a tier: `result` is `hit`, `miss` or `error`.
pub fn record_read(tier: &'static str, result: &'static str) {
    metrics::counter!("vitrine_store_reads_total", "tier" => tier, "result" => result).increment(1);
}
