//! Content per placement: banners, featured collections and the order of the page's
//! modules, chosen by targeting expression, window, priority and weight, with frequency
//! caps from the visitor's impressions.
//!
//! Eligible items are ordered by priority (high first); items of equal priority by a
//! weighted draw that is deterministic per visitor: each gets the key `u^(1/weight)`,
//! with `u` a stable hash of (visitor, placement, item) in (0, 1), largest first
//! (Efraimidis-Spirakis), so a visitor sees the same choice on every page view while
//! visitors as a whole see each item in proportion to its weight.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compile::{RawWindow, Window, expression, parse, window};
use super::expr::{Context, Env, Errors, Expr, Scope};
use crate::config::BannerSettings;
use crate::domain::{Catalog, Placement, Profile};
use crate::recommend::reads::Volatile;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Banner {
    pub id: String,
    pub title: String,
    pub image_url: String,
    pub link_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Collection {
    pub id: String,
    pub title: String,
    pub product_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Banner(Banner),
    Collection(Collection),
    /// Module ids in the order the page shows them.
    Modules(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ContentItem {
    pub id: String,
    pub placements: Vec<Placement>,
    pub when: Expr,
    pub window: Window,
    pub priority: i64,
    pub weight: u32,
    /// Shown at most this often to one visitor.
    pub max_impressions: Option<u32>,
    pub body: Body,
    /// Shown only to visitors whose experiment arm names this content variant.
    pub variant: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Content {
    pub banners: Vec<ContentItem>,
    pub collections: Vec<ContentItem>,
    pub modules: Vec<ContentItem>,
}

impl Content {
    pub fn is_empty(&self) -> bool {
        self.banners.is_empty() && self.collections.is_empty() && self.modules.is_empty()
    }

    /// Every content variant an item names.
    pub fn variants(&self) -> Vec<String> {
        let mut out: Vec<String> = [&self.banners, &self.collections, &self.modules]
            .into_iter()
            .flatten()
            .filter_map(|c| c.variant.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

// ---- the document as written ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    max_impressions: u32,
}

/// A banner, collection or module order as written; which fields it needs depends on
/// the list it is in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: String,
    #[serde(default)]
    placements: Vec<Placement>,
    when: Option<Value>,
    #[serde(default)]
    window: RawWindow,
    #[serde(default)]
    priority: i64,
    #[serde(default = "one")]
    weight: u32,
    frequency_cap: Option<RawCap>,
    title: Option<String>,
    image_url: Option<String>,
    link_url: Option<String>,
    alt: Option<String>,
    product_ids: Option<Vec<String>>,
    order: Option<Vec<String>>,
    variant: Option<String>,
}

const fn one() -> u32 {
    1
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContent {
    #[serde(default)]
    banners: Vec<Value>,
    #[serde(default)]
    collections: Vec<Value>,
    #[serde(default)]
    modules: Vec<Value>,
}

#[derive(Clone, Copy)]
enum Kind {
    Banner,
    Collection,
    Modules,
}

fn item(raw: RawItem, kind: Kind, path: &str, errors: &mut Errors) -> ContentItem {
    if crate::domain::ids::check_id(&raw.id).is_err() {
        errors.push(
            &format!("{path}.id"),
            "an id is 1 to 128 characters, without whitespace",
        );
    }
    if raw.weight == 0 {
        errors.push(&format!("{path}.weight"), "a weight is at least 1");
    }
    let need = |field: &str, v: Option<String>, errors: &mut Errors| {
        v.unwrap_or_else(|| {
            errors.push(&format!("{path}.{field}"), "is required");
            String::new()
        })
    };
    // Fields of another kind are mistakes, not extras.
    let extra: &[(&str, bool)] = match kind {
        Kind::Banner => &[
            ("product_ids", raw.product_ids.is_some()),
            ("order", raw.order.is_some()),
        ],
        Kind::Collection => &[
            ("image_url", raw.image_url.is_some()),
            ("link_url", raw.link_url.is_some()),
            ("alt", raw.alt.is_some()),
            ("order", raw.order.is_some()),
        ],
        Kind::Modules => &[
            ("title", raw.title.is_some()),
            ("image_url", raw.image_url.is_some()),
            ("link_url", raw.link_url.is_some()),
            ("alt", raw.alt.is_some()),
            ("product_ids", raw.product_ids.is_some()),
        ],
    };
    for (field, present) in extra {
        if *present {
            errors.push(
                &format!("{path}.{field}"),
                "does not belong to this kind of content",
            );
        }
    }
    let body = match kind {
        Kind::Banner => Body::Banner(Banner {
            id: raw.id.clone(),
            title: need("title", raw.title, errors),
            image_url: need("image_url", raw.image_url, errors),
            link_url: need("link_url", raw.link_url, errors),
            alt: raw.alt,
        }),
        Kind::Collection => {
            let ids = raw.product_ids.unwrap_or_default();
            if ids.is_empty() || ids.len() > 100 {
                errors.push(&format!("{path}.product_ids"), "1 to 100 product ids");
            }
            Body::Collection(Collection {
                id: raw.id.clone(),
                title: need("title", raw.title, errors),
                product_ids: ids,
            })
        }
        Kind::Modules => {
            let order = raw.order.unwrap_or_default();
            if order.is_empty() {
                errors.push(&format!("{path}.order"), "names at least one module");
            }
            Body::Modules(order)
        }
    };
    if let Some(v) = &raw.variant {
        super::compile::check_id(v, &format!("{path}.variant"), errors);
    }
    ContentItem {
        variant: raw.variant,
        when: expression(
            raw.when.as_ref(),
            Scope::Context,
            &format!("{path}.when"),
            errors,
        ),
        window: window(&raw.window, &format!("{path}.window"), errors),
        id: raw.id,
        placements: raw.placements,
        priority: raw.priority,
        weight: raw.weight.max(1),
        max_impressions: raw.frequency_cap.map(|c| c.max_impressions),
        body,
    }
}

/// Compiles the `content` section.
pub(super) fn compile(raw: &RawContent, errors: &mut Errors) -> Content {
    let mut content = Content::default();
    for (kind, name, values) in [
        (Kind::Banner, "banners", &raw.banners),
        (Kind::Collection, "collections", &raw.collections),
        (Kind::Modules, "modules", &raw.modules),
    ] {
        let mut list = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let path = format!("$.content.{name}[{i}]");
            if let Some(r) = parse::<RawItem>(v, &path, errors) {
                list.push(item(r, kind, &path, errors));
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for c in &list {
            if seen.contains(&c.id.as_str()) {
                errors.push(
                    &format!("$.content.{name}"),
                    format!("id {:?} is used twice", c.id),
                );
            }
            seen.push(&c.id);
        }
        match kind {
            Kind::Banner => content.banners = list,
            Kind::Collection => content.collections = list,
            Kind::Modules => content.modules = list,
        }
    }
    content
}

// ---- choosing ------------------------------------------------------------------------------

/// A stable number in (0, 1) for (visitor, placement, item).
fn unit(visitor: u64, placement: Placement, id: &str) -> f64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&visitor.to_le_bytes());
    h.update(placement.as_str().as_bytes());
    h.update(&[0]);
    h.update(id.as_bytes());
    ((h.digest() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// The eligible items for this placement and visitor, best first.
fn choose<'c>(
    items: &'c [ContentItem],
    placement: Placement,
    ctx: &Context<'_>,
    profile: Option<&Profile>,
    visitor: u64,
) -> Vec<&'c ContentItem> {
    let env = Env::of(ctx);
    let mut eligible: Vec<(&ContentItem, f64)> = items
        .iter()
        .filter(|c| {
            (c.placements.is_empty() || c.placements.contains(&placement))
                && c.window.contains(ctx.now)
                && c.max_impressions
                    .is_none_or(|m| profile.is_none_or(|p| p.content_times(&c.id) < m))
                && c.when.holds(env)
                && c.variant
                    .as_ref()
                    .is_none_or(|v| ctx.content_variant.as_ref() == Some(v))
        })
        .map(|c| {
            (
                c,
                unit(visitor, placement, &c.id).powf(1.0 / f64::from(c.weight)),
            )
        })
        .collect();
    eligible.sort_by(|a, b| {
        b.0.priority
            .cmp(&a.0.priority)
            .then(b.1.total_cmp(&a.1))
            .then(a.0.id.cmp(&b.0.id))
    });
    eligible.into_iter().map(|(c, _)| c).collect()
}

/// What the page shows besides recommendations.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PageContent {
    pub banners: Vec<Banner>,
    pub collections: Vec<Collection>,
    /// The modules' order; empty: the storefront's default.
    pub modules: Vec<String>,
}

/// Chooses the page's content. `visitor` is a stable id of the visitor (a keyed hash).
pub fn select(
    content: &Content,
    catalog: &Catalog,
    volatile: &dyn Volatile,
    placement: Placement,
    ctx: &Context<'_>,
    profile: Option<&Profile>,
    visitor: u64,
) -> PageContent {
    if content.is_empty() {
        return PageContent::default();
    }
    let banners = choose(&content.banners, placement, ctx, profile, visitor)
        .into_iter()
        .filter_map(|c| match &c.body {
            Body::Banner(b) => Some(b.clone()),
            Body::Collection(_) | Body::Modules(_) => None,
        })
        .collect();
    let collections = choose(&content.collections, placement, ctx, profile, visitor)
        .into_iter()
        .filter_map(|c| match &c.body {
            // Only what can be bought now.
            Body::Collection(col) => Some(Collection {
                id: col.id.clone(),
                title: col.title.clone(),
                product_ids: col
                    .product_ids
                    .iter()
                    .filter(|p| {
                        catalog
                            .lookup(p)
                            .is_some_and(|i| volatile.in_stock(catalog, i))
                    })
                    .cloned()
                    .collect(),
            }),
            Body::Banner(_) | Body::Modules(_) => None,
        })
        .filter(|c| !c.product_ids.is_empty())
        .collect();
    let modules = choose(&content.modules, placement, ctx, profile, visitor)
        .first()
        .and_then(|c| match &c.body {
            Body::Modules(order) => Some(order.clone()),
            Body::Banner(_) | Body::Collection(_) => None,
        })
        .unwrap_or_default();
    PageContent {
        banners,
        collections,
        modules,
    }
}
/// Banners per placement, resolved once from the configuration.
pub struct Banners {
    by_placement: Vec<Vec<Banner>>,
}

impl Banners {
    pub fn new(all: &[BannerSettings]) -> Self {
        let by_placement = Placement::ALL
            .iter()
            .map(|p| {
                all.iter()
                    .filter(|b| b.placement == *p)
                    .map(|b| Banner {
                        id: b.id.clone(),
                        title: b.title.clone(),
                        image_url: b.image_url.clone(),
                        link_url: b.link_url.clone(),
                        alt: b.alt.clone(),
                    })
                    .collect()
            })
            .collect();
        Self { by_placement }
    }

    pub fn for_placement(&self, p: Placement) -> &[Banner] {
        let i = Placement::ALL.iter().position(|x| *x == p).unwrap_or(0);
        &self.by_placement[i]
    }
}
