//! Experiments in the ruleset: percentage rollouts, A/B tests against a baseline,
//! holdouts and shadow variants, compiled and validated with the rest of the document
//! (every problem at its JSON path), and the stateless assignment of a visitor to their
//! arms ([`crate::domain::bucket`]: GrowthBook's published bucketing).
//!
//! An experiment hashes one attribute of the visitor (`session_id` or `customer_id`)
//! with its `seed` (its id unless set) and `bucket_version`; the served variants split
//! `coverage` of the visitors by their weights; a shadow variant is never served (it
//! is decided beside the served answer and recorded). A namespace (`id`, `range`) makes
//! experiments whose ranges do not overlap mutually exclusive. The holdout takes a
//! share of every visitor, by its own seed, out of every experiment: they get the
//! baseline everywhere.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::compile::{check_id, expression, parse, unique};
use super::expr::{Env, Errors, Expr, Scope};
use crate::domain::{Placement, bucket};

/// Experiments a ruleset may define (any status), and may run at once.
pub const MAX_EXPERIMENTS: usize = 100;
pub const MAX_RUNNING: usize = 20;
/// Variants an experiment may have (the shadow included).
pub const MAX_VARIANTS: usize = 10;

/// What answers and records name a held-out visitor's arm: (`HOLDOUT`, `BASELINE`).
pub const HOLDOUT: &str = "holdout";
pub const BASELINE: &str = "baseline";
/// The holdout's comparison slice: as many visitors as it holds out, served as
/// everyone else is, named (`HOLDOUT`, `COMPARISON`) so the two can be compared.
pub const COMPARISON: &str = "comparison";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Running,
    Stopped,
}

/// The visitor attribute an experiment hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashAttribute {
    /// Sticky across a log-in (the session keeps its id); a customer on two devices
    /// may see two arms.
    SessionId,
    /// One arm per customer on every device; visitors without a customer id are not
    /// in the experiment.
    CustomerId,
}

/// What the visitor gets instead of the personalized answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// Trending products only.
    Popularity,
    /// Seeded random in-stock products.
    Random,
    /// The storefront's own list, untouched.
    None,
}

/// What a variant changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VariantPolicy {
    /// Source -> weight, replacing the placement's configured weight.
    pub blend: BTreeMap<String, f32>,
    pub baseline: Option<Baseline>,
    /// Offers on (`None`: as configured) or off.
    pub offers: Option<bool>,
    /// The content variant shown.
    pub content: Option<String>,
    /// The named promotion set applied.
    pub promotions: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub id: String,
    pub weight: f64,
    pub shadow: bool,
    pub policy: VariantPolicy,
}

#[derive(Clone, Debug)]
pub struct Experiment {
    pub id: String,
    pub status: Status,
    /// Empty: every placement.
    pub placements: Vec<Placement>,
    pub hash_attribute: HashAttribute,
    pub seed: String,
    pub bucket_version: u32,
    pub coverage: f64,
    pub when: Expr,
    /// Served variants first (in the document's order), then the shadow, if any.
    pub variants: Vec<Variant>,
    /// The served variants' ranges.
    pub ranges: Vec<(f64, f64)>,
    pub namespace: Option<(String, f64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Holdout {
    pub coverage: f64,
    pub seed: String,
}

/// The ids an experiment hashes, and the arms the visitor's profile holds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Visitor<'a> {
    pub session_id: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    /// The arms first served to the visitor ([`crate::domain::arms`]): kept while the
    /// experiment's `bucket_version` is theirs, whatever its weights and coverage now.
    pub arms: &'a [crate::domain::arms::Arm],
}

/// One experiment's arms for a visitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Index into the ruleset's experiments.
    pub experiment: usize,
    /// The variant served (index into the experiment's variants).
    pub variant: usize,
    /// The shadow variant decided beside it, if the experiment has one.
    pub shadow: Option<usize>,
}

// ---- the document as written --------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    id: String,
    status: Status,
    #[serde(default)]
    placements: Vec<String>,
    hash_attribute: HashAttribute,
    #[serde(default)]
    seed: Option<String>,
    #[serde(default = "one")]
    bucket_version: u32,
    #[serde(default = "full")]
    coverage: f64,
    #[serde(default)]
    when: Option<Value>,
    variants: Vec<RawVariant>,
    #[serde(default)]
    namespace: Option<RawNamespace>,
}

