//! What an answer reads that changes without a new version: what events taught the
//! live models since training (trend, bought-together pairs) and stock levels.
//!
//! The trained models, the ruleset and the catalog's products each have a version, but
//! the live models and stock move with every event and webhook. An answer reads them
//! through [`Volatile`]: served directly ([`Live`] itself, or [`NO_LIVE`] where nothing
//! is learned live), or through [`Reads`], which either records each value the first
//! time it is read (so one answer sees one value per product, and the record holds what
//! it saw) or answers from such a recording (so a replay sees what the answer saw).
//! Only what differs from "nothing learned, in stock" is kept.

use std::cell::RefCell;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::live::Live;
use crate::domain::{Catalog, ProductIdx, Segment};

/// The reads of state that changes between versions.
pub trait Volatile {
    /// The live models' time (Unix seconds): what the trained trend has decayed to.
    fn clock(&self) -> Option<i64>;
    /// Trend weight learned since training for `p`, decayed to the clock.
    fn trend_of(&self, p: ProductIdx) -> f32;
    /// The products with most trend learned since training (at most 50), best first.
    fn trending(&self) -> Vec<(ProductIdx, f32)>;
    fn segment_trending(&self, segment: Segment) -> Vec<(ProductIdx, f32)>;
    /// Pairs bought together with `p` since training: (other, count, its occurrences).
    fn bought_with(&self, p: ProductIdx) -> Vec<(ProductIdx, f32, f32)>;
    /// Orders `p` was in since training.
    fn occurrences(&self, p: ProductIdx) -> f32;
    /// Sellable now: live and with stock.
    fn in_stock(&self, catalog: &Catalog, p: ProductIdx) -> bool;
}

impl Volatile for Live {
    fn clock(&self) -> Option<i64> {
        Some(Live::clock(self))
    }
    fn trend_of(&self, p: ProductIdx) -> f32 {
        Live::trend_of(self, p)
    }
    fn trending(&self) -> Vec<(ProductIdx, f32)> {
        Live::trending(self)
    }
    fn segment_trending(&self, segment: Segment) -> Vec<(ProductIdx, f32)> {
        Live::segment_trending(self, segment)
    }
    fn bought_with(&self, p: ProductIdx) -> Vec<(ProductIdx, f32, f32)> {
        Live::bought_with(self, p)
    }
    fn occurrences(&self, p: ProductIdx) -> f32 {
        Live::occurrences(self, p)
    }
    fn in_stock(&self, catalog: &Catalog, p: ProductIdx) -> bool {
        catalog.in_stock(p)
    }
}

/// Nothing learned live; stock as the catalog holds it (tests, benches, tools that
/// decide without models).
pub struct NoLive;

pub const NO_LIVE: NoLive = NoLive;

impl Volatile for NoLive {
    fn clock(&self) -> Option<i64> {
        None
    }
    fn trend_of(&self, _: ProductIdx) -> f32 {
        0.0
    }
    fn trending(&self) -> Vec<(ProductIdx, f32)> {
        Vec::new()
    }
    fn segment_trending(&self, _: Segment) -> Vec<(ProductIdx, f32)> {
        Vec::new()
    }
    fn bought_with(&self, _: ProductIdx) -> Vec<(ProductIdx, f32, f32)> {
        Vec::new()
    }
    fn occurrences(&self, _: ProductIdx) -> f32 {
        0.0
    }
    fn in_stock(&self, catalog: &Catalog, p: ProductIdx) -> bool {
        catalog.in_stock(p)
    }
}

/// Live pairs of one product: (other, times bought together, its occurrences).
pub type Pairs<P> = Vec<(P, f32, f32)>;

/// What one answer read, by product `P` (a catalog index while deciding, a product id
/// once stored). Values that are the default (no trend, no pairs, in stock) are left
/// out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tape<P> {
    pub clock: Option<i64>,
    pub trending: Option<Vec<(P, f32)>>,
    pub trend: Vec<(P, f32)>,
    pub segments: Vec<(Segment, Vec<(P, f32)>)>,
    pub pairs: Vec<(P, Pairs<P>)>,
    pub occurrences: Vec<(P, f32)>,
    pub out_of_stock: Vec<P>,
}

