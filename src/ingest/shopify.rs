//! Shopify webhooks: payloads as Shopify sends them, mapped to what Vitrine keeps.
//!
//! Only what personalization needs is read; names, emails, phone numbers and addresses
//! are never deserialized at all (serde skips fields a struct does not name), so they
//! cannot reach a store or a log. Customer ids are Shopify's numeric ids as strings:
//! storefronts send the same value as `customer_id`. Cart webhooks carry no customer;
//! they update the session profile keyed by the cart token.

use serde::Deserialize;

use crate::domain::profile::{CartLine, ProfileOp};
use crate::domain::{Currency, Money};
use crate::store::KeyHasher;

use super::catalog::{MoneyInput, ProductInput};

/// Shopify sends ids as JSON numbers; some tools send strings. Both are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ShopifyId {
    Number(u64),
    Text(String),
}

impl ShopifyId {
    pub fn as_string(&self) -> String {
        match self {
            ShopifyId::Number(n) => n.to_string(),
            ShopifyId::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Order {
    pub id: ShopifyId,
    #[serde(default)]
    pub email: Option<String>,
    pub created_at: Option<String>,
    pub currency: String,
    pub total_price: String,
    pub customer: Option<CustomerRef>,
    #[serde(default)]
    pub line_items: Vec<LineItem>,
}

#[derive(Debug, Deserialize)]
pub struct CustomerRef {
    pub id: ShopifyId,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LineItem {
    pub product_id: Option<ShopifyId>,
    pub quantity: u32,
}

#[derive(Debug, Deserialize)]
pub struct Cart {
    pub token: Option<String>,
    pub id: Option<ShopifyId>,
    #[serde(default)]
    pub line_items: Vec<LineItem>,
}

#[derive(Debug, Deserialize)]
pub struct Customer {
    pub id: ShopifyId,
    /// Only to link the customer's email (keyed hash) to their id; never stored.
    #[serde(default)]
    pub email: Option<String>,
    /// Comma-separated, as Shopify sends them.
    #[serde(default)]
    pub tags: String,
    pub email_marketing_consent: Option<MarketingConsent>,
    pub accepts_marketing: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct MarketingConsent {
    pub state: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Product {
    pub id: ShopifyId,
    pub title: String,
    pub handle: Option<String>,
    pub product_type: Option<String>,
    #[serde(default)]
    pub tags: String,
    pub status: Option<String>,
    #[serde(default)]
    pub variants: Vec<Variant>,
    pub image: Option<Image>,
}

#[derive(Debug, Deserialize)]
pub struct Variant {
    pub price: String,
    pub inventory_item_id: Option<u64>,
    pub inventory_quantity: Option<i64>,
    /// `"shopify"` (or another service) when the variant's stock is tracked, `null`
    /// when it is not; absent from payloads that do not say (then counted as tracked).
    #[serde(default, deserialize_with = "present")]
    pub inventory_management: Option<Option<String>>,
}

impl Variant {
    fn untracked(&self) -> bool {
        matches!(self.inventory_management, Some(None))
    }
}

/// A field that is there (perhaps `null`), as against one that is absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
pub struct Image {
    pub src: String,
}

#[derive(Debug, Deserialize)]
pub struct InventoryLevel {
    pub inventory_item_id: u64,
    pub location_id: u64,
    pub available: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct RedactRequest {
    pub customer: CustomerRef,
}

/// What a webhook asks Vitrine to do (BigCommerce's map to the same actions).
#[derive(Debug)]
pub enum Action {
    Customer {
        customer_id: String,
        ops: Vec<ProfileOp>,
        /// The customer's email, when the payload names it: linked to the id as an
        /// alias (keyed hash), so orders an export names by email land here too.
        email: Option<String>,
    },
    Session {
        session_id: String,
        ops: Vec<ProfileOp>,
    },
    /// A product, with its variants' inventory items and their total stock.
    Product {
        input: ProductInput,
        inventory_items: Vec<(u64, i64)>,
        archived: bool,
    },
    Inventory(InventoryLevel),
    /// The product is gone from the platform: out of answers.
    RemoveProduct {
        product_id: String,
    },
    Erase {
        customer_id: String,
        /// Erased too: the alias record under the email's keyed hash.
        email: Option<String>,
    },
    EraseAll,
    /// Acknowledged; the merchant answers it with the profile export.
    DataRequest,
    Ignore,
}

#[derive(Debug, thiserror::Error)]
pub enum ShopifyError {
    #[error("payload does not match topic {topic}: {reason}")]
    Payload { topic: String, reason: String },
}

fn parse<T: serde::de::DeserializeOwned>(topic: &str, body: &[u8]) -> Result<T, ShopifyError> {
    serde_json::from_slice(body).map_err(|e| ShopifyError::Payload {
        topic: topic.to_owned(),
        reason: e.to_string(),
    })
}

fn bad(topic: &str, reason: impl Into<String>) -> ShopifyError {
    ShopifyError::Payload {
        topic: topic.to_owned(),
        reason: reason.into(),
    }
}

/// An order's customer id, order id and total; `None` for guest orders (no customer).
fn order_head(topic: &str, order: &Order) -> Result<Option<(String, String, Money)>, ShopifyError> {
    let Some(customer) = &order.customer else {
        return Ok(None);
    };
    let currency = Currency::parse(&order.currency).map_err(|e| bad(topic, e.to_string()))?;
    let total = Money::parse_decimal(&order.total_price, currency)
        .map_err(|e| bad(topic, e.to_string()))?;
    Ok(Some((customer.id.as_string(), order.id.as_string(), total)))
}

/// Maps one webhook to an action. `webhook_id` (`X-Shopify-Webhook-Id`) names the ops
/// of deliveries that have no natural id, so a redelivery is applied once; orders use
/// the order id, so `orders/create` and `orders/paid` count one order. `now` is used
/// where the payload has no time.
pub fn interpret(
    topic: &str,
    webhook_id: &str,
    body: &[u8],
    hasher: &KeyHasher,
    shop_currency: Currency,
    now: i64,
) -> Result<Action, ShopifyError> {
    match topic {
        "orders/create" | "orders/paid" => {
            let order: Order = parse(topic, body)?;
            let Some((customer, order_id, total)) = order_head(topic, &order)? else {
                return Ok(Action::Ignore);
            };
            let lines = order
                .line_items
                .iter()
                .filter_map(|l| Some((l.product_id.as_ref()?.as_string(), l.quantity, None)))
                .collect();
            // Created and paid describe one order: the same op id, applied once.
            let email = order
                .customer
                .as_ref()
                .and_then(|c| c.email.clone())
                .or(order.email.clone());
            Ok(Action::Customer {
                email,
                customer_id: customer,
                ops: vec![ProfileOp::Order {
                    id: hasher.id64(b'O', &order_id),
                    order: hasher.id64(b'o', &order_id),
                    at: order
                        .created_at
                        .as_deref()
                        .and_then(crate::domain::time::parse_rfc3339)
                        .unwrap_or(now),
                    total,
                    lines,
                }],
            })
        }
        "orders/cancelled" => {
            let order: Order = parse(topic, body)?;
            let Some((customer, order_id, total)) = order_head(topic, &order)? else {
                return Ok(Action::Ignore);
            };
            Ok(Action::Customer {
                email: None,
                customer_id: customer,
                ops: vec![ProfileOp::CancelOrder {
                    id: hasher.id64(b'C', &order_id),
                    order: hasher.id64(b'o', &order_id),
                    total,
                }],
            })
        }
        "carts/create" | "carts/update" => {
            let cart: Cart = parse(topic, body)?;
            let token = cart
                .token
                .or_else(|| cart.id.map(|i| i.as_string()))
                .ok_or_else(|| bad(topic, "no cart token"))?;
            let lines = cart
                .line_items
                .iter()
                .filter_map(|l| {
                    Some(CartLine {
                        product_id: l.product_id.as_ref()?.as_string(),
                        quantity: l.quantity,
                    })
                })
                .collect();
            Ok(Action::Session {
                ops: vec![ProfileOp::SetCart {
                    id: hasher.id64(b'W', webhook_id),
                    at: now,
                    lines,
                }],
                session_id: token,
            })
        }
        "customers/create" | "customers/update" => {
            let c: Customer = parse(topic, body)?;
            let customer_id = c.id.as_string();
            let segments: Vec<String> = c
                .tags
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            let marketing = c
                .email_marketing_consent
                .and_then(|m| m.state)
                .map(|s| s == "subscribed")
                .or(c.accepts_marketing);
            Ok(Action::Customer {
                email: c.email,
                ops: vec![
                    ProfileOp::Attributes {
                        id: hasher.id64(b'A', webhook_id),
                        at: now,
                        segments: Some(segments),
                        loyalty_tier: None,
                        company_id: None,
                    },
                    ProfileOp::Consent {
                        id: hasher.id64(b'M', webhook_id),
                        at: now,
                        personalization: None,
                        marketing,
                    },
                ],
                customer_id,
            })
        }
        "products/create" | "products/update" => {
            let p: Product = parse(topic, body)?;
            let first = p
                .variants
                .first()
                .ok_or_else(|| bad(topic, "a product without variants"))?;
            let price = Money::parse_decimal(&first.price, shop_currency)
                .map_err(|e| bad(topic, e.to_string()))?;
            // Tracked variants' quantities; with none tracked, always available.
            let stock: i64 = if p.variants.iter().all(Variant::untracked) {
                crate::domain::catalog::UNTRACKED_STOCK
            } else {
                p.variants
                    .iter()
                    .filter(|v| !v.untracked())
                    .filter_map(|v| v.inventory_quantity)
                    .map(|q| q.max(0))
                    .sum()
            };
            let archived = p.status.as_deref().is_some_and(|s| s != "active");
            let input = ProductInput {
                id: p.id.as_string(),
                title: p.title,
                url: p.handle.as_ref().map(|h| format!("/products/{h}")),
                handle: p.handle,
                image_url: p.image.map(|i| i.src),
                category: p
                    .product_type
                    .filter(|t| !t.trim().is_empty())
                    .unwrap_or_else(|| "uncategorized".into()),
                tags: p
                    .tags
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
                price: MoneyInput {
                    amount: price.amount,
                    currency: price.currency,
                },
                cost: None,
                inventory: stock,
            };
            input.validate().map_err(|e| bad(topic, e.to_string()))?;
            Ok(Action::Product {
                inventory_items: p
                    .variants
                    .iter()
                    .filter_map(|v| {
                        Some((
                            v.inventory_item_id?,
                            v.inventory_quantity.unwrap_or(0).max(0),
                        ))
                    })
                    .collect(),
                input,
                archived,
            })
        }
        "inventory_levels/update" => Ok(Action::Inventory(parse(topic, body)?)),
        "customers/redact" => {
            let r: RedactRequest = parse(topic, body)?;
            Ok(Action::Erase {
                customer_id: r.customer.id.as_string(),
                email: r.customer.email,
            })
        }
        "shop/redact" => Ok(Action::EraseAll),
        "customers/data_request" => {
            let _: RedactRequest = parse(topic, body)?;
            Ok(Action::DataRequest)
        }
        _ => Ok(Action::Ignore),
    }
}