const fn one() -> u32 {
    1
}

const fn full() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    id: String,
    #[serde(default)]
    weight: Option<f64>,
    #[serde(default)]
    shadow: bool,
    #[serde(default)]
    policy: RawPolicy,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    blend: BTreeMap<String, f32>,
    #[serde(default)]
    baseline: Option<Baseline>,
    #[serde(default)]
    offers: Option<bool>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    promotions: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    id: String,
    range: [f64; 2],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoldout {
    coverage: f64,
    seed: String,
}

fn share(v: f64, path: &str, errors: &mut Errors) -> f64 {
    if !(0.0..=1.0).contains(&v) {
        errors.push(path, "a share from 0 to 1");
    }
    if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }
}

/// What the rest of the document names, that variants may refer to.
#[derive(Debug, Default)]
pub struct Named {
    /// The promotions' sets.
    pub promotion_sets: Vec<String>,
    /// The content items' variants.
    pub content_variants: Vec<String>,
}

/// Compiles the document's experiments (`$.experiments`) and holdout (`$.holdout`).
pub fn compile(
    experiments: &[Value],
    holdout: Option<&Value>,
    named: &Named,
    errors: &mut Errors,
) -> (Vec<Experiment>, Option<Holdout>) {
    if experiments.len() > MAX_EXPERIMENTS {
        errors.push(
            "$.experiments",
            format!("at most {MAX_EXPERIMENTS} experiments"),
        );
        return (Vec::new(), None);
    }
    let mut out = Vec::new();
    for (i, v) in experiments.iter().enumerate() {
        let path = format!("$.experiments[{i}]");
        if let Some(raw) = parse::<RawExperiment>(v, &path, errors) {
            out.push(compile_one(raw, &path, named, errors));
        }
    }
    unique(out.iter().map(|e| e.id.as_str()), "$.experiments", errors);
    let running = out.iter().filter(|e| e.status == Status::Running).count();
    if running > MAX_RUNNING {
        errors.push(
            "$.experiments",
            format!("{running} experiments running: at most {MAX_RUNNING}"),
        );
    }
    overlapping_namespaces(&out, errors);
    let holdout = holdout
        .and_then(|h| parse::<RawHoldout>(h, "$.holdout", errors))
        .map(|h| Holdout {
            coverage: share(h.coverage, "$.holdout.coverage", errors),
            seed: h.seed,
        });
    (out, holdout)
}