impl<P> Default for Tape<P> {
    fn default() -> Self {
        Self {
            clock: None,
            trending: None,
            trend: Vec::new(),
            segments: Vec::new(),
            pairs: Vec::new(),
            occurrences: Vec::new(),
            out_of_stock: Vec::new(),
        }
    }
}

impl<P> Tape<P> {
    /// The same readings with products named another way (indexes to ids and back);
    /// `None` when a product cannot be named.
    pub fn map<Q>(&self, f: impl Fn(&P) -> Option<Q>) -> Option<Tape<Q>> {
        let list = |l: &[(P, f32)]| -> Option<Vec<(Q, f32)>> {
            l.iter().map(|(p, v)| Some((f(p)?, *v))).collect()
        };
        Some(Tape {
            clock: self.clock,
            trending: match &self.trending {
                Some(t) => Some(list(t)?),
                None => None,
            },
            trend: list(&self.trend)?,
            segments: self
                .segments
                .iter()
                .map(|(s, l)| Some((*s, list(l)?)))
                .collect::<Option<_>>()?,
            pairs: self
                .pairs
                .iter()
                .map(|(p, l)| {
                    Some((
                        f(p)?,
                        l.iter()
                            .map(|(q, c, o)| Some((f(q)?, *c, *o)))
                            .collect::<Option<_>>()?,
                    ))
                })
                .collect::<Option<_>>()?,
            occurrences: list(&self.occurrences)?,
            out_of_stock: self.out_of_stock.iter().map(&f).collect::<Option<_>>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.clock.is_none()
            && self.trending.as_ref().is_none_or(Vec::is_empty)
            && self.trend.is_empty()
            && self.segments.is_empty()
            && self.pairs.is_empty()
            && self.occurrences.is_empty()
            && self.out_of_stock.is_empty()
    }
}

/// Every value read so far, the defaults included (so a second read of a product gives
/// the first's value even if an event came between).
#[derive(Default)]
struct Memo {
    clock: Option<Option<i64>>,
    trending: Option<Vec<(ProductIdx, f32)>>,
    trend: Recorded<f32>,
    segments: Vec<(Segment, Vec<(ProductIdx, f32)>)>,
    pairs: FxHashMap<ProductIdx, Vec<(ProductIdx, f32, f32)>>,
    occurrences: Recorded<f32>,
    stock: Recorded<bool>,
}

/// Values read once per product, in reading order, with a bit per hashed product in
/// front: nearly every read is a product's first, and a first read is one bit test and
/// one push, no search and no hashing into a table.
struct Recorded<V> {
    seen: [u64; SEEN_WORDS],
    log: Vec<(ProductIdx, V)>,
}

/// The filter's size in 64-bit words (4,096 bits: a typical answer's reads set one in
/// fifteen, so few first reads are searched for).
const SEEN_WORDS: usize = 64;

impl<V> Default for Recorded<V> {
    fn default() -> Self {
        Self {
            seen: [0; SEEN_WORDS],
            log: Vec::new(),
        }
    }
}

impl<V: Copy + PartialEq> Recorded<V> {
    /// The value read before for `p`, else `read()`'s, kept.
    fn get_or_read(&mut self, p: ProductIdx, read: impl FnOnce() -> V) -> V {
        // Fibonacci hashing: the top 12 bits of the product.
        let bit = (p.wrapping_mul(0x9E37_79B9) >> 20) as usize;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if self.seen[word] & mask != 0
            && let Some(&(_, v)) = self.log.iter().find(|e| e.0 == p)
        {
            return v;
        }
        let v = read();
        self.seen[word] |= mask;
        self.log.push((p, v));
        v
    }

    /// What was read, other than `default`, by product, in reading order.
    fn kept(&self, default: V) -> impl Iterator<Item = (ProductIdx, V)> + '_ {
        self.log.iter().filter(move |e| e.1 != default).copied()
    }
}

/// Products a typical answer reads the trend and stock of.
const READS: usize = 256;

enum Mode<'a> {
    Record(&'a (dyn Volatile + Sync), Box<RefCell<Memo>>),
    Replay(Indexed),
}

/// A recording, indexed for reading back.
struct Indexed {
    clock: Option<i64>,
    trending: Vec<(ProductIdx, f32)>,
    trend: FxHashMap<ProductIdx, f32>,
    segments: Vec<(Segment, Vec<(ProductIdx, f32)>)>,
    pairs: FxHashMap<ProductIdx, Vec<(ProductIdx, f32, f32)>>,
    occurrences: FxHashMap<ProductIdx, f32>,
    out_of_stock: Vec<ProductIdx>,
}

/// Reads that are recorded as they are made, or answered from a recording.
pub struct Reads<'a> {
    mode: Mode<'a>,
}

