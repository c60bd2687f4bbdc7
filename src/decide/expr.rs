//! The one expression language of the ruleset: typed JSON, compiled when a ruleset is
//! published (an unknown attribute, a wrong operator or a literal of the wrong type is a
//! publish error with its JSON path), evaluated per request without allocating.
//!
//! ```json
//! {"and": [{"eq": ["customer.loyalty_tier", "gold"]},
//!          {"gte": ["cart.subtotal", {"amount": 3000, "currency": "GBP"}]},
//!          {"not": {"in_segment": "staff"}},
//!          {"any": {"in": ["line.category", ["kitchen"]]}}]}
//! ```
//!
//! Comparisons are `{"<op>": ["<attribute>", <literal>]}` with `eq ne lt lte gt gte in
//! nin contains starts_with before after`; then `exists`, `in_segment`, `and or not`,
//! `true`/`false`, and over the cart's lines `any`, `all`, `{"count": {"where": e,
//! "<op>": n}}` and `{"sum": {"of": "line.quantity", "where": e, "<op>": v}}`.
//!
//! Evaluation is three-valued: an attribute the request does not have (no profile, no
//! consent to personalization, no such line) makes its comparison *unknown*, and unknown
//! stays unknown under `not`, so "not a gold member" is false, not true, for a visitor
//! whose tier is unknown. Only a definite true passes. Money compares only within one
//! currency (otherwise unknown); percentages elsewhere in the ruleset are basis points.

use serde_json::Value;

use crate::domain::catalog::{Category, Product};
use crate::domain::{Currency, Money, Placement};

/// One problem found while compiling a ruleset, at a JSON path (`$.promotions[2].value`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleError {
    pub path: String,
    pub message: String,
}

/// Collects errors while compiling; every error names where it is.
#[derive(Default)]
pub struct Errors(pub Vec<RuleError>);

impl Errors {
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(RuleError {
            path: path.to_owned(),
            message: message.into(),
        });
    }
}

/// What an expression may read besides the request context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The request: customer, session, cart totals, consent, now.
    Context,
    /// The request and one product (merchandising).
    Product,
    /// The request and one cart line (promotion targets, line quantifiers).
    Line,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Bool,
    Int,
    Money,
    Str,
    /// A list of strings (segments, tags): `contains`.
    List,
    /// A category: `eq`/`in` also match the categories under it.
    Category,
    Time,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    CustomerSegments,
    CustomerLoyaltyTier,
    CustomerCompanyId,
    CustomerOrdersCount,
    CustomerDaysSinceLastOrder,
    CustomerLifetimeSpend,
    SessionChannel,
    SessionDevice,
    SessionCountry,
    SessionCurrency,
    SessionPlacement,
    SessionExitIntent,
    SessionFirstVisit,
    CartSubtotal,
    CartQuantity,
    CartLines,
    ConsentPersonalization,
    ConsentMarketing,
    Now,
    ProductId,
    ProductCategory,
    ProductTags,
    ProductPrice,
    ProductCost,
    ProductInStock,
    LineProductId,
    LineCategory,
    LineTags,
    LineQuantity,
    LinePrice,
    LineCost,
    LineTotal,
}

