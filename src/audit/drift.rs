//! Drift: how far the requests answered now have moved from those the serving model
//! version was trained on, feature by feature (population stability index).
//!
//! Each answer adds its features ([`crate::recommend::features`]) to the current slot
//! of a rolling window (`drift.window_s`, in twelve slots). The reference of a feature
//! the training data shows is the training interactions' distribution, kept with the
//! models; of a feature only answers have (placement, cold visitors, degraded answers,
//! the top score), the first `drift.min_samples` answers the version served. A feature
//! whose PSI stays past `drift.retrain_threshold` for `drift.for_s` is drifting; with
//! `drift.auto_retrain`, the caller retrains once per model version.

use std::collections::VecDeque;
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::config::DriftSettings;
use crate::recommend::Models;
use crate::recommend::features::{self, FEATURES};

/// Slots a window is kept in.
const SLOTS: i64 = 12;

type Hist = FxHashMap<Box<str>, f64>;

fn add(h: &mut Hist, bucket: &str) {
    match h.get_mut(bucket) {
        Some(n) => *n += 1.0,
        None => {
            h.insert(bucket.into(), 1.0);
        }
    }
}

/// One answer's features, bucketed.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    pub placement: &'a str,
    pub device: &'a str,
    pub country: &'a str,
    pub history_length: &'a str,
    /// The department of the product in view, or of the visitor's latest view.
    pub category: Option<&'a str>,
    pub cold: &'a str,
    pub degraded: &'a str,
    pub top_score: &'a str,
}

impl Observation<'_> {
    fn buckets(&self) -> [Option<&str>; 8] {
        [
            Some(self.placement),
            Some(self.device),
            Some(self.country),
            Some(self.history_length),
            self.category,
            Some(self.cold),
            Some(self.degraded),
            Some(self.top_score),
        ]
    }
}

struct Slot {
    start: i64,
    hists: Vec<Hist>,
    answers: u64,
}

struct State {
    version: String,
    /// The reference distribution of each feature, and whether it is the training's.
    reference: Vec<(Hist, bool)>,
    /// Answers counted into the serving references so far.
    warming: u64,
    slots: VecDeque<Slot>,
    /// Since when each feature has been past the threshold (Unix seconds).
    since: Vec<Option<i64>>,
    /// The model version a retrain was started for (one per version).
    retrained_for: Option<String>,
    last_retrain: Option<Retrain>,
}

/// A retrain drift started.
#[derive(Clone, Debug, Serialize)]
pub struct Retrain {
    /// The version that drifted.
    pub from_version: String,
    /// Unix seconds.
    pub at: i64,
    /// The drift that started it.
    pub features: Vec<FeatureDrift>,
}

pub struct Drift {
    settings: DriftSettings,
    state: Mutex<State>,
}

/// One feature's drift.
#[derive(Clone, Debug, Serialize)]
pub struct FeatureDrift {
    pub feature: &'static str,
    /// `None` until both the reference and the window have answers.
    pub psi: Option<f64>,
    pub drifting: bool,
    /// Past the threshold since (Unix seconds).
    pub since: Option<i64>,
    /// `training` or `serving` (the version's first answers).
    pub reference: &'static str,
}

/// Drift now.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model_version: String,
    pub window_s: u64,
    /// Answers in the window.
    pub samples: u64,
    pub threshold: f64,
    pub features: Vec<FeatureDrift>,
    pub last_retrain: Option<Retrain>,
    /// A feature has drifted for `for_s`, auto-retrain is on, and this version was
    /// not retrained for yet.
    #[serde(skip)]
    pub retrain: bool,
}

