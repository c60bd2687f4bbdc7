//! Storefront events: validation of one raw event into profile ops.
//!
//! Each event of a batch is validated on its own (a bad one is rejected with its code,
//! the others go on), and becomes ops whose ids are keyed hashes of the `event_id`, so
//! a repeated event is applied once whatever path it takes.

use serde::Deserialize;

use crate::domain::ids::check_id;
use crate::domain::profile::{Behaviour, ProfileOp};
use crate::domain::{
    Audience, Catalog, Money, PageContext, RawMoney, RawPageContext, VisitorId, VisitorKey,
};
use crate::store::{KeyHasher, LogEntry, LogKind, ProfileKey};

/// A storefront event as sent.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub event_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub customer_id: Option<String>,
    /// Proves `customer_id` on a storefront key (checked by the HTTP layer).
    pub customer_token: Option<String>,
    pub session_id: Option<String>,
    pub product_id: Option<String>,
    pub category: Option<String>,
    pub quantity: Option<i64>,
    pub price: Option<RawMoney>,
    pub query: Option<String>,
    pub decision_id: Option<String>,
    /// The product's place in the answer's list (0 first), with `decision_id`.
    pub position: Option<i64>,
    /// The banner or collection an impression is of (frequency caps).
    pub content_id: Option<String>,
    pub order_id: Option<String>,
    pub timestamp: Option<i64>,
    pub consent: Option<RawConsent>,
    /// Where the visitor is and on what: the page context of a recommend request.
    pub context: Option<RawPageContext>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConsent {
    pub personalization: Option<bool>,
    pub marketing: Option<bool>,
}

/// Why an event was rejected; `as_str` is the stable code clients see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    InvalidEvent,
    MissingEventId,
    /// An event id that is not 1 to 128 characters without whitespace.
    InvalidEventId,
    InvalidEventType,
    MissingVisitorId,
    InvalidId,
    MissingProductId,
    MissingQuery,
    /// A query over 256 characters or with control characters.
    InvalidQuery,
    InvalidQuantity,
    /// A `position` outside 0 to 99.
    InvalidPosition,
    InvalidPrice,
    InvalidTimestamp,
    InvalidContext,
}

impl Rejection {
    pub const ALL: [Rejection; 14] = [
        Rejection::InvalidEvent,
        Rejection::MissingEventId,
        Rejection::InvalidEventId,
        Rejection::InvalidEventType,
        Rejection::MissingVisitorId,
        Rejection::InvalidId,
        Rejection::MissingProductId,
        Rejection::MissingQuery,
        Rejection::InvalidQuery,
        Rejection::InvalidQuantity,
        Rejection::InvalidPosition,
        Rejection::InvalidPrice,
        Rejection::InvalidTimestamp,
        Rejection::InvalidContext,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Rejection::InvalidEvent => "invalid_event",
            Rejection::MissingEventId => "missing_event_id",
            Rejection::InvalidEventId => "invalid_event_id",
            Rejection::InvalidEventType => "invalid_event_type",
            Rejection::MissingVisitorId => "missing_visitor_id",
            Rejection::InvalidId => "invalid_id",
            Rejection::MissingProductId => "missing_product_id",
            Rejection::MissingQuery => "missing_query",
            Rejection::InvalidQuery => "invalid_query",
            Rejection::InvalidQuantity => "invalid_quantity",
            Rejection::InvalidPosition => "invalid_position",
            Rejection::InvalidPrice => "invalid_price",
            Rejection::InvalidTimestamp => "invalid_timestamp",
            Rejection::InvalidContext => "invalid_context",
        }
    }
}

/// A validated event.
#[derive(Clone, Debug)]
pub struct Event {
    pub event_id: String,
    pub behaviour: Behaviour,
    /// Whose profile it lands in: the customer's when known.
    pub visitor: VisitorKey,
    /// The anonymous session, when the event names both a customer and a session.
    pub merge_session: Option<VisitorId>,
    pub product_id: Option<String>,
    pub category: Option<String>,
    pub quantity: u32,
    pub price: Option<Money>,
    pub query: Option<String>,
    pub order_id: Option<String>,
    pub content_id: Option<String>,
    /// The answer the event followed (a `decision_id` Vitrine gave; any other value
    /// names none): its experiment arms are credited.
    pub decision: Option<[u8; 16]>,
    pub at: i64,
    pub consent: Option<(Option<bool>, Option<bool>)>,
    pub audience: Audience,
    /// From a trusted source (an admin key, an import): only then does a purchase count
    /// as an order (orders, spend, lifecycle). `validate` leaves it false.
    pub trusted: bool,
}

fn opt_id(raw: Option<String>) -> Result<Option<String>, Rejection> {
    match raw {
        None => Ok(None),
        Some(v) => check_id(&v)
            .map(|()| Some(v))
            .map_err(|_| Rejection::InvalidId),
    }
}