/// Every attribute: its name, type and the scope it needs.
const ATTRS: [(&str, Attr, Type, Scope); 33] = [
    (
        "customer.segments",
        Attr::CustomerSegments,
        Type::List,
        Scope::Context,
    ),
    (
        "customer.loyalty_tier",
        Attr::CustomerLoyaltyTier,
        Type::Str,
        Scope::Context,
    ),
    (
        "customer.company_id",
        Attr::CustomerCompanyId,
        Type::Str,
        Scope::Context,
    ),
    // The earlier name of `customer.company_id`, still read in stored rulesets.
    (
        "customer.account_id",
        Attr::CustomerCompanyId,
        Type::Str,
        Scope::Context,
    ),
    (
        "customer.orders_count",
        Attr::CustomerOrdersCount,
        Type::Int,
        Scope::Context,
    ),
    (
        "customer.days_since_last_order",
        Attr::CustomerDaysSinceLastOrder,
        Type::Int,
        Scope::Context,
    ),
    (
        "customer.lifetime_spend",
        Attr::CustomerLifetimeSpend,
        Type::Money,
        Scope::Context,
    ),
    (
        "session.channel",
        Attr::SessionChannel,
        Type::Str,
        Scope::Context,
    ),
    (
        "session.device",
        Attr::SessionDevice,
        Type::Str,
        Scope::Context,
    ),
    (
        "session.country",
        Attr::SessionCountry,
        Type::Str,
        Scope::Context,
    ),
    (
        "session.currency",
        Attr::SessionCurrency,
        Type::Str,
        Scope::Context,
    ),
    (
        "session.placement",
        Attr::SessionPlacement,
        Type::Str,
        Scope::Context,
    ),
    (
        "session.exit_intent",
        Attr::SessionExitIntent,
        Type::Bool,
        Scope::Context,
    ),
    (
        "session.first_visit",
        Attr::SessionFirstVisit,
        Type::Bool,
        Scope::Context,
    ),
    (
        "cart.subtotal",
        Attr::CartSubtotal,
        Type::Money,
        Scope::Context,
    ),
    (
        "cart.quantity",
        Attr::CartQuantity,
        Type::Int,
        Scope::Context,
    ),
    ("cart.lines", Attr::CartLines, Type::Int, Scope::Context),
    (
        "consent.personalization",
        Attr::ConsentPersonalization,
        Type::Bool,
        Scope::Context,
    ),
    (
        "consent.marketing",
        Attr::ConsentMarketing,
        Type::Bool,
        Scope::Context,
    ),
    ("now", Attr::Now, Type::Time, Scope::Context),
    ("product.id", Attr::ProductId, Type::Str, Scope::Product),
    (
        "product.category",
        Attr::ProductCategory,
        Type::Category,
        Scope::Product,
    ),
    (
        "product.tags",
        Attr::ProductTags,
        Type::List,
        Scope::Product,
    ),
    (
        "product.price",
        Attr::ProductPrice,
        Type::Money,
        Scope::Product,
    ),
    (
        "product.cost",
        Attr::ProductCost,
        Type::Money,
        Scope::Product,
    ),
    (
        "product.in_stock",
        Attr::ProductInStock,
        Type::Bool,
        Scope::Product,
    ),
    (
        "line.product_id",
        Attr::LineProductId,
        Type::Str,
        Scope::Line,
    ),
    (
        "line.category",
        Attr::LineCategory,
        Type::Category,
        Scope::Line,
    ),
    ("line.tags", Attr::LineTags, Type::List, Scope::Line),
    ("line.quantity", Attr::LineQuantity, Type::Int, Scope::Line),
    ("line.price", Attr::LinePrice, Type::Money, Scope::Line),
    ("line.cost", Attr::LineCost, Type::Money, Scope::Line),
    ("line.total", Attr::LineTotal, Type::Money, Scope::Line),
];

fn attribute(name: &str) -> Option<(Attr, Type, Scope)> {
    ATTRS
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|&(_, a, t, s)| (a, t, s))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    Nin,
    Contains,
    StartsWith,
}

const OPS: [(&str, Op); 12] = [
    ("eq", Op::Eq),
    ("ne", Op::Ne),
    ("lt", Op::Lt),
    ("lte", Op::Lte),
    ("gt", Op::Gt),
    ("gte", Op::Gte),
    ("in", Op::In),
    ("nin", Op::Nin),
    ("contains", Op::Contains),
    ("starts_with", Op::StartsWith),
    ("before", Op::Lt),
    ("after", Op::Gt),
];

/// A literal, already of the attribute's type.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Bool(bool),
    Int(i64),
    Money(Money),
    Str(Box<str>),
    Strs(StrSet),
    Ints(Box<[i64]>),
    Time(i64),
}

/// The values of an `in`/`nin` list, hashed: a lookup costs about the same however long
/// the list. Category lists are matched through each category's precomputed ancestry
/// ([`Category::ancestry`]): a few 128-bit integer lookups.
#[derive(Clone, Debug, PartialEq)]
pub struct StrSet {
    values: rustc_hash::FxHashSet<Box<str>>,
    hashes: rustc_hash::FxHashSet<u128>,
}

impl StrSet {
    pub fn new(values: Vec<Box<str>>) -> Self {
        Self {
            hashes: values
                .iter()
                .map(|v| crate::domain::catalog::name_hash(v))
                .collect(),
            values: values.into_iter().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn contains(&self, s: &str) -> bool {
        self.values.contains(s)
    }

    /// Whether the category, or one above it, is in the list (of handles).
    pub fn holds_category(&self, c: &Category) -> bool {
        c.ancestry.iter().any(|(h, _)| self.hashes.contains(h))
    }
}

/// A compiled expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Const(bool),
    And(Box<[Expr]>),
    Or(Box<[Expr]>),
    Not(Box<Expr>),
    Cmp {
        attr: Attr,
        op: Op,
        lit: Lit,
    },
    Exists(Attr),
    AnyLine(Box<Expr>),
    AllLines(Box<Expr>),
    CountLines {
        cond: Box<Expr>,
        op: Op,
        n: i64,
    },
    SumLines {
        of: Attr,
        cond: Box<Expr>,
        op: Op,
        lit: Lit,
    },
}

/// The customer's side of the context; absent without a profile or without consent to
/// personalization (then every `customer.*` attribute is unknown).
#[derive(Clone, Debug, Default)]
pub struct Customer<'a> {
    pub segments: &'a [String],
    pub loyalty_tier: Option<&'a str>,
    pub company_id: Option<&'a str>,
    pub orders_count: i64,
    pub days_since_last_order: Option<i64>,
    pub lifetime_spend: Option<Money>,
}

