//! Attribution: what visitors did after an answer, credited to the experiment arms that
//! answer served, and counted per arm in the store every replica shares.
//!
//! Three things arrive, off every request's path, into one queue a background task
//! works through every [`TICK`]:
//! - **exposures**: an answer served a visitor an arm their profile does not hold yet
//!   ([`Attribution::expose`]);
//! - **events that name a `decision_id`** (impression, click, add-to-cart, purchase):
//!   the decision is read back from the decision log (on any replica: the log is the
//!   store's) and each of its arms is credited;
//! - **platform orders** (webhooks): the customer's decisions within
//!   `experiments.attribution_window_s` before the order are read back, and each
//!   product of the order is credited to the arms of the newest decision that showed it
//!   (last touch per product), with its share of the order's total.
//!
//! A credit is a [`ProfileOp`] on the visitor's profile ([`crate::domain::arms`]):
//! applied once whatever retries, and the profile after it tells whether it was the
//! visitor's first click, add-to-cart or order in the arm, and how their revenue
//! moved, so the shared counts ([`ExperimentTally`]) count visitors once and sum the
//! squares revenue-per-visitor statistics need, with no read before the write.
//!
//! What is queued lives in memory: a crash loses the credits of the last moments (the
//! events themselves are stored, and acknowledged only once they are).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::ExperimentSettings;
use crate::decide::live::LiveRules;
use crate::decide::record::{self, DecisionRecord, Output};
use crate::domain::arms::ArmOutcome;
use crate::domain::profile::{Behaviour, ProfileOp, fingerprint};
use crate::domain::{Catalog, Money};
use crate::recommend::Snapshot;
use crate::store::tally::add_to;
use crate::store::{
    ArmTally, CatalogStore, Count, Counts, KeyHasher, ProfileKey, ProfileStore, StoreError,
};

/// How often the queue is worked through.
pub const TICK: Duration = Duration::from_millis(100);
/// An event may arrive before its decision is written (the decision log writes in
/// batches): it waits this long for it.
const WAIT_FOR_DECISION: Duration = Duration::from_secs(30);
/// Decisions of a customer looked through for an order.
const ORDER_LOOKBACK: usize = 500;
/// A decision made this long after an order's time may still have shown its products
/// (clocks differ).
const CLOCK_SKEW_MS: i64 = 60_000;

/// An event that names the decision it followed.
#[derive(Clone, Debug)]
pub struct Touch {
    /// Whose profile is credited: the event's visitor.
    pub visitor: ProfileKey,
    pub decision: [u8; 16],
    /// The event's op id (keyed): credits are named after it.
    pub event: u64,
    pub behaviour: Behaviour,
    pub product: Option<String>,
    /// The order's keyed hash, for a purchase.
    pub order: Option<u64>,
    /// A purchase line's amount (price times quantity).
    pub amount: Option<Money>,
    pub at: i64,
}

/// A platform order (webhook).
#[derive(Clone, Debug)]
pub struct PlacedOrder {
    pub customer: ProfileKey,
    /// The order's keyed hash.
    pub order: u64,
    /// Unix seconds.
    pub at: i64,
    pub total: Money,
    /// (product, quantity)
    pub lines: Vec<(String, u32)>,
}

impl PlacedOrder {
    /// The order an op records, if it is a whole order.
    pub fn of(customer: ProfileKey, op: &ProfileOp) -> Option<Self> {
        let ProfileOp::Order {
            order,
            at,
            total,
            lines,
            ..
        } = op
        else {
            return None;
        };
        Some(Self {
            customer,
            order: *order,
            at: *at,
            total: *total,
            lines: lines.iter().map(|(p, q, _)| (p.clone(), *q)).collect(),
        })
    }
}

enum Item {
    Touch(Touch, Instant),
    Order(PlacedOrder),
}

