//! BigCommerce webhooks. A BigCommerce webhook carries only a scope and an id
//! (`{"scope": "store/order/created", "data": {"type": "order", "id": 250}, ...}`), so
//! the order, cart, customer or product is fetched from the REST API (v2 orders, v3
//! carts, customers and catalog) and mapped to the same [`Action`]s as Shopify's.
//!
//! Calls time out after `bigcommerce.timeout_ms` and are retried on timeouts,
//! connection errors, 429 and 5xx with exponential backoff; when the API still cannot
//! be reached the caller answers 503 and BigCommerce redelivers. A 404 means the
//! resource is gone: nothing to apply. As with Shopify, names, emails and addresses
//! in the API's answers are never deserialized.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::BigCommerceSettings;
use crate::domain::profile::{CartLine, ProfileOp};
use crate::domain::{Currency, Money};
use crate::store::KeyHasher;

use super::catalog::{MoneyInput, ProductInput};
use super::shopify::Action;

use crate::domain::catalog::UNTRACKED_STOCK;

/// Ids are numbers for orders, customers and products, and UUID strings for carts.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum BcId {
    Number(u64),
    Text(String),
}

impl std::fmt::Display for BcId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BcId::Number(n) => write!(f, "{n}"),
            BcId::Text(s) => f.write_str(s),
        }
    }
}

/// The webhook body.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub scope: String,
    pub data: EnvelopeData,
    #[serde(default)]
    pub created_at: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct EnvelopeData {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub id: BcId,
    /// Cart line item scopes name their cart here.
    #[serde(rename = "cartId", default)]
    pub cart_id: Option<String>,
    /// Inventory scopes (`store/sku/inventory/updated`) name the product here.
    #[serde(default)]
    pub inventory: Option<InventoryRef>,
}

#[derive(Debug, Deserialize)]
pub struct InventoryRef {
    pub product_id: Option<u64>,
}

/// What a webhook asks to fetch, from its scope.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetch {
    Order(String),
    Cart(String),
    /// The cart is gone (deleted, or converted to an order): its session's cart empties.
    CartGone(String),
    Customer(String),
    CustomerDeleted(String),
    Product(String),
    ProductDeleted(String),
    Ignore,
}

/// Maps a webhook to what must be fetched; `Err` when the body does not fit its scope.
pub fn plan(envelope: &Envelope) -> Result<Fetch, String> {
    let id = envelope.data.id.to_string();
    if id.is_empty() {
        return Err("data.id is empty".into());
    }
    let numeric = |what: &str| -> Result<String, String> {
        match &envelope.data.id {
            BcId::Number(n) => Ok(n.to_string()),
            BcId::Text(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(t.clone())
            }
            BcId::Text(_) => Err(format!("a {what} id must be a number")),
        }
    };
    // Cart ids are UUIDs; parsed, so nothing else ever reaches an API path.
    let uuid = |raw: &str| -> Result<String, String> {
        uuid::Uuid::parse_str(raw)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| format!("a cart id must be a UUID, not {raw:?}"))
    };
    let scope = envelope.scope.as_str();
    Ok(match scope {
        "store/order/created"
        | "store/order/updated"
        | "store/order/statusUpdated"
        | "store/order/archived" => Fetch::Order(numeric("order")?),
        "store/cart/created" | "store/cart/updated" => Fetch::Cart(uuid(&id)?),
        "store/cart/deleted" | "store/cart/converted" => Fetch::CartGone(uuid(&id)?),
        s if s.starts_with("store/cart/lineItem/") => Fetch::Cart(uuid(
            envelope
                .data
                .cart_id
                .as_deref()
                .ok_or("a cart line item webhook without data.cartId")?,
        )?),
        "store/customer/created" | "store/customer/updated" => {
            Fetch::Customer(numeric("customer")?)
        }
        "store/customer/deleted" => Fetch::CustomerDeleted(numeric("customer")?),
        "store/product/created"
        | "store/product/updated"
        | "store/product/inventory/updated"
        | "store/product/inventory/order/updated" => Fetch::Product(numeric("product")?),
        "store/product/deleted" => Fetch::ProductDeleted(numeric("product")?),
        s if s.starts_with("store/sku/inventory/") => {
            match envelope.data.inventory.as_ref().and_then(|i| i.product_id) {
                Some(p) => Fetch::Product(p.to_string()),
                None => return Err("an inventory webhook without data.inventory.product_id".into()),
            }
        }
        _ => Fetch::Ignore,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Worth redelivering: the API timed out, refused, or answered 429/5xx.
    #[error("BigCommerce API unavailable: {0}")]
    Unavailable(String),
    /// The API answered something that cannot be mapped; redelivery will not help.
    #[error("BigCommerce API answer cannot be read: {0}")]
    Unreadable(String),
}

/// The REST API client.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: crate::config::Secret,
    retries: u32,
    backoff: Duration,
    currency: Currency,
    /// Category id -> handle; categories change rarely and each product needs one.
    categories: moka::future::Cache<u64, String>,
}

