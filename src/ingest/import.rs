//! `vitrine import products|customers|orders|events FILE`: bulk loads from NDJSON or CSV,
//! including Shopify's product and order export CSVs, straight into the configured store
//! (running replicas follow the catalog from there).
//!
//! Every line is checked on its own: a bad one is reported with its line number and the
//! import goes on. Re-running an import changes nothing: products are compared with the
//! stored catalog and only differences are written; profile changes are ops with ids
//! derived from the data (event ids, order ids, the row itself), which a profile applies
//! once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use super::catalog::{MoneyInput, ProductInput};
use super::events::{Event, RawEvent, ingest};
use crate::domain::catalog::{Catalog, slug};
use crate::domain::profile::ProfileOp;
use crate::domain::{Currency, Money, RawMoney, RawPageContext, VisitorId, VisitorKey};
use crate::store::{CatalogChange, CatalogStore, KeyHasher, ProfileKey, ProfileStore, StoreError};

/// Rows applied per store batch.
const BATCH: usize = 500;
/// Products per catalog write.
const CATALOG_CHUNK: usize = 5_000;
/// Imported events may be as old as this (history), unlike live events.
const MAX_EVENT_AGE_S: i64 = 100 * 365 * 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Products,
    Customers,
    Orders,
    Events,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// From the file's extension: `.csv` is CSV, anything else NDJSON.
    Auto,
    Ndjson,
    Csv,
}

/// A customer row: attributes and consent, nothing personal.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerRow {
    pub customer_id: String,
    #[serde(default)]
    pub segments: Option<Vec<String>>,
    #[serde(default)]
    pub loyalty_tier: Option<String>,
    #[serde(default)]
    pub company_id: Option<String>,
    #[serde(default)]
    pub consent: Option<ConsentRow>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRow {
    pub personalization: Option<bool>,
    pub marketing: Option<bool>,
}

/// An order with its lines.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRow {
    pub order_id: String,
    pub customer_id: String,
    /// Unix seconds, or RFC 3339 text.
    pub created_at: TimeValue,
    pub total: RawMoney,
    #[serde(default)]
    pub lines: Vec<OrderLine>,
    /// `cancelled` (or `refunded`) takes a counted order back.
    #[serde(default)]
    pub status: Option<String>,
    /// A buyer named by email (a Shopify order export), not by customer id: the order
    /// lands in the profile of the customer the email is linked to.
    #[serde(skip)]
    pub buyer_email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: u32,
    /// Other ids the line may go by (Shopify exports: the name's handle).
    #[serde(skip)]
    pub alternatives: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TimeValue {
    Unix(i64),
    Text(String),
}

impl TimeValue {
    fn seconds(&self) -> Result<i64, String> {
        match self {
            TimeValue::Unix(t) => Ok(*t),
            TimeValue::Text(s) => crate::domain::time::parse_rfc3339(s)
                .or_else(|| s.trim().parse().ok())
                .ok_or_else(|| format!("created_at {s:?} is not a time")),
        }
    }
}

/// One row, parsed.
#[derive(Debug)]
enum Row {
    Product(Box<ProductInput>),
    Customer(CustomerRow),
    Order(OrderRow),
    Event(Box<RawEvent>),
    /// Valid, but nothing to import (a draft product, an order without a customer).
    Skip(&'static str),
}

/// A bad line, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Rows read (a grouped CSV's rows of one product or order count once).
    pub rows: u64,
    /// Rows that changed something.
    pub applied: u64,
    /// Rows that were already in the store as given.
    pub unchanged: u64,
    /// Valid rows with nothing to import, by reason.
    pub skipped: HashMap<&'static str, u64>,
    /// Order lines whose product is not in the catalog (the order still counts).
    pub unknown_products: u64,
    pub bad: Vec<Bad>,
}

