//! One request's recommendations: gather candidates from the sources the placement
//! calls for, blend them into one pool, filter, rank.
//!
//! Every source adds `weight * score` to a candidate (neighbour scores are scaled per
//! anchor so that the best neighbour scores 1); a product offered by several
//! sources sums their contributions and keeps the reason of the largest one. Trending
//! sources carry small weights, so they fill the list when the personal and contextual
//! sources run short and otherwise only break ties. Hard filters (out of stock, the
//! product in view, products in the cart) are applied last and nothing overrides them.

use serde::{Deserialize, Serialize};

use crate::config::{Blend, BlendSettings};
use crate::domain::{Audience, Catalog, Placement, ProductIdx, Profile, Segment};

use super::model::Models;
use super::reads::Volatile;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    BoughtTogether,
    ViewedTogether,
    BasedOnYourHistory,
    RecentlyViewed,
    BuyAgain,
    SimilarItem,
    MatchesSearch,
    TrendingInCategory,
    NewArrival,
    TrendingInCountry,
    TrendingOnDevice,
    Trending,
    /// Placed by a merchandising rule.
    Pinned,
    /// Drawn at random (an experiment's `random` baseline).
    Random,
    /// The storefront's own list, as sent (an experiment's `none` baseline).
    Storefront,
}

impl Reason {
    /// Every reason, in declaration order (a reason's index is its compact code).
    pub const ALL: [Reason; 15] = [
        Reason::BoughtTogether,
        Reason::ViewedTogether,
        Reason::BasedOnYourHistory,
        Reason::RecentlyViewed,
        Reason::BuyAgain,
        Reason::SimilarItem,
        Reason::MatchesSearch,
        Reason::TrendingInCategory,
        Reason::NewArrival,
        Reason::TrendingInCountry,
        Reason::TrendingOnDevice,
        Reason::Trending,
        Reason::Pinned,
        Reason::Random,
        Reason::Storefront,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::BoughtTogether => "bought_together",
            Reason::ViewedTogether => "viewed_together",
            Reason::BasedOnYourHistory => "based_on_your_history",
            Reason::RecentlyViewed => "recently_viewed",
            Reason::BuyAgain => "buy_again",
            Reason::SimilarItem => "similar_item",
            Reason::MatchesSearch => "matches_search",
            Reason::TrendingInCategory => "trending_in_category",
            Reason::NewArrival => "new_arrival",
            Reason::TrendingInCountry => "trending_in_country",
            Reason::TrendingOnDevice => "trending_on_device",
            Reason::Trending => "trending",
            Reason::Pinned => "pinned",
            Reason::Random => "random",
            Reason::Storefront => "storefront",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub product: ProductIdx,
    pub score: f32,
    pub reason: Reason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartItem {
    pub product_id: String,
    pub quantity: u32,
}

/// Business rules from the `recommend` settings, applied to every answer.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Category handles whose products are bought again (a handle covers its
    /// sub-categories).
    pub repeatable: Vec<String>,
    pub max_per_category: crate::config::MaxPerCategory,
    /// The weight of each source, per placement.
    pub blend: BlendSettings,
}

impl Policy {
    pub fn new(settings: &crate::config::RecommendSettings) -> Self {
        Self {
            repeatable: settings.repeatable_categories.clone(),
            max_per_category: settings.max_per_category,
            blend: settings.blend,
        }
    }

    /// Whether products of category `c` are bought again.
    pub fn repeatable(&self, catalog: &Catalog, c: u16) -> bool {
        let Some(category) = catalog.categories().get(usize::from(c)) else {
            return false;
        };
        let handle = &*category.handle;
        self.repeatable.iter().any(|r| {
            handle == r || (handle.starts_with(r.as_str()) && handle[r.len()..].starts_with('/'))
        })
    }
}

/// What the engine needs to know about the page, already validated.
#[derive(Clone, Copy)]
pub struct Query<'a> {
    pub policy: &'a Policy,
    pub placement: Placement,
    pub product: Option<&'a str>,
    pub category: Option<&'a str>,
    pub search: Option<&'a str>,
    pub cart: &'a [CartItem],
    /// Products the storefront sent to be re-ranked (search results, a category
    /// page); when present, the answer holds only these.
    pub candidates: &'a [String],
    pub limit: usize,
    /// The visitor's country and device class, for visitors with no history.
    pub audience: Audience,
    /// What changed since training (live trend and pairs) and stock.
    pub volatile: &'a dyn Volatile,
}

