//! A decision on the record: what an answer read and what it answered, kept so that
//! anyone can say later what a visitor was shown, why, from which versions, and run
//! the decision again.
//!
//! The decision core is a function of explicit inputs ([`super::page::Inputs`],
//! [`super::checkout::Checkout`]). A record holds those inputs that are not versioned
//! elsewhere: the request, the profile fields the core reads, the budgets' usage, the
//! time, and what the answer read of the state that changes without a version (live
//! learning and stock, a [`Tape`]). The rest is named by version: the trained models,
//! the catalog's contents, the ruleset and the serving settings. [`replay_page`] and
//! [`replay_cart`] decide again from a record and the versions it names, and
//! [`differences`] compares the two outputs field by field.
//!
//! Records are stored as MessagePack (structs as arrays, products by id) and shown as
//! JSON (the same types; the visitor's keyed hash in hex).

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::checkout::{CartRequest, Checkout};
use super::content::Banners;
use super::page::{self, Inputs, PageAnswer, PageRequest};
use super::{Refusal, Ruleset};
use crate::domain::profile::{Consent, ContentShown};
use crate::domain::{Money, PageContext, Placement, ProductIdx, Profile, RawPageContext};
use crate::recommend::engine::Policy;
use crate::recommend::reads::{Reads, Tape};
use crate::recommend::{CartItem, Considered, Reason, Snapshot};
use crate::store::ProfileKey;

/// The endpoint a decision answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Recommend,
    CartEvaluate,
}

impl Endpoint {
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::Recommend => "recommend",
            Endpoint::CartEvaluate => "cart_evaluate",
        }
    }
}

/// One decision. Products are named by `P`: ids owned (`String`) as read back, or
/// borrowed from the catalog (`&str`) as encoded on the serving path; both encode alike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord<P = String> {
    pub decision_id: uuid::Uuid,
    /// When it was decided (Unix milliseconds).
    pub at_ms: i64,
    pub endpoint: Endpoint,
    pub placement: Placement,
    /// The visitor's keyed hash (never the id sent).
    #[serde(with = "hex16")]
    pub visitor: ProfileKey,
    /// The stored profile's consent (`None`: no profile was stored).
    pub consent: Option<Consent>,
    pub versions: Versions,
    /// Experiment assignments: (experiment, variant).
    pub experiments: Vec<(String, String)>,
    pub request: RecordedRequest,
    /// The profile fields the core reads; only with consent to personalization.
    pub profile: Option<Profile>,
    /// What the answer applies whatever the consent: how often content was shown
    /// (frequency caps) and promotions were used (per-customer budgets).
    pub caps: Option<Caps>,
    /// Budgeted promotions' (uses, discount given) as the answer read them.
    pub usage: Vec<(String, u64, i64)>,
    /// For a checkout: promotions decided as used up after the store refused them.
    pub exhausted: Vec<String>,
    /// The decision's time (Unix seconds), as the core read it.
    pub now: i64,
    /// What the answer read of live learning and stock.
    pub reads: Tape<P>,
    /// The strongest candidates, with what each source gave them.
    pub candidates: Vec<Candidate<P>>,
    pub output: Output,
    pub latency_us: u64,
    /// Why the profile was not read (`deadline`, `store_error`).
    pub degraded: Option<String>,
    /// The shadow variants' answer to the same request, never shown.
    #[serde(default)]
    pub shadow: Option<Shadow>,
}

/// The one extra answer an experiment's shadow variants get.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shadow {
    /// The arms it was decided with: (experiment, variant), the shadows in place of the
    /// served variants.
    pub experiments: Vec<(String, String)>,
    pub output: Output,
}

/// The versions a decision names: with these kept, it can be replayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub model: String,
    pub ruleset: String,
    /// The catalog contents' digest, in hex.
    pub catalog: String,
    /// The serving settings' digest (`recommend` and `content`), in hex.
    pub settings: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub product_id: Option<String>,
    pub category: Option<String>,
    pub query: Option<String>,
    /// (product, quantity)
    pub cart: Vec<(String, u32)>,
    pub candidates: Vec<String>,
    pub limit: u32,
    pub context: RecordedContext,
    pub codes: Vec<String>,
}

/// The page context as sent (checked when it was received, and again on replay).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedContext {
    pub country: Option<String>,
    pub currency: Option<String>,
    pub channel: Option<String>,
    pub device: Option<String>,
    pub locale: Option<String>,
    pub exit_intent: bool,
}