impl Client {
    pub fn new(settings: &BigCommerceSettings) -> Result<Self, String> {
        super::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms))
            .user_agent(concat!("vitrine/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            base: format!(
                "{}/stores/{}",
                settings.api_url.trim_end_matches('/'),
                settings.store_hash
            ),
            token: settings.access_token.clone(),
            retries: settings.retries,
            backoff: Duration::from_millis(settings.backoff_ms),
            currency: Currency::parse(&settings.store_currency).map_err(|e| e.to_string())?,
            categories: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
        })
    }

    /// GETs `path` (under `/stores/{hash}`), retrying what is worth retrying.
    /// `Ok(None)` on 404.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, FetchError> {
        let url = format!("{}{path}", self.base);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
            }
            let response = self
                .http
                .get(&url)
                .header("X-Auth-Token", self.token.expose())
                .header("Accept", "application/json")
                .send()
                .await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    last = if e.is_timeout() {
                        "timed out".into()
                    } else {
                        format!("request failed: {e}")
                    };
                    continue;
                }
            };
            let status = response.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                last = format!("answered {status}");
                continue;
            }
            if !status.is_success() {
                // 401/403: the token or its scopes are wrong. Redelivery after the
                // operator fixes it will work, so this is not the webhook's fault.
                return Err(FetchError::Unavailable(format!("{path} answered {status}")));
            }
            let bytes = match response.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last = format!("reading the answer: {e}");
                    continue;
                }
            };
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| FetchError::Unreadable(format!("{path}: {e}")));
        }
        Err(FetchError::Unavailable(format!(
            "{path}: {last} (after {} attempts)",
            self.retries + 1
        )))
    }

    async fn category_handle(&self, id: u64) -> Result<Option<String>, FetchError> {
        if let Some(h) = self.categories.get(&id).await {
            return Ok(Some(h));
        }
        let Some(Wrapped { data: c }) = self
            .get::<Wrapped<Category>>(&format!("/v3/catalog/categories/{id}"))
            .await?
        else {
            return Ok(None);
        };
        let from_url = c
            .custom_url
            .and_then(|u| u.url)
            .map(|u| u.trim_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        let handle = from_url.unwrap_or(c.name);
        self.categories.insert(id, handle.clone()).await;
        Ok(Some(handle))
    }

    /// Fetches what `fetch` names and maps it to an action. `delivery` names the ops of
    /// a delivery that has no natural id (carts, customers), so a redelivery applies once.
    pub async fn resolve(
        &self,
        fetch: Fetch,
        delivery: &str,
        hasher: &KeyHasher,
        now: i64,
    ) -> Result<Action, FetchError> {
        match fetch {
            Fetch::Order(id) => self.order(&id, hasher, now).await,
            Fetch::Cart(id) => {
                let Some(Wrapped { data: cart }) = self
                    .get::<Wrapped<Cart>>(&format!("/v3/carts/{id}"))
                    .await?
                else {
                    return Ok(Action::Ignore);
                };
                let lines = cart
                    .line_items
                    .physical_items
                    .iter()
                    .chain(&cart.line_items.digital_items)
                    .map(|l| CartLine {
                        product_id: l.product_id.to_string(),
                        quantity: l.quantity,
                    })
                    .collect();
                let ops = vec![ProfileOp::SetCart {
                    id: hasher.id64(b'W', delivery),
                    at: now,
                    lines,
                }];
                Ok(match cart.customer_id.filter(|c| *c > 0) {
                    Some(customer) => Action::Customer {
                        email: None,
                        customer_id: customer.to_string(),
                        ops,
                    },
                    None => Action::Session {
                        session_id: cart.id,
                        ops,
                    },
                })
            }
            Fetch::CartGone(id) => Ok(Action::Session {
                session_id: id,
                ops: vec![ProfileOp::SetCart {
                    id: hasher.id64(b'W', delivery),
                    at: now,
                    lines: Vec::new(),
                }],
            }),
            Fetch::Customer(id) => {
                let found = self
                    .get::<Wrapped<Vec<Customer>>>(&format!("/v3/customers?id:in={id}"))
                    .await?;
                let Some(c) = found.and_then(|w| w.data.into_iter().next()) else {
                    return Ok(Action::Ignore);
                };
                let segments = c
                    .customer_group_id
                    .filter(|g| *g > 0)
                    .map(|g| format!("customer_group:{g}"))
                    .into_iter()
                    .collect();
                Ok(Action::Customer {
                    email: None,
                    customer_id: c.id.to_string(),
                    ops: vec![
                        ProfileOp::Attributes {
                            id: hasher.id64(b'A', delivery),
                            at: now,
                            segments: Some(segments),
                            loyalty_tier: None,
                            company_id: None,
                        },
                        ProfileOp::Consent {
                            id: hasher.id64(b'M', delivery),
                            at: now,
                            personalization: None,
                            marketing: c.accepts_product_review_abandoned_cart_emails,
                        },
                    ],
                })
            }
            Fetch::CustomerDeleted(id) => Ok(Action::Erase {
                customer_id: id,
                email: None,
            }),
            Fetch::Product(id) => self.product(&id).await,
            Fetch::ProductDeleted(id) => Ok(Action::RemoveProduct { product_id: id }),
            Fetch::Ignore => Ok(Action::Ignore),
        }
    }

    async fn order(&self, id: &str, hasher: &KeyHasher, now: i64) -> Result<Action, FetchError> {
        let (order_path, lines_path) = (
            format!("/v2/orders/{id}"),
            format!("/v2/orders/{id}/products"),
        );
        let (order, lines) = tokio::join!(
            self.get::<Order>(&order_path),
            self.get::<Vec<OrderProduct>>(&lines_path),
        );
        let Some(order) = order? else {
            return Ok(Action::Ignore);
        };
        let customer = match order.customer_id {
            Some(c) if c > 0 => c.to_string(),
            _ => return Ok(Action::Ignore), // a guest order: no profile to keep
        };
        let currency = Currency::parse(&order.currency_code)
            .map_err(|e| FetchError::Unreadable(format!("order {id}: {e}")))?;
        let total = Money::parse_decimal(&order.total_inc_tax, currency)
            .map_err(|e| FetchError::Unreadable(format!("order {id} total_inc_tax: {e}")))?;
        // One key for the order across platforms' namespaces: `bc:` + its id.
        let key = format!("bc:{id}");
        let op = match order.status_id {
            // Incomplete: checkout not finished; not an order yet.
            0 => return Ok(Action::Ignore),
            // Refunded, cancelled, declined: taken back if it was counted.
            4..=6 => ProfileOp::CancelOrder {
                id: hasher.id64(b'C', &key),
                order: hasher.id64(b'o', &key),
                total,
            },
            _ => ProfileOp::Order {
                id: hasher.id64(b'O', &key),
                order: hasher.id64(b'o', &key),
                at: order
                    .date_created
                    .as_deref()
                    .and_then(crate::domain::time::parse_rfc2822)
                    .unwrap_or(now),
                total,
                lines: lines?
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| (l.product_id.to_string(), l.quantity, None))
                    .collect(),
            },
        };
        Ok(Action::Customer {
            email: None,
            customer_id: customer,
            ops: vec![op],
        })
    }

    async fn product(&self, id: &str) -> Result<Action, FetchError> {
        let Some(Wrapped { data: p }) = self
            .get::<Wrapped<Product>>(&format!(
                "/v3/catalog/products/{id}?include=variants,images"
            ))
            .await?
        else {
            return Ok(Action::RemoveProduct {
                product_id: id.to_owned(),
            });
        };
        let unreadable = |e: String| FetchError::Unreadable(format!("product {id}: {e}"));
        let price = Money::parse_decimal(&p.price.to_string(), self.currency)
            .map_err(|e| unreadable(e.to_string()))?;
        let cost = match p.cost_price.as_ref().map(|c| c.to_string()) {
            Some(c) if c != "0" => Some(
                Money::parse_decimal(&c, self.currency).map_err(|e| unreadable(e.to_string()))?,
            ),
            _ => None,
        };
        let stock = match p.inventory_tracking.as_deref() {
            Some("product") => p.inventory_level.unwrap_or(0),
            Some("variant") => p.variants.iter().filter_map(|v| v.inventory_level).sum(),
            _ => UNTRACKED_STOCK,
        };
        let category = match p.categories.first() {
            Some(c) => self.category_handle(*c).await?,
            None => None,
        };
        let input = ProductInput {
            id: p.id.to_string(),
            title: p.name,
            handle: p
                .custom_url
                .as_ref()
                .and_then(|u| u.url.clone())
                .map(|u| u.trim_matches('/').to_owned()),
            url: p.custom_url.and_then(|u| u.url),
            image_url: p
                .images
                .iter()
                .find(|i| i.is_thumbnail)
                .or(p.images.first())
                .and_then(|i| i.url_standard.clone()),
            category: category.unwrap_or_else(|| "uncategorized".into()),
            tags: Vec::new(),
            price: MoneyInput {
                amount: price.amount,
                currency: price.currency,
            },
            cost: cost.map(|c| MoneyInput {
                amount: c.amount,
                currency: c.currency,
            }),
            inventory: stock.max(0),
        };
        input.validate().map_err(|e| unreadable(e.to_string()))?;
        let archived = !p.is_visible || p.availability.as_deref() == Some("disabled");
        Ok(Action::Product {
            input,
            inventory_items: Vec::new(),
            archived,
        })
    }
}

