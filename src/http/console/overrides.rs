//! The console's overrides: block or pin a pair, exclude a product, boost or bury a
//! category or tag in a placement, and take any of them back. Each change edits the live
//! ruleset's `overrides` section and publishes it at once (every replica follows within
//! `rules.sync_ms`), over the version it was made on, with the change logged: who, when,
//! what, the entry before and after. The page lists what is in force and the change log.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::edit::{Edited, edit_live, not_changed};
use super::{Chrome, ProductCell, checked_post, chrome, render, safe_next, signed_in};
use crate::decide::overrides::Target;
use crate::domain::{Catalog, Placement};
use crate::http::state::AppState;

/// Change log entries the page shows.
const LOG_ROWS: usize = 50;

/// A product by id, as the page shows it (an id the catalog does not hold says so).
fn cell(catalog: &Catalog, id: &str) -> ProductCell {
    match catalog.lookup(id) {
        Some(p) => super::product_cell(catalog, p),
        None => ProductCell {
            id: id.to_owned(),
            title: "not in the catalog".into(),
            image_url: String::new(),
            category: String::new(),
            price: String::new(),
        },
    }
}

struct PairRow {
    a: ProductCell,
    b: ProductCell,
    position: usize,
    note: String,
}

struct ExcludedRow {
    product: ProductCell,
    note: String,
}

struct MoveRow {
    bury: bool,
    placement: &'static str,
    kind: &'static str,
    target: String,
    percent: String,
    note: String,
}

struct ChangeRow {
    at: String,
    who: String,
    what: String,
    versions: String,
    before: String,
    after: String,
}

#[derive(Template)]
#[template(path = "console/overrides.html")]
struct OverridesPage {
    chrome: Chrome,
    version: String,
    blocked: Vec<PairRow>,
    pinned: Vec<PairRow>,
    excluded: Vec<ExcludedRow>,
    moves: Vec<MoveRow>,
    changes: Vec<ChangeRow>,
    placements: Vec<&'static str>,
    /// (handle, path)
    categories: Vec<(String, String)>,
    log_error: Option<String>,
}

fn compact(v: &Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        v.to_string()
    }
}

pub(super) async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers, "/console/overrides").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let rules = state.rules.load();
    let snapshot = state.snapshot.load();
    let catalog = &snapshot.catalog;
    let o = &rules.overrides;
    let pair = |p: &crate::decide::overrides::Pair| PairRow {
        a: cell(catalog, &p.a),
        b: cell(catalog, &p.b),
        position: p.position,
        note: p.note.clone().unwrap_or_default(),
    };
    let (changes, log_error) = match state.rules.changes(LOG_ROWS).await {
        Ok(list) => (
            list.into_iter()
                .map(|c| ChangeRow {
                    at: crate::domain::time::format_rfc3339(c.at),
                    who: c.who,
                    what: c.what,
                    versions: format!(
                        "{} → {}",
                        c.from_version.as_deref().unwrap_or("none"),
                        c.to_version
                    ),
                    before: compact(&c.before),
                    after: compact(&c.after),
                })
                .collect(),
            None,
        ),
        Err(e) => (
            Vec::new(),
            Some(format!("The change log is not readable now: {e}")),
        ),
    };
    render(&OverridesPage {
        chrome: chrome(&state, &session, "overrides"),
        version: rules.version.clone(),
        blocked: o.blocked.iter().map(pair).collect(),
        pinned: o.pinned.iter().map(pair).collect(),
        excluded: o
            .excluded
            .iter()
            .map(|e| ExcludedRow {
                product: cell(catalog, &e.product_id),
                note: e.note.clone().unwrap_or_default(),
            })
            .collect(),
        moves: o
            .boosts
            .iter()
            .map(|b| {
                let (kind, target) = match &b.target {
                    Target::Category(c) => ("category", c.clone()),
                    Target::Tag(t) => ("tag", t.clone()),
                };
                MoveRow {
                    bury: b.bps < 0,
                    placement: b.placement.as_str(),
                    kind,
                    target,
                    percent: format!("{}", b.bps.abs() as f64 / 100.0),
                    note: b.note.clone().unwrap_or_default(),
                }
            })
            .collect(),
        changes,
        placements: Placement::ALL.iter().map(|p| p.as_str()).collect(),
        categories: super::category_options(catalog),
        log_error,
    })
}