#[derive(Clone, Debug)]
pub struct Session<'a> {
    pub channel: Option<&'a str>,
    pub device: Option<&'a str>,
    pub country: Option<&'a str>,
    pub currency: Currency,
    pub placement: Option<Placement>,
    pub exit_intent: bool,
    pub first_visit: bool,
}

/// A product as rules see it: the catalog's record, its category, and its price for this
/// visitor.
#[derive(Clone, Copy, Debug)]
pub struct ProductFacts<'a> {
    pub product: &'a Product,
    pub category: &'a Category,
    pub price: Money,
    pub in_stock: bool,
}

/// One cart line: the product (at this visitor's unit price) and the quantity.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    pub item: ProductFacts<'a>,
    pub quantity: u32,
}

impl Line<'_> {
    /// Price x quantity. Prices are at most [`Money::MAX_AMOUNT`] and quantities 100,000,
    /// so this cannot overflow; a price stored before that bound saturates rather than
    /// wraps.
    pub fn total(&self) -> Money {
        Money::new(
            self.item
                .price
                .amount
                .saturating_mul(i64::from(self.quantity)),
            self.item.price.currency,
        )
    }
}

/// Everything a rule can read about one request.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub customer: Option<Customer<'a>>,
    pub session: Session<'a>,
    pub lines: Vec<Line<'a>>,
    pub personalization: bool,
    pub marketing: bool,
    /// Unix seconds: an input, so a decision can be replayed at any time.
    pub now: i64,
    /// Item discounts taken so far: order thresholds read the subtotal after them.
    pub discount: i64,
    /// The promotion sets the visitor's experiment arms put in force (a promotion in a
    /// set is in force only for them).
    pub promotion_sets: Vec<String>,
    /// The content variant the visitor's experiment arms show (content of a variant is
    /// shown only to them).
    pub content_variant: Option<String>,
}

impl<'a> Context<'a> {
    /// A visitor the service knows nothing about (no profile, no page context), with
    /// consent to personalization and to marketing as given.
    pub fn anonymous(currency: Currency, lines: Vec<Line<'a>>, now: i64, marketing: bool) -> Self {
        Self {
            customer: None,
            session: Session {
                channel: None,
                device: None,
                country: None,
                currency,
                placement: None,
                exit_intent: false,
                first_visit: true,
            },
            lines,
            personalization: true,
            marketing,
            now,
            discount: 0,
            promotion_sets: Vec::new(),
            content_variant: None,
        }
    }

    /// The cart's subtotal in the request's currency; unknown when a line is priced in
    /// another (money of two currencies is never added).
    pub fn subtotal(&self) -> Option<Money> {
        let currency = self.session.currency;
        let mut sum: i64 = 0;
        for l in &self.lines {
            if l.item.price.currency != currency {
                return None;
            }
            sum = sum.checked_add(l.total().amount)?;
        }
        Some(Money::new(sum - self.discount, currency))
    }
}

/// Where an expression is evaluated: the context, and the product or line in scope.
#[derive(Clone, Copy)]
pub struct Env<'e, 'a> {
    pub ctx: &'e Context<'a>,
    pub product: Option<&'e ProductFacts<'a>>,
    pub line: Option<&'e Line<'a>>,
}

impl<'e, 'a> Env<'e, 'a> {
    pub fn of(ctx: &'e Context<'a>) -> Self {
        Self {
            ctx,
            product: None,
            line: None,
        }
    }

    pub fn with_product(ctx: &'e Context<'a>, product: &'e ProductFacts<'a>) -> Self {
        Self {
            ctx,
            product: Some(product),
            line: None,
        }
    }

    pub fn with_line(ctx: &'e Context<'a>, line: &'e Line<'a>) -> Self {
        Self {
            ctx,
            product: None,
            line: Some(line),
        }
    }
}

