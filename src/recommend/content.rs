//! Neighbours by category and tags for products the models have no co-occurrence for
//! (too new, or never bought or viewed with anything): the products of the same
//! category with the largest share of tags in common (Jaccard), then by trend.
//!
//! They depend only on the catalog (tags, category members, what is new since training)
//! and the trained trend, so they are worked out once per catalog version, off the
//! serving path, when a catalog or models are swapped in ([`Table::build`]); a request
//! reads a slice. A request on a catalog the table was not built for (a snapshot being
//! replaced, a replay of an older one) works its product's list out itself, the same way.

use crate::domain::{Catalog, ProductIdx};

use super::cooccur::Neighbors;
use super::trending::Trending;

/// Neighbours kept per product, and how many of its category's trending products are
/// compared with it.
pub const KEPT: usize = 50;
const SCAN: usize = 100;

/// The neighbours of one product, best first.
pub fn of(trending: &Trending, catalog: &Catalog, p: ProductIdx) -> Vec<(ProductIdx, f32)> {
    let product = catalog.product(p);
    // The category's most trending products, and those added since training (the
    // members are in index order, so those are at the end): not the whole category.
    let in_category = trending.in_category(product.category);
    let new = catalog
        .category_members(product.category)
        .iter()
        .rev()
        .take_while(|&&q| !trending.knows(q));
    let mut scored: Vec<(ProductIdx, f32)> = in_category
        .iter()
        .take(SCAN)
        .chain(new)
        .filter(|&&q| q != p)
        .map(|&q| {
            let tags = &catalog.product(q).tags;
            let shared = tags.iter().filter(|t| product.tags.contains(t)).count() as f32;
            let union = (tags.len() + product.tags.len()) as f32 - shared;
            let jaccard = if union > 0.0 { shared / union } else { 0.0 };
            (q, jaccard + 0.1 * trending.score(q))
        })
        .collect();
    scored.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(KEPT);
    scored
}

/// Whether a request may need `p`'s content neighbours: the training saw it with no
/// neighbour (or never saw it). Live pairs can make such a product warm later; a
/// product with trained neighbours never needs them.
fn may_need(trained: &Trained<'_>, p: ProductIdx) -> bool {
    !trained.trending.knows(p)
        || (trained.bought.of(p).is_empty() && trained.viewed.of(p).is_empty())
}

/// The trained models content neighbours are worked out from.
pub struct Trained<'m> {
    pub trending: &'m Trending,
    pub bought: &'m Neighbors,
    pub viewed: &'m Neighbors,
}

/// Every product's content neighbours that a request may need, for one catalog version.
pub struct Table {
    catalog_version: u64,
    /// By product index; empty for products with trained neighbours.
    lists: Vec<Box<[(ProductIdx, f32)]>>,
}

impl Table {
    /// Works the lists out on up to `threads` threads (the catalog is split between them).
    pub fn build(trained: &Trained<'_>, catalog: &Catalog, threads: usize) -> Self {
        let n = catalog.len();
        let threads = threads.clamp(1, 8);
        let chunk = n.div_ceil(threads).max(1);
        let mut lists: Vec<Box<[(ProductIdx, f32)]>> = Vec::with_capacity(n);
        std::thread::scope(|scope| {
            let parts: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|start| {
                    scope.spawn(move || {
                        (start..(start + chunk).min(n))
                            .map(|i| {
                                let p = i as ProductIdx;
                                if catalog.is_live(p) && may_need(trained, p) {
                                    of(trained.trending, catalog, p).into_boxed_slice()
                                } else {
                                    Box::default()
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for part in parts {
                lists.extend(part.join().unwrap_or_default());
            }
        });
        Self {
            catalog_version: catalog.version(),
            lists,
        }
    }

    /// Whether the table was built for this catalog.
    pub fn fits(&self, catalog: &Catalog) -> bool {
        self.catalog_version == catalog.version() && self.lists.len() == catalog.len()
    }

    /// `p`'s neighbours, best first (empty: it has trained neighbours).
    pub fn of(&self, p: ProductIdx) -> &[(ProductIdx, f32)] {
        self.lists.get(p as usize).map_or(&[], |l| l)
    }

    pub fn memory_bytes(&self) -> usize {
        self.lists.len() * std::mem::size_of::<Box<[(ProductIdx, f32)]>>()
            + self.lists.iter().map(|l| l.len() * 8).sum::<usize>()
    }
}
