//! `/v1/recommend`: GET (query parameters, for CDN and edge caching) and POST (JSON)
//! parse into the same [`RawRequest`], and both are answered by [`answer`].
//!
//! The answer is computed against a deadline: the only await is the profile read, and
//! when it fails or does not return in time the visitor gets the non-personalized answer
//! (the same engine with no profile), flagged `degraded`, never an error.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::error::{ApiError, ErrorCode};
use super::extract::{JsonBody, QueryParams};
use super::state::AppState;
use crate::decide::content::Banner;
use crate::decide::experiment::{Arms, Visitor};
use crate::decide::page;
use crate::decide::record::{
    Endpoint, Output, PageOutput, Pending, PendingRequest, Shadow, usage_of,
};
use crate::domain::ids::{InvalidId, check_id};
use crate::domain::time::{unix_now, unix_now_ms};
use crate::domain::{Money, PageContext, Placement, RawPageContext, VisitorId, VisitorKey};
use crate::recommend::reads::Reads;
use crate::recommend::{CartItem, Reason};
use crate::store::{Degraded, read_within};

pub const MAX_LIMIT: i64 = 100;
pub const MAX_CART_LINES: usize = 200;
pub const MAX_QUERY_CHARS: usize = 256;
/// Products a storefront may send to be re-ranked (search results, a category page).
pub const MAX_CANDIDATES: usize = 500;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/recommend", get(recommend_get).post(recommend_post))
}

/// The request as sent, before validation. Shared by GET and POST.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\s\\x00-\\x1f\\x7f]+$"
    )]
    pub customer_id: Option<String>,
    /// Proves `customer_id` on a storefront key (see [`super::auth::CustomerTokens`]).
    pub customer_token: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\s\\x00-\\x1f\\x7f]+$"
    )]
    pub session_id: Option<String>,
    #[schema(required = true, value_type = Placement)]
    pub placement: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\s\\x00-\\x1f\\x7f]+$"
    )]
    pub product_id: Option<String>,
    #[schema(min_length = 1, max_length = 256)]
    pub category: Option<String>,
    #[schema(min_length = 1, max_length = 256)]
    pub query: Option<String>,
    pub cart: Option<Vec<RawCartLine>>,
    /// Product ids to re-rank for this visitor (search and category placements).
    pub candidates: Option<Vec<String>>,
    /// 1 to 100 (to the number of candidates when re-ranking).
    #[schema(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    pub context: Option<RawPageContext>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCartLine {
    pub product_id: String,
    pub quantity: Option<i64>,
}

/// GET parameters: the request's fields flattened. `cart` is `id:qty,id:qty`; the
/// context fields are top-level (`country`, `currency`, `channel`, `device`, `locale`).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\s\\x00-\\x1f\\x7f]+$"
    )]
    customer_id: Option<String>,
    customer_token: Option<String>,
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\s\\x00-\\x1f\\x7f]+$"
    )]
    session_id: Option<String>,
    #[param(required = true, value_type = Placement)]
    placement: Option<String>,
    #[param(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\s\\x00-\\x1f\\x7f]+$"
    )]
    product_id: Option<String>,
    #[param(min_length = 1, max_length = 256)]
    category: Option<String>,
    #[param(min_length = 1, max_length = 256)]
    query: Option<String>,
    cart: Option<String>,
    /// Comma-separated product ids.
    candidates: Option<String>,
    /// 1 to 100 (to the number of candidates when re-ranking).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    country: Option<String>,
    currency: Option<String>,
    channel: Option<String>,
    device: Option<String>,
    locale: Option<String>,
    exit_intent: Option<bool>,
}

impl GetParams {
    pub fn into_raw(self) -> Result<RawRequest, ApiError> {
        let cart = match self.cart.as_deref() {
            None | Some("") => None,
            Some(s) => Some(cart_param(s)?),
        };
        let context = RawPageContext {
            country: self.country,
            currency: self.currency,
            channel: self.channel,
            device: self.device,
            locale: self.locale,
            exit_intent: self.exit_intent,
        };
        Ok(RawRequest {
            customer_id: self.customer_id,
            customer_token: self.customer_token,
            session_id: self.session_id,
            placement: self.placement,
            product_id: self.product_id,
            category: self.category,
            query: self.query,
            cart,
            candidates: self
                .candidates
                .filter(|c| !c.is_empty())
                .map(|c| c.split(',').map(|id| id.trim().to_owned()).collect()),
            limit: self.limit,
            context: Some(context),
        })
    }
}

