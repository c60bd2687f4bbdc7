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

use rustc_hash::FxHashMap;

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
/// on every event so a request only copies them.
struct Board {
    scores: FxHashMap<ProductIdx, f32>,
    top: Vec<(ProductIdx, f32)>,
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

    fn add(&mut self, product: ProductIdx, weight: f32) {
        if self.scores.len() >= self.cap && !self.scores.contains_key(&product) {
            return;
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
}

impl Default for Board {
    fn default() -> Self {
        Self::new(MAX_TRENDING)
    }
}

#[derive(Default)]
struct Inner {
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

#[derive(Default)]
pub struct Live {
    inner: RwLock<Inner>,
    /// Set once any trend was added: until then reads skip the lock (the common case
    /// right after a training, and on every read path that asks per product).
    any_trend: std::sync::atomic::AtomicBool,
}

fn bump(list: &mut Vec<(ProductIdx, f32)>, p: ProductIdx) {
    if let Some(e) = list.iter_mut().find(|(q, _)| *q == p) {
        e.1 += 1.0;
    } else if list.len() < MAX_PAIRS {
        list.push((p, 1.0));
    }
}

impl Live {
    /// One product bought in an order.
    pub fn purchase(&self, order: u64, product: ProductIdx) {
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
                if inner.pairs.len() >= MAX_PRODUCTS && !inner.pairs.contains_key(&a) {
                    continue;
                }
                bump(inner.pairs.entry(a).or_default(), b);
            }
        }
    }

    /// Any event's contribution to the trend, globally and in its audience's segments.
    pub fn trend(&self, product: ProductIdx, kind: InteractionKind, audience: Audience) {
        let weight = super::trending::kind_weight(kind) as f32;
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        self.any_trend
            .store(true, std::sync::atomic::Ordering::Relaxed);
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

    /// The products (at most 50) with the most trend added in `segment` since
    /// training, best first, with the weight added.
    pub fn segment_trending(&self, segment: Segment) -> Vec<(ProductIdx, f32)> {
        if !self.any_trend.load(std::sync::atomic::Ordering::Relaxed) {
            return Vec::new();
        }
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.segments
            .get(&segment)
            .map_or_else(Vec::new, |b| b.top.clone())
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

    /// Trend weight added to `product` since training.
    pub fn trend_of(&self, product: ProductIdx) -> f32 {
        if !self.any_trend.load(std::sync::atomic::Ordering::Relaxed) {
            return 0.0;
        }
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.trend.scores.get(&product).copied().unwrap_or(0.0)
    }

    /// The products (at most 50) with the most trend added since training, best first.
    pub fn trending(&self) -> Vec<(ProductIdx, f32)> {
        if !self.any_trend.load(std::sync::atomic::Ordering::Relaxed) {
            return Vec::new();
        }
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.trend.top.clone()
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
        let live = Live::default();
        live.purchase(1, 10);
        live.purchase(1, 11);
        live.purchase(1, 11); // the same line again: no new pair
        live.purchase(2, 10);
        live.purchase(2, 11);
        live.purchase(3, 12);
        let with_10 = live.bought_with(10);
        assert_eq!(with_10.len(), 1);
        assert_eq!((with_10[0].0, with_10[0].1), (11, 2.0));
        assert_eq!(live.bought_with(11)[0].0, 10);
        assert!(live.bought_with(12).is_empty());
        assert_eq!(live.occurrences(11), 2.0);
    }

    #[test]
    fn trend_adds_event_weights_and_ranks() {
        let live = Live::default();
        live.trend(5, InteractionKind::View, Audience::default());
        live.trend(6, InteractionKind::Purchase, Audience::default());
        live.trend(5, InteractionKind::View, Audience::default());
        assert_eq!(live.trending()[0].0, 6);
        assert_eq!(live.trending().len(), 2);
        for p in 100..200 {
            live.trend(p, InteractionKind::View, Audience::default());
        }
        live.trend(150, InteractionKind::Purchase, Audience::default());
        let top = live.trending();
        assert_eq!(top.len(), TOP);
        assert_eq!(top[0].0, 150, "5 + 1");
        assert_eq!(top[1].0, 6);
        assert_eq!(live.trend_of(5), 2.0);
    }

    #[test]
    fn a_segment_trends_apart_from_the_rest() {
        let live = Live::default();
        let de = Audience {
            country: crate::domain::Country::parse("DE").ok(),
            device: Some(crate::domain::Device::Mobile),
        };
        live.trend(1, InteractionKind::View, de);
        live.trend(2, InteractionKind::Purchase, Audience::default());
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