/// One op to apply, the arm it is for, and what it adds when it is new.
#[derive(Clone, Debug)]
struct Credit {
    visitor: ProfileKey,
    op: ProfileOp,
    experiment: String,
    variant: String,
    when_new: Counts,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    /// Credits a store failure left unapplied, and counts not yet added.
    credits: Vec<Credit>,
    tallies: Vec<ArmTally>,
}

/// Where order lines' catalog prices are read.
enum Prices {
    /// The serving catalog.
    Live(Arc<ArcSwap<Snapshot>>),
    /// A catalog loaded once (an import).
    Fixed(Arc<Catalog>),
}

/// What a serving replica adds to attribution.
struct Serving {
    rules: Arc<LiveRules>,
    /// Knows who was erased lately: their queued credits are dropped, never written.
    audit: Arc<crate::audit::Recorder>,
}

pub struct Attribution {
    settings: ExperimentSettings,
    profiles: Arc<dyn ProfileStore>,
    store: Arc<dyn CatalogStore>,
    hasher: Arc<KeyHasher>,
    prices: Prices,
    /// `None` for an import: no metrics, no erasures to watch, and an event whose
    /// decision is not in the log is not waited for.
    serving: Option<Serving>,
    queue: Mutex<Queue>,
    /// One pass at a time.
    working: tokio::sync::Mutex<()>,
}

fn uncredited(reason: &'static str) {
    metrics::counter!("vitrine_experiment_uncredited_total", "reason" => reason).increment(1);
}