/// The `cart` query parameter, `id:qty,id:qty` (a line without `:qty` is one unit).
pub fn cart_param(s: &str) -> Result<Vec<RawCartLine>, ApiError> {
    s.split(',')
        .map(|line| {
            let (id, qty) = match line.rsplit_once(':') {
                Some((id, q)) => (
                    id,
                    Some(
                        q.parse::<i64>()
                            .map_err(|_| invalid_cart("a cart quantity is not a whole number"))?,
                    ),
                ),
                None => (line, None),
            };
            Ok(RawCartLine {
                product_id: id.to_owned(),
                quantity: qty,
            })
        })
        .collect()
}

/// A validated request.
#[derive(Debug)]
pub struct RecommendRequest {
    pub visitor: VisitorKey,
    /// The anonymous session, when the request names a customer too: merged into the
    /// customer's profile after the answer.
    pub merge_session: Option<VisitorId>,
    pub placement: Placement,
    pub product_id: Option<String>,
    pub category: Option<String>,
    pub query: Option<String>,
    pub cart: Vec<CartItem>,
    /// Products to re-rank, in the storefront's order (empty: none sent).
    pub candidates: Vec<String>,
    pub limit: usize,
    pub context: PageContext,
}

impl RecommendRequest {
    /// The page view the decision core answers.
    /// Who the experiments assign: the ids the request names, and the arms kept.
    pub fn visitor_of<'a>(&'a self, kept: &'a [crate::domain::arms::Arm]) -> Visitor<'a> {
        match &self.visitor {
            VisitorKey::Customer(c) => Visitor {
                customer_id: Some(c.as_str()),
                session_id: self.merge_session.as_ref().map(VisitorId::as_str),
                arms: kept,
            },
            VisitorKey::Session(s) => Visitor {
                customer_id: None,
                session_id: Some(s.as_str()),
                arms: kept,
            },
        }
    }

    pub fn page(&self) -> page::PageRequest<'_> {
        page::PageRequest {
            placement: self.placement,
            product_id: self.product_id.as_deref(),
            category: self.category.as_deref(),
            query: self.query.as_deref(),
            cart: &self.cart,
            candidates: &self.candidates,
            limit: self.limit,
            context: &self.context,
        }
    }
}

fn invalid_cart(msg: &'static str) -> ApiError {
    ApiError::new(ErrorCode::InvalidCart, msg)
}

fn id_error(field: &str, e: &InvalidId) -> ApiError {
    ApiError::new(ErrorCode::InvalidId, format!("{field} {e}"))
}

fn parse_visitor(field: &str, raw: Option<&str>) -> Result<Option<VisitorId>, ApiError> {
    raw.map(|r| VisitorId::parse(r).map_err(|e| id_error(field, &e)))
        .transpose()
}

