//! Experiment results, from the per-arm counts every replica shares
//! ([`crate::store::ExperimentTally`]): per arm, what visitors did and its rates; per
//! variant, its lift over control with a 95% interval and a p-value
//! ([`crate::domain::stats`]); the sample-ratio check; and, where a shadow variant is
//! decided beside the served answer, how often what the visitor then clicked or bought
//! was in each list.
//!
//! Control is the experiment's first served variant (the holdout's: `baseline`).
//! Rates: click-through is clicks of impressions; add-to-cart and conversion rates are
//! visitors with one of exposed visitors. Revenue per visitor is the revenue of
//! exposed visitors over their number (visitors who bought nothing count as 0), in
//! each currency apart; average order value is revenue over orders.

use serde::Serialize;

use crate::decide::experiment::{BASELINE, COMPARISON, Experiment, HOLDOUT, Status};
use crate::decide::ruleset::Ruleset;
use crate::domain::stats::{self, Lift, Moments, Rate};
use crate::domain::{Currency, Money};
use crate::store::{CatalogStore, Count, Counts, StoreError};

/// Results are flagged for a sample-ratio mismatch under this p-value.
pub const SRM_ALPHA: f64 = 0.001;
const CONFIDENCE: f64 = 0.95;

/// One experiment, as the list shows it.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub id: String,
    pub status: &'static str,
    pub placements: Vec<&'static str>,
    pub hash_attribute: &'static str,
    pub bucket_version: u32,
    pub coverage: f64,
    /// (variant, weight, shadow)
    pub variants: Vec<VariantSummary>,
}

#[derive(Debug, Serialize)]
pub struct VariantSummary {
    pub id: String,
    pub weight: f64,
    pub shadow: bool,
}

/// An average amount of money, rounded to the minor unit.
#[derive(Debug, Serialize, PartialEq)]
pub struct Average {
    pub amount: i64,
    pub currency: Currency,
}

