//! The set of models one answer is computed from, built together and swapped together.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::RecommendSettings;
use crate::domain::{Catalog, Interaction, InteractionKind, ProductIdx};

use super::cooccur::{self, Neighbors};
use super::trending::Trending;

/// Past sessions indexed per product for session-kNN (the most recent ones).
pub const SESSIONS_PER_ITEM: usize = 1_000;

pub struct Models {
    /// Names the training run; every answer reports it.
    pub version: String,
    pub trending: Trending,
    pub bought: Neighbors,
    pub viewed: Neighbors,
    pub sessions: super::sknn::SessionIndex,
    /// What events taught since training.
    pub live: super::live::Live,
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
            live: super::live::Live::default(),
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.trending.memory_bytes()
            + self.bought.memory_bytes()
            + self.viewed.memory_bytes()
            + self.sessions.memory_bytes()
    }
}

impl Models {
    /// A product's trend: trained, plus what events added since.
    pub fn trend_score(&self, p: ProductIdx) -> f32 {
        self.trending.score(p) + self.trending.normalise(self.live.trend_of(p))
    }

    /// Bought-together neighbours of `p`: trained, plus pairs bought since (summed).
    pub fn bought_with(&self, p: ProductIdx) -> std::borrow::Cow<'_, [(ProductIdx, f32)]> {
        let live = self.live.bought_with(p);
        if live.is_empty() {
            return std::borrow::Cow::Borrowed(self.bought.of(p));
        }
        let extra_p = self.live.occurrences(p);
        let mut list = self.bought.of(p).to_vec();
        for (q, count, extra_q) in live {
            let s = self.bought.similarity(p, q, count, (extra_p, extra_q));
            match list.iter_mut().find(|(x, _)| *x == q) {
                Some(e) => e.1 += s,
                None => list.push((q, s)),
            }
        }
        list.sort_unstable_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        std::borrow::Cow::Owned(list)
    }

    /// Teaches the live models what new events say: purchases pair up by order, and
    /// every product event adds to the trend.
    pub fn observe(
        &self,
        catalog: &crate::domain::Catalog,
        events: &[crate::ingest::events::Event],
    ) {
        use crate::domain::profile::Behaviour;
        for e in events {
            let Some(p) = e.product_id.as_deref().and_then(|id| catalog.lookup(id)) else {
                continue;
            };
            let kind = match e.behaviour {
                Behaviour::View | Behaviour::Click => InteractionKind::View,
                Behaviour::AddToCart => InteractionKind::AddToCart,
                Behaviour::Purchase => InteractionKind::Purchase,
                _ => continue,
            };
            if kind == InteractionKind::Purchase {
                let order = e.order_id.as_deref().unwrap_or(&e.event_id);
                self.observe_purchase(xxhash_rust::xxh3::xxh3_64(order.as_bytes()), p);
            } else {
                self.live.trend(p, kind);
            }
        }
    }

    /// One product bought in an order (any key, one per order): it pairs with the
    /// order's other products and adds to the trend.
    pub fn observe_purchase(&self, order: u64, p: ProductIdx) {
        self.live.trend(p, InteractionKind::Purchase);
        self.live.purchase(order, p);
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