// The sources' weights per placement are settings (`recommend.blend`, see
// `BlendSettings::default` for the tuned defaults).
/// History items whose neighbours are considered, most recent first, each worth `DECAY`
/// of the next newer; for the session-kNN match, `SESSION_DECAY`.
const HISTORY_ITEMS: usize = 10;
const DECAY: f32 = 0.7;
/// Viewed products offered again (every one the profile keeps), each worth its view
/// count times `REPEAT_DECAY` of the next newer: a product viewed three times outranks
/// one viewed once a step later (tuned on the validation split: S-POP's repeat hits with
/// recency).
const REPEAT_ITEMS: usize = crate::domain::profile::MAX_RECENTLY_VIEWED;
const REPEAT_DECAY: f32 = 0.8;
const SESSION_DECAY: f32 = 0.5;
/// Session-kNN: the most recent past sessions read per history item, and how many of
/// the most similar ones vote.
const SESSION_SAMPLE: usize = 250;
const SESSION_NEIGHBOURS: usize = 100;
/// History items matched against past sessions (older ones weigh under 3%).
const SESSION_ITEMS: usize = 5;
/// Neighbours read per history item.
const HISTORY_NEIGHBOURS: usize = 100;

#[derive(Clone, Copy)]
struct Candidate {
    product: ProductIdx,
    score: f32,
    best: f32,
    reason: Reason,
}

struct Pool {
    items: Vec<Candidate>,
}

impl Pool {
    fn add(&mut self, product: ProductIdx, contribution: f32, reason: Reason) {
        self.items.push(Candidate {
            product,
            score: contribution,
            best: contribution,
            reason,
        });
    }

    /// Adds an anchor's neighbours, scaled so its best neighbour is worth `weight`:
    /// the source weights then say how sources rank against each other, whatever the
    /// raw similarity scales of the models.
    fn neighbours(&mut self, list: &[(ProductIdx, f32)], weight: f32, reason: Reason) {
        let Some(&(_, top)) = list.first() else {
            return;
        };
        if top <= 0.0 || weight <= 0.0 {
            return;
        }
        for &(p, s) in list {
            self.add(p, s / top * weight, reason);
        }
    }

    /// Adds the first `take` products of a trend-ranked list.
    fn trend(
        &mut self,
        models: &Models,
        live: &dyn Volatile,
        list: &[ProductIdx],
        take: usize,
        weight: f32,
        reason: Reason,
    ) {
        if weight <= 0.0 {
            return;
        }
        for &p in list.iter().take(take) {
            self.add(p, models.trend_score(live, p) * weight, reason);
        }
    }

    /// Folds duplicates (summing scores, keeping the strongest reason) and ranks. The
    /// pool's contributions stay, by product, for [`Pool::sources`].
    /// Each product once: its contributions summed (in the order they were added), with
    /// the reason of its largest one. In no particular order. Slots per thread, indexed
    /// by product, find each product's entry without sorting.
    fn merge(&self) -> Vec<Candidate> {
        let mut merged: Vec<Candidate> = Vec::with_capacity(self.items.len());
        SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            slots.begin(0);
            for &c in &self.items {
                match slots.get(c.product as usize) {
                    Some(at) => {
                        let m = &mut merged[at];
                        m.score += c.score;
                        if c.best > m.best {
                            m.best = c.best;
                            m.reason = c.reason;
                        }
                    }
                    None => {
                        slots.set(c.product as usize, merged.len());
                        merged.push(c);
                    }
                }
            }
        });
        merged
    }

    /// Each product once, best first.
    fn rank(&self) -> Vec<Candidate> {
        let mut merged = self.merge();
        merged.sort_unstable_by(best_first);
        merged
    }

    /// What each source added to each of `products`, by source (one pass over what was
    /// added).
    fn sources(&self, products: &[ProductIdx]) -> Vec<Vec<(Reason, f32)>> {
        // A bit per product (its index mod 64) in front of a search of the few explained:
        // most contributions are to other products, passed over with one test.
        let filter = products.iter().fold(0u64, |f, &p| f | 1 << (p % 64));
        let mut out: Vec<Vec<(Reason, f32)>> = vec![Vec::new(); products.len()];
        for c in &self.items {
            if filter & 1 << (c.product % 64) == 0 {
                continue;
            }
            let Some(i) = products.iter().position(|&p| p == c.product) else {
                continue;
            };
            match out[i].iter_mut().find(|(r, _)| *r == c.reason) {
                Some(e) => e.1 += c.score,
                None => out[i].push((c.reason, c.score)),
            }
        }
        out
    }
}