impl Report {
    /// One line for the terminal: rows, speed, and what became of them.
    pub fn summary(&self, took: std::time::Duration) -> String {
        let secs = took.as_secs_f64();
        let mut skipped: Vec<_> = self.skipped.iter().collect();
        skipped.sort();
        let skipped: String = skipped
            .iter()
            .map(|(why, n)| format!(", {n} skipped ({why})"))
            .collect();
        let unknown = if self.unknown_products > 0 {
            format!(
                "; {} order lines name products not in the catalog",
                self.unknown_products
            )
        } else {
            String::new()
        };
        format!(
            "{} rows in {secs:.2} s ({:.0} rows/s): {} applied, {} unchanged{skipped}, {} bad{unknown}",
            self.rows,
            self.rows as f64 / secs.max(1e-3),
            self.applied,
            self.unchanged,
            self.bad.len(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Csv(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What an import writes to, and the settings it reads rows with.
pub struct Target {
    pub profiles: Arc<dyn ProfileStore>,
    pub catalog: Arc<dyn CatalogStore>,
    pub hasher: Arc<KeyHasher>,
    /// Imported orders and events that name a decision are credited to experiment
    /// arms, as the server credits them.
    pub experiments: crate::config::ExperimentSettings,
    /// Currency of Shopify's product exports (prices come without one); with none
    /// stated, such a file is refused.
    pub shop_currency: Option<Currency>,
    pub now: i64,
    /// Entries the event log keeps (`events.log_keep`).
    pub log_keep: u64,
}

/// Counts bytes read, for the progress bar.
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Runs an import. `progress` is told the bytes read so far after every batch.
pub async fn run(
    target: &Target,
    kind: Kind,
    path: &Path,
    format: Format,
    progress: &(dyn Fn(u64, &Report) + Sync),
) -> Result<Report, ImportError> {
    let read = Arc::new(AtomicU64::new(0));
    let rows = open_rows(kind, path, format, target.shop_currency, read.clone())?;
    let catalog = Arc::new(load_catalog(target.catalog.as_ref()).await?);
    let attribution = super::attribution::Attribution::offline(
        target.experiments.clone(),
        target.profiles.clone(),
        target.catalog.clone(),
        target.hasher.clone(),
        catalog.clone(),
    );
    let mut report = Report::default();
    let mut products: Vec<(usize, ProductInput)> = Vec::new();
    let mut pending: Vec<(usize, Row)> = Vec::with_capacity(BATCH);
    for (line, row) in rows {
        report.rows += 1;
        match row {
            Err(message) => report.bad.push(Bad { line, message }),
            Ok(Row::Skip(reason)) => *report.skipped.entry(reason).or_default() += 1,
            Ok(Row::Product(p)) => products.push((line, *p)),
            Ok(row) => pending.push((line, row)),
        }
        if pending.len() >= BATCH {
            let rows = std::mem::take(&mut pending);
            apply(target, &catalog, &attribution, rows, &mut report).await?;
            progress(read.load(Ordering::Relaxed), &report);
        }
    }
    apply(target, &catalog, &attribution, pending, &mut report).await?;
    let uncredited = attribution.finish().await;
    if uncredited > 0 {
        tracing::warn!(
            uncredited,
            "orders and events not credited to experiment arms: the store did not take them"
        );
    }
    if kind == Kind::Products {
        write_products(target.catalog.as_ref(), products, &mut report).await?;
    }
    progress(read.load(Ordering::Relaxed), &report);
    report.bad.sort_by_key(|b| b.line);
    Ok(report)
}

/// The file's rows, parsed as `kind`; `read` counts the bytes read.
fn open_rows(
    kind: Kind,
    path: &Path,
    format: Format,
    shop_currency: Option<Currency>,
    read: Arc<AtomicU64>,
) -> Result<Rows, ImportError> {
    let file = std::fs::File::open(path).map_err(|source| ImportError::File {
        path: path.display().to_string(),
        source,
    })?;
    let reader = BufReader::new(Counted { inner: file, read });
    let csv = match format {
        Format::Csv => true,
        Format::Ndjson => false,
        Format::Auto => path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
    };
    Ok(if csv {
        csv_rows(kind, reader, shop_currency)?
    } else {
        Box::new(ndjson_rows(kind, reader))
    })
}

/// An events file as training interactions on `catalog`: sessions by session id (or
/// customer id), orders by order id. Bad rows, and events about products not in the
/// catalog, are reported and left out.
pub fn interactions(
    path: &Path,
    format: Format,
    catalog: &Catalog,
    now: i64,
) -> Result<(Vec<crate::domain::Interaction>, Report), ImportError> {
    use crate::domain::profile::Behaviour;
    use crate::domain::{Interaction, InteractionKind};
    let hash = |s: &str| xxhash_rust::xxh3::xxh3_64(s.as_bytes());
    let rows = open_rows(Kind::Events, path, format, None, Arc::default())?;
    let mut out = Vec::new();
    let mut report = Report::default();
    for (line, row) in rows {
        report.rows += 1;
        let raw = match row {
            Ok(Row::Event(raw)) => raw,
            Ok(_) => continue,
            Err(message) => {
                report.bad.push(Bad { line, message });
                continue;
            }
        };
        let session = raw.session_id.clone().or_else(|| raw.customer_id.clone());
        let event = match raw.validate(now, MAX_EVENT_AGE_S) {
            Ok(e) => e,
            Err(r) => {
                report.bad.push(Bad {
                    line,
                    message: format!("rejected: {}", r.as_str()),
                });
                continue;
            }
        };
        let kind = match event.behaviour {
            Behaviour::View | Behaviour::Click => InteractionKind::View,
            Behaviour::AddToCart => InteractionKind::AddToCart,
            Behaviour::Purchase => InteractionKind::Purchase,
            _ => {
                *report.skipped.entry("not a product event").or_default() += 1;
                continue;
            }
        };
        let Some(product) = event
            .product_id
            .as_deref()
            .and_then(|id| catalog.lookup(id))
        else {
            report.unknown_products += 1;
            continue;
        };
        out.push(Interaction {
            session: session.as_deref().map_or(0, hash),
            customer: None,
            order: (kind == InteractionKind::Purchase)
                .then(|| hash(event.order_id.as_deref().unwrap_or(&event.event_id))),
            product,
            kind,
            ts: event.at,
            audience: Default::default(),
        });
        report.applied += 1;
    }
    Ok((out, report))
}

/// The stored catalog, to resolve order lines and event categories.
pub async fn load_catalog(store: &dyn CatalogStore) -> Result<Catalog, ImportError> {
    let (_, stored) = store.load_catalog().await?;
    let mut edit = Catalog::empty().edit();
    for (record, level) in &stored {
        edit.upsert_record(record, *level)
            .map_err(|e| ImportError::Store(StoreError::Codec(e.to_string())))?;
    }
    edit.build()
        .map_err(|e| ImportError::Store(StoreError::Codec(e.to_string())))
}

/// Writes the products that differ from the stored catalog (the last row of an id wins).
async fn write_products(
    store: &dyn CatalogStore,
    rows: Vec<(usize, ProductInput)>,
    report: &mut Report,
) -> Result<(), ImportError> {
    let (_, stored) = store.load_catalog().await?;
    // A row keyed by its handle (a Shopify export has no other id) updates the product
    // that already has that handle under its platform id: one product either way.
    let by_handle: HashMap<String, String> = stored
        .iter()
        .filter(|(r, _)| r.handle != r.id)
        .map(|(r, _)| (r.handle.clone(), r.id.clone()))
        .collect();
    let stored: HashMap<String, _> = stored
        .into_iter()
        .map(|(r, l)| (r.id.clone(), (r, l)))
        .collect();
    let mut latest: HashMap<String, ProductInput> = HashMap::new();
    for (_, mut input) in rows {
        if input.handle.as_deref() == Some(input.id.as_str())
            && !stored.contains_key(&input.id)
            && let Some(id) = by_handle.get(&input.id)
        {
            input.id.clone_from(id);
        }
        latest.insert(input.id.clone(), input);
    }
    let mut change = CatalogChange::default();
    let mut ids: Vec<_> = latest.keys().cloned().collect();
    ids.sort();
    for id in ids {
        let input = &latest[&id];
        let record = input.record();
        match stored.get(&id) {
            Some((r, level)) if *r == record && *level == input.inventory => report.unchanged += 1,
            Some((r, _)) if *r == record => {
                change.stock.push((id, input.inventory));
                report.applied += 1;
            }
            _ => {
                change.stock.push((id, input.inventory));
                change.upserts.push(record);
                report.applied += 1;
            }
        }
        if change.stock.len() >= CATALOG_CHUNK {
            store.write_catalog(&std::mem::take(&mut change)).await?;
        }
    }
    if !change.is_empty() {
        store.write_catalog(&change).await?;
    }
    Ok(())
}

/// Applies one batch of profile rows. Each row's ops are atomic; a store failure stops
/// the import (what was applied stays applied, and a re-run skips it).
async fn apply(
    target: &Target,
    catalog: &Catalog,
    attribution: &super::attribution::Attribution,
    rows: Vec<(usize, Row)>,
    report: &mut Report,
) -> Result<(), ImportError> {
    let mut events = Vec::new();
    let mut batch: Vec<(ProfileKey, Vec<ProfileOp>)> = Vec::new();
    for (line, row) in rows {
        match row {
            Row::Event(raw) => match raw.validate(target.now, MAX_EVENT_AGE_S) {
                // The shop's own history: its purchases are orders.
                Ok(e) => events.push(Event { trusted: true, ..e }),
                Err(r) => report.bad.push(Bad {
                    line,
                    message: format!("rejected: {}", r.as_str()),
                }),
            },
            Row::Customer(c) => match customer_ops(target, &c) {
                Ok(entry) => batch.push(entry),
                Err(message) => report.bad.push(Bad { line, message }),
            },
            Row::Order(o) => {
                let key = match &o.buyer_email {
                    Some(email) => {
                        Ok(
                            super::identity::buyer(target.profiles.as_ref(), &target.hasher, email)
                                .await?,
                        )
                    }
                    None => customer_key(&target.hasher, &o.customer_id),
                };
                match key.and_then(|key| order_ops(target, catalog, &o, key, report)) {
                    Ok(entry) => batch.push(entry),
                    Err(message) => report.bad.push(Bad { line, message }),
                }
            }
            Row::Product(_) | Row::Skip(_) => {}
        }
    }
    // What is new also goes to the event log, for training and for running replicas
    // (which learn entries of origin 0 like any other replica's).
    let mut log = Vec::new();
    if !events.is_empty() {
        let fresh = ingest(target.profiles.as_ref(), &target.hasher, catalog, &events).await?;
        log.extend(super::events::log_entries(
            &events,
            &fresh,
            &target.hasher,
            0,
        ));
        for (event, fresh) in events.iter().zip(fresh) {
            count(report, fresh);
            if let (true, Some(touch)) = (fresh, event.touch(&target.hasher)) {
                attribution.touched(touch);
            }
        }
    }
    for ((key, ops), result) in batch.iter().zip(target.profiles.apply_batch(&batch).await) {
        let applied = result?;
        count(report, applied.fresh.contains(&true));
        log.extend(super::log::order_entries(key, ops, &applied.fresh, 0));
        for (op, _) in ops.iter().zip(&applied.fresh).filter(|(_, new)| **new) {
            if let Some(order) = super::attribution::PlacedOrder::of(*key, op) {
                attribution.ordered(order);
            }
        }
    }
    if !log.is_empty() {
        target.catalog.append_log(&log, target.log_keep).await?;
    }
    Ok(())
}

fn count(report: &mut Report, fresh: bool) {
    if fresh {
        report.applied += 1;
    } else {
        report.unchanged += 1;
    }
}

fn customer_key(hasher: &KeyHasher, id: &str) -> Result<ProfileKey, String> {
    let id = VisitorId::parse(id).map_err(|e| format!("customer_id {e}"))?;
    Ok(hasher.key(&VisitorKey::Customer(id)))
}

fn customer_ops(target: &Target, c: &CustomerRow) -> Result<(ProfileKey, Vec<ProfileOp>), String> {
    let key = customer_key(&target.hasher, &c.customer_id)?;
    // The row is the op's identity: the same row imported again is applied once.
    let identity = format!("{c:?}");
    let mut ops = vec![ProfileOp::Attributes {
        id: target.hasher.id64(b'I', &identity),
        at: target.now,
        segments: c.segments.clone(),
        loyalty_tier: c.loyalty_tier.clone(),
        company_id: c.company_id.clone(),
    }];
    if let Some(consent) = &c.consent {
        ops.push(ProfileOp::Consent {
            id: target.hasher.id64(b'J', &identity),
            at: target.now,
            personalization: consent.personalization,
            marketing: consent.marketing,
        });
    }
    Ok((key, ops))
}

fn order_ops(
    target: &Target,
    catalog: &Catalog,
    o: &OrderRow,
    key: ProfileKey,
    report: &mut Report,
) -> Result<(ProfileKey, Vec<ProfileOp>), String> {
    if o.order_id.trim().is_empty() {
        return Err("order_id is empty".into());
    }
    let currency =
        Currency::parse(&o.total.currency).map_err(|e| format!("total.currency: {e}"))?;
    if !Money::in_range(o.total.amount) {
        return Err(format!(
            "total.amount must be 0 to {} minor units",
            Money::MAX_AMOUNT
        ));
    }
    let total = Money::new(o.total.amount, currency);
    // The same op ids as the platform webhooks use for this order id, so an order
    // that arrives both ways counts once.
    let cancelled = o
        .status
        .as_deref()
        .is_some_and(|s| matches!(s, "cancelled" | "canceled" | "refunded" | "voided"));
    let op = if cancelled {
        ProfileOp::CancelOrder {
            id: target.hasher.id64(b'C', &o.order_id),
            order: target.hasher.id64(b'o', &o.order_id),
            total,
        }
    } else {
        let mut lines = Vec::with_capacity(o.lines.len());
        for l in &o.lines {
            let found = std::iter::once(&l.product_id)
                .chain(&l.alternatives)
                .find_map(|id| catalog.lookup(id));
            match found {
                Some(idx) => {
                    let p = catalog.product(idx);
                    let category = &catalog.categories()[usize::from(p.category)];
                    lines.push((
                        p.id.to_string(),
                        l.quantity.max(1),
                        Some(category.handle.to_string()),
                    ));
                }
                None => report.unknown_products += 1,
            }
        }
        ProfileOp::Order {
            id: target.hasher.id64(b'O', &o.order_id),
            order: target.hasher.id64(b'o', &o.order_id),
            at: o.created_at.seconds()?,
            total,
            lines,
        }
    };
    Ok((key, vec![op]))
}

fn ndjson_rows(
    kind: Kind,
    reader: impl BufRead + Send + 'static,
) -> impl Iterator<Item = (usize, Result<Row, String>)> + Send {
    reader.lines().enumerate().filter_map(move |(i, line)| {
        let line_no = i + 1;
        let text = match line {
            Ok(t) => t,
            Err(e) => return Some((line_no, Err(format!("unreadable line: {e}")))),
        };
        if text.trim().is_empty() {
            return None;
        }
        let parsed = match kind {
            Kind::Products => serde_json::from_str::<ProductInput>(&text)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    p.validate().map_err(|e| e.to_string())?;
                    Ok(Row::Product(Box::new(p)))
                }),
            Kind::Customers => serde_json::from_str(&text)
                .map(Row::Customer)
                .map_err(|e| e.to_string()),
            Kind::Orders => serde_json::from_str(&text)
                .map(Row::Order)
                .map_err(|e| e.to_string()),
            Kind::Events => serde_json::from_str(&text)
                .map(|e| Row::Event(Box::new(e)))
                .map_err(|e| e.to_string()),
        };
        Some((line_no, parsed))
    })
}

/// A CSV row by header name.
struct Record {
    line: usize,
    fields: HashMap<String, String>,
}

impl Record {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    fn need(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("{name} is missing"))
    }
}

fn csv_rows(
    kind: Kind,
    reader: impl Read + Send + 'static,
    shop_currency: Option<Currency>,
) -> Result<Rows, ImportError> {
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers: Vec<String> = csv
        .headers()
        .map_err(|e| ImportError::Csv(format!("header row: {e}")))?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
        .collect();
    let has = |h: &str| headers.iter().any(|x| x == h);
    let (shopify_products, shopify_orders) = (
        has("Handle") && has("Variant Price"),
        has("Name") && has("Lineitem quantity"),
    );
    let records = csv.into_records().map(move |r| {
        let line = r
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(0, |p| p.line() as usize);
        r.map(|r| Record {
            line,
            fields: headers
                .iter()
                .cloned()
                .zip(r.iter().map(str::to_owned))
                .collect(),
        })
        .map_err(|e| (line, format!("unreadable CSV row: {e}")))
    });
    Ok(match kind {
        Kind::Products if shopify_products => {
            let currency = shop_currency.ok_or_else(|| {
                ImportError::Csv(
                    "a Shopify product export does not say its currency: give --currency (or set shopify.shop_currency)".into(),
                )
            })?;
            Box::new(grouped(records, "Handle", move |rows| {
                shopify_product(rows, currency)
            }))
        }
        Kind::Orders if shopify_orders => Box::new(grouped(records, "Name", shopify_order)),
        Kind::Orders => Box::new(grouped(records, "order_id", plain_order)),
        Kind::Products => Box::new(single(records, plain_product)),
        Kind::Customers => Box::new(single(records, plain_customer)),
        Kind::Events => Box::new(single(records, plain_event)),
    })
}

type Records = Box<dyn Iterator<Item = Result<Record, (usize, String)>> + Send>;
/// Parsed rows with their line numbers.
type Rows = Box<dyn Iterator<Item = (usize, Result<Row, String>)> + Send>;

fn single(
    records: impl Iterator<Item = Result<Record, (usize, String)>> + Send + 'static,
    parse: fn(&Record) -> Result<Row, String>,
) -> impl Iterator<Item = (usize, Result<Row, String>)> + Send {
    records.map(move |r| match r {
        Ok(rec) => (rec.line, parse(&rec)),
        Err((line, e)) => (line, Err(e)),
    })
}

/// Rows that share `key` with the row before them are one item (a product's variants,
/// an order's lines), reported at the first row's line.
fn grouped(
    records: impl Iterator<Item = Result<Record, (usize, String)>> + Send + 'static,
    key: &'static str,
    parse: impl Fn(&[Record]) -> Result<Row, String> + Send + 'static,
) -> impl Iterator<Item = (usize, Result<Row, String>)> + Send {
    let mut records: std::iter::Peekable<Records> = (Box::new(records) as Records).peekable();
    std::iter::from_fn(move || {
        let first = match records.next()? {
            Ok(r) => r,
            Err((line, e)) => return Some((line, Err(e))),
        };
        let line = first.line;
        let Some(id) = first.get(key).map(str::to_owned) else {
            return Some((line, Err(format!("{key} is missing"))));
        };
        let mut group = vec![first];
        while let Some(Ok(next)) = records.peek() {
            if next.get(key) != Some(id.as_str()) {
                break;
            }
            if let Some(Ok(r)) = records.next() {
                group.push(r);
            }
        }
        Some((line, parse(&group)))
    })
}

fn decimal(rec: &Record, field: &str, currency: Currency) -> Result<Money, String> {
    Money::parse_decimal(rec.need(field)?, currency).map_err(|e| format!("{field}: {e}"))
}

fn flag(rec: &Record, field: &str) -> Result<Option<bool>, String> {
    rec.get(field)
        .map(|v| match v.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" => Ok(false),
            other => Err(format!("{field}: {other:?} is not true or false")),
        })
        .transpose()
}

fn list(rec: &Record, field: &str, separator: char) -> Option<Vec<String>> {
    rec.get(field).map(|v| {
        v.split(separator)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

fn money_input(m: Money) -> MoneyInput {
    MoneyInput {
        amount: m.amount,
        currency: m.currency,
    }
}

fn checked(input: ProductInput) -> Result<Row, String> {
    input.validate().map_err(|e| e.to_string())?;
    Ok(Row::Product(Box::new(input)))
}

/// `id,title,category,price,currency,inventory[,handle,url,image_url,tags,cost]`;
/// prices are decimal text, tags separated by `|`.
fn plain_product(rec: &Record) -> Result<Row, String> {
    let currency = Currency::parse(rec.need("currency")?).map_err(|e| format!("currency: {e}"))?;
    checked(ProductInput {
        id: rec.need("id")?.to_owned(),
        title: rec.need("title")?.to_owned(),
        handle: rec.get("handle").map(str::to_owned),
        url: rec.get("url").map(str::to_owned),
        image_url: rec.get("image_url").map(str::to_owned),
        category: rec.need("category")?.to_owned(),
        tags: list(rec, "tags", '|').unwrap_or_default(),
        price: money_input(decimal(rec, "price", currency)?),
        cost: rec
            .get("cost")
            .map(|_| decimal(rec, "cost", currency).map(money_input))
            .transpose()?,
        inventory: rec
            .get("inventory")
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("inventory: {v:?} is not a whole number"))
            })
            .transpose()?
            .unwrap_or(0),
    })
}

/// `customer_id[,segments,loyalty_tier,company_id,personalization,marketing]`.
fn plain_customer(rec: &Record) -> Result<Row, String> {
    let (personalization, marketing) = (flag(rec, "personalization")?, flag(rec, "marketing")?);
    Ok(Row::Customer(CustomerRow {
        customer_id: rec.need("customer_id")?.to_owned(),
        segments: list(rec, "segments", '|'),
        loyalty_tier: rec.get("loyalty_tier").map(str::to_owned),
        company_id: rec.get("company_id").map(str::to_owned),
        consent: (personalization.is_some() || marketing.is_some()).then_some(ConsentRow {
            personalization,
            marketing,
        }),
    }))
}

/// `order_id,customer_id,created_at,currency,total,product_id,quantity[,status]`, one
/// row per line; the order's fields are read from its first row.
fn plain_order(rows: &[Record]) -> Result<Row, String> {
    let first = &rows[0];
    let currency =
        Currency::parse(first.need("currency")?).map_err(|e| format!("currency: {e}"))?;
    let total = decimal(first, "total", currency)?;
    let mut lines = Vec::new();
    for r in rows {
        if let Some(p) = r.get("product_id") {
            let quantity = r.need("quantity")?;
            lines.push(OrderLine {
                product_id: p.to_owned(),
                quantity: quantity
                    .parse()
                    .map_err(|_| format!("quantity: {quantity:?} is not a whole number"))?,
                alternatives: Vec::new(),
            });
        }
    }
    Ok(Row::Order(OrderRow {
        order_id: first.need("order_id")?.to_owned(),
        customer_id: first.need("customer_id")?.to_owned(),
        created_at: TimeValue::Text(first.need("created_at")?.to_owned()),
        total: RawMoney {
            amount: total.amount,
            currency: currency.as_str().to_owned(),
        },
        lines,
        status: first.get("status").map(str::to_owned),
        buyer_email: None,
    }))
}

/// `event_id,type,customer_id,session_id,product_id,category,quantity,price,currency,
/// query,order_id,timestamp,country,device`: the events API's fields (the context's
/// flattened), prices as decimal text.
fn plain_event(rec: &Record) -> Result<Row, String> {
    let price = match (rec.get("price"), rec.get("currency")) {
        (Some(_), Some(c)) => {
            let currency = Currency::parse(c).map_err(|e| format!("currency: {e}"))?;
            let m = decimal(rec, "price", currency)?;
            Some(RawMoney {
                amount: m.amount,
                currency: currency.as_str().to_owned(),
            })
        }
        (Some(_), None) => return Err("price needs a currency".into()),
        _ => None,
    };
    let number = |field: &str| -> Result<Option<i64>, String> {
        rec.get(field)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("{field}: {v:?} is not a whole number"))
            })
            .transpose()
    };
    Ok(Row::Event(Box::new(RawEvent {
        event_id: rec.get("event_id").map(str::to_owned),
        kind: rec.get("type").map(str::to_owned),
        customer_id: rec.get("customer_id").map(str::to_owned),
        session_id: rec.get("session_id").map(str::to_owned),
        product_id: rec.get("product_id").map(str::to_owned),
        category: rec.get("category").map(str::to_owned),
        quantity: number("quantity")?,
        price,
        query: rec.get("query").map(str::to_owned),
        order_id: rec.get("order_id").map(str::to_owned),
        timestamp: number("timestamp")?,
        context: (rec.get("country").is_some() || rec.get("device").is_some()).then(|| {
            RawPageContext {
                country: rec.get("country").map(str::to_owned),
                device: rec.get("device").map(str::to_owned),
                ..RawPageContext::default()
            }
        }),
        ..RawEvent::default()
    })))
}

