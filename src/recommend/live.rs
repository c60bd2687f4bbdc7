//! What events teach the models between trainings: new bought-together pairs and new
//! trend, applied as they arrive and read beside the trained models, so a new
//! co-purchase or a sudden best-seller changes answers at once, without a retrain.
//!
//! Bought together: the products of each recent order (by order id; the last
//! `MAX_ORDERS` orders are remembered) pair with every product added to that order
//! later; pair counts are scored with the trained model's similarity (which is linear in
//! the count), so a live pair and a trained one weigh alike. Trend: each event adds its
//! kind's weight, in the trained model's units, globally and to the trend of its
//! audience's segments (country, device class). Everything is bounded; a new training
//! starts from empty.

use std::collections::VecDeque;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use rustc_hash::FxHashMap;

use super::trending::{decay, kind_weight};
use crate::domain::{Audience, InteractionKind, ProductIdx, Segment};

/// Orders remembered for pairing (a purchase of an order older than this pairs with
/// nothing).
const MAX_ORDERS: usize = 100_000;
/// Products with a live pair list, and pairs per product.
const MAX_PRODUCTS: usize = 200_000;
const MAX_PAIRS: usize = 200;
/// Products whose live trend is kept, globally and per segment.
const MAX_TRENDING: usize = 10_000;
const MAX_SEGMENT_TRENDING: usize = 2_000;
/// Segments (countries, device classes) with a live trend of their own.
const MAX_SEGMENTS: usize = 512;

/// Trend weight added per product since training, with the `TOP` products kept ranked
/// on every event so a request only copies them. Weights are kept as of the live
/// model's epoch (an event at `t` adds `w * 2^((t - epoch) / half_life)`), so one
/// factor decays them all to any later time and the ranking never changes with the
/// clock, only with events.
struct Board {
    scores: FxHashMap<ProductIdx, f64>,
    top: Vec<(ProductIdx, f64)>,
    cap: usize,
}

impl Board {
    fn new(cap: usize) -> Self {
        Self {
            scores: FxHashMap::default(),
            top: Vec::new(),
            cap,
        }
    }

    fn add(&mut self, product: ProductIdx, weight: f64) {
        if self.scores.len() >= self.cap && !self.scores.contains_key(&product) {
            self.prune();
        }
        let w = {
            let slot = self.scores.entry(product).or_default();
            *slot += weight;
            *slot
        };
        let top = &mut self.top;
        if let Some(i) = top.iter().position(|(p, _)| *p == product) {
            top[i].1 = w;
        } else if top.len() < TOP {
            top.push((product, w));
        } else if top.last().is_some_and(|l| w > l.1) {
            top.pop();
            top.push((product, w));
        } else {
            return;
        }
        top.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    }

    /// Makes room: the weaker half goes (what decayed most, or never took off), so a
    /// long-running server keeps learning new products.
    fn prune(&mut self) {
        let mut weights: Vec<f64> = self.scores.values().copied().collect();
        let mid = weights.len() / 2;
        let (_, median, _) = weights.select_nth_unstable_by(mid, f64::total_cmp);
        let median = *median;
        self.scores.retain(|_, w| *w > median);
        self.top.retain(|(_, w)| *w > median);
    }

    /// Multiplies every weight by `factor` (a new epoch), dropping what became
    /// negligible.
    fn rescale(&mut self, factor: f64) {
        self.scores.retain(|_, w| {
            *w *= factor;
            *w > NEGLIGIBLE
        });
        self.top.retain_mut(|(_, w)| {
            *w *= factor;
            *w > NEGLIGIBLE
        });
    }
}

/// A weight below this (a view some 20 half-lives ago) is dropped at a new epoch.
const NEGLIGIBLE: f64 = 1e-6;
/// Half-lives the clock may run ahead of the epoch before weights are rescaled (keeps
/// `2^((t - epoch) / half_life)` far from overflow).
const EPOCH_SPAN: f64 = 32.0;

impl Default for Board {
    fn default() -> Self {
        Self::new(MAX_TRENDING)
    }
}

#[derive(Default)]
struct Inner {
    /// The time the trend weights are kept as of (Unix seconds).
    epoch: i64,
    orders: FxHashMap<u64, Vec<ProductIdx>>,
    order_queue: VecDeque<u64>,
    /// Product -> (other product, times bought together since training).
    pairs: FxHashMap<ProductIdx, Vec<(ProductIdx, f32)>>,
    /// Product -> occurrences in orders since training.
    occurrences: FxHashMap<ProductIdx, f32>,
    trend: Board,
    segments: FxHashMap<Segment, Board>,
}

const TOP: usize = 50;

pub struct Live {
    inner: RwLock<Inner>,
    /// Set once any trend was added: until then reads skip the lock (the common case
    /// right after a training, and on every read path that asks per product).
    any_trend: AtomicBool,
    /// The trend's half-life, as in training (seconds).
    half_life_s: f64,
    /// The live models' time: the training's end, then the newest event learned. Trend
    /// decays with event time, not with the wall clock, so every replica that learned
    /// the same events holds the same trend, and a replay scores as it did.
    clock: AtomicI64,
}

