//! The set of models one answer is computed from, built together and swapped together.

use std::borrow::Cow;

use crate::config::RecommendSettings;
use crate::domain::{Catalog, Interaction, InteractionKind, ProductIdx, Segment};

use super::cooccur::{self, Neighbors};
use super::curation::Curation;
use super::reads::Volatile;
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
    /// Trending per audience segment (country, device class).
    pub audience: super::audience::AudienceTrend,
    /// How far into the shared event log the training read (`""`: none of it); what
    /// came after is learned live.
    pub log_cursor: String,
    /// What events taught since training.
    pub live: super::live::Live,
    /// The training interactions' request features (drift's reference).
    pub mix: super::features::Mix,
    /// Content neighbours of the products without trained ones, for the catalog they
    /// were last worked out for ([`Models::prepare_content`]).
    pub content: arc_swap::ArcSwapOption<super::content::Table>,
}

impl Models {
    pub fn train(
        catalog: &Catalog,
        interactions: &[Interaction],
        settings: &RecommendSettings,
    ) -> Self {
        Self::train_curated(catalog, interactions, settings, &Curation::default())
    }

    /// [`Models::train`] without what `curation` takes out: blocked pairs are never
    /// counted, excluded products are nobody's neighbour.
    pub fn train_curated(
        catalog: &Catalog,
        interactions: &[Interaction],
        settings: &RecommendSettings,
        curation: &Curation,
    ) -> Self {
        let now = interactions
            .iter()
            .map(|i| i.ts)
            .max()
            .unwrap_or_else(unix_now);
        let half_life = f64::from(settings.trending_half_life_hours) * 3600.0;
        let trending = Trending::train(catalog, interactions, half_life, now);
        let bought =
            cooccur::bought_together(catalog.len(), interactions, settings.neighbors, curation);
        let viewed =
            cooccur::viewed_together(catalog.len(), interactions, settings.neighbors, curation);
        let sessions =
            super::sknn::SessionIndex::train(catalog.len(), interactions, SESSIONS_PER_ITEM);
        let audience = super::audience::AudienceTrend::train(interactions, half_life, now);
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
        // What the overrides took out is part of what the models are.
        if !curation.is_empty() {
            h.update(&curation.fingerprint().to_le_bytes());
        }
        Self {
            version: format!("cooc-{:012x}", h.digest() & 0xffff_ffff_ffff),
            trending,
            bought,
            viewed,
            sessions,
            audience,
            log_cursor: String::new(),
            live: super::live::Live::new(now, half_life),
            mix: super::features::trained_mix(catalog, interactions),
            content: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// Works out the content neighbours for `catalog` (unless they are for it already),
    /// off the serving path: before the catalog or these models are swapped in.
    pub fn prepare_content(&self, catalog: &Catalog) {
        if self.content_for(catalog).is_some() {
            return;
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let trained = super::content::Trained {
            trending: &self.trending,
            bought: &self.bought,
            viewed: &self.viewed,
        };
        let table = super::content::Table::build(&trained, catalog, threads);
        self.content.store(Some(std::sync::Arc::new(table)));
    }

    /// The content neighbours, when they were worked out for `catalog`.
    pub fn content_for(&self, catalog: &Catalog) -> Option<std::sync::Arc<super::content::Table>> {
        self.content.load_full().filter(|t| t.fits(catalog))
    }

    pub fn memory_bytes(&self) -> usize {
        self.trending.memory_bytes()
            + self.bought.memory_bytes()
            + self.viewed.memory_bytes()
            + self.sessions.memory_bytes()
            + self.audience.memory_bytes()
    }
}

impl Models {
    /// What the trained trend keeps at the live models' time.
    fn trained_share(&self, live: &dyn Volatile) -> f32 {
        let (trained_at, half_life_s) = self.trending.clock();
        let clock = live.clock().unwrap_or(trained_at);
        super::trending::decay(clock - trained_at, half_life_s) as f32
    }

    /// A product's trend now: the trained score and what events added since, both
    /// decayed to the newest event, in the trained model's units and at most 1 (the
    /// best product at training).
    pub fn trend_score(&self, live: &dyn Volatile, p: ProductIdx) -> f32 {
        let trained = self.trending.score(p) * self.trained_share(live);
        (trained + self.trending.normalise(live.trend_of(p))).min(1.0)
    }

    /// Bought-together neighbours of `p`: trained, plus pairs bought since (summed).
    pub fn bought_with(
        &self,
        volatile: &dyn Volatile,
        p: ProductIdx,
    ) -> std::borrow::Cow<'_, [(ProductIdx, f32)]> {
        let live = volatile.bought_with(p);
        if live.is_empty() {
            return std::borrow::Cow::Borrowed(self.bought.of(p));
        }
        let extra_p = volatile.occurrences(p);
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

    /// Teaches the live models one new interaction: a purchase pairs with its order's
    /// other products (except pairs `curation` takes out), and every interaction adds to
    /// the trend (its audience's too).
    pub fn learn(&self, i: &Interaction, curation: &Curation) {
        if i.kind == InteractionKind::Purchase
            && let Some(order) = i.order
        {
            self.live.purchase(order, i.product, curation);
        }
        self.live.trend(i.product, i.kind, i.audience, i.ts);
    }

    /// What is trending in `segment`, trained and live, best first, scored so the best
    /// is 1.
    pub fn segment_trend(
        &self,
        volatile: &dyn Volatile,
        segment: Segment,
    ) -> Cow<'_, [(ProductIdx, f32)]> {
        let trained = self.audience.of(segment);
        let live = volatile.segment_trending(segment);
        let Some(trained) = trained else {
            let best = live.first().map_or(1.0, |l| l.1);
            return Cow::Owned(live.into_iter().map(|(p, w)| (p, w / best)).collect());
        };
        if live.is_empty() {
            return Cow::Borrowed(&trained.top);
        }
        let share = self.trained_share(volatile);
        let mut list: Vec<(ProductIdx, f32)> =
            trained.top.iter().map(|&(p, s)| (p, s * share)).collect();
        for (p, w) in live {
            let s = (f64::from(w) / trained.unit) as f32;
            match list.iter_mut().find(|(q, _)| *q == p) {
                Some(e) => e.1 += s,
                None => list.push((p, s)),
            }
        }
        list.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let best = list.first().map_or(1.0, |l| l.1.max(f32::MIN_POSITIVE));
        for e in &mut list {
            e.1 /= best;
        }
        Cow::Owned(list)
    }
}

pub use crate::domain::time::unix_now;
