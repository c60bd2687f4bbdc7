//! The unified visitor profile, and the operations that change it.
//!
//! A profile only changes through [`Profile::apply`], a pure function of the profile and
//! one [`ProfileOp`]. That is what makes every store safe: a backend that must retry a
//! read-modify-write (Redis CAS) re-applies the same ops to the fresh profile and gets the
//! same result, and an op whose id is already in the profile's `applied` ring is skipped,
//! so a repeated event or webhook is applied once. Every list is bounded, so a profile's
//! size is bounded whatever a visitor does.

use serde::{Deserialize, Serialize};

use super::money::Money;

pub const MAX_RECENTLY_VIEWED: usize = 30;
pub const MAX_RECENT_SEARCHES: usize = 10;
pub const MAX_PURCHASED: usize = 100;
pub const MAX_AFFINITIES: usize = 16;
pub const MAX_CART_LINES: usize = 100;
pub const MAX_SEGMENTS: usize = 32;
/// Op ids remembered in the profile itself: the cheap first check. The store remembers
/// every op id for `events.max_age_s` besides (see `store::ProfileStore::apply`).
pub const APPLIED_WINDOW: usize = 128;
/// Orders counted, remembered for the profile's lifetime up to this many (a customer
/// with more has the oldest forgotten).
pub const MAX_ORDERS_SEEN: usize = 10_000;
/// Orders counted from purchase events whose further lines still add to the spend.
const OPEN_LINE_ORDERS: usize = 32;
/// Half-life of category affinity, in seconds (30 days).
pub const AFFINITY_HALF_LIFE_S: f64 = 30.0 * 86_400.0;
const DAY: i64 = 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub personalization: bool,
    pub marketing: bool,
}