impl RawRequest {
    pub fn validate(self, default_limit: u32) -> Result<RecommendRequest, ApiError> {
        let (visitor, merge_session) =
            parse_visitors(self.customer_id.as_deref(), self.session_id.as_deref())?;
        let placement = match self.placement.as_deref() {
            None => return Err(ApiError::new(ErrorCode::InvalidPlacement, "placement is required")),
            Some(p) => p.parse::<Placement>().map_err(|()| {
                ApiError::new(
                    ErrorCode::InvalidPlacement,
                    "placement must be one of home, product, cart, category, search, checkout, post_purchase",
                )
            })?,
        };
        let candidates = self.candidates.unwrap_or_default();
        if candidates.len() > MAX_CANDIDATES {
            return Err(ApiError::new(
                ErrorCode::InvalidCandidates,
                "at most 500 candidates",
            ));
        }
        for c in &candidates {
            check_id(c).map_err(|e| {
                ApiError::new(ErrorCode::InvalidCandidates, format!("candidate {e}"))
            })?;
        }
        if !candidates.is_empty() && !matches!(placement, Placement::Search | Placement::Category) {
            return Err(ApiError::new(
                ErrorCode::InvalidCandidates,
                "candidates are re-ranked on the search and category placements only",
            ));
        }
        // A re-ranked list may be as long as the candidates sent.
        let max_limit = if candidates.is_empty() {
            MAX_LIMIT
        } else {
            MAX_CANDIDATES as i64
        };
        let limit = match self.limit {
            None if candidates.is_empty() => default_limit as usize,
            None => candidates.len(),
            Some(l) if (1..=max_limit).contains(&l) => l as usize,
            Some(_) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidLimit,
                    format!("limit must be between 1 and {max_limit}"),
                ));
            }
        };
        if let Some(p) = &self.product_id {
            check_id(p).map_err(|e| id_error("product_id", &e))?;
        }
        if let Some(c) = &self.category
            && (c.is_empty() || c.chars().count() > 256 || c.chars().any(char::is_control))
        {
            return Err(ApiError::new(
                ErrorCode::InvalidCategory,
                "category is 1 to 256 characters, without control characters",
            ));
        }
        let query = match self.query {
            Some(q) if q.trim().is_empty() => None,
            Some(q) if q.chars().count() > MAX_QUERY_CHARS || q.chars().any(char::is_control) => {
                return Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    "query is 1 to 256 characters, without control characters",
                ));
            }
            other => other,
        };
        match placement {
            Placement::Product if self.product_id.is_none() => {
                return Err(ApiError::new(
                    ErrorCode::MissingProductId,
                    "placement product needs product_id",
                ));
            }
            Placement::Category if self.category.is_none() && candidates.is_empty() => {
                return Err(ApiError::new(
                    ErrorCode::MissingCategory,
                    "placement category needs category",
                ));
            }
            Placement::Search if query.is_none() && candidates.is_empty() => {
                return Err(ApiError::new(
                    ErrorCode::MissingQuery,
                    "placement search needs a non-empty query",
                ));
            }
            Placement::Product
            | Placement::Category
            | Placement::Search
            | Placement::Home
            | Placement::Cart
            | Placement::Checkout
            | Placement::PostPurchase => {}
        }
        let cart = parse_cart(self.cart.unwrap_or_default())?;
        let context = parse_context(self.context.unwrap_or_default())?;
        Ok(RecommendRequest {
            visitor,
            merge_session,
            placement,
            product_id: self.product_id,
            category: self.category,
            query,
            cart,
            candidates,
            limit,
            context,
        })
    }
}

/// The visitor a request is for: the customer when named (with the session to merge),
/// else the session.
pub fn parse_visitors(
    customer_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<(VisitorKey, Option<VisitorId>), ApiError> {
    let customer = parse_visitor("customer_id", customer_id)?;
    let session = parse_visitor("session_id", session_id)?;
    match (customer, session) {
        (Some(c), s) => Ok((VisitorKey::Customer(c), s)),
        (None, Some(s)) => Ok((VisitorKey::Session(s), None)),
        (None, None) => Err(ApiError::new(
            ErrorCode::MissingVisitorId,
            "customer_id or session_id is required",
        )),
    }
}

/// Cart lines: up to 200, each a product id and a quantity of 1 to 100000 (default 1).
pub fn parse_cart(raw_cart: Vec<RawCartLine>) -> Result<Vec<CartItem>, ApiError> {
    if raw_cart.len() > MAX_CART_LINES {
        return Err(invalid_cart("a cart has at most 200 lines"));
    }
    let mut cart = Vec::with_capacity(raw_cart.len());
    for line in raw_cart {
        check_id(&line.product_id).map_err(|e| id_error("cart product_id", &e))?;
        let quantity = match line.quantity {
            None => 1,
            Some(q) if (1..=100_000).contains(&q) => q as u32,
            Some(_) => {
                return Err(invalid_cart("a cart quantity must be between 1 and 100000"));
            }
        };
        cart.push(CartItem {
            product_id: line.product_id,
            quantity,
        });
    }
    Ok(cart)
}

/// The page context: every field optional, each checked.
pub fn parse_context(raw: RawPageContext) -> Result<PageContext, ApiError> {
    PageContext::parse(raw).map_err(|e| ApiError::new(ErrorCode::InvalidContext, e.to_string()))
}

/// Recommendations, offers, prices and content for one page view.
#[utoipa::path(
    get,
    path = "/v1/recommend",
    tag = "storefront",
    params(GetParams),
    responses(
        (status = 200, description = "The answer", body = Served),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "A malformed query string", body = super::error::ErrorBody),
        (status = 401, description = "No key, an unknown key, or a bad customer token", body = super::error::ErrorBody),
        (status = 422, description = "An invalid parameter (the code names it)", body = super::error::ErrorBody),
        (status = 503, description = "Overloaded: retry after Retry-After", body = super::error::ErrorBody),
    ),
    security((), ("storefront_key" = []))
)]
pub(crate) async fn recommend_get(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    QueryParams(params): QueryParams<GetParams>,
) -> Result<Response, ApiError> {
    let raw = params.into_raw()?;
    check_customer(&state, caller, &raw, &headers)?;
    answer(&state, &headers, raw).await
}

