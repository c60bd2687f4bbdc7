//! The Shopify App Proxy: `GET /proxy/shopify/recommend` (JSON) and
//! `GET /proxy/shopify/recommend.liquid` (an HTML snippet a theme places as-is).
//!
//! Shopify forwards a storefront request for `/apps/<prefix>/...` here with the shop's
//! query parameters plus `shop`, `path_prefix`, `timestamp`, `logged_in_customer_id`
//! and `signature`: the hex HMAC-SHA256, with the app's client secret
//! (`shopify.webhook_secret`), of every other parameter as `key=value` (a key's values
//! joined by `,`), sorted and concatenated without separators. A request whose signature
//! does not match is 401 `invalid_signature`; one whose `timestamp` is more than five
//! minutes from now is 401 `stale_signature`, so a captured URL cannot be replayed later.
//!
//! A verified request names its customer by `logged_in_customer_id` (empty when nobody
//! is logged in): Shopify vouches for it, as a customer token would. The storefront's
//! own `customer_id` and `customer_token` are refused here. Shopify strips cookies on
//! the way, so an anonymous visitor is named by the theme's `session_id` parameter.
//! Everything else is `/v1/recommend`'s GET parameters, answered by the same code.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::error::{ApiError, ErrorCode};
use super::recommend_api::{self, GetParams};
use super::state::AppState;
use crate::domain::Money;

/// How far a request's `timestamp` may be from now, either way, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// Longest query string taken (Shopify's own parameters and a page's fit well within).
const MAX_QUERY_BYTES: usize = 8 * 1024;

/// The content type Shopify renders as Liquid.
const LIQUID: &str = "application/liquid";

/// Renders the snippet alone, not inside the theme's page layout.
const LAYOUT_NONE: &str = "{% layout none %}\n";

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/proxy/shopify/{*path}", get(proxy))
        .route_layer(axum::middleware::from_fn_with_state(
            state.permits.clone(),
            super::observe::shed,
        ))
}

/// What a proxied request asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Liquid,
}

async fn proxy(
    State(state): State<AppState>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let secret = state.settings.shopify.webhook_secret.expose();
    if secret.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "the Shopify app proxy is off: set shopify.webhook_secret",
        ));
    }
    let format = match path.as_str() {
        "recommend" | "recommend.json" => Format::Json,
        "recommend.liquid" => Format::Liquid,
        _ => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "the app proxy answers recommend and recommend.liquid",
            ));
        }
    };
    let query = query.unwrap_or_default();
    let customer = verified(secret, &query, crate::domain::time::unix_now())?;
    let params: GetParams = serde_urlencoded::from_str(&query).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedQuery,
            format!("malformed query string: {e}"),
        )
    })?;
    let mut raw = params.into_raw()?;
    raw.customer_id = customer;
    // Revalidation (If-None-Match) is the API's; Shopify's proxy does not forward it.
    let answer = recommend_api::answer(&state, &HeaderMap::new(), raw).await?;
    match format {
        Format::Json => Ok(answer),
        Format::Liquid => liquid(answer).await,
    }
}

/// Checks a proxied request's signature and age; its verified customer, if one is
/// logged in.
fn verified(secret: &str, query: &str, now: i64) -> Result<Option<String>, ApiError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::new(
            ErrorCode::MalformedQuery,
            "the query string is over 8 KiB",
        ));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedQuery,
            format!("malformed query string: {e}"),
        )
    })?;
    let unsigned = || ApiError::new(ErrorCode::InvalidSignature, "invalid app proxy signature");
    let mut signatures = pairs.iter().filter(|(k, _)| k == "signature");
    let (Some((_, signature)), None) = (signatures.next(), signatures.next()) else {
        return Err(unsigned());
    };
    let Ok(expected) = hex::decode(signature) else {
        return Err(unsigned());
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()) else {
        return Err(unsigned());
    };
    mac.update(signed_message(&pairs).as_bytes());
    // verify_slice compares in constant time.
    if mac.verify_slice(&expected).is_err() {
        return Err(unsigned());
    }
    let one = |name: &str| {
        let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        match (values.next(), values.next()) {
            (v, None) => Ok(v),
            (_, Some(_)) => Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!("{name} is given more than once"),
            )),
        }
    };
    let at = one("timestamp")?.and_then(|t| t.parse::<i64>().ok());
    if at.is_none_or(|at| now.abs_diff(at) > MAX_SKEW_SECS.unsigned_abs()) {
        return Err(ApiError::new(
            ErrorCode::StaleSignature,
            "the app proxy request's timestamp is missing or more than 5 minutes from now",
        ));
    }
    for name in ["customer_id", "customer_token"] {
        if one(name)?.is_some() {
            return Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "{name} is not taken on the app proxy: Shopify names the customer (logged_in_customer_id)"
                ),
            ));
        }
    }
    Ok(one("logged_in_customer_id")?
        .filter(|c| !c.is_empty())
        .cloned())
}

/// What Shopify signs: every parameter but `signature` as `key=value`, a key's values
/// joined by `,` in the order sent, sorted, concatenated.
fn signed_message(pairs: &[(String, String)]) -> String {
    let mut values: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in pairs.iter().filter(|(k, _)| k != "signature") {
        values.entry(k).or_default().push(v);
    }
    let mut parts: Vec<String> = values
        .into_iter()
        .map(|(k, v)| format!("{k}={}", v.join(",")))
        .collect();
    parts.sort_unstable();
    parts.concat()
}

/// The parts of an answer the snippet shows.
#[derive(Deserialize)]
struct Answer {
    decision_id: String,
    placement: String,
    recommendations: Vec<Item>,
    offers: Vec<Offer>,
    banners: Vec<Banner>,
}