impl Default for Consent {
    fn default() -> Self {
        Self {
            personalization: true,
            marketing: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Affinity {
    pub category: String,
    /// Decayed score as of the profile's `affinities_at`.
    pub score: f32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    pub product_id: String,
    pub count: u32,
    pub last_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub product_id: String,
    pub quantity: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub consent: Consent,
    pub segments: Vec<String>,
    pub loyalty_tier: Option<String>,
    /// B2B company or account id.
    pub company_id: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub orders_count: u32,
    pub total_spent: Option<Money>,
    pub first_order_at: Option<i64>,
    pub last_order_at: Option<i64>,
    /// Strongest first, all decayed to `affinities_at`.
    pub affinities: Vec<Affinity>,
    pub affinities_at: i64,
    /// Product ids, most recent first.
    pub recently_viewed: Vec<String>,
    /// Most recent first.
    pub recent_searches: Vec<String>,
    pub cart: Vec<CartLine>,
    /// Most recent purchase first.
    pub purchased: Vec<Purchase>,
    /// Fingerprints of applied ops (events, webhooks, merges), newest last.
    #[serde(with = "packed")]
    pub applied: Vec<u32>,
    /// Fingerprints of orders already counted, newest last (at most
    /// [`MAX_ORDERS_SEEN`]): an order changes the count and the spend once.
    #[serde(with = "packed")]
    pub orders_seen: Vec<u32>,
    /// Products shown to the visitor (impressions) without a click since, most recent
    /// first: answers demote what was passed over several times.
    #[serde(default)]
    pub shown: Vec<Shown>,
    /// Content (banners, collections) shown to the visitor, most recent first, for
    /// frequency caps.
    #[serde(default)]
    pub content_shown: Vec<ContentShown>,
    /// Promotions with a per-customer budget this customer used, and how often.
    #[serde(default)]
    pub promotions_used: Vec<ContentShown>,
    /// Fingerprints of counted orders taken back (cancelled, refunded): taken back once.
    #[serde(default, with = "packed")]
    pub orders_cancelled: Vec<u32>,
    /// Orders counted from purchase events (line by line), newest last: their further
    /// lines add to the spend; an order counted whole (webhook, import) is not added to.
    #[serde(default, with = "packed")]
    pub orders_by_lines: Vec<u32>,
    /// Set on a record that only names another profile: the keyed hash of an alias (a
    /// customer's email) points at the keyed hash of the customer's platform id.
    #[serde(default)]
    pub alias_of: Option<[u8; 16]>,
    /// The keyed hashes of this customer's aliases (at most [`MAX_ALIASES`]), erased
    /// with the profile.
    #[serde(default)]
    pub aliases: Vec<[u8; 16]>,
    /// How often each product of `recently_viewed` was viewed, in the same order (a
    /// profile written before counts were kept: one view each).
    #[serde(default)]
    pub view_counts: Vec<u16>,
    /// The experiment arms the visitor was served, and what they did in each.
    #[serde(default)]
    pub arms: Vec<super::arms::Arm>,
    /// Visits seen: a visit ends after [`VISIT_GAP_SECS`] without activity (0: written
    /// before visits were counted).
    #[serde(default)]
    pub visits: u32,
}

/// Inactivity that ends a visit (the usual web-analytics session timeout).
pub const VISIT_GAP_SECS: i64 = 30 * 60;

/// Aliases one customer keeps (emails they have had).
pub const MAX_ALIASES: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentShown {
    pub content_id: String,
    pub times: u32,
}

impl Profile {
    /// Whether `now` falls in the visitor's first visit: nothing seen yet, or everything
    /// seen in one visit that is still going on (its last activity under
    /// [`VISIT_GAP_SECS`] ago).
    pub fn in_first_visit(&self, now: i64) -> bool {
        if self.first_seen == 0 {
            return true;
        }
        let one_visit = match self.visits {
            0 => self.last_seen - self.first_seen <= VISIT_GAP_SECS,
            n => n == 1,
        };
        one_visit && now - self.last_seen <= VISIT_GAP_SECS
    }

    /// How often this customer used the promotion `id` (recorded orders).
    pub fn promotion_uses(&self, id: &str) -> u32 {
        self.promotions_used
            .iter()
            .find(|c| c.content_id == id)
            .map_or(0, |c| c.times)
    }

    /// How often the content `id` was shown to this visitor.
    pub fn content_times(&self, id: &str) -> u32 {
        self.content_shown
            .iter()
            .find(|c| c.content_id == id)
            .map_or(0, |c| c.times)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    pub product_id: String,
    pub times: u16,
}

pub const MAX_SHOWN: usize = 50;

/// The 32-bit fingerprint an op or order id is remembered by. Ids are keyed hashes, so
/// the low half is as good as any; two ids of one profile share a fingerprint with a
/// chance of about one in 2^32 / APPLIED_WINDOW (one in 33 million) per new op.
pub const fn fingerprint(id: u64) -> u32 {
    id as u32
}

/// Id rings as one byte string (4 bytes an id) rather than an array of integers: half
/// the stored size of a profile's rings.
mod packed {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ids: &[u32], s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        s.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        let bytes = byte_string(d)?;
        if bytes.len() % 4 != 0 {
            return Err(serde::de::Error::custom(
                "id ring is not a multiple of 4 bytes",
            ));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn byte_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// One behavioural signal, as the profile sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Behaviour {
    View,
    Search,
    AddToCart,
    RemoveFromCart,
    Checkout,
    Purchase,
    Impression,
    Click,
}

impl Behaviour {
    pub const ALL: [Behaviour; 8] = [
        Behaviour::View,
        Behaviour::Search,
        Behaviour::AddToCart,
        Behaviour::RemoveFromCart,
        Behaviour::Checkout,
        Behaviour::Purchase,
        Behaviour::Impression,
        Behaviour::Click,
    ];

    /// The event type's name in the events API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Behaviour::View => "view",
            Behaviour::Search => "search",
            Behaviour::AddToCart => "add_to_cart",
            Behaviour::RemoveFromCart => "remove_from_cart",
            Behaviour::Checkout => "checkout",
            Behaviour::Purchase => "purchase",
            Behaviour::Impression => "impression",
            Behaviour::Click => "click",
        }
    }
}

impl std::str::FromStr for Behaviour {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Behaviour::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProfileOp {
    /// A storefront event. `order` groups purchase lines into one order.
    Event {
        id: u64,
        at: i64,
        behaviour: Behaviour,
        product_id: Option<String>,
        category: Option<String>,
        quantity: u32,
        price: Option<Money>,
        query: Option<String>,
        order: Option<u64>,
        /// Whether a purchase counts as an order (orders, spend, lifecycle): only from
        /// trusted sources (admin keys, imports), never from a publishable key.
        counts_order: bool,
    },
    /// A whole order (platform webhook or import).
    Order {
        id: u64,
        order: u64,
        at: i64,
        total: Money,
        lines: Vec<(String, u32, Option<String>)>,
    },
    /// An order cancelled after it was counted.
    CancelOrder { id: u64, order: u64, total: Money },
    /// The platform's view of the cart replaces ours.
    SetCart {
        id: u64,
        at: i64,
        lines: Vec<CartLine>,
    },
    Consent {
        id: u64,
        at: i64,
        personalization: Option<bool>,
        marketing: Option<bool>,
    },
    Attributes {
        id: u64,
        at: i64,
        segments: Option<Vec<String>>,
        loyalty_tier: Option<String>,
        company_id: Option<String>,
    },
    /// An order used these promotions (recorded at checkout); `id` names the order.
    PromotionsUsed {
        id: u64,
        at: i64,
        promotions: Vec<String>,
    },
    /// A banner or collection was shown (an impression event naming `content_id`).
    ContentImpression {
        id: u64,
        at: i64,
        content_id: String,
    },
    /// Folds an anonymous session's profile into this one; `id` names the session.
    Absorb { id: u64, from: Box<Profile> },
    /// Folds another record of this customer (orders imported under their email
    /// before the platform linked it to them) into this one: its history, and its
    /// orders when none of them is counted here already; `id` names the record.
    Fold { id: u64, from: Box<Profile> },
    /// This record is an alias of the profile with key `of` (it holds nothing else).
    AliasOf { id: u64, at: i64, of: [u8; 16] },
    /// `alias` is the key of another name of this customer (erased with them).
    AddAlias { id: u64, at: i64, alias: [u8; 16] },
    /// An answer served the visitor an experiment's arm ([`super::arms::expose`]).
    Exposed {
        id: u64,
        at: i64,
        experiment: String,
        version: u32,
        variant: String,
    },
    /// Something the visitor did, credited to an arm ([`super::arms::credit`]).
    Credit {
        id: u64,
        at: i64,
        experiment: String,
        variant: String,
        outcome: super::arms::ArmOutcome,
    },
}

impl ProfileOp {
    pub fn id(&self) -> u64 {
        match self {
            ProfileOp::Event { id, .. }
            | ProfileOp::Order { id, .. }
            | ProfileOp::CancelOrder { id, .. }
            | ProfileOp::SetCart { id, .. }
            | ProfileOp::Consent { id, .. }
            | ProfileOp::Attributes { id, .. }
            | ProfileOp::ContentImpression { id, .. }
            | ProfileOp::PromotionsUsed { id, .. }
            | ProfileOp::Absorb { id, .. }
            | ProfileOp::Fold { id, .. }
            | ProfileOp::AliasOf { id, .. }
            | ProfileOp::AddAlias { id, .. }
            | ProfileOp::Exposed { id, .. }
            | ProfileOp::Credit { id, .. } => *id,
        }
    }
}

fn push_front_unique(list: &mut Vec<String>, item: &str, max: usize) {
    list.retain(|p| p != item);
    list.insert(0, item.to_owned());
    list.truncate(max);
}

fn push_ring(ring: &mut Vec<u32>, id: u32, max: usize) {
    ring.push(id);
    if ring.len() > max {
        let extra = ring.len() - max;
        ring.drain(..extra);
    }
}

impl Profile {
    /// The recently viewed products, most recent first, with how often each was viewed.
    pub fn views(&self) -> impl DoubleEndedIterator<Item = (&str, u16)> {
        self.recently_viewed
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), self.view_counts.get(i).copied().unwrap_or(1)))
    }

    /// `times` more views of `product`: it becomes the most recent, with its count.
    fn note_views(&mut self, product: &str, times: u16) {
        self.view_counts.resize(self.recently_viewed.len(), 1);
        let before = match self.recently_viewed.iter().position(|p| p == product) {
            Some(i) => {
                self.recently_viewed.remove(i);
                self.view_counts.remove(i)
            }
            None => 0,
        };
        self.recently_viewed.insert(0, product.to_owned());
        self.view_counts.insert(0, before.saturating_add(times));
        self.recently_viewed.truncate(MAX_RECENTLY_VIEWED);
        self.view_counts.truncate(MAX_RECENTLY_VIEWED);
    }

    /// Applies one op; false when it was already applied (nothing changes then).
    pub fn apply(&mut self, op: &ProfileOp) -> bool {
        let id = op.id();
        if self.applied.contains(&fingerprint(id)) {
            return false;
        }
        push_ring(&mut self.applied, fingerprint(id), APPLIED_WINDOW);
        match op {
            ProfileOp::Event {
                at,
                behaviour,
                product_id,
                category,
                quantity,
                price,
                query,
                order,
                counts_order,
                ..
            } => {
                self.touch(*at);
                if *behaviour == Behaviour::Purchase && *counts_order {
                    // The shop's record of orders and spend, kept whatever the consent.
                    self.count_line(order.unwrap_or(id), *at, *price, *quantity);
                }
                if !self.consent.personalization {
                    // No behavioural history for visitors who did not consent.
                    return true;
                }
                self.event(
                    *at,
                    *behaviour,
                    product_id.as_deref(),
                    category.as_deref(),
                    *quantity,
                    query.as_deref(),
                );
            }
            ProfileOp::Order {
                order,
                at,
                total,
                lines,
                ..
            } => {
                self.touch(*at);
                if self.orders_seen.contains(&fingerprint(*order)) {
                    // Counted before (another topic or delivery of the same order).
                    return true;
                }
                self.count_order(*order, *at, *total);
                if self.consent.personalization {
                    for (product, qty, category) in lines {
                        self.record_purchase(product, *qty, *at);
                        if let Some(c) = category {
                            self.bump_affinity(c, 5.0, *at);
                        }
                    }
                    self.cart.clear();
                }
            }
            ProfileOp::CancelOrder { order, total, .. } => {
                let order = fingerprint(*order);
                if self.orders_seen.contains(&order) && !self.orders_cancelled.contains(&order) {
                    self.orders_count = self.orders_count.saturating_sub(1);
                    if let Some(spent) = &mut self.total_spent
                        && spent.currency == total.currency
                    {
                        spent.amount = spent.amount.saturating_sub(total.amount).max(0);
                    }
                    push_ring(&mut self.orders_cancelled, order, MAX_ORDERS_SEEN);
                }
            }
            ProfileOp::SetCart { at, lines, .. } => {
                self.touch(*at);
                if self.consent.personalization {
                    self.cart = lines.iter().take(MAX_CART_LINES).cloned().collect();
                }
            }
            ProfileOp::Consent {
                at,
                personalization,
                marketing,
                ..
            } => {
                self.touch(*at);
                if let Some(m) = marketing {
                    self.consent.marketing = *m;
                }
                if let Some(p) = personalization {
                    self.consent.personalization = *p;
                    if !p {
                        self.forget_behaviour();
                    }
                }
            }
            ProfileOp::Attributes {
                at,
                segments,
                loyalty_tier,
                company_id,
                ..
            } => {
                self.touch(*at);
                if let Some(s) = segments {
                    self.segments = s.iter().take(MAX_SEGMENTS).cloned().collect();
                }
                if loyalty_tier.is_some() {
                    self.loyalty_tier.clone_from(loyalty_tier);
                }
                if company_id.is_some() {
                    self.company_id.clone_from(company_id);
                }
            }
            ProfileOp::ContentImpression { at, content_id, .. } => {
                self.touch(*at);
                if self.consent.personalization {
                    let times = match self
                        .content_shown
                        .iter()
                        .position(|c| c.content_id == *content_id)
                    {
                        Some(i) => self.content_shown.remove(i).times.saturating_add(1),
                        None => 1,
                    };
                    self.content_shown.insert(
                        0,
                        ContentShown {
                            content_id: content_id.clone(),
                            times,
                        },
                    );
                    self.content_shown.truncate(MAX_SHOWN);
                }
            }
            ProfileOp::PromotionsUsed { at, promotions, .. } => {
                // Kept whatever the consent: it is the shop's limit, not a preference.
                self.touch(*at);
                for p in promotions {
                    match self.promotions_used.iter_mut().find(|u| u.content_id == *p) {
                        Some(u) => u.times = u.times.saturating_add(1),
                        None => self.promotions_used.push(ContentShown {
                            content_id: p.clone(),
                            times: 1,
                        }),
                    }
                }
            }
            ProfileOp::Absorb { from, .. } => self.absorb(from),
            ProfileOp::Fold { from, .. } => {
                self.absorb(from);
                self.fold_orders(from);
                // Its ops count as applied here: delivered again, they change nothing.
                for &f in &from.applied {
                    if !self.applied.contains(&f) {
                        push_ring(&mut self.applied, f, APPLIED_WINDOW);
                    }
                }
            }
            ProfileOp::AliasOf { at, of, .. } => {
                self.touch(*at);
                self.alias_of = Some(*of);
            }
            ProfileOp::AddAlias { at, alias, .. } => {
                self.touch(*at);
                self.aliases.retain(|a| a != alias);
                self.aliases.insert(0, *alias);
                self.aliases.truncate(MAX_ALIASES);
            }
            ProfileOp::Exposed {
                id,
                at,
                experiment,
                version,
                variant,
            } => {
                return super::arms::expose(
                    &mut self.arms,
                    fingerprint(*id),
                    *at,
                    experiment,
                    *version,
                    variant,
                );
            }
            ProfileOp::Credit {
                id,
                at,
                experiment,
                variant,
                outcome,
            } => {
                return super::arms::credit(
                    &mut self.arms,
                    fingerprint(*id),
                    *at,
                    experiment,
                    variant,
                    outcome,
                );
            }
        }
        true
    }

    fn touch(&mut self, at: i64) {
        if self.first_seen == 0 {
            self.visits = 1;
        } else if at > self.last_seen + VISIT_GAP_SECS {
            // A profile from before visits were counted had at least one.
            self.visits = self.visits.max(1).saturating_add(1);
        }
        if self.first_seen == 0 || at < self.first_seen {
            self.first_seen = at;
        }
        self.last_seen = self.last_seen.max(at);
    }

    fn event(
        &mut self,
        at: i64,
        behaviour: Behaviour,
        product: Option<&str>,
        category: Option<&str>,
        quantity: u32,
        query: Option<&str>,
    ) {
        let weight = match behaviour {
            Behaviour::View | Behaviour::Click => 1.0,
            Behaviour::AddToCart | Behaviour::Checkout => 3.0,
            Behaviour::Purchase => 5.0,
            Behaviour::Search | Behaviour::RemoveFromCart | Behaviour::Impression => 0.0,
        };
        if let Some(c) = category
            && weight > 0.0
        {
            self.bump_affinity(c, weight, at);
        }
        match behaviour {
            Behaviour::View | Behaviour::Click => {
                if let Some(p) = product {
                    self.note_views(p, 1);
                }
            }
            Behaviour::Search => {
                if let Some(q) = query {
                    push_front_unique(&mut self.recent_searches, q, MAX_RECENT_SEARCHES);
                }
            }
            Behaviour::AddToCart => {
                if let Some(p) = product {
                    if let Some(line) = self.cart.iter_mut().find(|l| l.product_id == p) {
                        line.quantity = line.quantity.saturating_add(quantity);
                    } else if self.cart.len() < MAX_CART_LINES {
                        self.cart.push(CartLine {
                            product_id: p.to_owned(),
                            quantity,
                        });
                    }
                }
            }
            Behaviour::RemoveFromCart => {
                if let Some(p) = product {
                    if let Some(line) = self.cart.iter_mut().find(|l| l.product_id == p) {
                        line.quantity = line.quantity.saturating_sub(quantity);
                    }
                    self.cart.retain(|l| l.quantity > 0);
                }
            }
            Behaviour::Purchase => {
                if let Some(p) = product {
                    self.record_purchase(p, quantity, at);
                    self.cart.retain(|l| l.product_id != p);
                }
            }
            Behaviour::Impression => {
                if let Some(p) = product {
                    let times = match self.shown.iter().position(|s| s.product_id == p) {
                        Some(i) => self.shown.remove(i).times.saturating_add(1),
                        None => 1,
                    };
                    self.shown.insert(
                        0,
                        Shown {
                            product_id: p.to_owned(),
                            times,
                        },
                    );
                    self.shown.truncate(MAX_SHOWN);
                }
            }
            Behaviour::Checkout => {}
        }
        // Any engagement with a product means it was not passed over.
        if behaviour != Behaviour::Impression
            && let Some(p) = product
        {
            self.shown.retain(|s| s.product_id != p);
        }
    }

    /// One purchase line of `order`: the first line counts the order; every line of an
    /// order counted line by line adds to the spend. An order counted whole before (a
    /// webhook or an import) is not added to.
    fn count_line(&mut self, order: u64, at: i64, price: Option<Money>, quantity: u32) {
        let fp = fingerprint(order);
        let line = price
            .map(|m| Money::new(m.amount.saturating_mul(i64::from(quantity)), m.currency))
            .unwrap_or_else(|| {
                Money::new(
                    0,
                    self.total_spent
                        .map_or(super::Currency::XXX, |m| m.currency),
                )
            });
        if !self.orders_seen.contains(&fp) {
            push_ring(&mut self.orders_by_lines, fp, OPEN_LINE_ORDERS);
            self.count_order(order, at, line);
        } else if self.orders_by_lines.contains(&fp) && !self.orders_cancelled.contains(&fp) {
            self.add_spend(line);
        }
    }

    /// Counts a new order and adds its total to the spend in the profile's currency.
    fn count_order(&mut self, order: u64, at: i64, total: Money) {
        push_ring(&mut self.orders_seen, fingerprint(order), MAX_ORDERS_SEEN);
        self.orders_count = self.orders_count.saturating_add(1);
        self.first_order_at = Some(self.first_order_at.map_or(at, |f| f.min(at)));
        self.last_order_at = Some(self.last_order_at.map_or(at, |l| l.max(at)));
        self.add_spend(total);
    }

    fn add_spend(&mut self, total: Money) {
        match &mut self.total_spent {
            Some(spent) if spent.currency == total.currency => {
                spent.amount = spent.amount.saturating_add(total.amount);
            }
            Some(_) => {} // Another currency: no conversion here; the first currency stays.
            None if total.currency != super::Currency::XXX => self.total_spent = Some(total),
            None => {}
        }
    }

    fn record_purchase(&mut self, product: &str, quantity: u32, at: i64) {
        let count = match self.purchased.iter().position(|p| p.product_id == product) {
            Some(i) => self
                .purchased
                .remove(i)
                .count
                .saturating_add(quantity.max(1)),
            None => quantity.max(1),
        };
        self.purchased.insert(
            0,
            Purchase {
                product_id: product.to_owned(),
                count,
                last_at: at,
            },
        );
        self.purchased.truncate(MAX_PURCHASED);
    }

    /// Adds `weight` (observed at `at`) to a category, with every score decayed to the
    /// latest time seen.
    fn bump_affinity(&mut self, category: &str, weight: f32, at: i64) {
        let decay = |span: i64| (-(span.max(0) as f64) / AFFINITY_HALF_LIFE_S).exp2() as f32;
        let now = at.max(self.affinities_at);
        let aged = decay(now - self.affinities_at);
        for a in &mut self.affinities {
            a.score *= aged;
        }
        self.affinities_at = now;
        let weight = weight * decay(now - at);
        match self.affinities.iter_mut().find(|a| a.category == category) {
            Some(a) => a.score += weight,
            None => self.affinities.push(Affinity {
                category: category.to_owned(),
                score: weight,
            }),
        }
        self.affinities.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.category.cmp(&b.category))
        });
        self.affinities.truncate(MAX_AFFINITIES);
    }

    /// Drops every behavioural trace (consent withdrawn).
    fn forget_behaviour(&mut self) {
        self.shown.clear();
        self.affinities.clear();
        self.recently_viewed.clear();
        self.view_counts.clear();
        self.recent_searches.clear();
        self.cart.clear();
        self.purchased.clear();
    }

    fn absorb(&mut self, from: &Profile) {
        if from.first_seen != 0 {
            self.touch(from.first_seen);
        }
        self.touch(from.last_seen);
        self.visits = self.visits.max(from.visits);
        super::arms::absorb(&mut self.arms, &from.arms);
        if !self.consent.personalization {
            return;
        }
        for (p, times) in from.views().rev() {
            self.note_views(p, times);
        }
        for q in from.recent_searches.iter().rev() {
            push_front_unique(&mut self.recent_searches, q, MAX_RECENT_SEARCHES);
        }
        for a in &from.affinities {
            self.bump_affinity(&a.category, a.score, from.affinities_at);
        }
        for line in &from.cart {
            if !self.cart.iter().any(|l| l.product_id == line.product_id)
                && self.cart.len() < MAX_CART_LINES
            {
                self.cart.push(line.clone());
            }
        }
        for p in from.purchased.iter().rev() {
            self.record_purchase(&p.product_id, p.count, p.last_at);
        }
    }

    /// Another record's orders, counted once: added whole when none of them is counted
    /// here (the usual case: an order reaches a customer by one way only before their
    /// records are linked). When some are, only per-order amounts could tell what the
    /// others add, and a profile keeps none: the aggregates stay as they are rather
    /// than be guessed.
    fn fold_orders(&mut self, from: &Profile) {
        if from.orders_seen.is_empty()
            || from
                .orders_seen
                .iter()
                .any(|o| self.orders_seen.contains(o))
        {
            return;
        }
        for &o in &from.orders_seen {
            push_ring(&mut self.orders_seen, o, MAX_ORDERS_SEEN);
        }
        for &o in &from.orders_cancelled {
            push_ring(&mut self.orders_cancelled, o, MAX_ORDERS_SEEN);
        }
        self.orders_count = self.orders_count.saturating_add(from.orders_count);
        if let Some(t) = from.first_order_at {
            self.first_order_at = Some(self.first_order_at.map_or(t, |f| f.min(t)));
        }
        if let Some(t) = from.last_order_at {
            self.last_order_at = Some(self.last_order_at.map_or(t, |l| l.max(t)));
        }
        if let Some(spent) = from.total_spent {
            self.add_spend(spent);
        }
    }

    pub fn has_history(&self) -> bool {
        !self.recently_viewed.is_empty() || !self.purchased.is_empty()
    }

    /// Category handles by affinity, strongest first.
    pub fn top_categories(&self) -> impl Iterator<Item = &str> {
        self.affinities.iter().map(|a| a.category.as_str())
    }

    pub fn average_order_value(&self) -> Option<Money> {
        let spent = self.total_spent?;
        (self.orders_count > 0)
            .then(|| Money::new(spent.amount / i64::from(self.orders_count), spent.currency))
    }

    /// Lifecycle stage at `now`; see [`Lifecycle`].
    pub fn lifecycle(&self, now: i64, vip_spend: i64) -> Lifecycle {
        let Some(last) = self.last_order_at else {
            return Lifecycle::New;
        };
        let days = (now - last) / DAY;
        if days > 180 {
            Lifecycle::Lapsed
        } else if days > 90 {
            Lifecycle::Lapsing
        } else if self.total_spent.is_some_and(|m| m.amount >= vip_spend) || self.orders_count >= 10
        {
            Lifecycle::Vip
        } else if self.orders_count <= 1 && days <= 30 {
            Lifecycle::New
        } else {
            Lifecycle::Active
        }
    }

    /// Churn risk in basis points (0-10000): the chance that the customer's next order
    /// is overdue, modelled as `1 - exp(-days_since_last / expected_gap)`, where the
    /// expected gap is the customer's own mean time between orders (60 days with fewer
    /// than two orders).
    pub fn churn_risk_bp(&self, now: i64) -> u32 {
        let Some(last) = self.last_order_at else {
            return 5_000;
        };
        let since = ((now - last).max(0) as f64) / DAY as f64;
        let gap = self.order_gap_days().unwrap_or(60.0).max(1.0);
        ((1.0 - (-since / gap).exp()) * 10_000.0).round() as u32
    }

    /// The customer's mean days between orders, when they have ordered twice or more.
    fn order_gap_days(&self) -> Option<f64> {
        let (first, last) = (self.first_order_at?, self.last_order_at?);
        (self.orders_count >= 2 && last > first)
            .then(|| ((last - first) as f64 / DAY as f64) / f64::from(self.orders_count - 1))
    }

    /// Twelve-month customer lifetime value: average order value x the orders expected
    /// in a year (365 / the customer's own mean gap between orders; one a year with a
    /// single order) x the chance they are still active (1 - churn risk). Integer
    /// minor units.
    pub fn clv_12m(&self, now: i64) -> Option<Money> {
        let aov = self.average_order_value()?;
        let gap = self.order_gap_days().unwrap_or(365.0).max(1.0);
        let orders_per_year_milli = (365_000.0 / gap).round() as i64;
        let stay_bp = 10_000 - i64::from(self.churn_risk_bp(now));
        let value = aov.amount.saturating_mul(orders_per_year_milli) / 1_000 * stay_bp / 10_000;
        Some(Money::new(value, aov.currency))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// No order yet, or a first order in the last 30 days.
    New,
    /// Ordered in the last 90 days.
    Active,
    /// Last order 90-180 days ago.
    Lapsing,
    /// Last order over 180 days ago.
    Lapsed,
    /// Active, and spent at least the VIP threshold or ordered 10+ times.
    Vip,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    fn gbp(amount: i64) -> Money {
        Money::new(amount, Currency::parse("GBP").unwrap())
    }

    fn event(id: u64, behaviour: Behaviour, product: &str) -> ProfileOp {
        ProfileOp::Event {
            id,
            at: 1_000 + id as i64,
            behaviour,
            product_id: Some(product.into()),
            category: Some("kitchen/cookware".into()),
            quantity: 1,
            price: Some(gbp(1_000)),
            query: None,
            order: None,
            counts_order: true,
        }
    }

    fn purchase(id: u64, product: &str, order: Option<u64>, price: i64, counts: bool) -> ProfileOp {
        ProfileOp::Event {
            id,
            at: 1_000 + id as i64,
            behaviour: Behaviour::Purchase,
            product_id: Some(product.into()),
            category: Some("kitchen/cookware".into()),
            quantity: 1,
            price: Some(gbp(price)),
            query: None,
            order,
            counts_order: counts,
        }
    }

    #[test]
    fn every_behaviour_round_trips_through_its_name() {
        for b in Behaviour::ALL {
            assert_eq!(b.as_str().parse::<Behaviour>(), Ok(b));
        }
        assert!("hover".parse::<Behaviour>().is_err());
    }

    #[test]
    fn an_op_is_applied_once() {
        let mut p = Profile::default();
        assert!(p.apply(&event(1, Behaviour::Purchase, "a")));
        assert!(!p.apply(&event(1, Behaviour::Purchase, "a")));
        assert_eq!(p.orders_count, 1);
        assert_eq!(p.total_spent, Some(gbp(1_000)));
    }

    #[test]
    fn purchase_lines_of_one_order_count_one_order() {
        let mut p = Profile::default();
        for (id, product) in [(1, "a"), (2, "b")] {
            p.apply(&purchase(id, product, Some(77), 1_000, true));
        }
        assert_eq!(p.orders_count, 1);
        assert_eq!(p.total_spent, Some(gbp(2_000)));
        assert_eq!(p.purchased.len(), 2);
    }

    #[test]
    fn lists_stay_bounded() {
        let mut p = Profile::default();
        for i in 0..1_000 {
            p.apply(&event(i, Behaviour::View, &format!("p{i}")));
        }
        assert_eq!(p.recently_viewed.len(), MAX_RECENTLY_VIEWED);
        assert_eq!(p.view_counts.len(), MAX_RECENTLY_VIEWED);
        assert_eq!(p.recently_viewed[0], "p999");
        assert_eq!(p.applied.len(), APPLIED_WINDOW);
    }

    #[test]
    fn views_are_counted_per_product_and_folded_in_with_their_counts() {
        let mut p = Profile::default();
        for (id, product) in ["a", "b", "a", "c", "a"].iter().enumerate() {
            p.apply(&event(id as u64 + 1, Behaviour::View, product));
        }
        let views: Vec<(&str, u16)> = p.views().collect();
        assert_eq!(views, vec![("a", 3), ("c", 1), ("b", 1)]);
        // A profile written before counts were kept: one view each, then counted on.
        let mut old = Profile {
            recently_viewed: vec!["x".into(), "y".into()],
            ..Profile::default()
        };
        assert_eq!(old.views().collect::<Vec<_>>(), vec![("x", 1), ("y", 1)]);
        old.apply(&event(9, Behaviour::View, "y"));
        assert_eq!(old.views().collect::<Vec<_>>(), vec![("y", 2), ("x", 1)]);
        // A session folded into a customer brings its counts along.
        old.apply(&ProfileOp::Fold {
            id: 10,
            from: Box::new(p),
        });
        assert_eq!(
            old.views().collect::<Vec<_>>(),
            vec![("a", 3), ("c", 1), ("b", 1), ("y", 2), ("x", 1)]
        );
        assert_eq!(old.view_counts.len(), old.recently_viewed.len());
        // Withdrawn consent forgets the counts with the views.
        old.apply(&ProfileOp::Consent {
            id: 11,
            at: 2_000,
            personalization: Some(false),
            marketing: None,
        });
        assert!(old.view_counts.is_empty());
    }

    #[test]
    fn without_consent_no_behaviour_is_kept_and_withdrawing_it_forgets() {
        let mut p = Profile::default();
        p.apply(&event(1, Behaviour::View, "a"));
        assert!(p.has_history());
        p.apply(&ProfileOp::Consent {
            id: 2,
            at: 2_000,
            personalization: Some(false),
            marketing: None,
        });
        assert!(!p.has_history());
        assert!(p.affinities.is_empty());
        p.apply(&event(3, Behaviour::View, "b"));
        assert!(p.recently_viewed.is_empty());
    }

    #[test]
    fn impressions_are_counted_until_a_click() {
        let mut p = Profile::default();
        for id in 1..=3 {
            p.apply(&event(id, Behaviour::Impression, "a"));
        }
        p.apply(&event(4, Behaviour::Impression, "b"));
        assert_eq!(
            p.shown[0],
            Shown {
                product_id: "b".into(),
                times: 1
            }
        );
        assert_eq!(
            p.shown[1],
            Shown {
                product_id: "a".into(),
                times: 3
            }
        );
        p.apply(&event(5, Behaviour::Click, "a"));
        assert_eq!(p.shown.len(), 1);
        assert!(p.recently_viewed.contains(&"a".to_owned()));
    }

    #[test]
    fn the_cart_follows_adds_and_removes() {
        let mut p = Profile::default();
        p.apply(&event(1, Behaviour::AddToCart, "a"));
        p.apply(&event(2, Behaviour::AddToCart, "a"));
        p.apply(&event(3, Behaviour::AddToCart, "b"));
        p.apply(&event(4, Behaviour::RemoveFromCart, "b"));
        assert_eq!(
            p.cart,
            vec![CartLine {
                product_id: "a".into(),
                quantity: 2
            }]
        );
    }

    #[test]
    fn a_cancelled_order_is_taken_back() {
        let mut p = Profile::default();
        p.apply(&ProfileOp::Order {
            id: 1,
            order: 9,
            at: 10,
            total: gbp(5_000),
            lines: vec![("a".into(), 1, None)],
        });
        p.apply(&ProfileOp::CancelOrder {
            id: 2,
            order: 9,
            total: gbp(5_000),
        });
        assert_eq!(p.orders_count, 0);
        assert_eq!(p.total_spent, Some(gbp(0)));
    }

    fn order(id: u64, order: u64, total: i64) -> ProfileOp {
        ProfileOp::Order {
            id,
            order,
            at: 10,
            total: gbp(total),
            lines: vec![("a".into(), 2, None), ("b".into(), 1, None)],
        }
    }

    #[test]
    fn an_order_counts_once_for_the_profiles_lifetime_whatever_happens_between() {
        let mut p = Profile::default();
        assert!(p.apply(&order(1, 9, 4_000)));
        for i in 0..1_000 {
            p.apply(&event(100 + i, Behaviour::View, "v"));
        }
        // Another topic of the same order (a new delivery id), long after.
        p.apply(&order(2, 9, 4_000));
        assert_eq!(p.orders_count, 1);
        assert_eq!(p.total_spent, Some(gbp(4_000)));
        let a = p.purchased.iter().find(|x| x.product_id == "a").unwrap();
        assert_eq!(a.count, 2, "its lines are not recorded twice");

        // Taken back once, and a redelivered order after it is not counted again.
        for id in [3, 4] {
            p.apply(&ProfileOp::CancelOrder {
                id,
                order: 9,
                total: gbp(4_000),
            });
        }
        p.apply(&order(5, 9, 4_000));
        assert_eq!((p.orders_count, p.total_spent), (0, Some(gbp(0))));
    }

    #[test]
    fn untrusted_purchases_are_history_but_not_orders() {
        let mut p = Profile::default();
        p.apply(&purchase(1, "a", None, i64::MAX, false));
        assert_eq!((p.orders_count, p.total_spent), (0, None));
        assert_eq!(p.purchased.len(), 1);
    }

    #[test]
    fn lines_of_an_order_counted_whole_add_nothing() {
        let mut p = Profile::default();
        p.apply(&order(1, 77, 4_000));
        p.apply(&purchase(2, "a", Some(77), 1_000, true));
        assert_eq!((p.orders_count, p.total_spent), (1, Some(gbp(4_000))));
    }

    #[test]
    fn lifecycle_churn_and_clv_follow_the_order_history() {
        let day = 86_400;
        let mut p = Profile::default();
        assert_eq!(p.lifecycle(0, 100_000), Lifecycle::New);
        for (i, d) in [0i64, 30, 60].iter().enumerate() {
            p.apply(&ProfileOp::Order {
                id: i as u64,
                order: i as u64,
                at: d * day,
                total: gbp(3_000),
                lines: vec![],
            });
        }
        assert_eq!(p.lifecycle(70 * day, 100_000), Lifecycle::Active);
        assert_eq!(p.lifecycle(200 * day, 100_000), Lifecycle::Lapsing);
        assert_eq!(p.lifecycle(300 * day, 100_000), Lifecycle::Lapsed);
        assert!(p.churn_risk_bp(61 * day) < p.churn_risk_bp(150 * day));
        let clv = p.clv_12m(61 * day).unwrap();
        assert!(
            clv.amount > 3_000 * 10 && clv.amount < 3_000 * 13,
            "monthly orders: {clv:?}"
        );
        assert_eq!(p.average_order_value(), Some(gbp(3_000)));
    }

    #[test]
    fn a_folded_record_brings_its_orders_once_and_never_guesses_an_overlap() {
        let mut by_email = Profile::default();
        by_email.apply(&order(1, 7, 3_000));
        by_email.apply(&order(2, 8, 1_000));
        let mut customer = Profile::default();
        customer.apply(&order(3, 9, 500));
        let fold = |from: &Profile| ProfileOp::Fold {
            id: 42,
            from: Box::new(from.clone()),
        };
        assert!(customer.apply(&fold(&by_email)));
        assert_eq!(customer.orders_count, 3);
        assert_eq!(customer.total_spent, Some(gbp(4_500)));
        // Delivered again, the folded record's own ops change nothing.
        assert!(!customer.apply(&order(1, 7, 3_000)));
        assert!(!customer.apply(&fold(&by_email)));
        assert_eq!(customer.orders_count, 3);

        // A record sharing an order with the customer: its orders are left as counted.
        let mut shared = Profile::default();
        shared.apply(&order(4, 9, 500));
        shared.apply(&order(5, 10, 700));
        let mut other = Profile::default();
        other.apply(&order(6, 9, 500));
        other.apply(&ProfileOp::Fold {
            id: 43,
            from: Box::new(shared),
        });
        assert_eq!(other.orders_count, 1);
        assert_eq!(other.total_spent, Some(gbp(500)));
    }

    #[test]
    fn absorbing_a_session_keeps_its_history() {
        let mut session = Profile::default();
        session.apply(&event(1, Behaviour::View, "s1"));
        let mut customer = Profile::default();
        customer.apply(&event(2, Behaviour::View, "c1"));
        assert!(customer.apply(&ProfileOp::Absorb {
            id: 99,
            from: Box::new(session.clone())
        }));
        assert!(!customer.apply(&ProfileOp::Absorb {
            id: 99,
            from: Box::new(session)
        }));
        assert!(customer.recently_viewed.contains(&"s1".to_owned()));
        assert!(customer.recently_viewed.contains(&"c1".to_owned()));
    }
}