impl Attribution {
    /// Starts the background pass; it ends with the last reference.
    pub fn start(
        settings: ExperimentSettings,
        profiles: Arc<dyn ProfileStore>,
        store: Arc<dyn CatalogStore>,
        hasher: Arc<KeyHasher>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        rules: Arc<LiveRules>,
        audit: Arc<crate::audit::Recorder>,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            settings,
            profiles,
            store,
            hasher,
            prices: Prices::Live(snapshot),
            serving: Some(Serving { rules, audit }),
            queue: Mutex::default(),
            working: tokio::sync::Mutex::new(()),
        });
        crate::background::every(&this, TICK, |a: Arc<Attribution>| async move {
            a.pass().await;
        });
        this
    }

    /// Attribution for an import on `catalog`: work it through with
    /// [`Attribution::finish`].
    pub fn offline(
        settings: ExperimentSettings,
        profiles: Arc<dyn ProfileStore>,
        store: Arc<dyn CatalogStore>,
        hasher: Arc<KeyHasher>,
        catalog: Arc<Catalog>,
    ) -> Self {
        Self {
            settings,
            profiles,
            store,
            hasher,
            prices: Prices::Fixed(catalog),
            serving: None,
            queue: Mutex::default(),
            working: tokio::sync::Mutex::new(()),
        }
    }

    /// Passes until nothing is queued, or the store stops taking what is (then what is
    /// left is not credited). Returns what was left.
    pub async fn finish(&self) -> usize {
        let mut left = self.queued();
        while left > 0 {
            self.pass().await;
            let now = self.queued();
            if now >= left {
                return now;
            }
            left = now;
        }
        0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, item: Item) {
        let mut q = self.lock();
        if q.items.len() + q.credits.len() >= self.settings.queue {
            drop(q);
            uncredited("queue_full");
            return;
        }
        q.items.push_back(item);
    }

    /// An answer served `visitor` these arms (experiment, bucket version, variant),
    /// which their profile did not hold.
    pub fn expose(&self, visitor: ProfileKey, arms: Vec<(String, u32, String)>, at: i64) {
        let mut q = self.lock();
        if q.items.len() + q.credits.len() + arms.len() > self.settings.queue {
            drop(q);
            uncredited("queue_full");
            return;
        }
        for (experiment, version, variant) in arms {
            let id = self
                .hasher
                .id64(b'x', &format!("{experiment}\n{version}\n{variant}"));
            q.credits.push(Credit {
                visitor,
                op: ProfileOp::Exposed {
                    id,
                    at,
                    experiment: experiment.clone(),
                    version,
                    variant: variant.clone(),
                },
                experiment,
                variant,
                when_new: Counts::default(),
            });
        }
    }

    /// An event that names a decision, new to the store.
    pub fn touched(&self, touch: Touch) {
        if matches!(
            touch.behaviour,
            Behaviour::Impression | Behaviour::Click | Behaviour::AddToCart | Behaviour::Purchase
        ) {
            self.push(Item::Touch(touch, Instant::now()));
        }
    }

    /// A platform order, new to the customer's profile.
    pub fn ordered(&self, order: PlacedOrder) {
        self.push(Item::Order(order));
    }

    /// Credits and counts still queued.
    pub fn queued(&self) -> usize {
        let q = self.lock();
        q.items.len() + q.credits.len()
    }

    /// Works through what is queued: reads the decisions, applies the credits, adds the
    /// counts. What the store could not take stays queued for the next pass.
    pub async fn pass(&self) {
        let _turn = self.working.lock().await;
        let (items, mut credits, retry_tallies) = {
            let mut q = self.lock();
            (
                std::mem::take(&mut q.items),
                std::mem::take(&mut q.credits),
                std::mem::take(&mut q.tallies),
            )
        };
        if items.is_empty() && credits.is_empty() && retry_tallies.is_empty() {
            return;
        }
        let mut later = VecDeque::new();
        for item in items {
            match item {
                Item::Touch(t, since) => match self.store.decision(&t.decision).await {
                    Ok(Some(d)) => match record::decode(&d.bytes) {
                        Ok(r) => credits.extend(self.touch_credits(&t, &r)),
                        Err(_) => uncredited("unreadable_decision"),
                    },
                    Ok(None) if self.serving.is_some() && since.elapsed() < WAIT_FOR_DECISION => {
                        later.push_back(Item::Touch(t, since));
                    }
                    Ok(None) => uncredited("unknown_decision"),
                    Err(_) => later.push_back(Item::Touch(t, since)),
                },
                Item::Order(o) => match self.order_credits(&o).await {
                    Ok(c) => credits.extend(c),
                    Err(_) => later.push_back(Item::Order(o)),
                },
            }
        }
        let (tallies, unapplied) = self.apply(credits).await;
        let mut all = retry_tallies;
        for t in &tallies {
            add_to(&mut all, &t.experiment, &t.variant, &t.counts);
        }
        let failed = match self.store.add_tallies(&all).await {
            Ok(()) => {
                self.observe(&all);
                Vec::new()
            }
            Err(e) => {
                tracing::debug!(error = %e, "experiment counts not added; retried");
                all
            }
        };
        let mut q = self.lock();
        later.extend(q.items.drain(..));
        q.items = later;
        q.credits.extend(unapplied);
        for t in failed {
            add_to(&mut q.tallies, &t.experiment, &t.variant, &t.counts);
        }
    }

    /// Applies credits, one store batch for all profiles; the counts they add, and the
    /// credits of profiles the store did not take.
    async fn apply(&self, credits: Vec<Credit>) -> (Vec<ArmTally>, Vec<Credit>) {
        if credits.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let mut groups: Vec<(ProfileKey, Vec<Credit>)> = Vec::new();
        // Erased since they were queued: nothing of theirs is written again.
        for c in credits.into_iter().filter(|c| {
            self.serving
                .as_ref()
                .is_none_or(|s| !s.audit.erased_lately(&c.visitor))
        }) {
            match groups.iter_mut().find(|(k, _)| *k == c.visitor) {
                Some((_, g)) => g.push(c),
                None => groups.push((c.visitor, vec![c])),
            }
        }
        let batch: Vec<(ProfileKey, Vec<ProfileOp>)> = groups
            .iter()
            .map(|(k, g)| (*k, g.iter().map(|c| c.op.clone()).collect()))
            .collect();
        let results = self.profiles.apply_batch(&batch).await;
        let mut tallies = Vec::new();
        let mut unapplied = Vec::new();
        for ((visitor, group), result) in groups.into_iter().zip(results) {
            // Erased while this batch was being written: what it wrote goes too.
            if let Some(serving) = &self.serving
                && serving.audit.erased_lately(&visitor)
            {
                if let Err(e) =
                    crate::ingest::identity::erase(self.profiles.as_ref(), &visitor).await
                {
                    tracing::warn!(error = %e, "an erased visitor's credits could not be taken back");
                }
                continue;
            }
            match result {
                Ok(applied) => {
                    tally(&group, &applied.fresh, &applied.profile.arms, &mut tallies);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "credits not applied; retried");
                    unapplied.extend(group);
                }
            }
        }
        (tallies, unapplied)
    }

    /// Credits for an event that named a decision: every arm the decision served.
    fn touch_credits(&self, t: &Touch, r: &DecisionRecord) -> Vec<Credit> {
        let outcome = match t.behaviour {
            Behaviour::Impression => ArmOutcome::Impression,
            Behaviour::Click => ArmOutcome::Click,
            Behaviour::AddToCart => ArmOutcome::AddToCart,
            Behaviour::Purchase => ArmOutcome::Order {
                order: fingerprint(t.order.unwrap_or(t.event)),
                amount: t.amount,
                whole: false,
            },
            _ => return Vec::new(),
        };
        let mut when_new = Counts::default();
        match t.behaviour {
            Behaviour::Impression => when_new.add(Count::Impressions, 1),
            Behaviour::Click => when_new.add(Count::Clicks, 1),
            Behaviour::AddToCart => when_new.add(Count::AddToCarts, 1),
            _ => {}
        }
        let hits = matches!(t.behaviour, Behaviour::Click | Behaviour::Purchase);
        r.experiments
            .iter()
            .map(|(experiment, variant)| {
                let mut counts = when_new.clone();
                if hits && let Some(p) = &t.product {
                    shadow_hits(r, experiment, variant, p, &mut counts);
                }
                Credit {
                    visitor: t.visitor,
                    op: ProfileOp::Credit {
                        id: self
                            .hasher
                            .id64(b'a', &format!("{:016x}\n{experiment}", t.event)),
                        at: t.at,
                        experiment: experiment.clone(),
                        variant: variant.clone(),
                        outcome: outcome.clone(),
                    },
                    experiment: experiment.clone(),
                    variant: variant.clone(),
                    when_new: counts,
                }
            })
            .collect()
    }

    /// Credits for a platform order: each product to the arms of the newest decision
    /// within the window that showed it, with its share of the order's total.
    async fn order_credits(&self, o: &PlacedOrder) -> Result<Vec<Credit>, StoreError> {
        let at_ms = o.at.saturating_mul(1000);
        let window_ms =
            i64::try_from(self.settings.attribution_window_s.saturating_mul(1000)).unwrap_or(0);
        let decisions = self
            .store
            .visitor_decisions(&o.customer, at_ms.saturating_sub(window_ms), ORDER_LOOKBACK)
            .await?;
        let records: Vec<DecisionRecord> = decisions
            .iter()
            .filter(|d| d.at_ms <= at_ms.saturating_add(CLOCK_SKEW_MS))
            .filter_map(|d| record::decode(&d.bytes).ok())
            .collect();
        let shares = self.shares(o);
        // (experiment, variant) -> (amount, shadow counts)
        let mut arms: Vec<(String, String, i64, Counts)> = Vec::new();
        for ((product, _), share) in o.lines.iter().zip(shares) {
            // Newest first: the last touch.
            let Some(r) = records.iter().find(|r| shown(&r.output, product)) else {
                continue;
            };
            for (experiment, variant) in &r.experiments {
                let i = match arms
                    .iter()
                    .position(|a| a.0 == *experiment && a.1 == *variant)
                {
                    Some(i) => i,
                    None => {
                        arms.push((experiment.clone(), variant.clone(), 0, Counts::default()));
                        arms.len() - 1
                    }
                };
                arms[i].2 = arms[i].2.saturating_add(share);
                shadow_hits(r, experiment, variant, product, &mut arms[i].3);
            }
        }
        Ok(arms
            .into_iter()
            .map(|(experiment, variant, amount, counts)| Credit {
                visitor: o.customer,
                op: ProfileOp::Credit {
                    id: self
                        .hasher
                        .id64(b'a', &format!("o{:016x}\n{experiment}", o.order)),
                    at: o.at,
                    experiment: experiment.clone(),
                    variant: variant.clone(),
                    outcome: ArmOutcome::Order {
                        order: fingerprint(o.order),
                        amount: Some(Money::new(amount, o.total.currency)),
                        whole: true,
                    },
                },
                experiment,
                variant,
                when_new: counts,
            })
            .collect())
    }

    /// Each line's share of the order's total (minor units, summing to it exactly):
    /// by the catalog price times quantity (a product the catalog does not hold at the
    /// known products' mean price), else by quantity.
    fn shares(&self, o: &PlacedOrder) -> Vec<i64> {
        let snapshot;
        let catalog = match &self.prices {
            Prices::Live(live) => {
                snapshot = live.load();
                &snapshot.catalog
            }
            Prices::Fixed(c) => c.as_ref(),
        };
        let prices: Vec<Option<i64>> = o
            .lines
            .iter()
            .map(|(p, _)| {
                catalog
                    .lookup(p)
                    .map(|i| catalog.product(i).price.amount.max(0))
            })
            .collect();
        let known: Vec<i64> = prices.iter().flatten().copied().collect();
        let mean = if known.is_empty() {
            1
        } else {
            let sum: i128 = known.iter().map(|&p| i128::from(p)).sum();
            i64::try_from(sum / known.len() as i128)
                .unwrap_or(i64::MAX)
                .max(1)
        };
        let mut weights: Vec<i64> = o
            .lines
            .iter()
            .zip(&prices)
            .map(|((_, q), price)| price.unwrap_or(mean).saturating_mul(i64::from(*q)))
            .collect();
        if weights.iter().all(|w| *w == 0) {
            weights = o.lines.iter().map(|(_, q)| i64::from(*q)).collect();
        }
        allocate(o.total.amount, &weights)
    }

    /// Per-experiment metrics, for the experiments running now (a bounded set).
    fn observe(&self, tallies: &[ArmTally]) {
        let Some(serving) = &self.serving else {
            return;
        };
        let rules = serving.rules.load();
        let running = |id: &str| {
            id == crate::decide::experiment::HOLDOUT
                || rules
                    .experiments
                    .iter()
                    .any(|e| e.id == id && e.status == crate::decide::experiment::Status::Running)
        };
        for t in tallies.iter().filter(|t| running(&t.experiment)) {
            for c in Count::ALL {
                let n = t.counts.get(c);
                if n > 0 {
                    metrics::counter!(
                        "vitrine_experiment_counts_total",
                        "experiment" => t.experiment.clone(),
                        "variant" => t.variant.clone(),
                        "count" => c.as_str(),
                    )
                    .increment(n.unsigned_abs());
                }
            }
            for r in &t.counts.revenue {
                if r.total > 0 {
                    metrics::counter!(
                        "vitrine_experiment_revenue_minor_total",
                        "experiment" => t.experiment.clone(),
                        "variant" => t.variant.clone(),
                        "currency" => r.currency.as_str().to_owned(),
                    )
                    .increment(r.total.unsigned_abs());
                }
            }
        }
    }
}

