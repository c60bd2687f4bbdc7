//! What merchandisers took out of the models: pairs of products that are never learned
//! together, and products never learned as anyone's neighbour. Training skips them and
//! live learning never adds them back, so a correction holds across retraining; serving
//! applies the same overrides on top (`decide::overrides`), so it holds at once.

use rustc_hash::FxHashSet;

use crate::domain::ProductIdx;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Curation {
    /// Each pair as (smaller, larger).
    blocked: FxHashSet<(ProductIdx, ProductIdx)>,
    excluded: FxHashSet<ProductIdx>,
}

fn ordered(a: ProductIdx, b: ProductIdx) -> (ProductIdx, ProductIdx) {
    if a < b { (a, b) } else { (b, a) }
}

impl Curation {
    pub fn new(
        blocked: impl IntoIterator<Item = (ProductIdx, ProductIdx)>,
        excluded: impl IntoIterator<Item = ProductIdx>,
    ) -> Self {
        Self {
            blocked: blocked.into_iter().map(|(a, b)| ordered(a, b)).collect(),
            excluded: excluded.into_iter().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.blocked.is_empty() && self.excluded.is_empty()
    }

    /// A digest of what is taken out, the same whatever order it was given in.
    pub fn fingerprint(&self) -> u64 {
        let mut pairs: Vec<_> = self.blocked.iter().copied().collect();
        pairs.sort_unstable();
        let mut excluded: Vec<_> = self.excluded.iter().copied().collect();
        excluded.sort_unstable();
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (a, b) in pairs {
            h.update(&a.to_le_bytes());
            h.update(&b.to_le_bytes());
        }
        h.update(b"/");
        for p in excluded {
            h.update(&p.to_le_bytes());
        }
        h.digest()
    }

    /// Whether a and b are never paired (either way round).
    pub fn blocks(&self, a: ProductIdx, b: ProductIdx) -> bool {
        !self.blocked.is_empty() && self.blocked.contains(&ordered(a, b))
    }

    /// Whether `neighbour` may be learned as a neighbour of `anchor`.
    pub fn keeps(&self, anchor: ProductIdx, neighbour: ProductIdx) -> bool {
        !self.excluded.contains(&neighbour) && !self.blocks(anchor, neighbour)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_pair_is_blocked_both_ways_and_an_excluded_product_is_no_neighbour() {
        let c = Curation::new([(5, 2)], [9]);
        assert!(c.blocks(2, 5) && c.blocks(5, 2));
        assert!(!c.blocks(2, 6));
        assert!(!c.keeps(2, 5) && !c.keeps(1, 9));
        assert!(
            c.keeps(9, 1),
            "an excluded product keeps its own neighbours"
        );
        assert!(Curation::default().is_empty() && !c.is_empty());
    }
}