/// Best score first, then the lower index: a total order, so any sort (or a partial
/// selection followed by a sort) gives the same sequence.
fn best_first(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then(a.product.cmp(&b.product))
}

thread_local! {
    /// Where each product's entry is in [`Pool::merge`].
    static SLOTS: std::cell::RefCell<super::slots::Slots> = std::cell::RefCell::default();
}

/// Candidates best first, sorted only as far as they are read: a request reads a few
/// dozen of a few thousand.
struct Ranked {
    items: Vec<Candidate>,
    /// `items[..sorted]` are the best, in order.
    sorted: usize,
}

impl Ranked {
    fn new(items: Vec<Candidate>) -> Self {
        Self { items, sorted: 0 }
    }

    /// Sorts the first `n` (the rest stay after them, in no order).
    fn sort_to(&mut self, n: usize) {
        let n = n.min(self.items.len());
        if n <= self.sorted {
            return;
        }
        let rest = &mut self.items[self.sorted..];
        let k = n - self.sorted;
        if k < rest.len() {
            rest.select_nth_unstable_by(k - 1, best_first);
            rest[..k].sort_unstable_by(best_first);
        } else {
            rest.sort_unstable_by(best_first);
        }
        self.sorted = n;
    }

    /// The `i`th best.
    fn get(&mut self, i: usize) -> Option<Candidate> {
        if i >= self.sorted {
            self.sort_to((i + 1).max(2 * self.sorted).max(64));
        }
        self.items.get(i).copied()
    }
}

/// A candidate as the blend saw it: its score (after rotation) and what each source
/// added, before the filters and the diversity cap.
#[derive(Clone, Debug, PartialEq)]
pub struct Considered {
    pub product: ProductIdx,
    pub score: f32,
    pub sources: Vec<(Reason, f32)>,
}

/// The visitor's recent views as candidates: item-kNN over the whole history (each
/// item's viewed-together neighbours, raw similarity, weighted by recency), session-kNN
/// (past sessions sharing these items vote for their other items), and the viewed items
/// themselves. The weights were tuned on the Diginetica validation split (the last
/// tenth of the training sessions), never on its test sessions.
fn history(pool: &mut Pool, models: &Models, catalog: &Catalog, profile: &Profile, b: &Blend) {
    if b.history <= 0.0 && b.recently_viewed <= 0.0 && b.sessions <= 0.0 {
        return;
    }
    let mut w = 1.0;
    let mut repeat_w = 1.0;
    let mut session_w = 1.0;
    let mut current = Vec::with_capacity(SESSION_ITEMS);
    for (r, (id, times)) in profile.views().take(REPEAT_ITEMS).enumerate() {
        let Some(p) = catalog.lookup(id) else {
            continue;
        };
        pool.add(
            p,
            b.recently_viewed * repeat_w * f32::from(times),
            Reason::RecentlyViewed,
        );
        repeat_w *= REPEAT_DECAY;
        if r < HISTORY_ITEMS {
            let list = models.viewed.of(p);
            for &(q, s) in &list[..list.len().min(HISTORY_NEIGHBOURS)] {
                pool.add(q, b.history * w * s, Reason::BasedOnYourHistory);
            }
            w *= DECAY;
        }
        if current.len() < SESSION_ITEMS {
            current.push((p, session_w));
        }
        session_w *= SESSION_DECAY;
    }
    if b.sessions > 0.0 {
        let mut votes = Vec::new();
        models
            .sessions
            .score(&current, SESSION_SAMPLE, SESSION_NEIGHBOURS, &mut votes);
        for (p, v) in votes {
            pool.add(p, b.sessions * v, Reason::BasedOnYourHistory);
        }
    }
}

