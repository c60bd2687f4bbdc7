//! Item-to-item co-occurrence: products bought in the same order, and products viewed
//! close together in the same session.
//!
//! Scores are asymmetric cosine similarities with shrinkage,
//! `c_ab / (n_a^alpha * n_b^(1 - alpha) + shrink)` (alpha = 0.5 is plain cosine): the
//! normalisation stops very popular products from being everyone's neighbour, and the
//! shrink term keeps one lucky co-occurrence between two rare products from ranking
//! first. Each model's alpha and shrink were tuned on a validation split (viewed: the
//! last tenth of Diginetica's training sessions; bought: Ta-Feng's second-to-last
//! baskets), never on test data.
//! Only the best `k` neighbours of each product are kept, sorted, so serving reads a slice.

use rustc_hash::FxHashMap;

use super::Curation;
use crate::domain::{Interaction, InteractionKind, ProductIdx};

/// Views further apart than this in a session do not count as viewed together.
const VIEW_WINDOW: usize = 5;
/// Viewed together: the similarity of b to a is `c_ab / (n_a^0.7 * n_b^0.3 + 2)`: an
/// exponent over one half penalises a popular b less than plain cosine (0.5 each).
const VIEWED_SIMILARITY: (f32, f32) = (0.7, 2.0);
/// Bought together: `c_ab / (n_a^0.6 * n_b^0.4 + 20)`; the larger shrink keeps pairs
/// seen in few baskets down (tuned on the Ta-Feng validation baskets).
const BOUGHT_SIMILARITY: (f32, f32) = (0.6, 20.0);

/// One product's neighbours with their similarity, best first.
pub type NeighbourList = Box<[(ProductIdx, f32)]>;

pub struct Neighbors {
    lists: Vec<NeighbourList>,
    /// Occurrences per product in training, and the similarity's (alpha, shrink): what a
    /// pair seen after training is scored with.
    occurrences: Vec<f32>,
    similarity: (f32, f32),
}

impl Neighbors {
    /// The similarity of b to a for `count` co-occurrences, with `extra` occurrences of
    /// each seen since training.
    pub fn similarity(&self, a: ProductIdx, b: ProductIdx, count: f32, extra: (f32, f32)) -> f32 {
        let n = |p: ProductIdx, more: f32| {
            self.occurrences.get(p as usize).copied().unwrap_or(0.0) + more
        };
        let (alpha, shrink) = self.similarity;
        count / (n(a, extra.0).powf(alpha) * n(b, extra.1).powf(1.0 - alpha) + shrink)
    }

    /// The parts of the model, to store it.
    pub fn parts(&self) -> (&[NeighbourList], &[f32], (f32, f32)) {
        (&self.lists, &self.occurrences, self.similarity)
    }

    /// A model from its stored parts.
    pub fn from_parts(
        lists: Vec<NeighbourList>,
        occurrences: Vec<f32>,
        similarity: (f32, f32),
    ) -> Self {
        Self {
            lists,
            occurrences,
            similarity,
        }
    }

    /// Neighbours of `idx`, best first.
    pub fn of(&self, idx: ProductIdx) -> &[(ProductIdx, f32)] {
        self.lists.get(idx as usize).map_or(&[], |l| l)
    }

    pub fn memory_bytes(&self) -> usize {
        self.lists.len() * std::mem::size_of::<Box<[(ProductIdx, f32)]>>()
            + self.lists.iter().map(|l| l.len() * 8).sum::<usize>()
            + self.occurrences.len() * 4
    }

    /// `similarity.0` is the exponent alpha, `.1` the shrink term (see the module
    /// documentation).
    fn from_counts(
        n_products: usize,
        pairs: &FxHashMap<(ProductIdx, ProductIdx), f32>,
        occurrences: &[f32],
        k: usize,
        (alpha, shrink): (f32, f32),
        curation: &Curation,
    ) -> Self {
        let mut lists: Vec<Vec<(ProductIdx, f32)>> = vec![Vec::new(); n_products];
        for (&(a, b), &c) in pairs {
            let (na, nb) = (occurrences[a as usize], occurrences[b as usize]);
            if curation.keeps(a, b) {
                lists[a as usize].push((b, c / (na.powf(alpha) * nb.powf(1.0 - alpha) + shrink)));
            }
            if curation.keeps(b, a) {
                lists[b as usize].push((a, c / (nb.powf(alpha) * na.powf(1.0 - alpha) + shrink)));
            }
        }
        let lists = lists
            .into_iter()
            .map(|mut l| {
                l.sort_unstable_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                l.truncate(k);
                l.into_boxed_slice()
            })
            .collect();
        Self {
            lists,
            occurrences: occurrences.to_vec(),
            similarity: (alpha, shrink),
        }
    }
}

fn ordered(a: ProductIdx, b: ProductIdx) -> (ProductIdx, ProductIdx) {
    if a < b { (a, b) } else { (b, a) }
}