#[derive(Deserialize)]
struct Item {
    product_id: String,
    title: String,
    url: String,
    image_url: String,
    price: Money,
    compare_at_price: Option<Money>,
    reason: String,
}

#[derive(Deserialize)]
struct Offer {
    id: String,
    title: String,
    description: String,
    code: Option<String>,
}

#[derive(Deserialize)]
struct Banner {
    id: String,
    title: String,
    image_url: String,
    link_url: String,
    alt: Option<String>,
}

/// The JSON answer as a snippet, its headers (cache control, ETag) kept.
async fn liquid(answer: Response) -> Result<Response, ApiError> {
    let (mut parts, body) = answer.into_parts();
    if parts.status != StatusCode::OK {
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(&e))?;
    let html = snippet(&answer);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(LIQUID));
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Ok(v) = HeaderValue::from_str(&answer.decision_id) {
        parts.headers.insert("x-vitrine-decision-id", v);
    }
    Ok(Response::from_parts(parts, axum::body::Body::from(html)))
}

/// The snippet: the recommendations as a list of product cards, then the offers and
/// banners, every merchant-written string escaped for HTML and for Liquid. Its one Liquid
/// tag keeps the theme's layout off it, so a theme that fetches it places it as-is.
fn snippet(a: &Answer) -> String {
    let mut out = String::with_capacity(512 + a.recommendations.len() * 400);
    out.push_str(LAYOUT_NONE);
    let _ = write!(
        out,
        "<section class=\"vitrine\" data-decision-id=\"{}\" data-placement=\"{}\">",
        Escaped(&a.decision_id),
        Escaped(&a.placement)
    );
    if !a.recommendations.is_empty() {
        out.push_str("<ul class=\"vitrine-recommendations\">");
        for i in &a.recommendations {
            let _ = write!(
                out,
                "<li class=\"vitrine-item\" data-product-id=\"{}\" data-reason=\"{}\">\
                 <a href=\"{}\"><img src=\"{}\" alt=\"{}\" loading=\"lazy\">\
                 <span class=\"vitrine-title\">{}</span></a>{}",
                Escaped(&i.product_id),
                Escaped(&i.reason),
                Escaped(&i.url),
                Escaped(&i.image_url),
                Escaped(&i.title),
                Escaped(&i.title),
                Price("vitrine-price", i.price),
            );
            if let Some(c) = i.compare_at_price {
                let _ = write!(out, "<s>{}</s>", Price("vitrine-compare-at", c));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    if !a.offers.is_empty() {
        out.push_str("<ul class=\"vitrine-offers\">");
        for o in &a.offers {
            let _ = write!(
                out,
                "<li class=\"vitrine-offer\" data-offer-id=\"{}\"><strong>{}</strong> {}",
                Escaped(&o.id),
                Escaped(&o.title),
                Escaped(&o.description)
            );
            if let Some(code) = &o.code {
                let _ = write!(out, " <code>{}</code>", Escaped(code));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    for b in &a.banners {
        let _ = write!(
            out,
            "<a class=\"vitrine-banner\" data-banner-id=\"{}\" href=\"{}\"><img src=\"{}\" alt=\"{}\"></a>",
            Escaped(&b.id),
            Escaped(&b.link_url),
            Escaped(&b.image_url),
            Escaped(b.alt.as_deref().unwrap_or(&b.title))
        );
    }
    out.push_str("</section>\n");
    out
}

/// A string escaped for HTML text and quoted attributes, and for Liquid: a product
/// title with `{{` in it is shown, never run by Shopify's renderer.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                '{' => f.write_str("&#123;")?,
                '}' => f.write_str("&#125;")?,
                '%' => f.write_str("&#37;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A price as a span: the amount in the currency's own decimals and the currency code,
/// with the exact minor units and currency as data for the theme's own formatting.
struct Price(&'static str, Money);

impl std::fmt::Display for Price {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Price(class, m) = self;
        write!(
            f,
            "<span class=\"{class}\" data-amount=\"{}\" data-currency=\"{}\">{m}</span>",
            m.amount, m.currency
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    /// Shopify's documented example: the parameters of a proxied request and the
    /// message its signature covers.
    #[test]
    fn the_message_is_the_sorted_parameters_without_separators() {
        let q = "extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=1&path_prefix=%2Fapps%2Fawesome_reviews&timestamp=1317327555&signature=4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb";
        assert_eq!(
            signed_message(&pairs(q)),
            "extra=1,2logged_in_customer_id=1path_prefix=/apps/awesome_reviewsshop=shop-name.myshopify.comtimestamp=1317327555"
        );
    }

    /// The documented example's signature, with the documented secret.
    #[test]
    fn the_documented_example_verifies() {
        let q = "extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=1&path_prefix=%2Fapps%2Fawesome_reviews&timestamp=1317327555&signature=4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb";
        assert_eq!(
            verified("hush", q, 1_317_327_555).unwrap(),
            Some("1".to_owned())
        );
        assert_eq!(
            verified("hush", q, 1_317_327_555 + MAX_SKEW_SECS + 1)
                .unwrap_err()
                .code,
            ErrorCode::StaleSignature
        );
        assert_eq!(
            verified("other", q, 1_317_327_555).unwrap_err().code,
            ErrorCode::InvalidSignature
        );
    }

    #[test]
    fn braces_and_markup_are_escaped() {
        assert_eq!(
            Escaped("{{ customer.email }} <b>\"A&B\"</b> {% if %}").to_string(),
            "&#123;&#123; customer.email &#125;&#125; &lt;b&gt;&quot;A&amp;B&quot;&lt;/b&gt; &#123;&#37; if &#37;&#125;"
        );
    }
}