impl RawEvent {
    /// Validates against `now` (Unix seconds); events older than `max_age_s` or more
    /// than five minutes in the future are refused.
    pub fn validate(self, now: i64, max_age_s: i64) -> Result<Event, Rejection> {
        let event_id = self.event_id.ok_or(Rejection::MissingEventId)?;
        check_id(&event_id).map_err(|_| Rejection::InvalidEventId)?;
        let behaviour: Behaviour = self
            .kind
            .as_deref()
            .ok_or(Rejection::InvalidEventType)?
            .parse()
            .map_err(|()| Rejection::InvalidEventType)?;
        let customer = self
            .customer_id
            .map(|c| VisitorId::parse(&c).map_err(|_| Rejection::InvalidId))
            .transpose()?;
        let session = self
            .session_id
            .map(|s| VisitorId::parse(&s).map_err(|_| Rejection::InvalidId))
            .transpose()?;
        let (visitor, merge_session) = match (customer, session) {
            (Some(c), s) => (VisitorKey::Customer(c), s),
            (None, Some(s)) => (VisitorKey::Session(s), None),
            (None, None) => return Err(Rejection::MissingVisitorId),
        };
        let product_id = opt_id(self.product_id)?;
        let needs_product = matches!(
            behaviour,
            Behaviour::View
                | Behaviour::AddToCart
                | Behaviour::RemoveFromCart
                | Behaviour::Purchase
        );
        if needs_product && product_id.is_none() {
            return Err(Rejection::MissingProductId);
        }
        let query = self.query.filter(|q| !q.trim().is_empty());
        if let Some(q) = &query
            && (q.chars().count() > 256 || q.chars().any(char::is_control))
        {
            return Err(Rejection::InvalidQuery);
        }
        if behaviour == Behaviour::Search && query.is_none() {
            return Err(Rejection::MissingQuery);
        }
        let quantity = match self.quantity {
            None => 1,
            Some(q) if (1..=100_000).contains(&q) => q as u32,
            Some(_) => return Err(Rejection::InvalidQuantity),
        };
        // Accepted beside `decision_id`; a place outside any answer's list is refused.
        match self.position {
            None | Some(0..=99) => {}
            Some(_) => return Err(Rejection::InvalidPosition),
        };
        let price = match self.price {
            None => None,
            Some(m) => Some(m.parse().map_err(|_| Rejection::InvalidPrice)?),
        };
        // Integers past 10^11 are milliseconds (what `Date.now()` gives).
        let at = match self.timestamp {
            None => now,
            Some(t) if t > 100_000_000_000 => t / 1000,
            Some(t) => t,
        };
        if at < now - max_age_s || at > now + 300 {
            return Err(Rejection::InvalidTimestamp);
        }
        Ok(Event {
            event_id,
            behaviour,
            visitor,
            merge_session,
            product_id,
            category: opt_id(self.category).map_err(|_| Rejection::InvalidEvent)?,
            quantity,
            price,
            query,
            order_id: opt_id(self.order_id)?,
            content_id: opt_id(self.content_id)?,
            decision: self
                .decision_id
                .as_deref()
                .and_then(|d| uuid::Uuid::parse_str(d).ok())
                .map(|d| *d.as_bytes()),
            at,
            consent: self.consent.map(|c| (c.personalization, c.marketing)),
            audience: self
                .context
                .map(|c| PageContext::parse(c).map(|p| p.audience()))
                .transpose()
                .map_err(|_| Rejection::InvalidContext)?
                .unwrap_or_default(),
            trusted: false,
        })
    }
}

impl Event {
    /// What experiment attribution needs of the event, when it names a decision.
    pub fn touch(&self, hasher: &KeyHasher) -> Option<super::attribution::Touch> {
        Some(super::attribution::Touch {
            visitor: hasher.key(&self.visitor),
            decision: self.decision?,
            event: hasher.id64(b'e', &self.event_id),
            behaviour: self.behaviour,
            product: self.product_id.clone(),
            order: self.order_id.as_deref().map(|o| hasher.id64(b'o', o)),
            amount: self.price.map(|p| {
                Money::new(
                    p.amount.saturating_mul(i64::from(self.quantity)),
                    p.currency,
                )
            }),
            at: self.at,
        })
    }