/// A value read from the context.
enum Val<'v> {
    Bool(bool),
    Int(i64),
    Money(Money),
    Str(&'v str),
    Segments(&'v [String]),
    Tags(&'v [Box<str>]),
    Category(&'v Category),
    Time(i64),
}

impl Env<'_, '_> {
    fn get(&self, attr: Attr) -> Option<Val<'_>> {
        let c = self.ctx;
        let customer = || c.customer.as_ref();
        let product = || self.product;
        let line = || self.line;
        Some(match attr {
            Attr::CustomerSegments => Val::Segments(customer()?.segments),
            Attr::CustomerLoyaltyTier => Val::Str(customer()?.loyalty_tier?),
            Attr::CustomerCompanyId => Val::Str(customer()?.company_id?),
            Attr::CustomerOrdersCount => Val::Int(customer()?.orders_count),
            Attr::CustomerDaysSinceLastOrder => Val::Int(customer()?.days_since_last_order?),
            Attr::CustomerLifetimeSpend => Val::Money(customer()?.lifetime_spend?),
            Attr::SessionChannel => Val::Str(c.session.channel?),
            Attr::SessionDevice => Val::Str(c.session.device?),
            Attr::SessionCountry => Val::Str(c.session.country?),
            Attr::SessionCurrency => Val::Str(c.session.currency.as_str()),
            Attr::SessionPlacement => Val::Str(c.session.placement?.as_str()),
            Attr::SessionExitIntent => Val::Bool(c.session.exit_intent),
            Attr::SessionFirstVisit => Val::Bool(c.session.first_visit),
            Attr::CartSubtotal => Val::Money(c.subtotal()?),
            Attr::CartQuantity => Val::Int(c.lines.iter().map(|l| i64::from(l.quantity)).sum()),
            Attr::CartLines => Val::Int(c.lines.len() as i64),
            Attr::ConsentPersonalization => Val::Bool(c.personalization),
            Attr::ConsentMarketing => Val::Bool(c.marketing),
            Attr::Now => Val::Time(c.now),
            Attr::ProductId => Val::Str(&product()?.product.id),
            Attr::ProductCategory => Val::Category(product()?.category),
            Attr::ProductTags => Val::Tags(&product()?.product.tags),
            Attr::ProductPrice => Val::Money(product()?.price),
            Attr::ProductCost => Val::Money(product()?.product.cost?),
            Attr::ProductInStock => Val::Bool(product()?.in_stock),
            Attr::LineProductId => Val::Str(&line()?.item.product.id),
            Attr::LineCategory => Val::Category(line()?.item.category),
            Attr::LineTags => Val::Tags(&line()?.item.product.tags),
            Attr::LineQuantity => Val::Int(i64::from(line()?.quantity)),
            Attr::LinePrice => Val::Money(line()?.item.price),
            Attr::LineCost => Val::Money(line()?.item.product.cost?),
            Attr::LineTotal => Val::Money(line()?.total()),
        })
    }
}

fn order<T: PartialOrd>(op: Op, a: &T, b: &T) -> Option<bool> {
    Some(match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Lt => a < b,
        Op::Lte => a <= b,
        Op::Gt => a > b,
        Op::Gte => a >= b,
        Op::In | Op::Nin | Op::Contains | Op::StartsWith => return None,
    })
}

fn compare(val: &Val<'_>, op: Op, lit: &Lit) -> Option<bool> {
    match (val, lit) {
        (Val::Bool(a), Lit::Bool(b)) => order(op, a, b),
        (Val::Int(a), Lit::Int(b)) | (Val::Time(a), Lit::Time(b)) => order(op, a, b),
        (Val::Int(a), Lit::Ints(set)) => Some(set.binary_search(a).is_ok() == (op == Op::In)),
        // Mixing currencies is neither true nor false.
        (Val::Money(a), Lit::Money(b)) if a.currency == b.currency => {
            order(op, &a.amount, &b.amount)
        }
        (Val::Money(_), Lit::Money(_)) => None,
        (Val::Str(a), Lit::Str(b)) => match op {
            Op::StartsWith => Some(a.starts_with(&**b)),
            _ => order(op, a, &&**b),
        },
        (Val::Str(a), Lit::Strs(set)) => Some(set.contains(a) == (op == Op::In)),
        (Val::Segments(list), Lit::Str(b)) => Some(list.iter().any(|s| **s == **b)),
        (Val::Tags(list), Lit::Str(b)) => Some(list.iter().any(|s| **s == **b)),
        (Val::Category(c), Lit::Str(b)) => {
            let inside = c.is_within(b);
            Some(if op == Op::Ne { !inside } else { inside })
        }
        (Val::Category(c), Lit::Strs(set)) => Some(set.holds_category(c) == (op == Op::In)),
        _ => None,
    }
}

/// Three-valued `and` (`decisive` false) and `or` (`decisive` true): one decisive value
/// decides; else any unknown leaves the whole unknown.
fn connect(values: impl Iterator<Item = Option<bool>>, decisive: bool) -> Option<bool> {
    let mut unknown = false;
    for v in values {
        match v {
            Some(b) if b == decisive => return Some(decisive),
            Some(_) => {}
            None => unknown = true,
        }
    }
    if unknown { None } else { Some(!decisive) }
}

fn and(values: impl Iterator<Item = Option<bool>>) -> Option<bool> {
    connect(values, false)
}

fn or(values: impl Iterator<Item = Option<bool>>) -> Option<bool> {
    connect(values, true)
}

impl Expr {
    /// True only when the expression definitely holds.
    pub fn holds(&self, env: Env<'_, '_>) -> bool {
        self.eval(env) == Some(true)
    }

    /// Three-valued: `None` is unknown (a missing attribute).
    pub fn eval(&self, env: Env<'_, '_>) -> Option<bool> {
        match self {
            Expr::Const(b) => Some(*b),
            Expr::And(list) => and(list.iter().map(|e| e.eval(env))),
            Expr::Or(list) => or(list.iter().map(|e| e.eval(env))),
            Expr::Not(e) => e.eval(env).map(|b| !b),
            Expr::Cmp { attr, op, lit } => compare(&env.get(*attr)?, *op, lit),
            Expr::Exists(attr) => Some(env.get(*attr).is_some()),
            Expr::AnyLine(e) => or(env
                .ctx
                .lines
                .iter()
                .map(|l| e.eval(Env::with_line(env.ctx, l)))),
            Expr::AllLines(e) => and(env
                .ctx
                .lines
                .iter()
                .map(|l| e.eval(Env::with_line(env.ctx, l)))),
            Expr::CountLines { cond, op, n } => {
                let count = env
                    .ctx
                    .lines
                    .iter()
                    .filter(|l| cond.holds(Env::with_line(env.ctx, l)))
                    .count() as i64;
                order(*op, &count, n)
            }
            Expr::SumLines { of, cond, op, lit } => {
                let mut int = 0i64;
                let mut money: Option<Money> = None;
                for l in &env.ctx.lines {
                    let line = Env::with_line(env.ctx, l);
                    if !cond.holds(line) {
                        continue;
                    }
                    match line.get(*of)? {
                        Val::Int(v) => int += v,
                        Val::Money(m) => match &mut money {
                            Some(total) if total.currency == m.currency => total.amount += m.amount,
                            Some(_) => return None,
                            None => money = Some(m),
                        },
                        Val::Bool(_)
                        | Val::Str(_)
                        | Val::Segments(_)
                        | Val::Tags(_)
                        | Val::Category(_)
                        | Val::Time(_) => return None,
                    }
                }
                match lit {
                    Lit::Money(m) => compare(
                        &Val::Money(money.unwrap_or(Money::new(0, m.currency))),
                        *op,
                        lit,
                    ),
                    _ => compare(&Val::Int(int), *op, lit),
                }
            }
        }
    }
}

/// Compiles `v` (at JSON path `path`) for `scope`; errors go to `errors` and the result
/// is then `false`.
pub fn compile(v: &Value, scope: Scope, path: &str, errors: &mut Errors) -> Expr {
    match v {
        Value::Bool(b) => return Expr::Const(*b),
        Value::Object(map) if map.len() == 1 => {
            if let Some((key, arg)) = map.iter().next() {
                return compile_op(key, arg, scope, &format!("{path}.{key}"), errors);
            }
        }
        Value::Null | Value::Number(_) | Value::String(_) | Value::Array(_) | Value::Object(_) => {}
    }
    errors.push(
        path,
        "an expression is true, false or an object with one operator",
    );
    Expr::Const(false)
}

fn compile_list(arg: &Value, scope: Scope, path: &str, errors: &mut Errors) -> Box<[Expr]> {
    match arg.as_array() {
        Some(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, e)| compile(e, scope, &format!("{path}[{i}]"), errors))
            .collect(),
        _ => {
            errors.push(path, "expects a non-empty array of expressions");
            Box::new([])
        }
    }
}