impl<'a> Reads<'a> {
    /// Reads `source`, keeping each value read.
    pub fn recording(source: &'a (dyn Volatile + Sync)) -> Self {
        Self {
            mode: Mode::Record(
                source,
                Box::new(RefCell::new(Memo {
                    // Sized for a typical answer's reads, so they are not grown.
                    trend: Recorded {
                        log: Vec::with_capacity(READS),
                        ..Recorded::default()
                    },
                    stock: Recorded {
                        log: Vec::with_capacity(READS),
                        ..Recorded::default()
                    },
                    ..Memo::default()
                })),
            ),
        }
    }

    /// Answers what `tape` recorded (and the defaults for what it does not hold).
    pub fn replaying(tape: Tape<ProductIdx>) -> Self {
        let mut out_of_stock = tape.out_of_stock;
        out_of_stock.sort_unstable();
        Self {
            mode: Mode::Replay(Indexed {
                clock: tape.clock,
                trending: tape.trending.unwrap_or_default(),
                trend: tape.trend.into_iter().collect(),
                segments: tape.segments,
                pairs: tape.pairs.into_iter().collect(),
                occurrences: tape.occurrences.into_iter().collect(),
                out_of_stock,
            }),
        }
    }

    /// What was read, without the defaults, in a stable order.
    pub fn tape(&self) -> Tape<ProductIdx> {
        let memo = match &self.mode {
            Mode::Record(_, memo) => memo.borrow(),
            Mode::Replay(_) => return Tape::default(),
        };
        let sorted = |m: &Recorded<f32>| {
            let mut v: Vec<(ProductIdx, f32)> = m.kept(0.0).collect();
            v.sort_unstable_by_key(|e| e.0);
            v
        };
        let mut pairs: Vec<_> = memo
            .pairs
            .iter()
            .filter(|e| !e.1.is_empty())
            .map(|(p, l)| (*p, l.clone()))
            .collect();
        pairs.sort_unstable_by_key(|e| e.0);
        let mut out_of_stock: Vec<ProductIdx> = memo.stock.kept(true).map(|e| e.0).collect();
        out_of_stock.sort_unstable();
        Tape {
            clock: memo.clock.flatten(),
            trending: memo.trending.clone().filter(|t| !t.is_empty()),
            trend: sorted(&memo.trend),
            segments: memo
                .segments
                .iter()
                .filter(|s| !s.1.is_empty())
                .cloned()
                .collect(),
            pairs,
            occurrences: sorted(&memo.occurrences),
            out_of_stock,
        }
    }
}