/// The same as `GET /v1/recommend`, with the request as JSON.
#[utoipa::path(
    post,
    path = "/v1/recommend",
    tag = "storefront",
    request_body = RawRequest,
    responses(
        (status = 200, description = "The answer", body = Served),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
        (status = 400, description = "Malformed JSON", body = super::error::ErrorBody),
        (status = 401, description = "No key, an unknown key, or a bad customer token", body = super::error::ErrorBody),
        (status = 413, description = "A body over server.body_limit_bytes", body = super::error::ErrorBody),
        (status = 415, description = "Not JSON", body = super::error::ErrorBody),
        (status = 422, description = "An invalid field (the code names it)", body = super::error::ErrorBody),
        (status = 503, description = "Overloaded: retry after Retry-After", body = super::error::ErrorBody),
    ),
    security((), ("storefront_key" = []))
)]
pub(crate) async fn recommend_post(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(raw): JsonBody<RawRequest>,
) -> Result<Response, ApiError> {
    check_customer(&state, caller, &raw, &headers)?;
    answer(&state, &headers, raw).await
}

/// A storefront key names a customer only with a token for them.
fn check_customer(
    state: &AppState,
    caller: Caller,
    raw: &RawRequest,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    state.tokens.check(
        caller,
        raw.customer_id.as_deref(),
        raw.customer_token.as_deref(),
        headers,
        crate::domain::time::unix_now(),
    )
}

/// A recommended product as served.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Item)]
struct ItemJson<'a> {
    product_id: &'a str,
    title: &'a str,
    url: &'a str,
    image_url: &'a str,
    price: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    compare_at_price: Option<Money>,
    score: f32,
    reason: Reason,
}

impl<'a> From<&page::Item<'a>> for ItemJson<'a> {
    fn from(i: &page::Item<'a>) -> Self {
        ItemJson {
            product_id: &i.product.id,
            title: &i.product.title,
            url: &i.product.url,
            image_url: &i.product.image_url,
            price: i.price,
            compare_at_price: i.compare_at,
            score: i.score,
            reason: i.reason,
        }
    }
}

/// A banner as served: the content's banner on its placement.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Banner)]
struct BannerJson<'a> {
    id: &'a str,
    placement: Placement,
    title: &'a str,
    image_url: &'a str,
    link_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    alt: Option<&'a str>,
}

impl<'a> BannerJson<'a> {
    fn new(b: &'a Banner, placement: Placement) -> Self {
        BannerJson {
            id: &b.id,
            placement,
            title: &b.title,
            image_url: &b.image_url,
            link_url: &b.link_url,
            alt: b.alt.as_deref(),
        }
    }
}

/// An experiment arm the answer served.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ServedArm)]
struct ExperimentJson<'a> {
    id: &'a str,
    variant: &'a str,
}

