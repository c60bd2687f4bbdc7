//! The strongest pairs the models learned, for people to review: bought together and
//! viewed together, each with its score, its support (how many orders or sessions had
//! both, recovered from the score and the products' occurrences), and what makes it
//! look wrong.
//!
//! A pair is an outlier when it joins products of different departments (their
//! top-level categories) on little support, or when either product is out of stock.

use super::Models;
use super::cooccur::Neighbors;
use super::reads::Volatile;
use crate::domain::{Catalog, ProductIdx};

/// Pairs with fewer orders or sessions than this are "little support".
pub const WEAK_SUPPORT: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairKind {
    Bought,
    Viewed,
}

impl PairKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            PairKind::Bought => "bought_together",
            PairKind::Viewed => "viewed_together",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [PairKind::Bought, PairKind::Viewed]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// `b` is shown with `a`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub kind: PairKind,
    pub a: ProductIdx,
    pub b: ProductIdx,
    pub score: f32,
    pub support: u32,
    /// Different departments, on little support.
    pub unrelated: bool,
    /// Either product is out of stock.
    pub out_of_stock: bool,
}

impl Pair {
    pub fn outlier(&self) -> bool {
        self.unrelated || self.out_of_stock
    }
}

/// Which pairs to list.
#[derive(Clone, Debug, Default)]
pub struct Filter<'a> {
    /// Both kinds when `None`.
    pub kind: Option<PairKind>,
    /// A category handle: pairs with a product in it (or below it).
    pub category: Option<&'a str>,
    /// Pairs with a product whose id or title contains this (any case).
    pub search: Option<&'a str>,
    pub outliers_only: bool,
}

/// The pair's support: the co-occurrences its score was computed from.
fn support(model: &Neighbors, a: ProductIdx, b: ProductIdx, score: f32) -> u32 {
    // score = c / (n_a^alpha * n_b^(1 - alpha) + shrink), so c = score * (...).
    let per_unit = model.similarity(a, b, 1.0, (0.0, 0.0));
    if per_unit > 0.0 {
        (score / per_unit).round().max(0.0) as u32
    } else {
        0
    }
}

fn department(catalog: &Catalog, p: ProductIdx) -> &str {
    let c = &catalog.categories()[usize::from(catalog.product(p).category)];
    c.ancestry.last().map_or(&*c.handle, |(_, h)| &**h)
}

/// The `limit` strongest pairs the filter keeps, strongest first.
pub fn strongest(
    models: &Models,
    catalog: &Catalog,
    volatile: &dyn Volatile,
    filter: &Filter<'_>,
    limit: usize,
) -> Vec<Pair> {
    let needle = filter.search.map(str::to_lowercase);
    let matches = |p: ProductIdx| {
        let product = catalog.product(p);
        let in_category = filter.category.is_none_or(|c| {
            let cat = &catalog.categories()[usize::from(product.category)];
            cat.ancestry.iter().any(|(_, h)| &**h == c)
        });
        let found = needle.as_deref().is_none_or(|n| {
            product.id.to_lowercase().contains(n) || product.title.to_lowercase().contains(n)
        });
        (in_category, found)
    };
    let mut out: Vec<Pair> = Vec::new();
    for (kind, model) in [
        (PairKind::Bought, &models.bought),
        (PairKind::Viewed, &models.viewed),
    ] {
        if filter.kind.is_some_and(|k| k != kind) {
            continue;
        }
        for a in 0..catalog.len() as ProductIdx {
            let list = model.of(a);
            if list.is_empty() {
                continue;
            }
            let (a_in, a_found) = matches(a);
            for &(b, score) in list {
                if (b as usize) >= catalog.len() {
                    continue;
                }
                let (b_in, b_found) = matches(b);
                if !(a_in || b_in) || !(a_found || b_found) {
                    continue;
                }
                let support = support(model, a, b, score);
                let pair = Pair {
                    kind,
                    a,
                    b,
                    score,
                    support,
                    unrelated: support < WEAK_SUPPORT
                        && department(catalog, a) != department(catalog, b),
                    out_of_stock: !volatile.in_stock(catalog, a) || !volatile.in_stock(catalog, b),
                };
                if filter.outliers_only && !pair.outlier() {
                    continue;
                }
                out.push(pair);
            }
        }
    }
    let limit = limit.min(out.len());
    if limit < out.len() {
        out.select_nth_unstable_by(limit, |x, y| y.score.total_cmp(&x.score));
        out.truncate(limit);
    }
    out.sort_by(|x, y| {
        y.score
            .total_cmp(&x.score)
            .then(x.a.cmp(&y.a))
            .then(x.b.cmp(&y.b))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Interaction, InteractionKind};

    #[test]
    fn support_is_the_count_the_score_came_from() {
        // Products 0 and 1 in five orders together; 0 in two more, 1 in four more.
        let mut orders: Vec<Vec<u32>> = vec![vec![0, 1]; 5];
        orders.extend(vec![vec![0, 2]; 2]);
        orders.extend(vec![vec![1, 2]; 4]);
        let interactions: Vec<Interaction> = orders
            .iter()
            .enumerate()
            .flat_map(|(o, items)| {
                items.iter().map(move |&p| Interaction {
                    session: o as u64,
                    customer: None,
                    order: Some(o as u64),
                    product: p,
                    kind: InteractionKind::Purchase,
                    ts: 0,
                    audience: Default::default(),
                })
            })
            .collect();
        let model =
            super::super::cooccur::bought_together(3, &interactions, 10, &Default::default());
        let (b, score) = model.of(0).iter().find(|(b, _)| *b == 1).copied().unwrap();
        assert_eq!(support(&model, 0, b, score), 5);
        let (_, score) = model.of(1).iter().find(|(b, _)| *b == 2).copied().unwrap();
        assert_eq!(support(&model, 1, 2, score), 4);
    }
}