fn compile_one(raw: RawExperiment, path: &str, named: &Named, errors: &mut Errors) -> Experiment {
    check_id(&raw.id, &format!("{path}.id"), errors);
    if raw.id == HOLDOUT {
        errors.push(
            &format!("{path}.id"),
            "\"holdout\" names the global holdout",
        );
    }
    let mut placements = Vec::new();
    for (j, p) in raw.placements.iter().enumerate() {
        match p.parse::<Placement>() {
            Ok(p) => placements.push(p),
            Err(_) => errors.push(
                &format!("{path}.placements[{j}]"),
                format!("no placement {p:?}"),
            ),
        }
    }
    if raw.bucket_version == 0 {
        errors.push(&format!("{path}.bucket_version"), "starts at 1");
    }
    let coverage = share(raw.coverage, &format!("{path}.coverage"), errors);
    let when = expression(
        raw.when.as_ref(),
        Scope::Context,
        &format!("{path}.when"),
        errors,
    );
    if raw.variants.len() > MAX_VARIANTS {
        errors.push(
            &format!("{path}.variants"),
            format!("at most {MAX_VARIANTS} variants"),
        );
    }
    let mut served = Vec::new();
    let mut shadows = Vec::new();
    for (j, v) in raw.variants.into_iter().enumerate() {
        let vpath = format!("{path}.variants[{j}]");
        check_id(&v.id, &format!("{vpath}.id"), errors);
        for source in v.policy.blend.keys() {
            if crate::config::Blend::default().weight_mut(source).is_none() {
                errors.push(
                    &format!("{vpath}.policy.blend.{source}"),
                    format!("no candidate source {source:?}"),
                );
            }
        }
        if let Some(set) = &v.policy.promotions
            && !named.promotion_sets.contains(set)
        {
            errors.push(
                &format!("{vpath}.policy.promotions"),
                format!("no promotion has the set {set:?}"),
            );
        }
        if let Some(variant) = &v.policy.content
            && !named.content_variants.contains(variant)
        {
            errors.push(
                &format!("{vpath}.policy.content"),
                format!("no content item has the variant {variant:?}"),
            );
        }
        for (source, w) in &v.policy.blend {
            if !w.is_finite() || *w < 0.0 {
                errors.push(
                    &format!("{vpath}.policy.blend.{source}"),
                    "a weight is 0 or more",
                );
            }
        }
        let weight = match (v.shadow, v.weight) {
            (true, Some(_)) => {
                errors.push(
                    &format!("{vpath}.weight"),
                    "a shadow variant is never served: it has no weight",
                );
                0.0
            }
            (true, None) => 0.0,
            (false, None) => {
                errors.push(
                    &format!("{vpath}.weight"),
                    "a served variant needs a weight",
                );
                0.0
            }
            (false, Some(w)) => {
                if !w.is_finite() || w < 0.0 {
                    errors.push(&format!("{vpath}.weight"), "a weight is 0 or more");
                }
                w
            }
        };
        let variant = Variant {
            id: v.id,
            weight,
            shadow: v.shadow,
            policy: VariantPolicy {
                blend: v.policy.blend,
                baseline: v.policy.baseline,
                offers: v.policy.offers,
                content: v.policy.content,
                promotions: v.policy.promotions,
            },
        };
        if v.shadow {
            shadows.push(variant);
        } else {
            served.push(variant);
        }
    }
    if shadows.len() > 1 {
        errors.push(
            &format!("{path}.variants"),
            "at most one shadow variant an experiment",
        );
    }
    if served.is_empty() {
        errors.push(&format!("{path}.variants"), "at least one served variant");
    }
    let sum: f64 = served.iter().map(|v| v.weight).sum();
    if !served.is_empty() && (sum - 1.0).abs() > 1e-9 {
        errors.push(
            &format!("{path}.variants"),
            format!("the served variants' weights sum to {sum}, not 1"),
        );
    }
    let weights: Vec<f64> = served.iter().map(|v| v.weight).collect();
    let ranges = bucket::ranges(served.len(), coverage, Some(&weights));
    let mut variants = served;
    variants.extend(shadows);
    unique(
        variants.iter().map(|v| v.id.as_str()),
        &format!("{path}.variants"),
        errors,
    );
    let namespace = raw.namespace.map(|n| {
        let [start, end] = n.range;
        if !(0.0..=1.0).contains(&start) || !(0.0..=1.0).contains(&end) || start >= end {
            errors.push(
                &format!("{path}.namespace.range"),
                "a range [start, end) within [0, 1], start before end",
            );
        }
        check_id(&n.id, &format!("{path}.namespace.id"), errors);
        (n.id, start, end)
    });
    Experiment {
        seed: raw.seed.unwrap_or_else(|| raw.id.clone()),
        id: raw.id,
        status: raw.status,
        placements,
        hash_attribute: raw.hash_attribute,
        bucket_version: raw.bucket_version,
        coverage,
        when,
        variants,
        ranges,
        namespace,
    }
}

/// Running experiments of one namespace must not share any part of it.
fn overlapping_namespaces(experiments: &[Experiment], errors: &mut Errors) {
    let mut by_namespace: BTreeMap<&str, Vec<(f64, f64, usize)>> = BTreeMap::new();
    for (i, e) in experiments.iter().enumerate() {
        if let (Status::Running, Some((id, start, end))) = (e.status, &e.namespace) {
            by_namespace
                .entry(id.as_str())
                .or_default()
                .push((*start, *end, i));
        }
    }
    for (id, mut ranges) in by_namespace {
        ranges.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in ranges.windows(2) {
            let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
            if start < end {
                errors.push(
                    &format!("$.experiments[{b}].namespace.range"),
                    format!(
                        "overlaps $.experiments[{a}] ({:?}) in namespace {id:?}",
                        experiments[a].id
                    ),
                );
            }
        }
    }
}

// ---- assignment -----------------------------------------------------------------------