/// What follows the recommendations in an answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AnswerRest)]
struct AfterItems<'a> {
    offers: &'a [crate::decide::promo::Offer],
    banners: Vec<BannerJson<'a>>,
    /// Featured collections for the page, from the ruleset's content.
    collections: &'a [crate::decide::content::Collection],
    /// The page's module order from the ruleset's content (empty: the storefront's own).
    modules: &'a [String],
    model_version: &'a str,
    ruleset_version: &'a str,
    /// What merchandising rules changed in this answer.
    merchandising: &'a [crate::decide::merch::Effect],
    /// The experiment arms served (none: the field is left out).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    experiments: Vec<ExperimentJson<'a>>,
    degraded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    degraded_reason: Option<&'static str>,
}

/// An answer's JSON as [`AnswerJson`] serializes it, byte for byte (the recommendations,
/// then `rest`), with each product's escaped strings copied from `fragments` rather
/// than escaped again.
fn answer_bytes(
    rest: &AfterItems<'_>,
    decided: &page::PageAnswer<'_>,
    fragments: &super::fragments::Fragments,
    catalog: &crate::domain::Catalog,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256 + decided.items.len() * 320);
    out.extend_from_slice(b"{\"placement\":");
    serde_json::to_writer(&mut out, &decided.placement)?;
    out.extend_from_slice(b",\"recommendations\":[");
    for (n, i) in decided.items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.push(b'{');
        out.extend_from_slice(fragments.of(catalog, i.index));
        out.extend_from_slice(b",\"price\":");
        serde_json::to_writer(&mut out, &i.price)?;
        if let Some(c) = &i.compare_at {
            out.extend_from_slice(b",\"compare_at_price\":");
            serde_json::to_writer(&mut out, c)?;
        }
        out.extend_from_slice(b",\"score\":");
        serde_json::to_writer(&mut out, &i.score)?;
        out.extend_from_slice(b",\"reason\":");
        serde_json::to_writer(&mut out, &i.reason)?;
        out.push(b'}');
    }
    out.extend_from_slice(b"],");
    let rest = serde_json::to_vec(rest)?;
    // Its fields, without the braces' opening one.
    out.extend_from_slice(rest.get(1..).unwrap_or_default());
    Ok(out)
}

/// The page answer (a served one has its decision id in front: [`Served`]).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PageAnswer)]
struct AnswerJson<'a> {
    placement: Placement,
    recommendations: Vec<ItemJson<'a>>,
    #[serde(flatten)]
    rest: AfterItems<'a>,
}

/// An answer as served: its decision id, then the page answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RecommendAnswer)]
pub struct Served<'a> {
    /// Names this decision: events and orders quote it for attribution, and the
    /// decision log keeps it.
    decision_id: uuid::Uuid,
    #[serde(flatten)]
    answer: AnswerJson<'a>,
}

/// What the storefront would get for `request`, for a visitor with `profile`, under
/// `rules`, at `now`: the answer's body (without a decision id, which only a served
/// answer gets) and each recommendation's price list. Decided by the same code as a
/// served answer, against the live models and stock; nothing is recorded, learned,
/// exposed or merged.
pub fn preview(
    state: &AppState,
    request: &RecommendRequest,
    profile: Option<&crate::domain::Profile>,
    rules: &crate::decide::Ruleset,
    now: i64,
) -> Result<(serde_json::Value, Vec<Option<String>>), ApiError> {
    let key = state.hasher.key(&request.visitor);
    let snapshot = state.snapshot.load_full();
    let usage = state.rules.usage();
    let kept_arms = profile.map_or(&[][..], |p| p.arms.as_slice());
    let inputs = page::Inputs {
        snapshot: &snapshot,
        rules,
        usage: &usage,
        policy: &state.policy,
        banners: &state.banners,
        profile,
        visitor: key.short_id(),
        volatile: &snapshot.models.live,
        explain: 0,
        now,
        arms: Arms::Visitor(request.visitor_of(kept_arms)),
    };
    let decided = page::answer(&inputs, &request.page())?;
    let body =
        serde_json::to_value(answer_json(&decided, None)).map_err(|e| ApiError::internal(&e))?;
    let lists = decided.items.iter().map(|i| i.price_list.clone()).collect();
    Ok((body, lists))
}