/// Products of `p`'s category, by the share of tags they have in common with it
/// (Jaccard), then by trend: neighbours for a product no one has bought or viewed with
/// anything yet. New products are found this way too, so they get shown. Read from the
/// table worked out for this catalog; worked out here only when there is none.
fn content_neighbours(
    pool: &mut Pool,
    models: &Models,
    catalog: &Catalog,
    p: ProductIdx,
    weight: f32,
) {
    match models.content_for(catalog) {
        Some(table) => pool.neighbours(table.of(p), weight, Reason::SimilarItem),
        None => pool.neighbours(
            &super::content::of(&models.trending, catalog, p),
            weight,
            Reason::SimilarItem,
        ),
    }
}

/// Shown this many times without a click, a product keeps its score; each further
/// showing halves it (rotation: what the visitor keeps passing over makes room).
const FREE_SHOWS: u16 = 2;
const ROTATION: f32 = 0.5;

/// The factor for a product the visitor was shown without clicking.
fn passed_over(profile: &Profile, catalog: &Catalog, p: ProductIdx) -> f32 {
    let id = &*catalog.product(p).id;
    profile
        .shown
        .iter()
        .find(|s| s.product_id == id)
        .filter(|s| s.times > FREE_SHOWS)
        .map_or(1.0, |s| ROTATION.powi(i32::from(s.times - FREE_SHOWS)))
}

/// Demotes products the visitor was shown too often without clicking (before they are
/// ranked).
fn rotate(candidates: &mut [Candidate], profile: &Profile, catalog: &Catalog) {
    let mut passed: Vec<(ProductIdx, f32)> = profile
        .shown
        .iter()
        .filter(|s| s.times > FREE_SHOWS)
        .filter_map(|s| {
            let p = catalog.lookup(&s.product_id)?;
            Some((p, ROTATION.powi(i32::from(s.times - FREE_SHOWS))))
        })
        .collect();
    if passed.is_empty() {
        return;
    }
    passed.sort_unstable_by_key(|x| x.0);
    for c in candidates.iter_mut() {
        if let Ok(i) = passed.binary_search_by_key(&c.product, |x| x.0) {
            c.score *= passed[i].1;
        }
    }
}

/// The customer's purchases in repeatable categories, most often bought first (ties go
/// to the more popular).
fn buy_again(
    pool: &mut Pool,
    models: &Models,
    live: &dyn Volatile,
    catalog: &Catalog,
    profile: &Profile,
    policy: &Policy,
    weight: f32,
) {
    let Some(most) = profile.purchased.iter().map(|p| p.count).max() else {
        return;
    };
    if weight <= 0.0 {
        return;
    }
    for bought in &profile.purchased {
        if let Some(p) = catalog.lookup(&bought.product_id)
            && policy.repeatable(catalog, catalog.product(p).category)
        {
            let frequency = bought.count as f32 / most as f32;
            let tie = 0.001 * models.trend_score(live, p);
            pool.add(p, weight * (frequency + tie), Reason::BuyAgain);
        }
    }
}

/// The storefront's candidates as sent, in its order, the products the catalog knows
/// (once each), whatever their stock: an experiment's `none` baseline.
pub fn storefront_order(catalog: &Catalog, query: &Query<'_>) -> Vec<Scored> {
    let mut out: Vec<Scored> = Vec::with_capacity(query.limit.min(query.candidates.len()));
    for id in query.candidates {
        if out.len() == query.limit {
            break;
        }
        if let Some(p) = catalog.lookup(id)
            && !out.iter().any(|s| s.product == p)
        {
            out.push(Scored {
                product: p,
                score: 0.0,
                reason: Reason::Storefront,
            });
        }
    }
    out
}

