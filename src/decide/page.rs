//! The page answer: what one page view gets (recommendations at this visitor's prices,
//! the offers they are eligible for, the page's content and the merchandising that
//! shaped it), as one synchronous function of explicit inputs.
//!
//! Nothing here reads a clock, a store or a request: the models, catalog, ruleset,
//! budgets, profile and time are arguments. So the same inputs give the same answer,
//! which is what lets an answer be logged, replayed, computed twice for a shadow
//! variant, benched and property-tested without HTTP.

use std::borrow::Cow;

use rustc_hash::FxHashMap;

use super::content::{Banner, Banners, Collection};
use super::experiment::Baseline;
use super::merch::Effect;
use super::promo::{Offer, Usage};
use super::{Refusal, Ruleset};
use crate::domain::{Money, PageContext, Placement, Product, Profile};
use crate::recommend::engine::{Policy, random_in_stock, storefront_order};
use crate::recommend::reads::Volatile;
use crate::recommend::{
    CartItem, Considered, Query, Reason, Snapshot, recommend, recommend_explained,
};

/// Upper bound on how many products merchandising may look through: it filters and
/// re-ranks, so it asks the engine for more than it answers.
pub const MAX_MERCH_CANDIDATES: usize = 500;

/// A page view, checked.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest<'r> {
    pub placement: Placement,
    pub product_id: Option<&'r str>,
    pub category: Option<&'r str>,
    pub query: Option<&'r str>,
    pub cart: &'r [CartItem],
    /// Products to re-rank, in the storefront's order (empty: none sent).
    pub candidates: &'r [String],
    pub limit: usize,
    pub context: &'r PageContext,
}

/// Everything else the answer depends on.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub snapshot: &'a Snapshot,
    pub rules: &'a Ruleset,
    /// Budgeted promotions' uses and discount given, as of the last look.
    pub usage: &'a FxHashMap<String, (u64, i64)>,
    pub policy: &'a Policy,
    /// The configured banners, shown when the ruleset has no content.
    pub banners: &'a Banners,
    /// The visitor's stored profile. Without consent to personalization the
    /// recommendations are the non-personalized ones.
    pub profile: Option<&'a Profile>,
    /// A stable number for the visitor (the key's short id): content rotation.
    pub visitor: u64,
    /// What changed since training (live trend and pairs) and stock, as this answer
    /// reads it.
    pub volatile: &'a dyn Volatile,
    /// How many of the strongest candidates the answer explains (0: none).
    pub explain: usize,
    /// How the answer finds its experiment arms.
    pub arms: super::experiment::Arms<'a>,
    /// Unix seconds.
    pub now: i64,
}

/// One recommended product at this visitor's price.
#[derive(Clone, Debug)]
pub struct Item<'a> {
    pub product: &'a Product,
    /// The product's index in the catalog the answer was decided on.
    pub index: crate::domain::ProductIdx,
    pub price: Money,
    pub compare_at: Option<Money>,
    /// The price list the price came from (`None`: the catalog price).
    pub price_list: Option<String>,
    /// Rounded to four decimals (what is served, and what a replay compares).
    pub score: f32,
    pub reason: Reason,
}

/// The page's answer.
#[derive(Clone, Debug)]
pub struct PageAnswer<'a> {
    pub placement: Placement,
    pub items: Vec<Item<'a>>,
    pub offers: Vec<Offer>,
    /// The page's banners (all for the request's placement): the configured ones
    /// borrowed, or the ruleset's content.
    pub banners: Cow<'a, [Banner]>,
    pub collections: Vec<Collection>,
    /// The page's module order (empty: the storefront's own).
    pub modules: Vec<String>,
    /// What merchandising rules changed.
    pub effects: Vec<Effect>,
    pub model_version: &'a str,
    pub ruleset_version: &'a str,
    /// The strongest candidates with what each source gave them (see
    /// [`Inputs::explain`]).
    pub considered: Vec<Considered>,
    /// The experiment arms served: (experiment, variant).
    pub experiments: Vec<(String, String)>,
    /// The arms of the shadow variants' answer, if any arm has a shadow.
    pub shadow_arms: Option<Vec<(String, String)>>,
}