/// `total` split by `weights` as the checkout splits discounts
/// ([`crate::decide::promo::allocate`]: largest remainder, ties to the earlier line), a
/// negative total (a refund) as its opposite's split, negated.
fn allocate(total: i64, weights: &[i64]) -> Vec<i64> {
    let mut parts = crate::decide::promo::allocate(total.saturating_abs(), weights);
    if total < 0 {
        parts.iter_mut().for_each(|p| *p = -*p);
    }
    parts
}

/// Whether an answer showed the product.
fn shown(output: &Output, product: &str) -> bool {
    match output {
        Output::Page(p) => p.items.iter().any(|i| i.product_id == product),
        Output::Cart { .. } => false,
    }
}

/// For a served arm whose experiment had a shadow answer: the product clicked or bought
/// was in the served list, in the shadow's, or neither.
fn shadow_hits(r: &DecisionRecord, experiment: &str, variant: &str, product: &str, c: &mut Counts) {
    let Some(shadow) = &r.shadow else {
        return;
    };
    let shadowed = shadow
        .experiments
        .iter()
        .any(|(e, v)| e == experiment && v != variant);
    if !shadowed {
        return;
    }
    c.add(Count::ShadowChecked, 1);
    c.add(Count::InServed, i64::from(shown(&r.output, product)));
    c.add(Count::InShadow, i64::from(shown(&shadow.output, product)));
}