/// `query.limit` in-stock products drawn at random, the same for the same `seed`
/// (never the product in view or one in the cart): an experiment's `random` baseline.
pub fn random_in_stock(catalog: &Catalog, query: &Query<'_>, seed: u64) -> Vec<Scored> {
    use rand::{Rng, SeedableRng};
    let n = ProductIdx::try_from(catalog.len()).unwrap_or(ProductIdx::MAX);
    let mut out: Vec<Scored> = Vec::with_capacity(query.limit);
    if n == 0 {
        return out;
    }
    let in_view = query.product.and_then(|id| catalog.lookup(id));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // Bounded draws: a catalog mostly out of stock answers fewer, never loops long.
    for _ in 0..query.limit.saturating_mul(20) {
        if out.len() == query.limit {
            break;
        }
        let p: ProductIdx = rng.random_range(0..n);
        if Some(p) == in_view
            || !query.volatile.in_stock(catalog, p)
            || query
                .cart
                .iter()
                .any(|l| catalog.lookup(&l.product_id) == Some(p))
            || out.iter().any(|s| s.product == p)
        {
            continue;
        }
        out.push(Scored {
            product: p,
            score: 0.0,
            reason: Reason::Random,
        });
    }
    out
}

/// The storefront's order of re-ranked candidates is worth up to this (first place).
const W_ORDER: f32 = 0.5;
/// A candidate's trend, when re-ranking.
const W_CANDIDATE_TREND: f32 = 0.05;

/// Re-ranks the storefront's candidates for this visitor: the storefront's own order
/// (its relevance) plus what the visitor's history says of each candidate (the same
/// history sources as elsewhere) and a little trend. Only candidates are answered, and
/// every candidate is: what the filters would remove elsewhere comes last.
fn rerank(
    models: &Models,
    catalog: &Catalog,
    query: &Query<'_>,
    profile: Option<&Profile>,
    allowed: &dyn Fn(ProductIdx) -> bool,
) -> Vec<Scored> {
    let mut candidates: Vec<ProductIdx> = Vec::with_capacity(query.candidates.len());
    for id in query.candidates {
        if let Some(p) = catalog.lookup(id)
            && !candidates.contains(&p)
        {
            candidates.push(p);
        }
    }
    let mut personal: rustc_hash::FxHashMap<ProductIdx, (f32, Reason)> = Default::default();
    if let Some(profile) = profile {
        let mut pool = Pool {
            items: Vec::with_capacity(1024),
        };
        let b = query.policy.blend.of(query.placement);
        history(&mut pool, models, catalog, profile, b);
        buy_again(
            &mut pool,
            models,
            query.volatile,
            catalog,
            profile,
            query.policy,
            b.buy_again,
        );
        for c in pool.rank() {
            personal.insert(c.product, (c.score, c.reason));
        }
    }
    let fallback = if query.placement == Placement::Search {
        Reason::MatchesSearch
    } else {
        Reason::TrendingInCategory
    };
    let n = candidates.len().max(1) as f32;
    let mut scored: Vec<Scored> = candidates
        .iter()
        .enumerate()
        .filter(|&(_, &p)| allowed(p))
        .map(|(i, &p)| {
            let (mine, reason) = personal.get(&p).copied().unwrap_or((0.0, fallback));
            Scored {
                product: p,
                score: W_ORDER * (1.0 - i as f32 / n)
                    + mine
                    + W_CANDIDATE_TREND * models.trend_score(query.volatile, p),
                reason,
            }
        })
        .collect();
    if let Some(profile) = profile {
        for s in &mut scored {
            s.score *= passed_over(profile, catalog, s.product);
        }
    }
    scored.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.product.cmp(&b.product)));
    let mut picked = Picked::new(
        query.policy.max_per_category.of(query.placement),
        query.limit,
    );
    for s in scored {
        if picked.out.len() >= query.limit {
            break;
        }
        picked.offer(catalog, s.product, s.score, s.reason);
    }
    let mut out = picked.finish(query.limit);
    // The list is the storefront's: what the filters would remove elsewhere (out of
    // stock, bought before, in the cart) is demoted to the end, in the storefront's
    // order, never dropped.
    let mut floor = out.last().map_or(0.0, |s| s.score);
    for &p in candidates.iter().filter(|&&p| !allowed(p)) {
        if out.len() >= query.limit {
            break;
        }
        floor *= 0.5;
        out.push(Scored {
            product: p,
            score: floor,
            reason: fallback,
        });
    }
    out
}