/// The answer to one page view, or why it cannot be given (a category the shop does
/// not have, a currency it does not sell in, a cart line with no price in it).
pub fn answer<'a>(
    inputs: &Inputs<'a>,
    request: &PageRequest<'a>,
) -> Result<PageAnswer<'a>, Refusal> {
    let Inputs {
        snapshot,
        rules,
        profile: stored,
        ..
    } = *inputs;
    let catalog = &snapshot.catalog;
    // A category page names a category the shop has (or a department above some).
    if let (Placement::Category, Some(name), true) = (
        request.placement,
        request.category,
        request.candidates.is_empty(),
    ) && catalog.categories_within(name).is_empty()
    {
        return Err(Refusal::UnknownCategory(name.to_string()));
    }
    let profile = stored.filter(|p| p.consent.personalization);
    let lines = request
        .cart
        .iter()
        .filter_map(|c| {
            Some(super::line(
                catalog,
                inputs.volatile,
                catalog.lookup(&c.product_id)?,
                c.quantity,
            ))
        })
        .collect();
    let mut ctx = super::context(
        catalog,
        request.context,
        stored,
        Some(request.placement),
        lines,
        inputs.now,
    );
    super::check_currency(request.context, catalog, rules)?;
    let (book, priced) = super::price_lines(rules, &mut ctx);
    if let Some(u) = super::unpriced(&ctx, &priced) {
        return Err(Refusal::unpriced(request.context, u, ctx.session.currency));
    }
    let served = super::experiment::serve(
        &rules.experiments,
        rules.holdout.as_ref(),
        &inputs.arms,
        request.placement,
        super::expr::Env::of(&ctx),
    );
    ctx.promotion_sets = served.promotion_sets(&rules.experiments);
    ctx.content_variant = served.content_variant(&rules.experiments);
    // A `random` or `none` baseline is answered as it is: no engine, no merchandising.
    let fixed = served.fixed_baseline(&rules.experiments);
    let merch = if fixed.is_some() {
        Vec::new()
    } else {
        let anchors = request
            .product_id
            .into_iter()
            .chain(request.cart.iter().map(|c| c.product_id.as_str()));
        super::overrides::in_force(
            &rules.merchandising,
            &rules.overrides,
            anchors,
            request.placement,
            &ctx,
        )
    };
    let policy = super::experiment::policy(
        inputs.policy,
        &rules.experiments,
        &served,
        request.placement,
    );
    let mut query = Query {
        policy: &policy,
        placement: request.placement,
        product: request.product_id,
        category: request.category,
        search: request.query,
        cart: request.cart,
        candidates: request.candidates,
        limit: if merch.is_empty() {
            request.limit
        } else {
            (request.limit * 2 + 10).min(MAX_MERCH_CANDIDATES)
        },
        audience: request.context.audience(),
        volatile: inputs.volatile,
    };
    let (mut scored, considered) = match fixed {
        Some(Baseline::None) => (storefront_order(catalog, &query), Vec::new()),
        Some(_) => {
            // Seeded by the visitor and the page: the same draw on a reload and a replay.
            let page = xxhash_rust::xxh3::xxh3_64(
                format!(
                    "{}\n{}\n{}\n{}",
                    request.placement.as_str(),
                    request.product_id.unwrap_or(""),
                    request.category.unwrap_or(""),
                    request.query.unwrap_or("")
                )
                .as_bytes(),
            );
            (
                random_in_stock(catalog, &query, inputs.visitor ^ page),
                Vec::new(),
            )
        }
        None => recommend_explained(&snapshot.models, catalog, &query, profile, inputs.explain),
    };
    let mut effects = Vec::new();
    if merch.is_empty() {
        scored.truncate(request.limit);
    } else {
        let mut excluded: Vec<_> = ctx
            .lines
            .iter()
            .filter_map(|l| catalog.lookup(&l.item.product.id))
            .collect();
        excluded.extend(request.product_id.and_then(|p| catalog.lookup(p)));
        let page = super::merch::Page {
            catalog,
            volatile: inputs.volatile,
            ctx: &ctx,
            book: &book,
            excluded: &excluded,
            limit: request.limit,
        };
        query.candidates = &[];
        let (kept, done) = super::merch::apply(&merch, &page, scored, || {
            recommend(&snapshot.models, catalog, &query, None)
        });
        scored = kept;
        effects = done;
    }
    // Content: the ruleset's when it has any, else the configured banners.
    let content = super::content::select(
        &rules.content,
        catalog,
        inputs.volatile,
        request.placement,
        &ctx,
        stored,
        inputs.visitor,
    );
    let banners = if rules.content.is_empty() {
        Cow::Borrowed(inputs.banners.for_placement(request.placement))
    } else {
        Cow::Owned(content.banners)
    };
    // Budgets as of the last look, and this customer's own uses; none in an arm that
    // turns offers off.
    let offers = if served.offers_off(&rules.experiments) {
        Vec::new()
    } else {
        super::promo::offers(rules.promotions(), &ctx, &priced, &|id| {
            let (uses, spent) = inputs.usage.get(id).copied().unwrap_or_default();
            Usage {
                uses,
                spent,
                customer_uses: stored.map_or(0, |p| u64::from(p.promotion_uses(id))),
            }
        })
    };
    // A product with no price in the request's currency cannot be sold in it: it is
    // not recommended.
    let items = scored
        .iter()
        .filter_map(|s| {
            let p = catalog.product(s.product);
            let price = book.price(p, &catalog.categories()[usize::from(p.category)], 1);
            (price.unit.currency == ctx.session.currency).then(|| Item {
                product: p,
                index: s.product,
                price: price.unit,
                compare_at: price.compare_at,
                price_list: price.list,
                score: (s.score * 10_000.0).round() / 10_000.0,
                reason: s.reason,
            })
        })
        .collect();
    Ok(PageAnswer {
        placement: request.placement,
        items,
        offers,
        banners,
        collections: content.collections,
        modules: content.modules,
        effects,
        model_version: &snapshot.models.version,
        ruleset_version: &rules.version,
        considered,
        experiments: served.named(&rules.experiments),
        shadow_arms: served.shadow_arms(&rules.experiments),
    })
}