    /// The ops this event applies to its profile. The category comes from the catalog
    /// when the event does not name one.
    pub fn ops(&self, hasher: &KeyHasher, catalog: &Catalog) -> Vec<ProfileOp> {
        let id = hasher.id64(b'e', &self.event_id);
        let mut ops = Vec::with_capacity(2);
        if let Some((personalization, marketing)) = self.consent {
            ops.push(ProfileOp::Consent {
                id: hasher.id64(b'k', &self.event_id),
                at: self.at,
                personalization,
                marketing,
            });
        }
        let category = self.category.clone().or_else(|| {
            let idx = catalog.lookup(self.product_id.as_deref()?)?;
            let c = catalog.product(idx).category;
            Some(catalog.categories()[usize::from(c)].handle.to_string())
        });
        if let (Behaviour::Impression, Some(content_id)) = (self.behaviour, &self.content_id) {
            ops.push(ProfileOp::ContentImpression {
                id: hasher.id64(b'c', &self.event_id),
                at: self.at,
                content_id: content_id.clone(),
            });
        }
        ops.push(ProfileOp::Event {
            id,
            at: self.at,
            behaviour: self.behaviour,
            product_id: self.product_id.clone(),
            category,
            quantity: self.quantity,
            price: self.price,
            query: self.query.clone(),
            order: self.order_id.as_deref().map(|o| hasher.id64(b'o', o)),
            counts_order: self.trusted,
        });
        ops
    }
}

/// A batch of validated events made ready for the store: every profile's ops, the
/// sessions to fold into customers first, and what each event teaches the models if it
/// is new. It names visitors by keyed hash only, so it may be written down (the
/// journal) and applied later, once or again: applying is idempotent.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    /// (customer, session): sessions folded into customers ahead of the ops.
    merges: Vec<(ProfileKey, ProfileKey)>,
    /// One profile's ops, in the order its events came.
    groups: Vec<(ProfileKey, Vec<ProfileOp>)>,
    /// Per event: its group, and the index of its main op in the group.
    slots: Vec<(u32, u32)>,
    /// Per event: what it teaches the models, learned when it is new.
    teaches: Vec<Option<LogEntry>>,
}

impl Prepared {
    /// Groups the events' ops by profile, keeping each profile's events in order.
    pub fn new(hasher: &KeyHasher, catalog: &Catalog, events: &[Event], origin: u64) -> Self {
        let mut out = Prepared {
            slots: Vec::with_capacity(events.len()),
            teaches: Vec::with_capacity(events.len()),
            ..Prepared::default()
        };
        for event in events {
            let key = hasher.key(&event.visitor);
            if let Some(session) = &event.merge_session {
                let skey = hasher.key(&VisitorKey::Session(session.clone()));
                if !out.merges.contains(&(key, skey)) {
                    out.merges.push((key, skey));
                }
            }
            let group = match out.groups.iter().position(|(k, _)| *k == key) {
                Some(p) => p,
                None => {
                    out.groups.push((key, Vec::new()));
                    out.groups.len() - 1
                }
            };
            let ops = &mut out.groups[group].1;
            ops.extend(event.ops(hasher, catalog));
            out.slots.push((group as u32, (ops.len() - 1) as u32));
            out.teaches.push(event.log_entry(hasher, origin));
        }
        out
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Applies the batch: one atomic apply per profile, all profiles in one store batch,
    /// sessions folded in first ([`merge_session`]). Returns, per event, whether it was
    /// new (false: a repeat of an event already applied).
    pub async fn apply(
        &self,
        store: &dyn crate::store::ProfileStore,
    ) -> Result<Vec<bool>, crate::store::StoreError> {
        for (customer, session) in &self.merges {
            merge_session(store, *customer, *session).await?;
        }
        let results = store.apply_batch(&self.groups).await;
        let mut applied = Vec::with_capacity(results.len());
        for result in results {
            applied.push(result?);
        }
        Ok(self
            .slots
            .iter()
            .map(|&(group, op)| {
                applied[group as usize]
                    .fresh
                    .get(op as usize)
                    .copied()
                    .unwrap_or(false)
            })
            .collect())
    }

    /// What the new events (`fresh` as [`Prepared::apply`] returns it) teach the models.
    pub fn lessons(&self, fresh: &[bool]) -> Vec<LogEntry> {
        self.teaches
            .iter()
            .zip(fresh)
            .filter(|(_, new)| **new)
            .filter_map(|(e, _)| e.clone())
            .collect()
    }
}

/// Applies validated events to their profiles ([`Prepared::apply`]). Returns, per event,
/// whether it was new.
pub async fn ingest(
    store: &dyn crate::store::ProfileStore,
    hasher: &KeyHasher,
    catalog: &Catalog,
    events: &[Event],
) -> Result<Vec<bool>, crate::store::StoreError> {
    Prepared::new(hasher, catalog, events, 0).apply(store).await
}

/// The events that were new (`fresh` as [`ingest`] returns it).
pub fn log_entries(
    events: &[Event],
    fresh: &[bool],
    hasher: &KeyHasher,
    origin: u64,
) -> Vec<LogEntry> {
    events
        .iter()
        .zip(fresh)
        .filter(|(_, f)| **f)
        .filter_map(|(e, _)| e.log_entry(hasher, origin))
        .collect()
}

impl Event {
    /// What this event teaches the models, if it is about a product: keyed by the
    /// visit (the session when the event names one) and, for a purchase, the order.
    pub fn log_entry(&self, hasher: &KeyHasher, origin: u64) -> Option<LogEntry> {
        let kind = match self.behaviour {
            Behaviour::View | Behaviour::Click => LogKind::View,
            Behaviour::AddToCart => LogKind::AddToCart,
            Behaviour::Purchase => LogKind::Purchase,
            Behaviour::Search
            | Behaviour::RemoveFromCart
            | Behaviour::Checkout
            | Behaviour::Impression => return None,
        };
        let visit = match &self.merge_session {
            Some(s) => hasher.key(&VisitorKey::Session(s.clone())),
            None => hasher.key(&self.visitor),
        };
        Some(LogEntry {
            origin,
            product: self.product_id.clone()?,
            kind,
            session: visit.short_id(),
            order: (kind == LogKind::Purchase).then(|| {
                xxhash_rust::xxh3::xxh3_64(
                    self.order_id
                        .as_deref()
                        .unwrap_or(&self.event_id)
                        .as_bytes(),
                )
            }),
            at: self.at,
            country: self.audience.country,
            device: self.audience.device,
        })
    }
}

/// Folds an anonymous session's profile into a customer's (once: the fold is an op
/// named by the session) and erases the session's own profile, so the customer's is the
/// one trace left. True when there was a session profile to fold.
pub async fn merge_session(
    store: &dyn crate::store::ProfileStore,
    customer: crate::store::ProfileKey,
    session: crate::store::ProfileKey,
) -> Result<bool, crate::store::StoreError> {
    let Some(profile) = store.get(&session).await? else {
        return Ok(false);
    };
    let fold = ProfileOp::Absorb {
        id: session.short_id(),
        from: Box::new(crate::domain::Profile::clone(&profile)),
    };
    store.apply(&customer, std::slice::from_ref(&fold)).await?;
    store.delete(&session).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: &str) -> RawEvent {
        RawEvent {
            event_id: Some("e1".into()),
            kind: Some(kind.into()),
            session_id: Some("s1".into()),
            product_id: Some("p1".into()),
            ..RawEvent::default()
        }
    }