/// An answer as served (`degraded`: why it is, if it is).
fn answer_json<'a>(
    decided: &'a page::PageAnswer<'a>,
    degraded: Option<Degraded>,
) -> AnswerJson<'a> {
    AnswerJson {
        placement: decided.placement,
        recommendations: decided.items.iter().map(ItemJson::from).collect(),
        rest: after_items(decided, degraded),
    }
}

/// What an answer says after its recommendations.
fn after_items<'a>(
    decided: &'a page::PageAnswer<'a>,
    degraded: Option<Degraded>,
) -> AfterItems<'a> {
    AfterItems {
        offers: &decided.offers,
        banners: decided
            .banners
            .iter()
            .map(|b| BannerJson::new(b, decided.placement))
            .collect(),
        collections: &decided.collections,
        modules: &decided.modules,
        model_version: decided.model_version,
        ruleset_version: decided.ruleset_version,
        merchandising: &decided.effects,
        experiments: decided
            .experiments
            .iter()
            .map(|(id, variant)| ExperimentJson { id, variant })
            .collect(),
        degraded: degraded.is_some(),
        degraded_reason: degraded.map(Degraded::as_str),
    }
}

/// The one code path behind GET and POST: parse, read the profile under the deadline,
/// decide, serialize.
pub async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    raw: RawRequest,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let request = raw.validate(state.settings.recommend.default_limit)?;

    let key = state.hasher.key(&request.visitor);
    let (stored, degraded) =
        read_within(state.store.as_ref(), &key, state.settings.deadline()).await;
    if let Some(d) = degraded {
        metrics::counter!("vitrine_recommend_degraded_total", "reason" => d.as_str()).increment(1);
    }
    let store_done = started.elapsed();
    if let Some(session) = &request.merge_session {
        spawn_merge(state, key, session);
    }

    let snapshot = state.snapshot.load_full();
    // One ruleset version for the whole answer: prices, offers, merchandising.
    let rules = state.rules.load();
    let usage = state.rules.usage();
    let decision_id = uuid::Uuid::now_v7();
    // A recorded answer reads live learning and stock through a recording. While
    // experiments run every answer is recorded: events credit arms through it.
    let recording = (state
        .audit
        .wants(Endpoint::Recommend, degraded.is_some(), &decision_id)
        || (rules.running_experiments() && state.audit.settings().enabled))
        .then(|| Reads::recording(&snapshot.models.live));
    let now = unix_now();
    let kept_arms = stored.as_deref().map_or(&[][..], |p| p.arms.as_slice());
    let inputs = page::Inputs {
        snapshot: &snapshot,
        rules: &rules,
        usage: &usage,
        policy: &state.policy,
        banners: &state.banners,
        profile: stored.as_deref(),
        visitor: key.short_id(),
        volatile: match &recording {
            Some(r) => r,
            None => &snapshot.models.live,
        },
        explain: if recording.is_some() {
            state.audit.settings().candidates
        } else {
            0
        },
        now,
        arms: Arms::Visitor(request.visitor_of(kept_arms)),
    };
    let decided = page::answer(&inputs, &request.page())?;
    // The shadow variants' answer: one more decision, recorded only, and not when the
    // service is near shedding load (under a quarter of its permits left).
    let shadow = match (&recording, &decided.shadow_arms) {
        (Some(_), Some(arms))
            if state.permits.available_permits() * 4 > state.settings.server.max_concurrency =>
        {
            let shadow_inputs = page::Inputs {
                arms: Arms::Recorded(arms),
                explain: 0,
                ..inputs
            };
            page::answer(&shadow_inputs, &request.page())
                .ok()
                .map(|a| Shadow {
                    experiments: arms.clone(),
                    output: Output::Page(PageOutput::of(&a)),
                })
        }
        _ => None,
    };
    observe(
        state,
        &snapshot,
        &request,
        stored.as_deref(),
        &decided,
        degraded,
        now,
    );
    expose(state, &rules, key, kept_arms, &decided.experiments, now);
    let fragments = state.fragments.for_catalog(&snapshot.catalog);
    let content = answer_bytes(
        &after_items(&decided, degraded),
        &decided,
        &fragments,
        &snapshot.catalog,
    )
    .map_err(|e| ApiError::internal(&e))?;
    // Written by hand as serde writes the documented type (with the decision id in
    // front, below): every answer of the tests checks so.
    debug_assert_eq!(
        [
            format!("{{\"decision_id\":\"{decision_id}\",").as_bytes(),
            content.get(1..).unwrap_or_default(),
        ]
        .concat(),
        serde_json::to_vec(&Served {
            decision_id,
            answer: answer_json(&decided, degraded),
        })
        .unwrap_or_default()
    );
    let ranked = started.elapsed();
    let kept = recording.is_some().then(|| {
        (
            Output::Page(PageOutput::of(&decided)),
            decided.considered,
            decided.experiments,
        )
    });

    // The ETag covers the content, not the decision id, so an unchanged answer
    // revalidates with 304 even though every decision gets its own id.
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&content));
    let mut response = if if_none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        if let (Some(reads), Some((output, considered, experiments))) = (recording, kept) {
            state.audit.submit(Pending {
                decision_id,
                at_ms: unix_now_ms(),
                endpoint: Endpoint::Recommend,
                placement: request.placement,
                visitor: key,
                profile: stored,
                snapshot: snapshot.clone(),
                ruleset_version: rules.version.clone(),
                settings_version: state.audit.settings_version().clone(),
                usage: usage_of(&usage),
                exhausted: Vec::new(),
                now,
                tape: reads.tape(),
                considered,
                experiments,
                shadow,
                output,
                latency_us: u64::try_from(ranked.as_micros()).unwrap_or(u64::MAX),
                degraded: degraded.map(Degraded::as_str),
                request: PendingRequest {
                    product_id: request.product_id,
                    category: request.category,
                    query: request.query,
                    cart: request.cart,
                    candidates: request.candidates,
                    limit: request.limit,
                    context: request.context,
                    codes: Vec::new(),
                },
            });
        }
        let mut out = Vec::with_capacity(content.len() + 64);
        out.extend_from_slice(b"{\"decision_id\":\"");
        out.extend_from_slice(
            decision_id
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .as_bytes(),
        );
        out.extend_from_slice(b"\",");
        out.extend_from_slice(&content[1..]);
        let mut r = out.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, state.cache_control.clone());
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&server_timing(store_done, ranked)) {
        h.insert("server-timing", v);
    }
    state.pulse.answer(
        now,
        u64::try_from(ranked.as_micros()).unwrap_or(u64::MAX),
        degraded.is_some(),
    );
    Ok(response)
}

