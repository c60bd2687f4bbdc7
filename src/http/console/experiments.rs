//! The console's experiments: the live ruleset's experiments (and the holdout), each
//! one's per-arm results from the counts every replica shares, with every lift's
//! confidence interval drawn (SVG, rendered here) and the sample-ratio warning; start,
//! stop, and roll out a variant (it gets every visitor: weight 1, the others 0, and a new
//! bucket version so everyone is drawn again), each a published, logged change.

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::edit::{Edited, edit_live, not_changed};
use super::{Chrome, checked_post, chrome, render, signed_in, url_encode};
use crate::audit::experiments::{Results, Summary};
use crate::decide::experiment::HOLDOUT;
use crate::http::state::AppState;

/// The chart's geometry, in SVG units.
const WIDTH: f64 = 720.0;
const LABEL: f64 = 250.0;
const ROW: f64 = 30.0;
const TOP: f64 = 28.0;

struct Row {
    label: String,
    y: f64,
    low: f64,
    high: f64,
    mid: f64,
    text: String,
    /// The interval is above (`up`) or below (`down`) zero, or spans it.
    class: &'static str,
}

struct Tick {
    x: f64,
    text: String,
}

/// The lifts with their confidence intervals, as the chart draws them.
struct Chart {
    height: f64,
    zero: f64,
    rows: Vec<Row>,
    ticks: Vec<Tick>,
}

fn percent(v: f64) -> String {
    format!("{:+.1}%", v * 100.0)
}

impl Chart {
    fn of(results: &Results) -> Self {
        let lifts: Vec<(String, crate::domain::stats::Lift)> = results
            .comparisons
            .iter()
            .flat_map(|c| {
                c.metrics.iter().filter_map(move |m| {
                    m.lift
                        .map(|l| (format!("{} vs {} · {}", c.variant, c.control, m.metric), l))
                })
            })
            .collect();
        // Symmetric around zero, to the widest interval (at least ±5%).
        let span = lifts
            .iter()
            .flat_map(|(_, l)| [l.low.abs(), l.high.abs()])
            .filter(|v| v.is_finite())
            .fold(0.05f64, f64::max);
        let plot = WIDTH - LABEL - 40.0;
        let zero = LABEL + plot / 2.0;
        let x = |v: f64| zero + (v.clamp(-span, span) / span) * (plot / 2.0);
        let rows = lifts
            .into_iter()
            .enumerate()
            .map(|(i, (label, l))| Row {
                label,
                y: TOP + ROW * i as f64 + ROW / 2.0,
                low: x(l.low),
                high: x(l.high),
                mid: x(l.lift),
                text: format!(
                    "{} [{}, {}] p={:.3}",
                    percent(l.lift),
                    percent(l.low),
                    percent(l.high),
                    l.p_value
                ),
                class: if l.low > 0.0 {
                    "up"
                } else if l.high < 0.0 {
                    "down"
                } else {
                    "spans"
                },
            })
            .collect::<Vec<_>>();
        let ticks = [-span, -span / 2.0, 0.0, span / 2.0, span]
            .into_iter()
            .map(|v| Tick {
                x: x(v),
                text: format!("{:+.0}%", v * 100.0),
            })
            .collect();
        Self {
            height: TOP + ROW * rows.len() as f64 + 24.0,
            zero,
            rows,
            ticks,
        }
    }
}

#[derive(Template)]
#[template(path = "console/experiments.html")]
struct ListPage {
    chrome: Chrome,
    ruleset_version: String,
    experiments: Vec<Summary>,
}

pub(super) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers, "/console/experiments").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let rules = state.rules.load();
    render(&ListPage {
        chrome: chrome(&state, &session, "experiments"),
        ruleset_version: rules.version.clone(),
        experiments: crate::audit::experiments::list(&rules),
    })
}

struct ArmRow {
    variant: String,
    shadow: bool,
    exposed: i64,
    impressions: i64,
    clicks: i64,
    orders: i64,
    ctr: String,
    conversion: String,
    revenue_per_visitor: String,
}

#[derive(Template)]
#[template(path = "console/experiment.html")]
struct ResultsPage {
    chrome: Chrome,
    id: String,
    status: String,
    control: String,
    holdout: bool,
    confidence: String,
    arms: Vec<ArmRow>,
    chart: Chart,
    srm: String,
    mismatch: bool,
    /// Served variants, to roll out.
    variants: Vec<String>,
}

fn share(v: Option<f64>) -> String {
    v.map_or_else(|| super::NONE.to_owned(), |v| format!("{:.2}%", v * 100.0))
}