impl Experiment {
    /// The hashed value and its seed, versioned (`bucket_version` 1 hashes the seed
    /// as written, so the arms match a GrowthBook experiment with that seed).
    fn seed(&self) -> std::borrow::Cow<'_, str> {
        if self.bucket_version <= 1 {
            std::borrow::Cow::Borrowed(&self.seed)
        } else {
            std::borrow::Cow::Owned(format!("{}:v{}", self.seed, self.bucket_version))
        }
    }

    fn value<'v>(&self, visitor: &Visitor<'v>) -> Option<&'v str> {
        match self.hash_attribute {
            HashAttribute::SessionId => visitor.session_id,
            HashAttribute::CustomerId => visitor.customer_id,
        }
        .filter(|v| !v.is_empty())
    }

    /// The visitor's arms in this experiment on `placement`, if they are in it.
    pub fn assign(
        &self,
        index: usize,
        visitor: &Visitor<'_>,
        placement: Placement,
        env: Option<Env<'_, '_>>,
    ) -> Option<Assignment> {
        if !(self.placements.is_empty() || self.placements.contains(&placement)) {
            return None;
        }
        self.assign_anywhere(index, visitor, env)
    }

    /// Whether a variant puts a promotion set in force.
    pub fn sets_promotions(&self) -> bool {
        self.variants.iter().any(|v| v.policy.promotions.is_some())
    }

    /// The visitor's arms in this experiment whatever the placement.
    fn assign_anywhere(
        &self,
        index: usize,
        visitor: &Visitor<'_>,
        env: Option<Env<'_, '_>>,
    ) -> Option<Assignment> {
        if self.status != Status::Running {
            return None;
        }
        let value = self.value(visitor)?;
        if !matches!(self.when, Expr::Const(true)) && !env.is_some_and(|env| self.when.holds(env)) {
            return None;
        }
        let served = self.ranges.len();
        let shadow = (self.variants.len() > served).then_some(served);
        // The arm first served, while its bucket version holds and it is still served.
        let kept = visitor
            .arms
            .iter()
            .find(|a| a.experiment == self.id && a.version == self.bucket_version)
            .and_then(|a| {
                self.variants[..served]
                    .iter()
                    .position(|v| v.id == a.variant)
            });
        if let Some(variant) = kept {
            return Some(Assignment {
                experiment: index,
                variant,
                shadow,
            });
        }
        if let Some((id, start, end)) = &self.namespace
            && !bucket::in_namespace(value, id, *start, *end)
        {
            return None;
        }
        let n = bucket::hash(&self.seed(), value, 2)?;
        let variant = bucket::choose(n, &self.ranges)?;
        Some(Assignment {
            experiment: index,
            variant,
            shadow,
        })
    }
}

impl Holdout {
    /// Whether the visitor is held out of every experiment (`Some(true)`), in the
    /// equally sized comparison slice next to it (`Some(false)`), or neither; hashed on
    /// the session, else the customer id.
    pub fn slice(&self, visitor: &Visitor<'_>) -> Option<bool> {
        let value = visitor
            .session_id
            .or(visitor.customer_id)
            .filter(|v| !v.is_empty())?;
        let n = bucket::hash(&self.seed, value, 2)?;
        if n < self.coverage {
            Some(true)
        } else if n < 2.0 * self.coverage {
            Some(false)
        } else {
            None
        }
    }

    /// Whether the visitor is held out of every experiment.
    pub fn holds(&self, visitor: &Visitor<'_>) -> bool {
        self.slice(visitor) == Some(true)
    }
}

/// How an answer finds its arms.
#[derive(Clone, Copy, Debug, Default)]
pub enum Arms<'a> {
    /// None (a tool deciding without a visitor).
    #[default]
    None,
    /// From the visitor's ids.
    Visitor(Visitor<'a>),
    /// As a record holds them (a replay): (experiment, variant) ids.
    Recorded(&'a [(String, String)]),
}

/// The arms one answer serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub held_out: bool,
    /// In the holdout's comparison slice.
    pub compared: bool,
    pub arms: Vec<Assignment>,
}

impl Served {
    /// (experiment, variant) ids, as answers and records name them.
    pub fn named(&self, experiments: &[Experiment]) -> Vec<(String, String)> {
        if self.held_out {
            return vec![(HOLDOUT.to_owned(), BASELINE.to_owned())];
        }
        let mut named: Vec<(String, String)> = self
            .arms
            .iter()
            .filter_map(|a| {
                let e = experiments.get(a.experiment)?;
                Some((e.id.clone(), e.variants.get(a.variant)?.id.clone()))
            })
            .collect();
        if self.compared {
            named.push((HOLDOUT.to_owned(), COMPARISON.to_owned()));
        }
        named
    }