/// Shopify's product export: one row per variant (and per extra image), grouped by
/// `Handle`; the first row carries the product's fields. The handle is the product id
/// (the export has no numeric id). Stock is the sum of tracked variants' quantities;
/// with no tracked variant the product is always available. Only `active` products are
/// imported.
fn shopify_product(rows: &[Record], currency: Currency) -> Result<Row, String> {
    let first = &rows[0];
    let handle = first.need("Handle")?;
    if first
        .get("Status")
        .is_some_and(|s| !s.eq_ignore_ascii_case("active"))
    {
        return Ok(Row::Skip("not active"));
    }
    let variants: Vec<&Record> = rows
        .iter()
        .filter(|r| r.get("Variant Price").is_some())
        .collect();
    let price_row = variants.first().ok_or("no variant with a price")?;
    let tracked: Vec<&&Record> = variants
        .iter()
        .filter(|r| r.get("Variant Inventory Tracker").is_some())
        .collect();
    let mut stock = 0i64;
    for r in &tracked {
        let q = r.get("Variant Inventory Qty").unwrap_or("0");
        stock += q
            .parse::<i64>()
            .map_err(|_| format!("Variant Inventory Qty: {q:?} is not a whole number"))?
            .max(0);
    }
    if tracked.is_empty() {
        stock = crate::domain::catalog::UNTRACKED_STOCK;
    }
    let category = first
        .get("Type")
        .or_else(|| first.get("Product Category"))
        .unwrap_or("uncategorized");
    checked(ProductInput {
        id: handle.to_owned(),
        title: first.need("Title")?.to_owned(),
        handle: Some(handle.to_owned()),
        url: Some(format!("/products/{handle}")),
        image_url: rows
            .iter()
            .find_map(|r| r.get("Image Src"))
            .map(str::to_owned),
        category: category.to_owned(),
        tags: list(first, "Tags", ',').unwrap_or_default(),
        price: money_input(decimal(price_row, "Variant Price", currency)?),
        cost: price_row
            .get("Cost per item")
            .map(|_| decimal(price_row, "Cost per item", currency).map(money_input))
            .transpose()?,
        inventory: stock,
    })
}