/// A change as the forms post it; which fields count depends on `op`.
#[derive(Deserialize)]
pub(super) struct ChangeForm {
    csrf: String,
    op: String,
    #[serde(default)]
    a: String,
    #[serde(default)]
    b: String,
    #[serde(default)]
    position: String,
    #[serde(default)]
    product_id: String,
    #[serde(default)]
    placement: String,
    /// `category` or `tag`.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    target: String,
    /// Percent, whole (10 = 10%).
    #[serde(default)]
    percent: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    back: Option<String>,
}

/// One change to the overrides section.
#[derive(Debug, PartialEq)]
enum Op {
    Block {
        a: String,
        b: String,
    },
    Unblock {
        a: String,
        b: String,
    },
    Pin {
        a: String,
        b: String,
        position: u32,
    },
    Unpin {
        a: String,
        b: String,
    },
    Exclude {
        product: String,
    },
    Include {
        product: String,
    },
    Move {
        bury: bool,
        placement: Placement,
        kind: &'static str,
        target: String,
        bps: i64,
    },
    Unmove {
        bury: bool,
        placement: Placement,
        kind: &'static str,
        target: String,
    },
}

impl Op {
    fn parse(f: &ChangeForm) -> Result<Self, String> {
        let id = |v: &str, what: &str| -> Result<String, String> {
            let v = v.trim();
            if v.is_empty() {
                Err(format!("Name the {what} by its id."))
            } else {
                Ok(v.to_owned())
            }
        };
        let pair = || -> Result<(String, String), String> {
            Ok((id(&f.a, "product A")?, id(&f.b, "product B")?))
        };
        let moved = || -> Result<(Placement, &'static str, String), String> {
            let placement = f
                .placement
                .trim()
                .parse::<Placement>()
                .map_err(|()| "Choose a placement.".to_owned())?;
            let kind = match f.kind.trim() {
                "category" => "category",
                "tag" => "tag",
                _ => return Err("Choose a category or a tag.".into()),
            };
            let target = f.target.trim();
            if target.is_empty() {
                return Err(format!("Name the {kind}."));
            }
            Ok((placement, kind, target.to_owned()))
        };
        let op = f.op.trim();
        Ok(match op {
            "block" | "unblock" | "pin" | "unpin" => {
                let (a, b) = pair()?;
                match op {
                    "block" => Op::Block { a, b },
                    "unblock" => Op::Unblock { a, b },
                    "pin" => Op::Pin {
                        a,
                        b,
                        position: match f.position.trim() {
                            "" => 1,
                            p => p
                                .parse()
                                .ok()
                                .filter(|n| (1..=100).contains(n))
                                .ok_or("A position is a whole number from 1 to 100.")?,
                        },
                    },
                    _ => Op::Unpin { a, b },
                }
            }
            "exclude" => Op::Exclude {
                product: id(&f.product_id, "product")?,
            },
            "include" => Op::Include {
                product: id(&f.product_id, "product")?,
            },
            "boost" | "bury" => {
                let (placement, kind, target) = moved()?;
                let bury = op == "bury";
                let most = if bury { 100 } else { 1_000 };
                let percent: i64 = f
                    .percent
                    .trim()
                    .parse()
                    .ok()
                    .filter(|p| (1..=most).contains(p))
                    .ok_or_else(|| format!("By how much: a whole percent from 1 to {most}."))?;
                Op::Move {
                    bury,
                    placement,
                    kind,
                    target,
                    bps: percent * 100,
                }
            }
            "unboost" | "unbury" => {
                let (placement, kind, target) = moved()?;
                Op::Unmove {
                    bury: op == "unbury",
                    placement,
                    kind,
                    target,
                }
            }
            _ => return Err("Not a change the console makes.".into()),
        })
    }

    /// Products an added entry names must be in the catalog (a typo is caught here;
    /// taking one back never needs it).
    fn named(&self) -> Vec<&str> {
        match self {
            Op::Block { a, b } | Op::Pin { a, b, .. } => vec![a, b],
            Op::Exclude { product } => vec![product],
            _ => Vec::new(),
        }
    }
}

fn section<'d>(doc: &'d mut Value, name: &str) -> Result<&'d mut Vec<Value>, String> {
    let root = doc
        .as_object_mut()
        .ok_or("The live ruleset is not a JSON object.")?;
    let overrides = root
        .entry("overrides")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("The live ruleset's overrides are not an object.")?;
    overrides
        .entry(name)
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| format!("The live ruleset's overrides.{name} is not a list."))
}