impl Volatile for Reads<'_> {
    fn clock(&self) -> Option<i64> {
        match &self.mode {
            Mode::Record(s, memo) => *memo.borrow_mut().clock.get_or_insert_with(|| s.clock()),
            Mode::Replay(t) => t.clock,
        }
    }

    fn trend_of(&self, p: ProductIdx) -> f32 {
        match &self.mode {
            Mode::Record(s, memo) => memo.borrow_mut().trend.get_or_read(p, || s.trend_of(p)),
            Mode::Replay(t) => t.trend.get(&p).copied().unwrap_or(0.0),
        }
    }

    fn trending(&self) -> Vec<(ProductIdx, f32)> {
        match &self.mode {
            Mode::Record(s, memo) => memo
                .borrow_mut()
                .trending
                .get_or_insert_with(|| s.trending())
                .clone(),
            Mode::Replay(t) => t.trending.clone(),
        }
    }

    fn segment_trending(&self, segment: Segment) -> Vec<(ProductIdx, f32)> {
        match &self.mode {
            Mode::Record(s, memo) => {
                let mut m = memo.borrow_mut();
                if let Some((_, l)) = m.segments.iter().find(|e| e.0 == segment) {
                    return l.clone();
                }
                let l = s.segment_trending(segment);
                m.segments.push((segment, l.clone()));
                l
            }
            Mode::Replay(t) => t
                .segments
                .iter()
                .find(|e| e.0 == segment)
                .map(|e| e.1.clone())
                .unwrap_or_default(),
        }
    }

    fn bought_with(&self, p: ProductIdx) -> Vec<(ProductIdx, f32, f32)> {
        match &self.mode {
            Mode::Record(s, memo) => memo
                .borrow_mut()
                .pairs
                .entry(p)
                .or_insert_with(|| s.bought_with(p))
                .clone(),
            Mode::Replay(t) => t.pairs.get(&p).cloned().unwrap_or_default(),
        }
    }

    fn occurrences(&self, p: ProductIdx) -> f32 {
        match &self.mode {
            Mode::Record(s, memo) => memo
                .borrow_mut()
                .occurrences
                .get_or_read(p, || s.occurrences(p)),
            Mode::Replay(t) => t.occurrences.get(&p).copied().unwrap_or(0.0),
        }
    }

    fn in_stock(&self, catalog: &Catalog, p: ProductIdx) -> bool {
        match &self.mode {
            Mode::Record(s, memo) => memo
                .borrow_mut()
                .stock
                .get_or_read(p, || s.in_stock(catalog, p)),
            Mode::Replay(t) => t.out_of_stock.binary_search(&p).is_err(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Audience, InteractionKind};

    #[test]
    fn a_product_read_again_gets_its_first_value_whatever_shares_its_filter_bit() {
        let mut r = Recorded::<f32>::default();
        // More products than the filter has bits: every bit is shared.
        for p in 0..10_000u32 {
            assert_eq!(r.get_or_read(p, || p as f32), p as f32);
        }
        for p in (0..10_000u32).rev() {
            assert_eq!(r.get_or_read(p, || -1.0), p as f32, "product {p}");
        }
        assert_eq!(r.log.len(), 10_000, "each product kept once");
        assert_eq!(r.kept(0.0).count(), 9_999);
    }

    #[test]
    fn a_recording_answers_what_was_first_read_and_replays_it() {
        let live = Live::new(0, 3600.0);
        live.trend(3, InteractionKind::Purchase, Audience::default(), 10);
        live.purchase(1, 3, &Default::default());
        live.purchase(1, 4, &Default::default());
        let reads = Reads::recording(&live);
        let first = reads.trend_of(3);
        assert!(first > 0.0);
        // Learned meanwhile: this answer keeps what it saw.
        live.trend(3, InteractionKind::Purchase, Audience::default(), 10);
        assert_eq!(reads.trend_of(3), first);
        assert_eq!(reads.trend_of(9), 0.0);
        let pairs = reads.bought_with(3);
        let clock = reads.clock();
        let tape = reads.tape();
        assert_eq!(tape.trend, vec![(3, first)], "no trend is not kept");
        let replay = Reads::replaying(tape);
        assert_eq!(replay.trend_of(3), first);
        assert_eq!(replay.trend_of(9), 0.0);
        assert_eq!(replay.bought_with(3), pairs);
        assert_eq!(replay.clock(), clock);
    }
}