fn compile_attr(
    name: &Value,
    scope: Scope,
    path: &str,
    errors: &mut Errors,
) -> Option<(Attr, Type)> {
    let Some(name) = name.as_str() else {
        errors.push(path, "expects an attribute name");
        return None;
    };
    let Some((attr, ty, needs)) = attribute(name) else {
        errors.push(path, format!("unknown attribute {name:?}"));
        return None;
    };
    if needs != Scope::Context && needs != scope {
        let what = match needs {
            Scope::Product => "product rules (merchandising)",
            Scope::Line | Scope::Context => "cart lines (any, all, count, sum, promotion targets)",
        };
        errors.push(path, format!("{name} is only available in {what}"));
        return None;
    }
    Some((attr, ty))
}

fn compile_op(key: &str, arg: &Value, scope: Scope, path: &str, errors: &mut Errors) -> Expr {
    match key {
        "and" => return Expr::And(compile_list(arg, scope, path, errors)),
        "or" => return Expr::Or(compile_list(arg, scope, path, errors)),
        "not" => return Expr::Not(Box::new(compile(arg, scope, path, errors))),
        "exists" => {
            return compile_attr(arg, scope, path, errors)
                .map_or(Expr::Const(false), |(a, _)| Expr::Exists(a));
        }
        "in_segment" => {
            return match arg.as_str() {
                Some(s) => Expr::Cmp {
                    attr: Attr::CustomerSegments,
                    op: Op::Contains,
                    lit: Lit::Str(s.into()),
                },
                None => {
                    errors.push(path, "expects a segment name");
                    Expr::Const(false)
                }
            };
        }
        "any" | "all" => {
            if scope == Scope::Line {
                errors.push(path, "line quantifiers do not nest");
            }
            let inner = Box::new(compile(arg, Scope::Line, path, errors));
            return if key == "any" {
                Expr::AnyLine(inner)
            } else {
                Expr::AllLines(inner)
            };
        }
        "count" | "sum" => return compile_aggregate(key, arg, scope, path, errors),
        _ => {}
    }
    let Some(op) = OPS.iter().find(|(n, _)| *n == key).map(|(_, op)| *op) else {
        let hint = if matches!(key, "true" | "false") {
            format!(": write the JSON value {key}, not an object")
        } else {
            String::new()
        };
        errors.push(path, format!("unknown operator {key:?}{hint}"));
        return Expr::Const(false);
    };
    let Some([name, literal]) = arg.as_array().map(Vec::as_slice) else {
        errors.push(path, "expects [attribute, value]");
        return Expr::Const(false);
    };
    let Some((attr, ty)) = compile_attr(name, scope, &format!("{path}[0]"), errors) else {
        return Expr::Const(false);
    };
    match literal_for(ty, op, literal, &format!("{path}[1]"), errors) {
        Some(lit) => Expr::Cmp { attr, op, lit },
        None => Expr::Const(false),
    }
}