fn bump(list: &mut Vec<(ProductIdx, f32)>, p: ProductIdx) {
    if let Some(e) = list.iter_mut().find(|(q, _)| *q == p) {
        e.1 += 1.0;
    } else if list.len() < MAX_PAIRS {
        list.push((p, 1.0));
    }
}

impl Live {
    /// Empty live models for a training that ended at `trained_at`, with the trend's
    /// half-life.
    pub fn new(trained_at: i64, half_life_s: f64) -> Self {
        Self {
            inner: RwLock::new(Inner {
                epoch: trained_at,
                ..Inner::default()
            }),
            any_trend: AtomicBool::new(false),
            half_life_s: half_life_s.max(1.0),
            clock: AtomicI64::new(trained_at),
        }
    }

    /// One product bought in an order; it pairs with the order's other products except
    /// where `curation` says not to.
    pub fn purchase(&self, order: u64, product: ProductIdx, curation: &super::Curation) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *g;
        if !inner.orders.contains_key(&order) {
            if inner.order_queue.len() >= MAX_ORDERS
                && let Some(old) = inner.order_queue.pop_front()
            {
                inner.orders.remove(&old);
            }
            inner.order_queue.push_back(order);
        }
        let others = inner.orders.entry(order).or_default();
        if others.contains(&product) {
            return;
        }
        let others_now = others.clone();
        others.push(product);
        *inner.occurrences.entry(product).or_default() += 1.0;
        for q in others_now {
            for (a, b) in [(product, q), (q, product)] {
                if !curation.keeps(a, b)
                    || (inner.pairs.len() >= MAX_PRODUCTS && !inner.pairs.contains_key(&a))
                {
                    continue;
                }
                bump(inner.pairs.entry(a).or_default(), b);
            }
        }
    }

    /// Any event's contribution to the trend at its time `at`, globally and in its
    /// audience's segments.
    pub fn trend(&self, product: ProductIdx, kind: InteractionKind, audience: Audience, at: i64) {
        let clock = self.clock.fetch_max(at, Ordering::Relaxed).max(at);
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        self.any_trend.store(true, Ordering::Relaxed);
        if (clock - g.epoch) as f64 > EPOCH_SPAN * self.half_life_s {
            let factor = decay(clock - g.epoch, self.half_life_s);
            g.epoch = clock;
            g.trend.rescale(factor);
            g.segments.retain(|_, b| {
                b.rescale(factor);
                !b.scores.is_empty()
            });
        }
        let weight = kind_weight(kind) / decay(at - g.epoch, self.half_life_s);
        g.trend.add(product, weight);
        for s in audience.segments() {
            if g.segments.len() >= MAX_SEGMENTS && !g.segments.contains_key(&s) {
                continue;
            }
            g.segments
                .entry(s)
                .or_insert_with(|| Board::new(MAX_SEGMENT_TRENDING))
                .add(product, weight);
        }
    }

    /// The live models' time: the training's end, or the newest event learned since.
    pub fn clock(&self) -> i64 {
        self.clock.load(Ordering::Relaxed)
    }

    /// What a weight kept as of `epoch` is worth now.
    fn now_factor(&self, epoch: i64) -> f64 {
        decay(self.clock() - epoch, self.half_life_s)
    }

    /// The products (at most 50) with the most trend in `segment` since training, best
    /// first, with their weight decayed to now.
    pub fn segment_trending(&self, segment: Segment) -> Vec<(ProductIdx, f32)> {
        if !self.any_trend.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let f = self.now_factor(g.epoch);
        g.segments.get(&segment).map_or_else(Vec::new, |b| {
            b.top.iter().map(|&(p, w)| (p, (w * f) as f32)).collect()
        })
    }

    /// Live co-purchase counts with `product`, and occurrences of each product.
    pub fn bought_with(&self, product: ProductIdx) -> Vec<(ProductIdx, f32, f32)> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.pairs.get(&product).map_or_else(Vec::new, |list| {
            list.iter()
                .map(|&(q, c)| (q, c, g.occurrences.get(&q).copied().unwrap_or(0.0)))
                .collect()
        })
    }

    /// Occurrences of `product` in orders since training.
    pub fn occurrences(&self, product: ProductIdx) -> f32 {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.occurrences.get(&product).copied().unwrap_or(0.0)
    }

    /// Trend weight added to `product` since training, decayed to now.
    pub fn trend_of(&self, product: ProductIdx) -> f32 {
        if !self.any_trend.load(Ordering::Relaxed) {
            return 0.0;
        }
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.trend
            .scores
            .get(&product)
            .map_or(0.0, |w| (w * self.now_factor(g.epoch)) as f32)
    }

    /// The products (at most 50) with the most trend added since training, best first,
    /// with their weight decayed to now.
    pub fn trending(&self) -> Vec<(ProductIdx, f32)> {
        if !self.any_trend.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let f = self.now_factor(g.epoch);
        g.trend
            .top
            .iter()
            .map(|&(p, w)| (p, (w * f) as f32))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.trend.scores.is_empty() && g.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_of_one_order_pair_up_once_each() {
        let live = Live::new(0, 3600.0);
        live.purchase(1, 10, &Default::default());
        live.purchase(1, 11, &Default::default());
        live.purchase(1, 11, &Default::default()); // the same line again: no new pair
        live.purchase(2, 10, &Default::default());
        live.purchase(2, 11, &Default::default());
        live.purchase(3, 12, &Default::default());
        let with_10 = live.bought_with(10);
        assert_eq!(with_10.len(), 1);
        assert_eq!((with_10[0].0, with_10[0].1), (11, 2.0));
        assert_eq!(live.bought_with(11)[0].0, 10);
        assert!(live.bought_with(12).is_empty());
        assert_eq!(live.occurrences(11), 2.0);
    }

    #[test]
    fn a_blocked_pair_is_not_learned_live() {
        let live = Live::new(0, 3600.0);
        let curation = crate::recommend::Curation::new([(11, 10)], []);
        for p in [10, 11, 12] {
            live.purchase(1, p, &curation);
        }
        let with_10: Vec<_> = live.bought_with(10).iter().map(|e| e.0).collect();
        assert_eq!(with_10, [12]);
        assert_eq!(
            live.occurrences(11),
            1.0,
            "the purchase itself still counts"
        );
    }

    #[test]
    fn trend_adds_event_weights_and_ranks() {
        let live = Live::new(0, 3600.0);
        live.trend(5, InteractionKind::View, Audience::default(), 0);
        live.trend(6, InteractionKind::Purchase, Audience::default(), 0);
        live.trend(5, InteractionKind::View, Audience::default(), 0);
        assert_eq!(live.trending()[0].0, 6);
        assert_eq!(live.trending().len(), 2);
        for p in 100..200 {
            live.trend(p, InteractionKind::View, Audience::default(), 0);
        }
        live.trend(150, InteractionKind::Purchase, Audience::default(), 0);
        let top = live.trending();
        assert_eq!(top.len(), TOP);
        assert_eq!(top[0].0, 150, "5 + 1");
        assert_eq!(top[1].0, 6);
        assert_eq!(live.trend_of(5), 2.0);
    }

    #[test]
    fn trend_decays_with_event_time_and_new_products_still_get_in() {
        let hour = 3600;
        let live = Live::new(0, hour as f64);
        live.trend(1, InteractionKind::Purchase, Audience::default(), 0);
        // Two half-lives later: the purchase is worth a quarter, and a view now counts
        // whole.
        live.trend(2, InteractionKind::View, Audience::default(), 2 * hour);
        assert_eq!(live.clock(), 2 * hour);
        assert!(
            (live.trend_of(1) - 1.25).abs() < 1e-4,
            "{}",
            live.trend_of(1)
        );
        assert!((live.trend_of(2) - 1.0).abs() < 1e-6);
        // A late event does not move the clock back, and counts decayed.
        live.trend(2, InteractionKind::View, Audience::default(), hour);
        assert!((live.trend_of(2) - 1.5).abs() < 1e-4);
        assert_eq!(live.trending()[0].0, 2);
        // Far past the epoch span: rescaled, same values.
        live.trend(3, InteractionKind::View, Audience::default(), 40 * hour);
        assert!((live.trend_of(3) - 1.0).abs() < 1e-6);
        assert!(live.trend_of(1) < 1e-6, "negligible by now");
        // A full board makes room for newcomers.
        let live = Live::new(0, hour as f64);
        for p in 0..MAX_TRENDING as u32 + 10 {
            live.trend(p, InteractionKind::View, Audience::default(), i64::from(p));
        }
        assert!(live.trend_of(MAX_TRENDING as u32 + 9) > 0.99);
        let g = live.inner.read().unwrap();
        assert!(g.trend.scores.len() <= MAX_TRENDING);
    }

    #[test]
    fn a_segment_trends_apart_from_the_rest() {
        let live = Live::new(0, 3600.0);
        let de = Audience {
            country: crate::domain::Country::parse("DE").ok(),
            device: Some(crate::domain::Device::Mobile),
        };
        live.trend(1, InteractionKind::View, de, 0);
        live.trend(2, InteractionKind::Purchase, Audience::default(), 0);
        assert_eq!(live.trending()[0].0, 2);
        let in_de = live.segment_trending(Segment::Country(de.country.unwrap()));
        assert_eq!(in_de, vec![(1, 1.0)]);
        assert_eq!(
            live.segment_trending(Segment::Device(crate::domain::Device::Mobile)),
            in_de
        );
        assert!(
            live.segment_trending(Segment::Device(crate::domain::Device::App))
                .is_empty()
        );
    }
}