/// What a profile's credits add to the arms' counts: the new ones' own counts, and
/// each first (exposure, click, add-to-cart, order) the profile after the batch says
/// one of them made; revenue moves each visitor's total from what it was to what it is.
fn tally(
    group: &[Credit],
    fresh: &[bool],
    arms: &[crate::domain::arms::Arm],
    out: &mut Vec<ArmTally>,
) {
    // (experiment, variant) -> revenue added by this batch
    let mut added: Vec<(&str, &str, i64)> = Vec::new();
    for (credit, new) in group.iter().zip(fresh) {
        if !new {
            continue;
        }
        let mut counts = credit.when_new.clone();
        let fp = fingerprint(credit.op.id());
        if let Some(arm) = arms
            .iter()
            .find(|a| a.experiment == credit.experiment && a.variant == credit.variant)
        {
            for (by, count) in [
                (arm.exposed_by, Count::Exposed),
                (arm.clicked_by, Count::Clickers),
                (arm.added_by, Count::Adders),
                (arm.ordered_by, Count::Converters),
            ] {
                if by == fp {
                    counts.add(count, 1);
                }
            }
            if let ProfileOp::Credit {
                outcome: ArmOutcome::Order { order, amount, .. },
                ..
            } = &credit.op
            {
                if arm.orders.iter().any(|o| o.0 == *order && o.1 == fp) {
                    counts.add(Count::Orders, 1);
                }
                if let (Some(a), Some(r)) = (amount, &arm.revenue)
                    && a.currency == r.currency
                {
                    match added
                        .iter_mut()
                        .find(|x| x.0 == credit.experiment && x.1 == credit.variant)
                    {
                        Some(x) => x.2 = x.2.saturating_add(a.amount),
                        None => added.push((&credit.experiment, &credit.variant, a.amount)),
                    }
                }
            }
        }
        add_to(out, &credit.experiment, &credit.variant, &counts);
    }
    for (experiment, variant, by) in added {
        let Some(r) = arms
            .iter()
            .find(|a| a.experiment == experiment && a.variant == variant)
            .and_then(|a| a.revenue)
        else {
            continue;
        };
        let before = r.amount.saturating_sub(by);
        let mut counts = Counts::default();
        // after² - before² = added * (after + before)
        counts.add_revenue(
            r.currency,
            by,
            by as f64 * (r.amount as f64 + before as f64),
        );
        add_to(out, experiment, variant, &counts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_the_total_and_follow_the_weights() {
        assert_eq!(allocate(1000, &[1, 1, 1]), vec![334, 333, 333]);
        assert_eq!(allocate(999, &[2, 1]), vec![666, 333]);
        assert_eq!(allocate(5, &[0, 3]), vec![0, 5]);
        assert_eq!(allocate(-10, &[1, 1, 1]).iter().sum::<i64>(), -10);
        assert_eq!(allocate(7, &[0, 0]), vec![0, 0]);
    }
}