/// Counts the answer's features into the drift window.
fn observe(
    state: &AppState,
    snapshot: &crate::recommend::Snapshot,
    request: &RecommendRequest,
    profile: Option<&crate::domain::Profile>,
    decided: &page::PageAnswer<'_>,
    degraded: Option<Degraded>,
    now: i64,
) {
    use crate::recommend::features;
    let catalog = &snapshot.catalog;
    let views = profile.map_or(0, |p| p.recently_viewed.len());
    let in_view = request
        .product_id
        .as_deref()
        .or_else(|| profile.and_then(|p| p.recently_viewed.first().map(String::as_str)))
        .and_then(|id| catalog.lookup(id));
    state.drift.observe(
        &snapshot.models,
        &crate::audit::drift::Observation {
            placement: request.placement.as_str(),
            device: features::device(request.context.device_class),
            country: features::country(request.context.country.as_ref()),
            history_length: features::history_length(views),
            category: in_view.map(|p| features::department(catalog, p)),
            cold: features::flag(profile.is_none_or(|p| views == 0 && p.purchased.is_empty())),
            degraded: features::flag(degraded.is_some()),
            top_score: features::top_score(decided.items.first().map(|i| i.score)),
        },
        now,
    );
}

/// Queues the arms the answer served that the visitor's profile does not hold yet:
/// their first exposure, counted once, and the arm kept for them from now on.
fn expose(
    state: &AppState,
    rules: &crate::decide::ruleset::Ruleset,
    key: crate::store::ProfileKey,
    kept: &[crate::domain::arms::Arm],
    served: &[(String, String)],
    now: i64,
) {
    let new: Vec<(String, u32, String)> = served
        .iter()
        .filter_map(|(id, variant)| {
            let version = if id == crate::decide::experiment::HOLDOUT {
                0
            } else {
                rules
                    .experiments
                    .iter()
                    .find(|e| e.id == *id)?
                    .bucket_version
            };
            let known = kept
                .iter()
                .any(|a| a.experiment == *id && a.version == version && a.variant == *variant);
            (!known).then(|| (id.clone(), version, variant.clone()))
        })
        .collect();
    if !new.is_empty() {
        state.attribution.expose(key, new, now);
    }
}

