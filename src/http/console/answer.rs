//! One answer as console pages show it, read from the JSON body the storefront would
//! get: recommendations with reasons and prices (and the price list each came from),
//! offers, banners, collections, module order, merchandising effects and arms.

use serde_json::Value;

use crate::domain::Money;

pub(super) struct ItemView {
    pub(super) id: String,
    pub(super) title: String,
    pub(super) image_url: String,
    pub(super) price: String,
    pub(super) compare_at: String,
    pub(super) price_list: String,
    pub(super) reason: String,
    pub(super) score: String,
}

pub(super) struct OfferView {
    pub(super) title: String,
    pub(super) description: String,
    pub(super) status: String,
    pub(super) value: String,
    pub(super) code: String,
}

pub(super) struct BannerView {
    pub(super) title: String,
    pub(super) image_url: String,
}

/// One answer as the page shows it, read from the JSON the storefront would get.
pub(super) struct AnswerView {
    pub(super) ruleset_version: String,
    pub(super) model_version: String,
    pub(super) items: Vec<ItemView>,
    pub(super) offers: Vec<OfferView>,
    pub(super) banners: Vec<BannerView>,
    pub(super) effects: Vec<String>,
    pub(super) experiments: Vec<String>,
    pub(super) collections: Vec<String>,
    pub(super) modules: String,
    pub(super) json: String,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn money(v: &Value) -> String {
    serde_json::from_value::<Money>(v.clone()).map_or_else(|_| String::new(), |m| m.to_string())
}

fn rows(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

impl AnswerView {
    pub(super) fn of(body: &Value, lists: &[Option<String>]) -> Self {
        Self {
            ruleset_version: text(&body["ruleset_version"]),
            model_version: text(&body["model_version"]),
            items: rows(&body["recommendations"])
                .iter()
                .enumerate()
                .map(|(i, r)| ItemView {
                    id: text(&r["product_id"]),
                    title: text(&r["title"]),
                    image_url: text(&r["image_url"]),
                    price: money(&r["price"]),
                    compare_at: money(&r["compare_at_price"]),
                    price_list: lists.get(i).cloned().flatten().unwrap_or_default(),
                    reason: text(&r["reason"]),
                    score: r["score"]
                        .as_f64()
                        .map_or_else(String::new, |v| format!("{v:.4}")),
                })
                .collect(),
            offers: rows(&body["offers"])
                .iter()
                .map(|o| OfferView {
                    title: text(&o["title"]),
                    description: text(&o["description"]),
                    status: text(&o["reason"]),
                    // Worth something only once the cart holds what it applies to.
                    value: if o["value"]["amount"].as_i64().unwrap_or(0) > 0 {
                        money(&o["value"])
                    } else {
                        String::new()
                    },
                    code: text(&o["code"]),
                })
                .collect(),
            banners: rows(&body["banners"])
                .iter()
                .map(|b| BannerView {
                    title: text(&b["title"]),
                    image_url: text(&b["image_url"]),
                })
                .collect(),
            effects: rows(&body["merchandising"])
                .iter()
                .map(|e| {
                    let mut s = format!("{} {}", text(&e["rule"]), text(&e["effect"]));
                    if !e["product_id"].is_null() {
                        s.push_str(&format!(" {}", text(&e["product_id"])));
                    }
                    if !e["count"].is_null() {
                        s.push_str(&format!(" ×{}", text(&e["count"])));
                    }
                    s
                })
                .collect(),
            experiments: rows(&body["experiments"])
                .iter()
                .map(|e| format!("{} = {}", text(&e["id"]), text(&e["variant"])))
                .collect(),
            collections: rows(&body["collections"])
                .iter()
                .map(|c| text(&c["title"]))
                .collect(),
            modules: rows(&body["modules"])
                .iter()
                .map(text)
                .collect::<Vec<_>>()
                .join(" → "),
            json: serde_json::to_string_pretty(body).unwrap_or_default(),
        }
    }
}
