//! Time-decayed popularity, globally and per category.
//!
//! Each event adds `weight(kind) * 2^(-age / half_life)`. Because every score decays at
//! the same rate, the ranking only changes when events arrive, never with the clock, so
//! answers are stable between events.

use crate::domain::{Catalog, Interaction, InteractionKind, ProductIdx};

/// How many globally trending products are kept ranked.
const GLOBAL_TOP: usize = 2_000;

pub struct Trending {
    /// Normalised score per product, in `[0, 1]`.
    score: Vec<f32>,
    /// The raw score that normalises to 1 (events' weight since training divide by it).
    unit: f64,
    global: Vec<ProductIdx>,
    by_category: Vec<Vec<ProductIdx>>,
    /// The time the scores are as of (the newest event trained on), and their
    /// half-life: live trend decays on the same clock.
    trained_at: i64,
    half_life_s: f64,
}

/// `2^(-age / half_life)`: what a weight keeps after `age_s` seconds (more than 1 for a
/// negative age: a weight kept as of an earlier time).
pub fn decay(age_s: i64, half_life_s: f64) -> f64 {
    (-(age_s as f64) / half_life_s).exp2()
}

pub fn kind_weight(kind: InteractionKind) -> f64 {
    match kind {
        InteractionKind::View => 1.0,
        InteractionKind::AddToCart => 3.0,
        InteractionKind::Purchase => 5.0,
    }
}

impl Trending {
    pub fn train(
        catalog: &Catalog,
        interactions: &[Interaction],
        half_life_s: f64,
        now: i64,
    ) -> Self {
        let mut raw = vec![0f64; catalog.len()];
        for i in interactions {
            if let Some(slot) = raw.get_mut(i.product as usize) {
                *slot += kind_weight(i.kind) * decay((now - i.ts).max(0), half_life_s);
            }
        }
        let max = raw.iter().copied().fold(0f64, f64::max);
        let score: Vec<f32> = raw
            .iter()
            .map(|&s| if max > 0.0 { (s / max) as f32 } else { 0.0 })
            .collect();
        Self::from_scores(catalog, score, max.max(1.0), (now, half_life_s))
    }

    /// Rebuilds the rankings from per-product scores (index = the catalog's product
    /// index), the raw score that normalises to 1, and the time they are as of with
    /// their half-life.
    pub fn from_scores(
        catalog: &Catalog,
        score: Vec<f32>,
        unit: f64,
        (trained_at, half_life_s): (i64, f64),
    ) -> Self {
        let rank = |list: &mut Vec<ProductIdx>| {
            list.sort_unstable_by(|&a, &b| {
                score[b as usize]
                    .total_cmp(&score[a as usize])
                    .then(a.cmp(&b))
            });
        };
        let mut global: Vec<ProductIdx> = (0..catalog.len() as ProductIdx).collect();
        rank(&mut global);
        global.truncate(GLOBAL_TOP);
        let by_category = (0..catalog.categories().len())
            .map(|c| {
                let mut list = catalog.category_members(c as u16).to_vec();
                rank(&mut list);
                list
            })
            .collect();
        Self {
            score,
            unit,
            global,
            by_category,
            trained_at,
            half_life_s,
        }
    }

    /// The time the scores are as of, and their half-life (seconds).
    pub fn clock(&self) -> (i64, f64) {
        (self.trained_at, self.half_life_s)
    }

    /// Whether the product existed when the model was trained.
    pub fn knows(&self, idx: ProductIdx) -> bool {
        (idx as usize) < self.score.len()
    }

    pub fn score(&self, idx: ProductIdx) -> f32 {
        self.score.get(idx as usize).copied().unwrap_or(0.0)
    }

    /// The raw score that normalises to 1.
    pub fn unit(&self) -> f64 {
        self.unit
    }

    /// Raw event weight in normalised score units.
    pub fn normalise(&self, raw: f32) -> f32 {
        (f64::from(raw) / self.unit) as f32
    }

    /// Products by descending trend (ties by index, so the order is deterministic).
    pub fn global(&self) -> &[ProductIdx] {
        &self.global
    }

    pub fn in_category(&self, category: u16) -> &[ProductIdx] {
        self.by_category
            .get(usize::from(category))
            .map_or(&[], Vec::as_slice)
    }

    pub fn memory_bytes(&self) -> usize {
        self.score.len() * 4
            + self.global.len() * 4
            + self.by_category.iter().map(|l| l.len() * 4).sum::<usize>()
    }
}