/// v3 answers wrap the resource in `data`.
#[derive(Debug, Deserialize)]
struct Wrapped<T> {
    data: T,
}

#[derive(Debug, Deserialize)]
struct Order {
    customer_id: Option<u64>,
    date_created: Option<String>,
    status_id: u32,
    total_inc_tax: String,
    currency_code: String,
}

#[derive(Debug, Deserialize)]
struct OrderProduct {
    product_id: u64,
    quantity: u32,
}

#[derive(Debug, Deserialize)]
struct Cart {
    id: String,
    customer_id: Option<u64>,
    #[serde(default)]
    line_items: CartItems,
}

#[derive(Debug, Default, Deserialize)]
struct CartItems {
    #[serde(default)]
    physical_items: Vec<CartItem>,
    #[serde(default)]
    digital_items: Vec<CartItem>,
}

#[derive(Debug, Deserialize)]
struct CartItem {
    product_id: u64,
    quantity: u32,
}

#[derive(Debug, Deserialize)]
struct Customer {
    id: u64,
    customer_group_id: Option<u64>,
    accepts_product_review_abandoned_cart_emails: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Product {
    id: u64,
    name: String,
    /// A JSON number (`49.99`); read through its decimal text, never as a float.
    price: serde_json::Number,
    cost_price: Option<serde_json::Number>,
    #[serde(default)]
    categories: Vec<u64>,
    inventory_level: Option<i64>,
    inventory_tracking: Option<String>,
    #[serde(default = "visible")]
    is_visible: bool,
    availability: Option<String>,
    custom_url: Option<CustomUrl>,
    #[serde(default)]
    variants: Vec<Variant>,
    #[serde(default)]
    images: Vec<Image>,
}

fn visible() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct Variant {
    inventory_level: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Image {
    url_standard: Option<String>,
    #[serde(default)]
    is_thumbnail: bool,
}

#[derive(Debug, Deserialize)]
struct CustomUrl {
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Category {
    name: String,
    custom_url: Option<CustomUrl>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(body: &str) -> Envelope {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn scopes_map_to_what_is_fetched() {
        let cases = [
            (
                r#"{"scope":"store/order/created","data":{"type":"order","id":250}}"#,
                Fetch::Order("250".into()),
            ),
            (
                r#"{"scope":"store/cart/updated","data":{"type":"cart","id":"E6F1D4D2-6B9A-4A1D-9A2E-3C1C6F8B2A10"}}"#,
                Fetch::Cart("e6f1d4d2-6b9a-4a1d-9a2e-3c1c6f8b2a10".into()),
            ),
            (
                r#"{"scope":"store/cart/lineItem/created","data":{"type":"cart_line_item","id":"x","cartId":"e6f1d4d2-6b9a-4a1d-9a2e-3c1c6f8b2a10"}}"#,
                Fetch::Cart("e6f1d4d2-6b9a-4a1d-9a2e-3c1c6f8b2a10".into()),
            ),
            (
                r#"{"scope":"store/cart/converted","data":{"type":"cart","id":"E6F1D4D2-6B9A-4A1D-9A2E-3C1C6F8B2A10"}}"#,
                Fetch::CartGone("e6f1d4d2-6b9a-4a1d-9a2e-3c1c6f8b2a10".into()),
            ),
            (
                r#"{"scope":"store/customer/deleted","data":{"type":"customer","id":"32"}}"#,
                Fetch::CustomerDeleted("32".into()),
            ),
            (
                r#"{"scope":"store/sku/inventory/updated","data":{"type":"sku","id":461,"inventory":{"product_id":167,"method":"absolute","value":5}}}"#,
                Fetch::Product("167".into()),
            ),
            (
                r#"{"scope":"store/shipment/created","data":{"type":"shipment","id":1}}"#,
                Fetch::Ignore,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(plan(&envelope(body)), Ok(want), "{body}");
        }
    }

    #[test]
    fn ids_that_do_not_fit_their_scope_are_refused() {
        for body in [
            r#"{"scope":"store/order/created","data":{"type":"order","id":"abc"}}"#,
            r#"{"scope":"store/cart/lineItem/updated","data":{"type":"cart_line_item","id":"x"}}"#,
            r#"{"scope":"store/sku/inventory/updated","data":{"type":"sku","id":1}}"#,
            r#"{"scope":"store/order/created","data":{"type":"order","id":""}}"#,
            r#"{"scope":"store/cart/updated","data":{"type":"cart","id":"../../v2/customers?limit=250#"}}"#,
        ] {
            assert!(plan(&envelope(body)).is_err(), "{body}");
        }
    }
}