/// Merges the session into the customer off the answer's path: the merge is a write,
/// and the answer must not wait for it. Kept out of line so the serving future stays small.
#[inline(never)]
fn spawn_merge(state: &AppState, customer: crate::store::ProfileKey, session: &VisitorId) {
    let store = state.store.clone();
    let session = state.hasher.key(&VisitorKey::Session(session.clone()));
    tokio::spawn(async move {
        if let Err(e) =
            crate::ingest::events::merge_session(store.as_ref(), customer, session).await
        {
            tracing::debug!(error = %e, "session merge deferred: store unavailable");
        }
    });
}

fn server_timing(store: Duration, total: Duration) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut s = String::with_capacity(64);
    let _ = write!(
        s,
        "store;dur={:.3}, rank;dur={:.3}, total;dur={:.3}",
        ms(store),
        ms(total.saturating_sub(store)),
        ms(total)
    );
    s
}

/// `If-None-Match` holds a list of tags or `*`; weak tags compare equal to strong ones.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(placement: &str) -> RawRequest {
        RawRequest {
            session_id: Some("s1".into()),
            placement: Some(placement.into()),
            ..RawRequest::default()
        }
    }

    fn code(r: Result<RecommendRequest, ApiError>) -> ErrorCode {
        r.unwrap_err().code
    }

    #[test]
    fn a_customer_id_wins_over_a_session_id() {
        let mut r = raw("home");
        r.customer_id = Some("c1".into());
        assert!(matches!(
            r.validate(10).unwrap().visitor,
            VisitorKey::Customer(_)
        ));
    }

    #[test]
    fn each_placement_needs_its_own_field() {
        assert_eq!(
            code(raw("product").validate(10)),
            ErrorCode::MissingProductId
        );
        assert_eq!(
            code(raw("category").validate(10)),
            ErrorCode::MissingCategory
        );
        assert_eq!(code(raw("search").validate(10)), ErrorCode::MissingQuery);
        let mut blank = raw("search");
        blank.query = Some("   ".into());
        assert_eq!(code(blank.validate(10)), ErrorCode::MissingQuery);
        assert!(raw("home").validate(10).is_ok());
    }

    #[test]
    fn limits_outside_1_to_100_are_refused() {
        for bad in [0, -1, 101, i64::MAX] {
            let mut r = raw("home");
            r.limit = Some(bad);
            assert_eq!(code(r.validate(10)), ErrorCode::InvalidLimit);
        }
        assert_eq!(raw("home").validate(7).unwrap().limit, 7);
    }

    #[test]
    fn a_get_cart_is_ids_with_optional_quantities() {
        let p = GetParams {
            cart: Some("a:2,b".into()),
            ..GetParams::default()
        };
        let cart = p.into_raw().unwrap().cart.unwrap();
        assert_eq!(cart[0].product_id, "a");
        assert_eq!(cart[0].quantity, Some(2));
        assert_eq!(cart[1].quantity, None);
        let bad = GetParams {
            cart: Some("a:x".into()),
            ..GetParams::default()
        };
        assert_eq!(bad.into_raw().unwrap_err().code, ErrorCode::InvalidCart);
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(if_none_match(&h, "\"b\""));
        assert!(!if_none_match(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, "\"c\""));
    }
}