/// Recommends up to `query.limit` products. `profile` is `None` for anonymous visitors
/// and for the non-personalized fallback.
pub fn recommend(
    models: &Models,
    catalog: &Catalog,
    query: &Query<'_>,
    profile: Option<&Profile>,
) -> Vec<Scored> {
    recommend_explained(models, catalog, query, profile, 0).0
}

/// [`recommend`], and the `explain` strongest candidates with their sources' scores
/// (for re-ranked candidates, each one's score and reason).
pub fn recommend_explained(
    models: &Models,
    catalog: &Catalog,
    query: &Query<'_>,
    profile: Option<&Profile>,
    explain: usize,
) -> (Vec<Scored>, Vec<Considered>) {
    let in_view = query.product.and_then(|id| catalog.lookup(id));
    let cart: Vec<ProductIdx> = query
        .cart
        .iter()
        .filter_map(|l| catalog.lookup(&l.product_id))
        .collect();
    // Bought before, in a category people do not buy again: never offered again.
    let bought: Vec<ProductIdx> = profile.map_or_else(Vec::new, |profile| {
        profile
            .purchased
            .iter()
            .filter_map(|b| catalog.lookup(&b.product_id))
            .filter(|&p| {
                !query
                    .policy
                    .repeatable(catalog, catalog.product(p).category)
            })
            .collect()
    });
    let allowed = |p: ProductIdx| {
        query.volatile.in_stock(catalog, p)
            && Some(p) != in_view
            && !cart.contains(&p)
            && !bought.contains(&p)
    };
    if !query.candidates.is_empty() {
        let out = rerank(models, catalog, query, profile, &allowed);
        let considered = out
            .iter()
            .take(explain)
            .map(|s| Considered {
                product: s.product,
                score: s.score,
                sources: vec![(s.reason, s.score)],
            })
            .collect();
        return (out, considered);
    }
    // Enough trending candidates to fill the list even after filters remove some.
    let fill = query.limit * 2 + cart.len() + 4;
    let page_categories: Vec<u16> = match (query.placement, query.category) {
        (Placement::Category, Some(name)) => catalog.categories_within(name),
        _ => Vec::new(),
    };
    // A category page answers what it is about: its own products, whatever source
    // brings them (the visitor's history, the global trend).
    let allowed = |p: ProductIdx| {
        allowed(p)
            && (page_categories.is_empty()
                || page_categories.contains(&catalog.product(p).category))
    };
    let mut pool = Pool {
        items: Vec::with_capacity(4 * fill + 128),
    };
    let mut context_categories: Vec<u16> = Vec::new();
    let b = query.policy.blend.of(query.placement);

    match query.placement {
        Placement::Product => {
            if let Some(p) = in_view {
                let bought = models.bought_with(query.volatile, p);
                pool.neighbours(&bought, b.bought_together, Reason::BoughtTogether);
                pool.neighbours(
                    models.viewed.of(p),
                    b.viewed_together,
                    Reason::ViewedTogether,
                );
                // A product too new to have been bought or viewed with anything yet:
                // its neighbours by category and tags.
                let cold = !models.trending.knows(p)
                    || (bought.is_empty() && models.viewed.of(p).is_empty());
                if b.similar_items > 0.0 && cold {
                    content_neighbours(&mut pool, models, catalog, p, b.similar_items);
                }
                context_categories.push(catalog.product(p).category);
            }
        }
        Placement::Cart | Placement::Checkout | Placement::PostPurchase => {
            let mut anchors = cart.clone();
            if anchors.is_empty()
                && query.placement == Placement::PostPurchase
                && let Some(profile) = profile
            {
                anchors.extend(
                    profile
                        .purchased
                        .iter()
                        .take(HISTORY_ITEMS)
                        .filter_map(|p| catalog.lookup(&p.product_id)),
                );
            }
            // Raw similarities, summed over the cart: a product that goes with several
            // lines outranks one that goes strongly with one line only.
            for &p in &anchors {
                if b.bought_together > 0.0 {
                    for &(q, s) in models.bought_with(query.volatile, p).iter() {
                        pool.add(q, b.bought_together * s, Reason::BoughtTogether);
                    }
                }
                if b.viewed_together > 0.0 {
                    for &(q, s) in models.viewed.of(p) {
                        pool.add(q, b.viewed_together * s, Reason::ViewedTogether);
                    }
                }
                let c = catalog.product(p).category;
                if !context_categories.contains(&c) {
                    context_categories.push(c);
                }
            }
        }
        Placement::Category => {
            // A category page, or a department's: the category and every one below it.
            for &c in &page_categories {
                // Within a category page the category's own trend is the main signal.
                pool.trend(
                    models,
                    query.volatile,
                    models.trending.in_category(c),
                    fill * 2,
                    b.category_trend,
                    Reason::TrendingInCategory,
                );
                // Products added since the models were trained have no trend yet; they
                // still belong on their category's page.
                for &p in catalog.category_members(c) {
                    if b.new_arrivals > 0.0 && !models.trending.knows(p) {
                        pool.add(p, b.new_arrivals, Reason::NewArrival);
                    }
                }
            }
        }
        Placement::Search => {
            if let Some(q) = query.search {
                for p in catalog.search(q) {
                    pool.add(
                        p,
                        b.search * (0.5 + 0.5 * models.trend_score(query.volatile, p)),
                        Reason::MatchesSearch,
                    );
                }
            }
        }
        Placement::Home => {}
    }

    // Personal history: what this visitor viewed recently, and where they shop.
    if let Some(profile) = profile {
        if matches!(
            query.placement,
            Placement::Home | Placement::Product | Placement::Category
        ) {
            history(&mut pool, models, catalog, profile, b);
        }
        if query.placement == Placement::Home {
            buy_again(
                &mut pool,
                models,
                query.volatile,
                catalog,
                profile,
                query.policy,
                b.buy_again,
            );
            for handle in profile.top_categories().take(3) {
                if let Some(c) = catalog.category(handle) {
                    context_categories.push(c);
                }
            }
        }
    }

    for &c in &context_categories {
        pool.trend(
            models,
            query.volatile,
            models.trending.in_category(c),
            fill,
            b.category_trend,
            Reason::TrendingInCategory,
        );
    }
    pool.trend(
        models,
        query.volatile,
        models.trending.global(),
        fill,
        b.trending,
        Reason::Trending,
    );
    // A visitor with no history of their own: what visitors like them favour.
    if b.audience_trend > 0.0
        && profile.is_none_or(|p| p.recently_viewed.is_empty() && p.purchased.is_empty())
    {
        for segment in query.audience.segments() {
            let reason = match segment {
                Segment::Country(_) => Reason::TrendingInCountry,
                Segment::Device(_) => Reason::TrendingOnDevice,
            };
            for &(p, s) in models
                .segment_trend(query.volatile, segment)
                .iter()
                .take(fill)
            {
                pool.add(p, b.audience_trend * s, reason);
            }
        }
    }
    // What took off since training is not in the trained ranking yet.
    for (p, _) in query
        .volatile
        .trending()
        .into_iter()
        .filter(|_| b.trending > 0.0)
    {
        pool.add(
            p,
            models.trend_score(query.volatile, p) * b.trending,
            Reason::Trending,
        );
    }

    let mut merged = pool.merge();
    if let Some(profile) = profile {
        rotate(&mut merged, profile, catalog);
    }
    let mut ranked = Ranked::new(merged);
    ranked.sort_to(explain);
    let explained = &ranked.items[..explain.min(ranked.sorted)];
    let products: Vec<ProductIdx> = explained.iter().map(|c| c.product).collect();
    let considered = explained
        .iter()
        .zip(pool.sources(&products))
        .map(|(c, sources)| Considered {
            product: c.product,
            score: c.score,
            sources,
        })
        .collect();
    let mut picked = Picked::new(
        query.policy.max_per_category.of(query.placement),
        query.limit,
    );
    let mut next = 0;
    while picked.out.len() < query.limit {
        let Some(c) = ranked.get(next) else {
            break;
        };
        next += 1;
        if allowed(c.product) {
            picked.offer(catalog, c.product, c.score, c.reason);
        }
    }

    // Heavy filtering (much out of stock, a diversity cap) can still leave the list
    // short: walk further down the global trend (on a category page, the page's own).
    if picked.out.len() < query.limit && b.trending > 0.0 && page_categories.is_empty() {
        let floor = picked.out.last().map_or(b.trending, |s| s.score);
        for &p in models.trending.global().iter().skip(fill) {
            if picked.out.len() >= query.limit {
                break;
            }
            if allowed(p) && !picked.has(p) {
                let score = floor.min(models.trend_score(query.volatile, p) * b.trending);
                picked.offer(catalog, p, score, Reason::Trending);
            }
        }
    }
    // Still short (a shop with no history yet, a page whose products have none): the
    // page's in-stock products, else the shop's, newest first. Never an empty answer
    // while something can be sold.
    if picked.out.len() + picked.held.len() < query.limit {
        from_catalog(
            &mut picked,
            catalog,
            &page_categories,
            query.limit,
            &allowed,
        );
    }
    (picked.finish(query.limit), considered)
}