/// Drops empty lists and an empty section: taking back the last override gives the
/// document (and version) there was before it.
fn tidy(doc: &mut Value) {
    let Some(root) = doc.as_object_mut() else {
        return;
    };
    if let Some(o) = root.get_mut("overrides").and_then(Value::as_object_mut) {
        o.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
        if o.is_empty() {
            root.remove("overrides");
        }
    }
}

fn pairs_of(blocking: bool) -> &'static str {
    if blocking {
        "blocked_pairs"
    } else {
        "pinned_pairs"
    }
}

fn str_at<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Applies `op` to a ruleset document: what was done, as people read it, and the entry
/// before and after.
fn apply(doc: &mut Value, op: &Op, note: &str) -> Result<Edited, String> {
    let with_note = |mut entry: Value| {
        if !note.trim().is_empty() {
            entry["note"] = json!(note.trim());
        }
        entry
    };
    let same_pair = |v: &Value, a: &str, b: &str, either: bool| {
        let (x, y) = (str_at(v, "a"), str_at(v, "b"));
        (x == a && y == b) || (either && x == b && y == a)
    };
    let out = match op {
        Op::Block { a, b } | Op::Pin { a, b, .. } => {
            let blocking = matches!(op, Op::Block { .. });
            let list = section(doc, pairs_of(blocking))?;
            if list.iter().any(|v| same_pair(v, a, b, blocking)) {
                return Err(if blocking {
                    format!("{a} and {b} are blocked already.")
                } else {
                    format!("{b} is pinned with {a} already.")
                });
            }
            let entry = match op {
                Op::Pin { position, .. } => {
                    with_note(json!({"a": a, "b": b, "position": position}))
                }
                _ => with_note(json!({"a": a, "b": b})),
            };
            list.push(entry.clone());
            let what = if blocking {
                format!("blocked {a} with {b}")
            } else {
                format!("pinned {b} with {a}")
            };
            (what, Value::Null, entry)
        }
        Op::Unblock { a, b } | Op::Unpin { a, b } => {
            let blocking = matches!(op, Op::Unblock { .. });
            let list = section(doc, pairs_of(blocking))?;
            let i = list
                .iter()
                .position(|v| same_pair(v, a, b, blocking))
                .ok_or_else(|| format!("No such override of {a} and {b}."))?;
            let entry = list.remove(i);
            let what = if blocking {
                format!("unblocked {a} with {b}")
            } else {
                format!("unpinned {b} from {a}")
            };
            (what, entry, Value::Null)
        }
        Op::Exclude { product } => {
            let list = section(doc, "excluded_products")?;
            if list.iter().any(|v| str_at(v, "product_id") == product) {
                return Err(format!("{product} is excluded already."));
            }
            let entry = with_note(json!({"product_id": product}));
            list.push(entry.clone());
            (format!("excluded {product}"), Value::Null, entry)
        }
        Op::Include { product } => {
            let list = section(doc, "excluded_products")?;
            let i = list
                .iter()
                .position(|v| str_at(v, "product_id") == product)
                .ok_or_else(|| format!("{product} is not excluded."))?;
            let entry = list.remove(i);
            (format!("recommended {product} again"), entry, Value::Null)
        }
        Op::Move {
            bury,
            placement,
            kind,
            target,
            bps,
        } => {
            let list = section(doc, if *bury { "buries" } else { "boosts" })?;
            let matches = |v: &Value| {
                str_at(v, "placement") == placement.as_str() && str_at(v, kind) == target
            };
            let entry = with_note(json!({"placement": placement, *kind: target, "by_bps": bps}));
            let before = match list.iter().position(matches) {
                Some(i) => std::mem::replace(&mut list[i], entry.clone()),
                None => {
                    list.push(entry.clone());
                    Value::Null
                }
            };
            let verb = if *bury { "buried" } else { "boosted" };
            (
                format!("{verb} {kind} {target} on {placement} by {}%", bps / 100),
                before,
                entry,
            )
        }
        Op::Unmove {
            bury,
            placement,
            kind,
            target,
        } => {
            let list = section(doc, if *bury { "buries" } else { "boosts" })?;
            let i = list
                .iter()
                .position(|v| {
                    str_at(v, "placement") == placement.as_str() && str_at(v, kind) == target
                })
                .ok_or_else(|| {
                    format!(
                        "No such {} of {kind} {target}.",
                        if *bury { "bury" } else { "boost" }
                    )
                })?;
            let entry = list.remove(i);
            let verb = if *bury { "unburied" } else { "unboosted" };
            (
                format!("{verb} {kind} {target} on {placement}"),
                entry,
                Value::Null,
            )
        }
    };
    tidy(doc);
    let (what, before, after) = out;
    Ok(Edited {
        what,
        before,
        after,
    })
}