#[derive(Debug, Serialize)]
pub struct Rates {
    pub click_through: Option<f64>,
    pub add_to_cart: Option<f64>,
    pub conversion: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ShadowHits {
    /// Clicks and orders of products on answers that had a shadow answer.
    pub checked: i64,
    pub in_served: i64,
    pub in_shadow: i64,
    pub served_hit_rate: Option<f64>,
    pub shadow_hit_rate: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ArmResult {
    pub variant: String,
    pub shadow: bool,
    pub exposed: i64,
    pub impressions: i64,
    pub clicks: i64,
    pub add_to_carts: i64,
    pub orders: i64,
    pub visitors_clicked: i64,
    pub visitors_added: i64,
    pub visitors_ordered: i64,
    /// Per currency.
    pub revenue: Vec<Money>,
    pub rates: Rates,
    pub revenue_per_visitor: Vec<Average>,
    pub average_order_value: Vec<Average>,
    /// For a served arm whose experiment has a shadow variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_hits: Option<ShadowHits>,
}

/// A metric's lift (`None` when control's figure is 0 or there is no variance).
#[derive(Debug, Serialize)]
pub struct MetricLift {
    pub metric: String,
    pub control: Option<f64>,
    pub variant: Option<f64>,
    pub lift: Option<Lift>,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub variant: String,
    pub control: String,
    pub metrics: Vec<MetricLift>,
}

#[derive(Debug, Serialize)]
pub struct SampleRatio {
    /// Exposed visitors per served arm, and the share each was meant to get.
    pub observed: Vec<i64>,
    pub expected: Vec<f64>,
    pub p_value: Option<f64>,
    /// p < [`SRM_ALPHA`]: the split is not what was set; the results are not to be
    /// trusted until the cause is found.
    pub mismatch: bool,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub experiment: String,
    pub status: &'static str,
    pub control: String,
    pub confidence: f64,
    pub arms: Vec<ArmResult>,
    pub comparisons: Vec<Comparison>,
    pub sample_ratio: SampleRatio,
}

const fn status(s: Status) -> &'static str {
    match s {
        Status::Draft => "draft",
        Status::Running => "running",
        Status::Stopped => "stopped",
    }
}

/// The ruleset's experiments (and the holdout, when there is one).
pub fn list(rules: &Ruleset) -> Vec<Summary> {
    let mut out: Vec<Summary> = rules
        .experiments
        .iter()
        .map(|e| Summary {
            id: e.id.clone(),
            status: status(e.status),
            placements: e.placements.iter().map(|p| p.as_str()).collect(),
            hash_attribute: match e.hash_attribute {
                crate::decide::experiment::HashAttribute::SessionId => "session_id",
                crate::decide::experiment::HashAttribute::CustomerId => "customer_id",
            },
            bucket_version: e.bucket_version,
            coverage: e.coverage,
            variants: e
                .variants
                .iter()
                .map(|v| VariantSummary {
                    id: v.id.clone(),
                    weight: v.weight,
                    shadow: v.shadow,
                })
                .collect(),
        })
        .collect();
    if let Some(h) = &rules.holdout {
        out.push(Summary {
            id: HOLDOUT.to_owned(),
            status: "running",
            placements: Vec::new(),
            hash_attribute: "session_id",
            bucket_version: 0,
            coverage: 2.0 * h.coverage,
            variants: [BASELINE, COMPARISON]
                .map(|id| VariantSummary {
                    id: id.to_owned(),
                    weight: 0.5,
                    shadow: false,
                })
                .into(),
        });
    }
    out
}

/// An arm as its experiment defines it.
#[derive(Clone, Debug)]
pub struct ArmDef {
    pub variant: String,
    pub weight: f64,
    pub shadow: bool,
}

impl ArmDef {
    fn new(variant: &str, weight: f64, shadow: bool) -> Self {
        Self {
            variant: variant.to_owned(),
            weight,
            shadow,
        }
    }
}

/// The arms an experiment reports, in order, and its status.
fn arms_of(rules: &Ruleset, id: &str) -> Option<(Vec<ArmDef>, &'static str)> {
    if id == HOLDOUT {
        rules.holdout.as_ref()?;
        let arms = vec![
            ArmDef::new(BASELINE, 0.5, false),
            ArmDef::new(COMPARISON, 0.5, false),
        ];
        return Some((arms, "running"));
    }
    let e: &Experiment = rules.experiments.iter().find(|e| e.id == id)?;
    let arms = e
        .variants
        .iter()
        .map(|v| ArmDef::new(&v.id, v.weight, v.shadow))
        .collect();
    Some((arms, status(e.status)))
}

/// An experiment's results; `None` when the live ruleset does not define it.
pub async fn results(
    store: &dyn CatalogStore,
    rules: &Ruleset,
    id: &str,
) -> Result<Option<Results>, StoreError> {
    let Some((arms, status)) = arms_of(rules, id) else {
        return Ok(None);
    };
    let tallies = store.tallies(id).await?;
    Ok(Some(compute(id, status, &arms, &tallies)))
}

fn ratio(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

fn rate(successes: i64, trials: i64) -> Rate {
    Rate {
        successes: successes.max(0).unsigned_abs(),
        trials: trials.max(0).unsigned_abs(),
    }
}

fn average(total: i64, n: i64, currency: Currency) -> Option<Average> {
    (n > 0).then(|| Average {
        amount: (total as f64 / n as f64).round() as i64,
        currency,
    })
}

/// Results from the arms' counts (what [`results`] reads; separate so it can be
/// checked against a reference computation).
pub fn compute(
    id: &str,
    status: &'static str,
    arms: &[ArmDef],
    tallies: &[(String, Counts)],
) -> Results {
    let empty = Counts::default();
    let counts_of = |v: &str| {
        tallies
            .iter()
            .find(|(t, _)| t == v)
            .map_or(&empty, |(_, c)| c)
    };
    let has_shadow = arms.iter().any(|a| a.shadow);
    let out_arms: Vec<ArmResult> = arms
        .iter()
        .map(|a| arm_result(a, counts_of(&a.variant), has_shadow))
        .collect();
    let served: Vec<&ArmDef> = arms.iter().filter(|a| !a.shadow).collect();
    let control = served
        .first()
        .map_or_else(String::new, |a| a.variant.clone());
    let c = counts_of(&control);
    let comparisons = served
        .iter()
        .skip(1)
        .map(|a| compare(&control, c, &a.variant, counts_of(&a.variant)))
        .collect();
    let observed: Vec<i64> = served
        .iter()
        .map(|a| counts_of(&a.variant).get(Count::Exposed))
        .collect();
    let expected: Vec<f64> = served.iter().map(|a| a.weight).collect();
    let p_value = stats::srm_p_value(
        &observed
            .iter()
            .map(|n| n.max(&0).unsigned_abs())
            .collect::<Vec<_>>(),
        &expected,
    );
    Results {
        experiment: id.to_owned(),
        status,
        control,
        confidence: CONFIDENCE,
        arms: out_arms,
        comparisons,
        sample_ratio: SampleRatio {
            observed,
            expected,
            p_value,
            mismatch: p_value.is_some_and(|p| p < SRM_ALPHA),
        },
    }
}

/// One arm's counts and rates.
fn arm_result(def: &ArmDef, c: &Counts, has_shadow: bool) -> ArmResult {
    let exposed = c.get(Count::Exposed);
    let orders = c.get(Count::Orders);
    ArmResult {
        variant: def.variant.clone(),
        shadow: def.shadow,
        exposed,
        impressions: c.get(Count::Impressions),
        clicks: c.get(Count::Clicks),
        add_to_carts: c.get(Count::AddToCarts),
        orders,
        visitors_clicked: c.get(Count::Clickers),
        visitors_added: c.get(Count::Adders),
        visitors_ordered: c.get(Count::Converters),
        revenue: c
            .revenue
            .iter()
            .map(|r| Money::new(r.total, r.currency))
            .collect(),
        rates: Rates {
            click_through: ratio(c.get(Count::Clicks), c.get(Count::Impressions)),
            add_to_cart: ratio(c.get(Count::Adders), exposed),
            conversion: ratio(c.get(Count::Converters), exposed),
        },
        revenue_per_visitor: c
            .revenue
            .iter()
            .filter_map(|r| average(r.total, exposed, r.currency))
            .collect(),
        average_order_value: c
            .revenue
            .iter()
            .filter_map(|r| average(r.total, orders, r.currency))
            .collect(),
        shadow_hits: (has_shadow && !def.shadow).then(|| {
            let checked = c.get(Count::ShadowChecked);
            ShadowHits {
                checked,
                in_served: c.get(Count::InServed),
                in_shadow: c.get(Count::InShadow),
                served_hit_rate: ratio(c.get(Count::InServed), checked),
                shadow_hit_rate: ratio(c.get(Count::InShadow), checked),
            }
        }),
    }
}

fn compare(control: &str, c: &Counts, variant: &str, v: &Counts) -> Comparison {
    let rates = [
        ("click_through", Count::Clicks, Count::Impressions),
        ("add_to_cart", Count::Adders, Count::Exposed),
        ("conversion", Count::Converters, Count::Exposed),
    ];
    let mut metrics: Vec<MetricLift> = rates
        .iter()
        .map(|(name, s, t)| MetricLift {
            metric: (*name).to_owned(),
            control: ratio(c.get(*s), c.get(*t)),
            variant: ratio(v.get(*s), v.get(*t)),
            lift: stats::rate_lift(
                rate(c.get(*s), c.get(*t)),
                rate(v.get(*s), v.get(*t)),
                CONFIDENCE,
            ),
        })
        .collect();
    // Revenue per visitor, in each currency control has.
    for r in &c.revenue {
        let moments = |counts: &Counts| {
            let (sum, sum_sq) = counts
                .revenue
                .iter()
                .find(|x| x.currency == r.currency)
                .map_or((0.0, 0.0), |x| (x.total as f64, x.squares));
            Moments {
                n: counts.get(Count::Exposed).max(0).unsigned_abs(),
                sum,
                sum_sq,
            }
        };
        let (mc, mv) = (moments(c), moments(v));
        metrics.push(MetricLift {
            metric: format!("revenue_per_visitor.{}", r.currency),
            control: mc.mean(),
            variant: mv.mean(),
            lift: stats::mean_lift(mc, mv, CONFIDENCE),
        });
    }
    Comparison {
        variant: variant.to_owned(),
        control: control.to_owned(),
        metrics,
    }
}