fn compile_aggregate(
    key: &str,
    arg: &Value,
    scope: Scope,
    path: &str,
    errors: &mut Errors,
) -> Expr {
    if scope == Scope::Line {
        errors.push(path, "line quantifiers do not nest");
    }
    let Some(map) = arg.as_object() else {
        errors.push(path, "expects {\"where\": expression, \"<op>\": value}");
        return Expr::Const(false);
    };
    let cond = Box::new(match map.get("where") {
        Some(w) => compile(w, Scope::Line, &format!("{path}.where"), errors),
        None => Expr::Const(true),
    });
    let mut compared = None;
    for (k, v) in map {
        match k.as_str() {
            "where" | "of" => {}
            other => match OPS.iter().find(|(n, _)| *n == other) {
                Some((_, op)) if compared.is_none() => {
                    compared = Some((*op, v, format!("{path}.{other}")));
                }
                _ => errors.push(
                    &format!("{path}.{other}"),
                    "expects one comparison (eq, lt, gte, ...)",
                ),
            },
        }
    }
    let Some((op, value, vpath)) = compared else {
        errors.push(path, "needs a comparison (eq, lt, gte, ...)");
        return Expr::Const(false);
    };
    if !matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Lte | Op::Gt | Op::Gte) {
        errors.push(&vpath, "compares with eq, ne, lt, lte, gt or gte");
        return Expr::Const(false);
    }
    if key == "count" {
        return match value.as_i64() {
            Some(n) => Expr::CountLines { cond, op, n },
            None => {
                errors.push(&vpath, "expects a whole number");
                Expr::Const(false)
            }
        };
    }
    let of = map.get("of").unwrap_or(&Value::Null);
    let Some((of, ty)) = compile_attr(of, Scope::Line, &format!("{path}.of"), errors) else {
        return Expr::Const(false);
    };
    if !matches!(ty, Type::Int | Type::Money) {
        errors.push(&format!("{path}.of"), "sums a number or money attribute");
        return Expr::Const(false);
    }
    match literal_for(ty, op, value, &vpath, errors) {
        Some(lit) => Expr::SumLines { of, cond, op, lit },
        None => Expr::Const(false),
    }
}

