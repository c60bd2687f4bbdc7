//! The set of models one answer is computed from, built together and swapped together.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::RecommendSettings;
use crate::domain::{Catalog, Interaction};

use super::cooccur::{self, Neighbors};
use super::trending::Trending;

/// Past sessions indexed per product for session-kNN (the most recent ones).
const SESSIONS_PER_ITEM: usize = 1_000;

pub struct Models {
    /// Names the training run; every answer reports it.
    pub version: String,
    pub trending: Trending,
    pub bought: Neighbors,
    pub viewed: Neighbors,
    pub sessions: super::sknn::SessionIndex,
}

impl Models {
    pub fn train(
        catalog: &Catalog,
        interactions: &[Interaction],
        settings: &RecommendSettings,
    ) -> Self {
        let now = interactions
            .iter()
            .map(|i| i.ts)
            .max()
            .unwrap_or_else(unix_now);
        let half_life = f64::from(settings.trending_half_life_hours) * 3600.0;
        let trending = Trending::train(catalog, interactions, half_life, now);
        let bought = cooccur::bought_together(catalog.len(), interactions, settings.neighbors);
        let viewed = cooccur::viewed_together(catalog.len(), interactions, settings.neighbors);
        let sessions =
            super::sknn::SessionIndex::train(catalog.len(), interactions, SESSIONS_PER_ITEM);
        // The version is a digest of what the models were trained on (event times taken
        // relative to the newest), so the same data gives the same version on every
        // replica and after every restart.
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&(catalog.len() as u64).to_le_bytes());
        h.update(&(interactions.len() as u64).to_le_bytes());
        for i in interactions.iter().step_by(interactions.len() / 4096 + 1) {
            h.update(&u64::from(i.product).to_le_bytes());
            h.update(&(now - i.ts).to_le_bytes());
        }
        Self {
            version: format!("cooc-{:012x}", h.digest() & 0xffff_ffff_ffff),
            trending,
            bought,
            viewed,
            sessions,
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.trending.memory_bytes()
            + self.bought.memory_bytes()
            + self.viewed.memory_bytes()
            + self.sessions.memory_bytes()
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