impl RecordedContext {
    pub fn of(c: &PageContext) -> Self {
        Self {
            country: c.country.as_ref().map(|c| c.as_str().to_owned()),
            currency: c.currency.map(|c| c.as_str().to_owned()),
            channel: c.channel.clone(),
            device: c.device.clone(),
            locale: c.locale.clone(),
            exit_intent: c.exit_intent,
        }
    }

    fn parse(&self) -> Result<PageContext, String> {
        PageContext::parse(RawPageContext {
            country: self.country.clone(),
            currency: self.currency.clone(),
            channel: self.channel.clone(),
            device: self.device.clone(),
            locale: self.locale.clone(),
            exit_intent: Some(self.exit_intent),
        })
        .map_err(|e| e.to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    pub content_shown: Vec<ContentShown>,
    pub promotions_used: Vec<ContentShown>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate<P = String> {
    pub product_id: P,
    pub score: f32,
    /// (source, what it added)
    #[serde(with = "sources")]
    pub sources: Vec<(Reason, f32)>,
}

/// What was answered, as compared on replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    Page(PageOutput),
    /// The cart evaluation as served (lines, promotions applied and rejected,
    /// shipping, totals), and its currency.
    Cart {
        currency: String,
        evaluation: serde_json::Value,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageOutput {
    pub items: Vec<ItemOut>,
    /// As served.
    pub offers: serde_json::Value,
    /// Banner ids.
    pub banners: Vec<String>,
    /// (collection, its products)
    pub collections: Vec<(String, Vec<String>)>,
    pub modules: Vec<String>,
    /// What merchandising changed, as served.
    pub merchandising: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemOut {
    pub product_id: String,
    pub price: Money,
    pub compare_at: Option<Money>,
    /// The price list the price came from (`None`: the catalog price).
    pub price_list: Option<String>,
    pub score: f32,
    #[serde(with = "reason")]
    pub reason: Reason,
}

impl PageOutput {
    pub fn of(answer: &PageAnswer<'_>) -> Self {
        Self {
            items: answer
                .items
                .iter()
                .map(|i| ItemOut {
                    product_id: String::from(&*i.product.id),
                    price: i.price,
                    compare_at: i.compare_at,
                    price_list: i.price_list.clone(),
                    score: i.score,
                    reason: i.reason,
                })
                .collect(),
            offers: to_value(&answer.offers),
            banners: answer.banners.iter().map(|b| b.id.clone()).collect(),
            collections: answer
                .collections
                .iter()
                .map(|c| (c.id.clone(), c.product_ids.clone()))
                .collect(),
            modules: answer.modules.clone(),
            merchandising: to_value(&answer.effects),
        }
    }
}

fn to_value<T: Serialize + ?Sized>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The profile fields the decision core reads (the rest: op fingerprints, aliases,
/// searches, the stored cart, are left out).
pub fn profile_snapshot(p: &Profile) -> Profile {
    Profile {
        consent: p.consent,
        segments: p.segments.clone(),
        loyalty_tier: p.loyalty_tier.clone(),
        company_id: p.company_id.clone(),
        first_seen: p.first_seen,
        last_seen: p.last_seen,
        orders_count: p.orders_count,
        total_spent: p.total_spent,
        first_order_at: p.first_order_at,
        last_order_at: p.last_order_at,
        affinities: p.affinities.clone(),
        affinities_at: p.affinities_at,
        recently_viewed: p.recently_viewed.clone(),
        purchased: p.purchased.clone(),
        shown: p.shown.clone(),
        content_shown: p.content_shown.clone(),
        promotions_used: p.promotions_used.clone(),
        view_counts: p.view_counts.clone(),
        ..Profile::default()
    }
}

/// The profile as a record keeps it: the snapshot with consent to personalization,
/// else only the caps.
fn kept_profile(stored: Option<&Profile>) -> (Option<Consent>, Option<Profile>, Option<Caps>) {
    match stored {
        None => (None, None, None),
        Some(p) if p.consent.personalization => (Some(p.consent), Some(profile_snapshot(p)), None),
        Some(p) => (
            Some(p.consent),
            None,
            Some(Caps {
                content_shown: p.content_shown.clone(),
                promotions_used: p.promotions_used.clone(),
            }),
        ),
    }
}

/// The profile a replay decides with.
fn replay_profile(r: &DecisionRecord) -> Option<Profile> {
    if let Some(p) = &r.profile {
        return Some(p.clone());
    }
    let consent = r.consent?;
    let caps = r.caps.clone().unwrap_or(Caps {
        content_shown: Vec::new(),
        promotions_used: Vec::new(),
    });
    Some(Profile {
        consent,
        content_shown: caps.content_shown,
        promotions_used: caps.promotions_used,
        ..Profile::default()
    })
}

/// What the serving path keeps of one decision: cheap to take (moves and reference
/// counts), turned into a [`DecisionRecord`] and encoded when the answer is made.
pub struct Pending {
    pub decision_id: uuid::Uuid,
    pub at_ms: i64,
    pub endpoint: Endpoint,
    pub placement: Placement,
    pub visitor: ProfileKey,
    pub profile: Option<Arc<Profile>>,
    pub snapshot: Arc<Snapshot>,
    pub ruleset_version: String,
    pub settings_version: Arc<str>,
    pub request: PendingRequest,
    pub usage: Vec<(String, u64, i64)>,
    pub exhausted: Vec<String>,
    pub now: i64,
    pub tape: Tape<ProductIdx>,
    pub considered: Vec<Considered>,
    /// The experiment arms served: (experiment, variant).
    pub experiments: Vec<(String, String)>,
    pub output: Output,
    pub shadow: Option<Shadow>,
    pub latency_us: u64,
    pub degraded: Option<&'static str>,
}

/// The request as the core saw it, owned.
pub struct PendingRequest {
    pub product_id: Option<String>,
    pub category: Option<String>,
    pub query: Option<String>,
    pub cart: Vec<CartItem>,
    pub candidates: Vec<String>,
    pub limit: usize,
    pub context: PageContext,
    pub codes: Vec<String>,
}

/// The budgets' usage as a record keeps it (sorted, so equal usage encodes alike).
pub fn usage_of(usage: &FxHashMap<String, (u64, i64)>) -> Vec<(String, u64, i64)> {
    let mut v: Vec<_> = usage
        .iter()
        .map(|(id, (uses, spent))| (id.clone(), *uses, *spent))
        .collect();
    v.sort_unstable();
    v
}

impl Pending {
    /// The record, products named by id.
    pub fn into_record(self) -> DecisionRecord {
        let snapshot = self.snapshot.clone();
        self.record_naming(|p| product_id(&snapshot, p).map(str::to_owned))
    }

    /// Encodes the record (as [`encode`] does [`Pending::into_record`]'s) without
    /// copying a product id: they are borrowed from the catalog.
    pub fn encode_into(self, out: &mut Vec<u8>) -> Result<(), String> {
        let snapshot = self.snapshot.clone();
        let r = self.record_naming(|p| product_id(&snapshot, p));
        rmp_serde::encode::write(out, &r).map_err(|e| e.to_string())
    }

    /// The record, products named by `name` (those it cannot name are left out).
    fn record_naming<P>(self, name: impl Fn(ProductIdx) -> Option<P>) -> DecisionRecord<P> {
        let catalog = &self.snapshot.catalog;
        let (consent, profile, caps) = kept_profile(self.profile.as_deref());
        DecisionRecord {
            decision_id: self.decision_id,
            at_ms: self.at_ms,
            endpoint: self.endpoint,
            placement: self.placement,
            visitor: self.visitor,
            consent,
            versions: Versions {
                model: self.snapshot.models.version.clone(),
                ruleset: self.ruleset_version,
                catalog: format!("{:016x}", catalog.version()),
                settings: String::from(&*self.settings_version),
            },
            experiments: self.experiments,
            request: RecordedRequest {
                product_id: self.request.product_id,
                category: self.request.category,
                query: self.request.query,
                cart: self
                    .request
                    .cart
                    .into_iter()
                    .map(|c| (c.product_id, c.quantity))
                    .collect(),
                candidates: self.request.candidates,
                limit: u32::try_from(self.request.limit).unwrap_or(u32::MAX),
                context: RecordedContext::of(&self.request.context),
                codes: self.request.codes,
            },
            profile,
            caps,
            usage: self.usage,
            exhausted: self.exhausted,
            now: self.now,
            reads: self.tape.map(|p| name(*p)).unwrap_or_default(),
            candidates: self
                .considered
                .into_iter()
                .filter_map(|c| {
                    Some(Candidate {
                        product_id: name(c.product)?,
                        score: c.score,
                        sources: c.sources,
                    })
                })
                .collect(),
            output: self.output,
            latency_us: self.latency_us,
            degraded: self.degraded.map(str::to_owned),
            shadow: self.shadow,
        }
    }
}

/// A product's id, if the snapshot's catalog has it.
fn product_id(snapshot: &Snapshot, p: ProductIdx) -> Option<&str> {
    let catalog = &snapshot.catalog;
    (usize::try_from(p).ok()? < catalog.len()).then(|| &*catalog.product(p).id)
}

/// What a replay decides with besides the record.
#[derive(Clone, Copy)]
pub struct Kept<'a> {
    pub snapshot: &'a Snapshot,
    pub rules: &'a Ruleset,
    pub policy: &'a Policy,
    pub banners: &'a Banners,
}

/// A record decided again.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Replayed {
    pub output: Output,
    pub candidates: Vec<Candidate>,
}

/// Why a record cannot be decided again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("the record's {0} cannot be read here: {1}")]
    Unreadable(&'static str, String),
    #[error("the decision is refused now: {0:?}")]
    Refused(Refusal),
}

fn cart_items(r: &DecisionRecord) -> Vec<CartItem> {
    r.request
        .cart
        .iter()
        .map(|(id, q)| CartItem {
            product_id: id.clone(),
            quantity: *q,
        })
        .collect()
}

fn replay_reads(r: &DecisionRecord, snapshot: &Snapshot) -> Result<Reads<'static>, ReplayError> {
    let tape = r
        .reads
        .map(|id| snapshot.catalog.lookup(id))
        .ok_or_else(|| {
            ReplayError::Unreadable("reads", "a product it read is not in the catalog".into())
        })?;
    Ok(Reads::replaying(tape))
}

/// Decides a page record again with the versions it names.
pub fn replay_page(
    r: &DecisionRecord,
    kept: Kept<'_>,
    explain: usize,
) -> Result<Replayed, ReplayError> {
    let context = r
        .request
        .context
        .parse()
        .map_err(|e| ReplayError::Unreadable("context", e))?;
    let reads = replay_reads(r, kept.snapshot)?;
    let profile = replay_profile(r);
    let usage: FxHashMap<String, (u64, i64)> = r
        .usage
        .iter()
        .map(|(id, uses, spent)| (id.clone(), (*uses, *spent)))
        .collect();
    let cart = cart_items(r);
    let request = PageRequest {
        placement: r.placement,
        product_id: r.request.product_id.as_deref(),
        category: r.request.category.as_deref(),
        query: r.request.query.as_deref(),
        cart: &cart,
        candidates: &r.request.candidates,
        limit: r.request.limit as usize,
        context: &context,
    };
    let inputs = Inputs {
        snapshot: kept.snapshot,
        rules: kept.rules,
        usage: &usage,
        policy: kept.policy,
        banners: kept.banners,
        profile: profile.as_ref(),
        visitor: r.visitor.short_id(),
        volatile: &reads,
        explain,
        now: r.now,
        arms: super::experiment::Arms::Recorded(&r.experiments),
    };
    let answer = page::answer(&inputs, &request).map_err(ReplayError::Refused)?;
    let catalog = &kept.snapshot.catalog;
    Ok(Replayed {
        output: Output::Page(PageOutput::of(&answer)),
        candidates: answer
            .considered
            .iter()
            .map(|c| Candidate {
                product_id: String::from(&*catalog.product(c.product).id),
                score: c.score,
                sources: c.sources.clone(),
            })
            .collect(),
    })
}

/// Decides a cart record again with the versions it names.
pub fn replay_cart(r: &DecisionRecord, kept: Kept<'_>) -> Result<Replayed, ReplayError> {
    let context = r
        .request
        .context
        .parse()
        .map_err(|e| ReplayError::Unreadable("context", e))?;
    let reads = replay_reads(r, kept.snapshot)?;
    let profile = replay_profile(r);
    let cart = cart_items(r);
    let request = CartRequest {
        cart: &cart,
        codes: &r.request.codes,
        context: &context,
        arms: super::experiment::Arms::Recorded(&r.experiments),
    };
    let checkout = Checkout::new(
        kept.rules,
        &kept.snapshot.catalog,
        &reads,
        profile.as_ref(),
        &request,
        r.now,
    )
    .map_err(ReplayError::Refused)?;
    let used: Vec<(u64, i64)> = checkout
        .budgeted()
        .iter()
        .map(|id| {
            r.usage
                .iter()
                .find(|u| &u.0 == id)
                .map_or((0, 0), |u| (u.1, u.2))
        })
        .collect();
    let evaluation = checkout
        .evaluate(&used, &r.exhausted)
        .map_err(ReplayError::Refused)?;
    Ok(Replayed {
        output: Output::Cart {
            currency: checkout.currency().as_str().to_owned(),
            evaluation: to_value(&evaluation),
        },
        candidates: Vec::new(),
    })
}

/// One field that differs between a record and its replay.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    /// A JSON path into the record (`output.page.items[2].price.amount`).
    pub path: String,
    pub recorded: serde_json::Value,
    pub replayed: serde_json::Value,
}

/// Where a record's output and candidates differ from a replay's (empty: identical).
/// Scores are compared as recorded: four decimals for items, as computed for
/// candidates.
pub fn differences(recorded: &DecisionRecord, replayed: &Replayed) -> Vec<Difference> {
    let mut out = Vec::new();
    diff(
        "output",
        &to_value(&recorded.output),
        &to_value(&replayed.output),
        &mut out,
    );
    diff(
        "candidates",
        &to_value(&recorded.candidates),
        &to_value(&replayed.candidates),
        &mut out,
    );
    out
}

fn diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<Difference>) {
    use serde_json::Value;
    const MAX: usize = 100;
    if out.len() >= MAX {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                diff(
                    &format!("{path}.{k}"),
                    v,
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
            for (k, v) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                diff(&format!("{path}.{k}"), &Value::Null, v, out);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                diff(
                    &format!("{path}[{i}]"),
                    x.get(i).unwrap_or(&Value::Null),
                    y.get(i).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a == b => {}
        _ => out.push(Difference {
            path: path.to_owned(),
            recorded: a.clone(),
            replayed: b.clone(),
        }),
    }
}

/// Encodes a record for the store (MessagePack, structs as arrays).
pub fn encode(r: &DecisionRecord) -> Result<Vec<u8>, String> {
    // Room for a typical record, so it is not grown step by step.
    let mut out = Vec::with_capacity(1024);
    rmp_serde::encode::write(&mut out, r).map_err(|e| e.to_string())?;
    Ok(out)
}

pub fn decode(bytes: &[u8]) -> Result<DecisionRecord, String> {
    rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
}

/// A reason by name in JSON, by its index in [`Reason::ALL`] in MessagePack.
mod reason {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::recommend::Reason;

    pub fn serialize<S: Serializer>(r: &Reason, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            r.serialize(s)
        } else {
            let i = Reason::ALL.iter().position(|x| x == r).unwrap_or(0);
            s.serialize_u8(u8::try_from(i).unwrap_or(0))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
        if d.is_human_readable() {
            Reason::deserialize(d)
        } else {
            let i = u8::deserialize(d)?;
            Reason::ALL
                .get(usize::from(i))
                .copied()
                .ok_or_else(|| serde::de::Error::custom("unknown reason code"))
        }
    }
}

/// A candidate's sources, reasons as in [`reason`].
mod sources {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::recommend::Reason;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Source(#[serde(with = "super::reason")] Reason, f32);

    pub fn serialize<S: Serializer>(v: &[(Reason, f32)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for (r, x) in v {
            seq.serialize_element(&Source(*r, *x))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(Reason, f32)>, D::Error> {
        Ok(Vec::<Source>::deserialize(d)?
            .into_iter()
            .map(|Source(r, x)| (r, x))
            .collect())
    }
}

/// A profile key as 32 hex digits in JSON, 16 bytes in MessagePack.
mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::store::ProfileKey;

    pub fn serialize<S: Serializer>(k: &ProfileKey, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&k.to_hex())
        } else {
            s.serialize_bytes(k.as_bytes())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProfileKey, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            ProfileKey::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not 32 hex digits"))
        } else {
            let b = serde_bytes::ByteBuf::deserialize(d)?;
            let a: [u8; 16] = b
                .as_slice()
                .try_into()
                .map_err(|_| serde::de::Error::custom("not 16 bytes"))?;
            Ok(ProfileKey(a))
        }
    }
}