pub(super) async fn change(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ChangeForm>,
) -> Response {
    let session = match checked_post(&state, &headers, &form.csrf, "/console/overrides").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let op = match Op::parse(&form) {
        Ok(op) => op,
        Err(why) => return not_changed(StatusCode::UNPROCESSABLE_ENTITY, why),
    };
    {
        let snapshot = state.snapshot.load();
        if let Some(missing) = op
            .named()
            .into_iter()
            .find(|id| snapshot.catalog.lookup(id).is_none())
        {
            return not_changed(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("there is no product {missing:?} in the catalog."),
            );
        }
    }
    let note = form.note.clone();
    match edit_live(&state, &session.label, |doc| apply(doc, &op, &note)).await {
        Ok(_) => Redirect::to(safe_next(
            form.back.as_deref().or(Some("/console/overrides")),
        ))
        .into_response(),
        Err(refused) => refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(op: &str, fields: &[(&str, &str)]) -> ChangeForm {
        let mut v = json!({"csrf": "t", "op": op});
        for (k, x) in fields {
            v[*k] = json!(x);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn changes_edit_the_section_and_taking_the_last_back_restores_the_document() {
        let original = json!({"promotions": []});
        let mut doc = original.clone();
        let block = Op::parse(&form("block", &[("a", "p1"), ("b", "p2")])).unwrap();
        let Edited {
            what,
            before,
            after,
        } = apply(&mut doc, &block, "odd").unwrap();
        assert_eq!(what, "blocked p1 with p2");
        assert_eq!(before, Value::Null);
        assert_eq!(after, json!({"a": "p1", "b": "p2", "note": "odd"}));
        assert_eq!(doc["overrides"]["blocked_pairs"][0], after);
        // Either way round is the same block.
        let again = Op::parse(&form("block", &[("a", "p2"), ("b", "p1")])).unwrap();
        assert!(apply(&mut doc.clone(), &again, "").is_err());
        let boost = Op::parse(&form(
            "boost",
            &[
                ("placement", "home"),
                ("kind", "tag"),
                ("target", "sale"),
                ("percent", "20"),
            ],
        ))
        .unwrap();
        apply(&mut doc, &boost, "").unwrap();
        // Boosting the same target again replaces the entry.
        let more = Op::parse(&form(
            "boost",
            &[
                ("placement", "home"),
                ("kind", "tag"),
                ("target", "sale"),
                ("percent", "50"),
            ],
        ))
        .unwrap();
        let Edited { before, after, .. } = apply(&mut doc, &more, "").unwrap();
        assert_eq!(before["by_bps"], 2000);
        assert_eq!(after["by_bps"], 5000);
        assert_eq!(doc["overrides"]["boosts"].as_array().unwrap().len(), 1);
        let unblock = Op::parse(&form("unblock", &[("a", "p2"), ("b", "p1")])).unwrap();
        apply(&mut doc, &unblock, "").unwrap();
        let unboost = Op::parse(&form(
            "unboost",
            &[("placement", "home"), ("kind", "tag"), ("target", "sale")],
        ))
        .unwrap();
        apply(&mut doc, &unboost, "").unwrap();
        assert_eq!(doc, original);
    }

    #[test]
    fn a_form_that_does_not_say_enough_is_refused() {
        assert!(Op::parse(&form("block", &[("a", "p1")])).is_err());
        assert!(Op::parse(&form("pin", &[("a", "p1"), ("b", "p2"), ("position", "0")])).is_err());
        assert!(
            Op::parse(&form(
                "bury",
                &[
                    ("placement", "home"),
                    ("kind", "tag"),
                    ("target", "x"),
                    ("percent", "101")
                ]
            ))
            .is_err()
        );
        assert!(
            Op::parse(&form(
                "boost",
                &[
                    ("placement", "moon"),
                    ("kind", "tag"),
                    ("target", "x"),
                    ("percent", "5")
                ]
            ))
            .is_err()
        );
        assert!(Op::parse(&form("delete-everything", &[])).is_err());
        assert_eq!(
            Op::parse(&form("pin", &[("a", " p1 "), ("b", "p2")])).unwrap(),
            Op::Pin {
                a: "p1".into(),
                b: "p2".into(),
                position: 1
            }
        );
    }
}