    /// The arms of the one extra answer the shadow variants get (each experiment's
    /// shadow in place of its served variant, the others as served), if any arm has a
    /// shadow.
    pub fn shadow_arms(&self, experiments: &[Experiment]) -> Option<Vec<(String, String)>> {
        if self.held_out || self.arms.iter().all(|a| a.shadow.is_none()) {
            return None;
        }
        let shadowed = Served {
            held_out: false,
            compared: false,
            arms: self
                .arms
                .iter()
                .map(|a| Assignment {
                    variant: a.shadow.unwrap_or(a.variant),
                    ..*a
                })
                .collect(),
        };
        Some(shadowed.named(experiments))
    }

    /// The `random` or `none` baseline an arm serves instead of the engine's answer
    /// (the first arm's that sets one).
    pub fn fixed_baseline(&self, experiments: &[Experiment]) -> Option<Baseline> {
        self.arms.iter().find_map(|a| {
            let b = experiments
                .get(a.experiment)?
                .variants
                .get(a.variant)?
                .policy
                .baseline?;
            (b != Baseline::Popularity).then_some(b)
        })
    }

    /// The promotion sets the served arms put in force.
    pub fn promotion_sets(&self, experiments: &[Experiment]) -> Vec<String> {
        self.policies(experiments)
            .filter_map(|p| p.promotions.clone())
            .collect()
    }

    /// The content variant the served arms show (the first arm's that names one).
    pub fn content_variant(&self, experiments: &[Experiment]) -> Option<String> {
        self.policies(experiments).find_map(|p| p.content.clone())
    }

    fn policies<'e>(
        &'e self,
        experiments: &'e [Experiment],
    ) -> impl Iterator<Item = &'e VariantPolicy> + 'e {
        self.arms.iter().filter_map(|a| {
            Some(
                &experiments
                    .get(a.experiment)?
                    .variants
                    .get(a.variant)?
                    .policy,
            )
        })
    }

    /// Whether any arm turns offers off.
    pub fn offers_off(&self, experiments: &[Experiment]) -> bool {
        self.arms.iter().any(|a| {
            experiments
                .get(a.experiment)
                .and_then(|e| e.variants.get(a.variant))
                .is_some_and(|v| v.policy.offers == Some(false))
        })
    }
}

/// The arms an answer on `placement` serves.
pub fn serve(
    experiments: &[Experiment],
    holdout: Option<&Holdout>,
    arms: &Arms<'_>,
    placement: Placement,
    env: Env<'_, '_>,
) -> Served {
    match arms {
        Arms::None => Served::default(),
        Arms::Visitor(v) => {
            let slice = holdout.and_then(|h| h.slice(v));
            if slice == Some(true) {
                return Served {
                    held_out: true,
                    compared: false,
                    arms: Vec::new(),
                };
            }
            Served {
                held_out: false,
                compared: slice == Some(false),
                arms: experiments
                    .iter()
                    .enumerate()
                    .filter_map(|(i, e)| e.assign(i, v, placement, Some(env)))
                    .collect(),
            }
        }
        Arms::Recorded(named) => Served {
            held_out: named.iter().any(|(e, v)| e == HOLDOUT && v == BASELINE),
            compared: named.iter().any(|(e, v)| e == HOLDOUT && v == COMPARISON),
            arms: named
                .iter()
                .filter_map(|(id, variant)| {
                    let (i, e) = experiments.iter().enumerate().find(|(_, e)| e.id == *id)?;
                    let served = e.ranges.len();
                    // A shadow's answer names the shadow: it is decided as recorded.
                    Some(Assignment {
                        experiment: i,
                        variant: e.variants.iter().position(|v| v.id == *variant)?,
                        shadow: (e.variants.len() > served).then_some(served),
                    })
                })
                .collect(),
        },
    }
}

/// The arms a checkout serves: those of experiments that put a promotion set in force,
/// wherever they run, so the cart honours the offers the visitor was shown.
pub fn serve_checkout(
    experiments: &[Experiment],
    holdout: Option<&Holdout>,
    arms: &Arms<'_>,
    env: Env<'_, '_>,
) -> Served {
    match arms {
        Arms::Visitor(v) => {
            if holdout.is_some_and(|h| h.holds(v)) {
                return Served::default();
            }
            Served {
                held_out: false,
                compared: false,
                arms: experiments
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.sets_promotions())
                    .filter_map(|(i, e)| e.assign_anywhere(i, v, Some(env)))
                    .collect(),
            }
        }
        Arms::None | Arms::Recorded(_) => {
            serve(experiments, holdout, arms, Placement::Checkout, env)
        }
    }
}