impl Drift {
    pub fn new(settings: DriftSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State {
                version: String::new(),
                reference: Vec::new(),
                warming: 0,
                slots: VecDeque::new(),
                since: vec![None; FEATURES.len()],
                retrained_for: None,
                last_retrain: None,
            }),
        }
    }

    pub fn settings(&self) -> &DriftSettings {
        &self.settings
    }

    fn slot_len(&self) -> i64 {
        (i64::try_from(self.settings.window_s).unwrap_or(i64::MAX) / SLOTS).max(1)
    }

    /// Counts one answer made with `models` at `now` (Unix seconds).
    pub fn observe(&self, models: &Models, o: &Observation<'_>, now: i64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.version != models.version {
            // A new model version: a new reference, a new window.
            st.version.clone_from(&models.version);
            st.reference = (0..FEATURES.len())
                .map(|i| {
                    let trained = models
                        .mix
                        .get(i)
                        .filter(|m| features::trained(i) && !m.is_empty());
                    match trained {
                        Some(m) => (
                            m.iter().map(|(b, n)| (b.as_str().into(), *n)).collect(),
                            true,
                        ),
                        None => (Hist::default(), false),
                    }
                })
                .collect();
            st.warming = 0;
            st.slots.clear();
            st.since = vec![None; FEATURES.len()];
        }
        let buckets = o.buckets();
        if st.warming < self.settings.min_samples {
            st.warming += 1;
            for (i, b) in buckets.iter().enumerate() {
                if let (Some(b), (h, false)) = (b, &mut st.reference[i]) {
                    add(h, b);
                }
            }
        }
        let slot_len = self.slot_len();
        let start = now - now.rem_euclid(slot_len);
        if st.slots.back().is_none_or(|s| s.start != start) {
            st.slots.push_back(Slot {
                start,
                hists: vec![Hist::default(); FEATURES.len()],
                answers: 0,
            });
        }
        let oldest = start - slot_len * (SLOTS - 1);
        while st.slots.front().is_some_and(|s| s.start < oldest) {
            st.slots.pop_front();
        }
        if let Some(slot) = st.slots.back_mut() {
            slot.answers += 1;
            for (i, b) in buckets.iter().enumerate() {
                if let Some(b) = b {
                    add(&mut slot.hists[i], b);
                }
            }
        }
    }

    /// The drift of each feature over the window ending at `now`, and whether a retrain
    /// is due.
    pub fn check(&self, now: i64) -> Report {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let slot_len = self.slot_len();
        let oldest = now - now.rem_euclid(slot_len) - slot_len * (SLOTS - 1);
        let window: Vec<&Slot> = st.slots.iter().filter(|s| s.start >= oldest).collect();
        let samples: u64 = window.iter().map(|s| s.answers).sum();
        let enough = samples >= self.settings.min_samples;
        let mut out = Vec::with_capacity(FEATURES.len());
        let mut since = st.since.clone();
        for (i, name) in FEATURES.iter().enumerate() {
            let (reference, trained) = &st.reference.get(i).cloned().unwrap_or_default();
            let mut live: FxHashMap<&str, f64> = FxHashMap::default();
            for s in &window {
                for (b, n) in &s.hists[i] {
                    *live.entry(b).or_default() += n;
                }
            }
            let r: Vec<(&str, f64)> = reference.iter().map(|(b, n)| (&**b, *n)).collect();
            let l: Vec<(&str, f64)> = live.into_iter().collect();
            let psi = (enough && (*trained || st.warming >= self.settings.min_samples))
                .then(|| features::psi(&r, &l))
                .flatten();
            let past = psi.is_some_and(|p| p > self.settings.retrain_threshold);
            since[i] = if past { since[i].or(Some(now)) } else { None };
            let drifting = since[i]
                .is_some_and(|t| now - t >= i64::try_from(self.settings.for_s).unwrap_or(i64::MAX));
            if let Some(p) = psi {
                metrics::gauge!("vitrine_drift_psi", "feature" => *name).set(p);
            }
            out.push(FeatureDrift {
                feature: name,
                psi,
                drifting,
                since: since[i],
                reference: if *trained { "training" } else { "serving" },
            });
        }
        st.since = since;
        let retrain = self.settings.auto_retrain
            && out.iter().any(|f| f.drifting)
            && st.retrained_for.as_deref() != Some(st.version.as_str());
        Report {
            model_version: st.version.clone(),
            window_s: self.settings.window_s,
            samples,
            threshold: self.settings.retrain_threshold,
            features: out,
            last_retrain: st.last_retrain.clone(),
            retrain,
        }
    }

    /// Notes that a retrain was started for the report's model version (one per
    /// version), and why.
    pub fn retraining(&self, report: &Report, now: i64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.retrained_for = Some(report.model_version.clone());
        st.last_retrain = Some(Retrain {
            from_version: report.model_version.clone(),
            at: now,
            features: report.features.clone(),
        });
    }
}