/// Products bought in the same order; a pair the curation blocks is not counted.
pub fn bought_together(
    n_products: usize,
    interactions: &[Interaction],
    k: usize,
    curation: &Curation,
) -> Neighbors {
    let mut orders: FxHashMap<u64, Vec<ProductIdx>> = FxHashMap::default();
    for i in interactions {
        if let (InteractionKind::Purchase, Some(order)) = (i.kind, i.order) {
            orders.entry(order).or_default().push(i.product);
        }
    }
    let mut pairs = FxHashMap::default();
    let mut occurrences = vec![0f32; n_products];
    for items in orders.values_mut() {
        items.sort_unstable();
        items.dedup();
        for (x, &a) in items.iter().enumerate() {
            occurrences[a as usize] += 1.0;
            for &b in &items[x + 1..] {
                if !curation.blocks(a, b) {
                    *pairs.entry((a, b)).or_insert(0.0) += 1.0;
                }
            }
        }
    }
    Neighbors::from_counts(
        n_products,
        &pairs,
        &occurrences,
        k,
        BOUGHT_SIMILARITY,
        curation,
    )
}

/// Products viewed near each other (within `VIEW_WINDOW` views) in the same session; a
/// pair the curation blocks is not counted.
pub fn viewed_together(
    n_products: usize,
    interactions: &[Interaction],
    k: usize,
    curation: &Curation,
) -> Neighbors {
    let mut sessions: FxHashMap<u64, Vec<ProductIdx>> = FxHashMap::default();
    for i in interactions {
        if i.kind == InteractionKind::View {
            let s = sessions.entry(i.session).or_default();
            if s.last() != Some(&i.product) {
                s.push(i.product);
            }
        }
    }
    let mut pairs = FxHashMap::default();
    let mut occurrences = vec![0f32; n_products];
    let mut seen: Vec<ProductIdx> = Vec::new();
    for items in sessions.values() {
        seen.clear();
        for (x, &a) in items.iter().enumerate() {
            if !seen.contains(&a) {
                seen.push(a);
                occurrences[a as usize] += 1.0;
            }
            for &b in items[x + 1..].iter().take(VIEW_WINDOW) {
                if a != b && !curation.blocks(a, b) {
                    *pairs.entry(ordered(a, b)).or_insert(0.0) += 1.0;
                }
            }
        }
    }
    Neighbors::from_counts(
        n_products,
        &pairs,
        &occurrences,
        k,
        VIEWED_SIMILARITY,
        curation,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase(order: u64, product: ProductIdx) -> Interaction {
        Interaction {
            session: order,
            customer: None,
            order: Some(order),
            product,
            kind: InteractionKind::Purchase,
            ts: 0,
            audience: Default::default(),
        }
    }

    #[test]
    fn products_bought_together_are_neighbours_in_both_directions() {
        let events = vec![
            purchase(1, 0),
            purchase(1, 1),
            purchase(2, 0),
            purchase(2, 1),
            purchase(3, 0),
            purchase(3, 2),
        ];
        let n = bought_together(4, &events, 10, &Curation::default());
        assert_eq!(n.of(0)[0].0, 1, "1 was bought with 0 twice, 2 only once");
        assert_eq!(n.of(1)[0].0, 0);
        assert!(n.of(3).is_empty());
        assert_eq!(n.of(0).len(), 2);
    }

    #[test]
    fn a_blocked_pair_is_never_learned_and_an_excluded_product_is_nobodys_neighbour() {
        let events = vec![
            purchase(1, 0),
            purchase(1, 1),
            purchase(1, 2),
            purchase(2, 0),
            purchase(2, 1),
        ];
        let curation = Curation::new([(1, 0)], [2]);
        let n = bought_together(3, &events, 10, &curation);
        assert!(
            n.of(0).is_empty(),
            "0 has only 1 (blocked) and 2 (excluded)"
        );
        assert!(n.of(1).is_empty());
        let twos: Vec<_> = n.of(2).iter().map(|(p, _)| *p).collect();
        assert_eq!(
            twos,
            [0, 1],
            "the excluded product keeps its own neighbours"
        );
    }

    #[test]
    fn only_the_best_k_neighbours_are_kept() {
        let events: Vec<_> = (0..20).map(|p| purchase(1, p)).collect();
        let n = bought_together(20, &events, 5, &Curation::default());
        assert_eq!(n.of(0).len(), 5);
    }

    #[test]
    fn views_far_apart_in_a_session_are_not_neighbours() {
        let events: Vec<_> = (0..10)
            .map(|p| Interaction {
                session: 1,
                customer: None,
                order: None,
                product: p,
                kind: InteractionKind::View,
                ts: 0,
                audience: Default::default(),
            })
            .collect();
        let n = viewed_together(10, &events, 50, &Curation::default());
        assert!(n.of(0).iter().any(|&(p, _)| p == 1));
        assert!(!n.of(0).iter().any(|&(p, _)| p == 9));
        // Within the window every view counts the same (tuned: weighting closer views
        // more did worse on held-out sessions).
        let s1 = n.of(0).iter().find(|x| x.0 == 1).unwrap().1;
        let s3 = n.of(0).iter().find(|x| x.0 == 3).unwrap().1;
        assert!((s1 - s3).abs() < 1e-6);
    }
}