/// The recommendation policy an answer serves with: the configured one, or changed
/// by the arms (a baseline, blend weights) for `placement`.
pub fn policy<'p>(
    base: &'p crate::recommend::engine::Policy,
    experiments: &[Experiment],
    served: &Served,
    placement: Placement,
) -> std::borrow::Cow<'p, crate::recommend::engine::Policy> {
    let changes: Vec<&VariantPolicy> = served
        .arms
        .iter()
        .filter_map(|a| {
            let v = experiments.get(a.experiment)?.variants.get(a.variant)?;
            (!v.policy.blend.is_empty() || v.policy.baseline.is_some()).then_some(&v.policy)
        })
        .collect();
    if !served.held_out && changes.is_empty() {
        return std::borrow::Cow::Borrowed(base);
    }
    let mut policy = base.clone();
    let blend = policy.blend.of_mut(placement);
    let popular = served.held_out
        || changes
            .iter()
            .any(|c| c.baseline == Some(Baseline::Popularity));
    if popular {
        // Trending only (at its configured weight, or 1).
        let trending = if blend.trending > 0.0 {
            blend.trending
        } else {
            1.0
        };
        *blend = crate::config::Blend {
            trending,
            ..crate::config::Blend::default()
        };
    } else {
        for c in changes {
            for (source, w) in &c.blend {
                if let Some(weight) = blend.weight_mut(source) {
                    *weight = *w;
                }
            }
        }
    }
    std::borrow::Cow::Owned(policy)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compiled(doc: &Value) -> Result<(Vec<Experiment>, Option<Holdout>), Vec<String>> {
        let mut errors = Errors::default();
        let list = doc["experiments"].as_array().cloned().unwrap_or_default();
        let out = compile(&list, doc.get("holdout"), &Named::default(), &mut errors);
        if errors.0.is_empty() {
            Ok(out)
        } else {
            Err(errors.0.into_iter().map(|e| e.path).collect())
        }
    }

    fn pdp() -> Value {
        json!({
            "id": "pdp-recs-v2", "status": "running", "placements": ["product", "cart"],
            "hash_attribute": "session_id", "seed": "pdp-recs-v2", "bucket_version": 1,
            "coverage": 0.5,
            "variants": [
                {"id": "control", "weight": 0.5, "policy": {"baseline": "popularity"}},
                {"id": "personalized", "weight": 0.5, "policy": {}},
                {"id": "more-history", "shadow": true, "policy": {"blend": {"history": 2.0}}}
            ],
            "namespace": {"id": "pdp", "range": [0.0, 0.5]}
        })
    }

    #[test]
    fn a_valid_experiment_compiles_with_its_ranges_and_its_shadow_last() {
        let (list, holdout) = compiled(&json!({
            "experiments": [pdp()],
            "holdout": {"coverage": 0.05, "seed": "global-holdout"}
        }))
        .unwrap();
        let e = &list[0];
        assert_eq!(e.ranges, [(0.0, 0.25), (0.5, 0.75)]);
        assert_eq!(e.variants[2].id, "more-history");
        assert!(e.variants[2].shadow);
        assert_eq!(e.variants[2].policy.blend["history"], 2.0);
        assert_eq!(holdout.unwrap().coverage, 0.05);
    }

    #[test]
    fn every_problem_is_reported_at_its_path() {
        let mut bad = pdp();
        bad["coverage"] = json!(1.5);
        bad["placements"] = json!(["product", "moon"]);
        bad["variants"] = json!([
            {"id": "a", "weight": 0.7},
            {"id": "a", "weight": 0.7},
            {"id": "s1", "shadow": true, "policy": {"blend": {"karma": 1.0}}},
            {"id": "s2", "shadow": true, "weight": 0.1}
        ]);
        let mut clash = pdp();
        clash["id"] = json!("other");
        clash["namespace"] = json!({"id": "pdp", "range": [0.4, 0.9]});
        let paths = compiled(&json!({
            "experiments": [bad, clash, pdp()],
            "holdout": {"coverage": -1, "seed": "h"}
        }))
        .unwrap_err();
        for expected in [
            "$.experiments[0].coverage",
            "$.experiments[0].placements[1]",
            "$.experiments[0].variants[2].policy.blend.karma",
            "$.experiments[0].variants[3].weight",
            "$.experiments[0].variants",
            "$.experiments",
            "$.experiments[1].namespace.range",
            "$.holdout.coverage",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "{expected} in {paths:?}"
            );
        }
        let count = |p: &str| paths.iter().filter(|x| *x == p).count();
        // Two shadows, weights summing to 1.4, a variant id used twice.
        assert_eq!(count("$.experiments[0].variants"), 3, "{paths:?}");
        let mut later = pdp();
        later["id"] = json!("holdout");
        later["status"] = json!("draft");
        later["variants"][0]["policy"] = json!({"baseline": "random", "content": "c"});
        let paths = compiled(&json!({"experiments": [later]})).unwrap_err();
        assert_eq!(
            paths,
            [
                "$.experiments[0].id",
                "$.experiments[0].variants[0].policy.content"
            ],
            "the reserved id, and a content variant no item has"
        );
        assert!(
            compiled(&json!({"experiments": [{"id": "x", "status": "running",
                "hash_attribute": "email", "variants": []}]}))
            .unwrap_err()
            .iter()
            .any(|p| p.starts_with("$.experiments[0]"))
        );
    }

    #[test]
    fn a_kept_arm_outlives_weight_and_coverage_changes_but_not_the_bucket_version() {
        let mut doc = pdp();
        doc["namespace"] = Value::Null;
        let (list, _) = compiled(&json!({"experiments": [doc.clone()]})).unwrap();
        // A visitor outside the coverage by hash, holding "personalized" from before.
        let id = (0..)
            .map(|i| format!("s-{i}"))
            .find(|id| {
                let v = Visitor {
                    session_id: Some(id),
                    ..Visitor::default()
                };
                list[0].assign(0, &v, Placement::Product, None).is_none()
            })
            .unwrap();
        let kept = [crate::domain::arms::Arm {
            experiment: "pdp-recs-v2".into(),
            version: 1,
            variant: "personalized".into(),
            ..Default::default()
        }];
        let v = Visitor {
            session_id: Some(&id),
            arms: &kept,
            ..Visitor::default()
        };
        doc["variants"][0]["weight"] = json!(0.9);
        doc["variants"][1]["weight"] = json!(0.1);
        let (list, _) = compiled(&json!({"experiments": [doc.clone()]})).unwrap();
        let a = list[0].assign(0, &v, Placement::Product, None).unwrap();
        assert_eq!(list[0].variants[a.variant].id, "personalized");
        // Not on a placement the experiment is not on.
        assert!(list[0].assign(0, &v, Placement::Home, None).is_none());
        // A new bucket version hashes again.
        doc["bucket_version"] = json!(2);
        let (list, _) = compiled(&json!({"experiments": [doc]})).unwrap();
        let again = list[0].assign(0, &v, Placement::Product, None);
        let fresh = Visitor {
            session_id: Some(&id),
            ..Visitor::default()
        };
        assert_eq!(again, list[0].assign(0, &fresh, Placement::Product, None));
    }

    #[test]
    fn visitors_split_by_weight_within_coverage_and_namespaces_exclude() {
        let (list, _) = compiled(&json!({"experiments": [pdp()]})).unwrap();
        let e = &list[0];
        let mut arms = [0u32; 2];
        let mut outside = 0;
        for i in 0..10_000 {
            let id = format!("s-{i}");
            let v = Visitor {
                session_id: Some(&id),
                ..Visitor::default()
            };
            match e.assign(0, &v, Placement::Product, None) {
                Some(a) => {
                    arms[a.variant] += 1;
                    assert_eq!(a.shadow, Some(2));
                    assert!(bucket::in_namespace(&id, "pdp", 0.0, 0.5));
                }
                None => outside += 1,
            }
            assert!(e.assign(0, &v, Placement::Home, None).is_none());
        }
        // Half the namespace, half coverage: about a quarter in, split evenly. Binomial
        // bounds at over 4 standard deviations.
        let inside = arms[0] + arms[1];
        assert!((2_200..=2_800).contains(&inside), "{arms:?} {outside}");
        let sd = (f64::from(inside) * 0.25).sqrt();
        assert!(
            (f64::from(arms[0]) - f64::from(inside) / 2.0).abs() < 4.5 * sd,
            "{arms:?}"
        );
    }
}