/// Products looked at, at most, when topping an answer up from the catalog.
const CATALOG_FILL_SCAN: usize = 10_000;

/// Tops `picked` up with in-stock products of `categories` (all categories when empty),
/// newest first (the catalog's latest additions have the highest indexes).
fn from_catalog(
    picked: &mut Picked,
    catalog: &Catalog,
    categories: &[u16],
    limit: usize,
    allowed: &dyn Fn(ProductIdx) -> bool,
) {
    let floor = picked.out.last().map_or(0.01, |s| s.score.min(0.01));
    let offer = |p: ProductIdx, picked: &mut Picked| {
        if allowed(p) && !picked.has(p) {
            picked.offer(catalog, p, floor, Reason::NewArrival);
        }
        picked.out.len() + picked.held.len() >= limit
    };
    if categories.is_empty() {
        let newest = (0..catalog.len() as ProductIdx)
            .rev()
            .take(CATALOG_FILL_SCAN);
        for p in newest {
            if offer(p, picked) {
                return;
            }
        }
    } else {
        let members = categories
            .iter()
            .flat_map(|&c| catalog.category_members(c).iter().rev())
            .take(CATALOG_FILL_SCAN);
        for &p in members {
            if offer(p, picked) {
                return;
            }
        }
    }
}

/// The answer as it is picked, best first, holding the diversity cap. The cap is a
/// preference: what it holds back comes after everything else, so an answer is never
/// shorter than the limit while products are left (see [`Picked::finish`]).
struct Picked {
    out: Vec<Scored>,
    /// Over the cap of their category, best first; no more than an answer can take
    /// (a held product's category only gains picks, so one left out would be held again).
    held: Vec<Scored>,
    /// (category, products picked of it)
    per_category: Vec<(u16, usize)>,
    cap: usize,
    limit: usize,
}