pub(super) async fn results(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/console/experiments/{}", url_encode(&id));
    let session = match signed_in(&state, &headers, &here).await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let rules = state.rules.load();
    let results = match crate::audit::experiments::results(state.catalog.store(), &rules, &id).await
    {
        Ok(Some(r)) => r,
        Ok(None) => {
            return not_changed(
                StatusCode::NOT_FOUND,
                format!("the live ruleset defines no experiment {id:?}."),
            );
        }
        Err(e) => {
            return not_changed(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the experiment counts are unavailable ({e})."),
            );
        }
    };
    let arms = results
        .arms
        .iter()
        .map(|a| ArmRow {
            variant: a.variant.clone(),
            shadow: a.shadow,
            exposed: a.exposed,
            impressions: a.impressions,
            clicks: a.clicks,
            orders: a.orders,
            ctr: share(a.rates.click_through),
            conversion: share(a.rates.conversion),
            revenue_per_visitor: a
                .revenue_per_visitor
                .iter()
                .map(|m| crate::domain::Money::new(m.amount, m.currency).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let srm = &results.sample_ratio;
    render(&ResultsPage {
        chrome: chrome(&state, &session, "experiments"),
        holdout: id == HOLDOUT,
        variants: results
            .arms
            .iter()
            .filter(|a| !a.shadow)
            .map(|a| a.variant.clone())
            .collect(),
        id,
        status: results.status.to_owned(),
        control: results.control.clone(),
        confidence: format!("{:.0}%", results.confidence * 100.0),
        arms,
        chart: Chart::of(&results),
        srm: format!(
            "exposed {:?} against shares {:?}; p = {}",
            srm.observed,
            srm.expected,
            srm.p_value
                .map_or_else(|| super::NONE.to_owned(), |p| format!("{p:.4}"))
        ),
        mismatch: srm.mismatch,
    })
}

#[derive(Deserialize)]
pub(super) struct ActionForm {
    csrf: String,
    /// `start`, `stop` or `rollout`.
    action: String,
    #[serde(default)]
    variant: String,
}

/// Applies an action to the experiment `id` of a ruleset document.
fn act(doc: &mut Value, id: &str, action: &str, variant: &str) -> Result<Edited, String> {
    let experiment = doc
        .get_mut("experiments")
        .and_then(Value::as_array_mut)
        .and_then(|list| list.iter_mut().find(|e| e["id"] == id))
        .ok_or_else(|| format!("the live ruleset defines no experiment {id:?}."))?;
    let before = experiment.clone();
    let what = match action {
        "start" | "stop" => {
            let status = if action == "start" {
                "running"
            } else {
                "stopped"
            };
            if experiment["status"] == status {
                return Err(format!("{id} is {status} already."));
            }
            experiment["status"] = json!(status);
            format!(
                "{}ed experiment {id}",
                if action == "start" { "start" } else { "stopp" }
            )
        }
        "rollout" => {
            let variants = experiment
                .get_mut("variants")
                .and_then(Value::as_array_mut)
                .ok_or("the experiment has no variants.")?;
            if !variants
                .iter()
                .any(|v| v["id"] == variant && v["shadow"] != true)
            {
                return Err(format!("{id} serves no variant {variant:?}."));
            }
            for v in variants.iter_mut().filter(|v| v["shadow"] != true) {
                v["weight"] = json!(if v["id"] == variant { 1 } else { 0 });
            }
            // Kept arms hold until the bucket version moves: everyone is drawn again.
            let version = experiment["bucket_version"].as_u64().unwrap_or(1);
            experiment["bucket_version"] = json!(version + 1);
            experiment["coverage"] = json!(1);
            experiment["status"] = json!("running");
            format!("rolled out {variant} of experiment {id} to every visitor")
        }
        _ => return Err("not an action the console takes.".into()),
    };
    let after = experiment.clone();
    Ok(Edited {
        what,
        before,
        after,
    })
}

pub(super) async fn action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let here = format!("/console/experiments/{}", url_encode(&id));
    let session = match checked_post(&state, &headers, &form.csrf, &here).await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let (action, variant) = (form.action.trim(), form.variant.trim());
    match edit_live(&state, &session.label, |doc| act(doc, &id, action, variant)).await {
        Ok(_) => Redirect::to(&here).into_response(),
        Err(refused) => refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_out_gives_the_variant_everyone_and_draws_them_again() {
        let mut doc = json!({"experiments": [{"id": "e", "status": "running", "bucket_version": 2,
            "coverage": 0.5, "variants": [{"id": "control", "weight": 0.5}, {"id": "b", "weight": 0.5},
            {"id": "s", "shadow": true}]}]});
        let done = act(&mut doc, "e", "rollout", "b").unwrap();
        assert_eq!(done.what, "rolled out b of experiment e to every visitor");
        let e = &doc["experiments"][0];
        assert_eq!(e["variants"][0]["weight"], 0);
        assert_eq!(e["variants"][1]["weight"], 1);
        assert!(
            e["variants"][2].get("weight").is_none(),
            "a shadow keeps no weight"
        );
        assert_eq!(
            (e["bucket_version"].clone(), e["coverage"].clone()),
            (json!(3), json!(1))
        );
        assert_eq!(done.before["bucket_version"], 2);
        assert!(
            act(&mut doc, "e", "rollout", "s").is_err(),
            "a shadow is never served"
        );
        assert!(act(&mut doc, "e", "start", "").is_err(), "running already");
        assert_eq!(
            act(&mut doc, "e", "stop", "").unwrap().what,
            "stopped experiment e"
        );
        assert!(act(&mut doc, "nope", "stop", "").is_err());
    }
}