    #[test]
    fn each_rule_has_its_code() {
        let now = 1_700_000_000;
        let v = |r: RawEvent| r.validate(now, 3600).map(|_| ()).unwrap_err();
        assert_eq!(
            v(RawEvent {
                event_id: None,
                ..raw("view")
            }),
            Rejection::MissingEventId
        );
        assert_eq!(v(raw("hover")), Rejection::InvalidEventType);
        assert_eq!(
            v(RawEvent {
                session_id: None,
                ..raw("view")
            }),
            Rejection::MissingVisitorId
        );
        assert_eq!(
            v(RawEvent {
                product_id: None,
                ..raw("view")
            }),
            Rejection::MissingProductId
        );
        assert_eq!(v(raw("search")), Rejection::MissingQuery);
        assert_eq!(
            v(RawEvent {
                quantity: Some(0),
                ..raw("view")
            }),
            Rejection::InvalidQuantity
        );
        assert_eq!(
            v(RawEvent {
                price: Some(RawMoney {
                    amount: -1,
                    currency: "GBP".into()
                }),
                ..raw("purchase")
            }),
            Rejection::InvalidPrice
        );
        // Past the largest amount Vitrine takes, sums of prices could overflow.
        assert_eq!(
            v(RawEvent {
                price: Some(RawMoney {
                    amount: Money::MAX_AMOUNT + 1,
                    currency: "GBP".into()
                }),
                ..raw("purchase")
            }),
            Rejection::InvalidPrice
        );
        assert_eq!(
            v(RawEvent {
                timestamp: Some(now - 7200),
                ..raw("view")
            }),
            Rejection::InvalidTimestamp
        );
        assert_eq!(
            v(RawEvent {
                timestamp: Some(now + 3600),
                ..raw("view")
            }),
            Rejection::InvalidTimestamp
        );
    }

    #[test]
    fn millisecond_timestamps_are_understood_and_customers_win_over_sessions() {
        let now = 1_700_000_000;
        let e = RawEvent {
            timestamp: Some(now * 1000 - 5_000),
            customer_id: Some("c1".into()),
            ..raw("view")
        }
        .validate(now, 3600)
        .unwrap();
        assert_eq!(e.at, now - 5);
        assert!(matches!(e.visitor, VisitorKey::Customer(_)));
        assert!(e.merge_session.is_some());
    }
}