/// Parses money: `{"amount": 3000, "currency": "GBP"}` (integer minor units).
pub fn money(v: &Value) -> Option<Money> {
    let map = v.as_object()?;
    if map.len() != 2 {
        return None;
    }
    let amount = map.get("amount")?.as_i64()?;
    let currency = Currency::parse(map.get("currency")?.as_str()?).ok()?;
    Some(Money::new(amount, currency))
}

fn strings(v: &Value) -> Option<StrSet> {
    let list: Vec<Box<str>> = v
        .as_array()?
        .iter()
        .map(|s| s.as_str().map(Box::from))
        .collect::<Option<_>>()?;
    Some(StrSet::new(list))
}

/// The handle a rule's category name stands for; a name with no letter or digit can
/// match nothing and is refused.
pub fn category_name(name: &str, path: &str, errors: &mut Errors) -> Option<String> {
    let handle = crate::domain::catalog::category_handle(name);
    if handle.is_empty() {
        errors.push(
            path,
            format!("{name:?} names no category (a handle like \"kitchen/cookware\" or a path like \"Kitchen > Cookware\")"),
        );
        return None;
    }
    Some(handle)
}

/// Category names (handles or paths) as a set of handles.
pub fn category_set(names: &[&str], path: &str, errors: &mut Errors) -> StrSet {
    StrSet::new(
        names
            .iter()
            .filter_map(|n| category_name(n, path, errors))
            .map(String::into_boxed_str)
            .collect(),
    )
}