/// Shopify's order export: one row per line item, grouped by `Name` (`#1001`); the
/// first row carries the order's fields. The export names the buyer only by email: the
/// order goes to the customer the email is linked to (by a customer or order webhook),
/// else to a profile under the email's keyed hash, folded into the customer's once a
/// webhook links them (the address itself is never stored). Line items are matched to catalog products by SKU
/// or by the handle of their name.
fn shopify_order(rows: &[Record]) -> Result<Row, String> {
    let first = &rows[0];
    let Some(email) = first.get("Email") else {
        return Ok(Row::Skip("no customer"));
    };
    let currency =
        Currency::parse(first.need("Currency")?).map_err(|e| format!("Currency: {e}"))?;
    let total = decimal(first, "Total", currency)?;
    let status = if first.get("Cancelled at").is_some() {
        Some("cancelled".to_owned())
    } else {
        first
            .get("Financial Status")
            .filter(|s| matches!(*s, "refunded" | "voided"))
            .map(str::to_owned)
    };
    let mut lines = Vec::new();
    for r in rows {
        let Some(name) = r.get("Lineitem name") else {
            continue;
        };
        let quantity = r.need("Lineitem quantity")?;
        let quantity = quantity
            .parse()
            .map_err(|_| format!("Lineitem quantity: {quantity:?} is not a whole number"))?;
        // Resolved against the catalog when applied: SKU first, then the name's handle
        // (a variant's line is named `Product - Variant`).
        let mut ids: Vec<String> = r
            .get("Lineitem sku")
            .map(str::to_owned)
            .into_iter()
            .collect();
        ids.push(slug(name));
        ids.push(slug(name.split(" - ").next().unwrap_or(name)));
        lines.push(OrderLine {
            product_id: ids.remove(0),
            quantity,
            alternatives: ids,
        });
    }
    Ok(Row::Order(OrderRow {
        order_id: first.get("Id").unwrap_or(first.need("Name")?).to_owned(),
        customer_id: String::new(),
        buyer_email: Some(email.to_owned()),
        created_at: TimeValue::Text(first.need("Created at")?.to_owned()),
        total: RawMoney {
            amount: total.amount,
            currency: currency.as_str().to_owned(),
        },
        lines,
        status,
    }))
}