impl Picked {
    fn new(cap: usize, limit: usize) -> Self {
        Self {
            out: Vec::new(),
            held: Vec::new(),
            per_category: Vec::new(),
            cap,
            limit,
        }
    }

    /// Takes the product, or holds it back when its category is already at the cap.
    fn offer(&mut self, catalog: &Catalog, product: ProductIdx, score: f32, reason: Reason) {
        let s = Scored {
            product,
            score,
            reason,
        };
        if self.cap > 0 {
            let c = catalog.product(product).category;
            match self.per_category.iter_mut().find(|(k, _)| *k == c) {
                Some((_, n)) if *n >= self.cap => {
                    if self.held.len() < self.limit {
                        self.held.push(s);
                    }
                    return;
                }
                Some((_, n)) => *n += 1,
                None => self.per_category.push((c, 1)),
            }
        }
        self.out.push(s);
    }

    fn has(&self, product: ProductIdx) -> bool {
        self.out
            .iter()
            .chain(&self.held)
            .any(|s| s.product == product)
    }

    /// The answer: the picks, then what the cap held back (pushed down, never left
    /// out), up to `limit`; scores stay non-increasing down the list.
    fn finish(mut self, limit: usize) -> Vec<Scored> {
        let mut floor = self.out.last().map_or(f32::INFINITY, |s| s.score);
        for mut s in self.held {
            if self.out.len() >= limit {
                break;
            }
            s.score = s.score.min(floor);
            floor = s.score;
            self.out.push(s);
        }
        self.out.truncate(limit);
        self.out
    }
}