fn literal_for(ty: Type, op: Op, v: &Value, path: &str, errors: &mut Errors) -> Option<Lit> {
    use Op::{Contains, Eq, Gt, Gte, In, Lt, Lte, Ne, Nin, StartsWith};
    let allowed = match ty {
        Type::Bool => matches!(op, Eq | Ne),
        Type::Int => matches!(op, Eq | Ne | Lt | Lte | Gt | Gte | In | Nin),
        Type::Money | Type::Time => matches!(op, Eq | Ne | Lt | Lte | Gt | Gte),
        Type::Str => matches!(op, Eq | Ne | In | Nin | StartsWith),
        Type::List => matches!(op, Contains),
        Type::Category => matches!(op, Eq | Ne | In | Nin),
    };
    if !allowed {
        errors.push(
            path,
            format!("this operator does not apply to a {ty:?} attribute"),
        );
        return None;
    }
    let set = matches!(op, In | Nin);
    let lit = match (ty, set) {
        (Type::Bool, _) => v.as_bool().map(Lit::Bool),
        (Type::Int, false) => v.as_i64().map(Lit::Int),
        (Type::Int, true) => v
            .as_array()
            .and_then(|a| a.iter().map(Value::as_i64).collect::<Option<Vec<i64>>>())
            .map(|mut list| {
                list.sort_unstable();
                list.dedup();
                Lit::Ints(list.into_boxed_slice())
            }),
        (Type::Money, _) => money(v).map(Lit::Money),
        (Type::Time, _) => v
            .as_str()
            .and_then(crate::domain::time::parse_rfc3339)
            .map(Lit::Time),
        (Type::Str | Type::List, false) => v.as_str().map(|s| Lit::Str(s.into())),
        (Type::Str | Type::List, true) => strings(v).map(Lit::Strs),
        // Categories by handle or path, compared by their one handle.
        (Type::Category, false) => v
            .as_str()
            .and_then(|s| category_name(s, path, errors))
            .map(|h| Lit::Str(h.into())),
        (Type::Category, true) => v.as_array().and_then(|list| {
            let names: Option<Vec<&str>> = list.iter().map(Value::as_str).collect();
            names.map(|names| Lit::Strs(category_set(&names, path, errors)))
        }),
    };
    if lit.is_none() {
        let expected = match (ty, set) {
            (Type::Bool, _) => "true or false",
            (Type::Int, false) => "a whole number",
            (Type::Int, true) => "an array of whole numbers",
            (Type::Money, _) => "money: {\"amount\": integer minor units, \"currency\": \"GBP\"}",
            (Type::Time, _) => "an RFC 3339 time, e.g. \"2026-12-01T00:00:00Z\"",
            (Type::Str | Type::List | Type::Category, false) => "a string",
            (Type::Str | Type::List | Type::Category, true) => "an array of strings",
        };
        errors.push(path, format!("expects {expected}"));
    }
    lit
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gbp(amount: i64) -> Money {
        Money::new(amount, Currency::parse("GBP").unwrap())
    }

    fn session() -> Session<'static> {
        Session {
            channel: Some("web"),
            device: None,
            country: Some("GB"),
            currency: Currency::parse("GBP").unwrap(),
            placement: Some(Placement::Cart),
            exit_intent: false,
            first_visit: true,
        }
    }

    fn ok(v: &serde_json::Value, scope: Scope) -> Expr {
        let mut errors = Errors::default();
        let e = compile(v, scope, "$", &mut errors);
        assert!(errors.0.is_empty(), "{:?}", errors.0);
        e
    }

    fn errors_of(v: &serde_json::Value) -> Vec<String> {
        let mut errors = Errors::default();
        compile(v, Scope::Context, "$", &mut errors);
        errors
            .0
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn a_missing_attribute_is_false_even_under_not() {
        let ctx = Context {
            customer: None,
            session: session(),
            lines: vec![],
            personalization: true,
            marketing: false,
            now: 0,
            discount: 0,
            promotion_sets: Vec::new(),
            content_variant: None,
        };
        let env = Env::of(&ctx);
        let gold = ok(
            &json!({"eq": ["customer.loyalty_tier", "gold"]}),
            Scope::Context,
        );
        assert!(!gold.holds(env));
        assert!(
            !ok(
                &json!({"not": {"eq": ["customer.loyalty_tier", "gold"]}}),
                Scope::Context
            )
            .holds(env)
        );
        // Whether an attribute exists is never unknown.
        assert!(
            ok(
                &json!({"not": {"exists": "customer.loyalty_tier"}}),
                Scope::Context
            )
            .holds(env)
        );
        // or: true wins over unknown; and: false wins over unknown.
        assert!(ok(&json!({"or": [{"eq": ["customer.loyalty_tier", "gold"]}, {"eq": ["session.country", "GB"]}]}), Scope::Context).holds(env));
        assert_eq!(
            ok(&json!({"and": [{"eq": ["customer.loyalty_tier", "gold"]}, {"eq": ["session.country", "FR"]}]}), Scope::Context).eval(env),
            Some(false)
        );
    }

    #[test]
    fn money_compares_within_one_currency_only() {
        let ctx = Context {
            customer: Some(Customer {
                lifetime_spend: Some(gbp(5_000)),
                ..Customer::default()
            }),
            session: session(),
            lines: vec![],
            personalization: true,
            marketing: false,
            now: 0,
            discount: 0,
            promotion_sets: Vec::new(),
            content_variant: None,
        };
        let env = Env::of(&ctx);
        assert!(
            ok(
                &json!({"gte": ["customer.lifetime_spend", {"amount": 5000, "currency": "GBP"}]}),
                Scope::Context
            )
            .holds(env)
        );
        let eur = ok(
            &json!({"gte": ["customer.lifetime_spend", {"amount": 1, "currency": "EUR"}]}),
            Scope::Context,
        );
        assert_eq!(eur.eval(env), None);
        assert!(!Expr::Not(Box::new(eur)).holds(env));
    }

    #[test]
    fn type_errors_and_unknown_names_are_reported_with_their_paths() {
        assert_eq!(
            errors_of(
                &json!({"and": [{"eq": ["customer.tier", "gold"]}, {"gt": ["session.country", "GB"]}]})
            ),
            vec![
                "$.and[0].eq[0]: unknown attribute \"customer.tier\"".to_owned(),
                "$.and[1].gt[1]: this operator does not apply to a Str attribute".to_owned(),
            ]
        );
        assert_eq!(
            errors_of(&json!({"gte": ["cart.subtotal", 3000]})),
            vec![
                "$.gte[1]: expects money: {\"amount\": integer minor units, \"currency\": \"GBP\"}"
                    .to_owned()
            ]
        );
        assert_eq!(
            errors_of(&json!({"eq": ["line.quantity", 2]})),
            vec!["$.eq[0]: line.quantity is only available in cart lines (any, all, count, sum, promotion targets)".to_owned()]
        );
        assert_eq!(
            errors_of(&json!({"xor": []})),
            vec!["$.xor: unknown operator \"xor\"".to_owned()]
        );
        assert_eq!(errors_of(&json!(3)).len(), 1);
    }
}
