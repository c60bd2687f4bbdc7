//! The merchandiser console at `/console`: server-rendered pages (askama templates
//! under `templates/console/`), a little script that refreshes figures in place, and
//! pages that read without it.
//!
//! Sign-in exchanges an admin key for a session cookie (HttpOnly, SameSite=Strict,
//! Secure behind TLS, ending after `console.session_ttl_s`); every form carries a token
//! bound to the session, and a post without it is refused. With no keys configured (the
//! demo) the console is open, and says so on every page.

mod answer;
mod edit;
mod experiments;
mod overrides;
mod preview;
pub mod pulse;
mod rulesets;
pub mod session;
mod why;

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::state::AppState;
use session::{COOKIE, SIGN_IN_COOKIE, Session};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/overview") }),
        )
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/overview", get(overview))
        .route("/console/overview.json", get(overview_json))
        .route("/console/review", get(review))
        .route(
            "/console/overrides",
            get(overrides::page).post(overrides::change),
        )
        .route("/console/product", get(why::page))
        .route("/console/preview", get(preview::page))
        .route("/console/rulesets", get(rulesets::page))
        .route("/console/rulesets/rollback", post(rulesets::rollback))
        .route("/console/rulesets/draft", get(rulesets::draft_page))
        .route("/console/experiments", get(experiments::list))
        .route(
            "/console/experiments/{id}",
            get(experiments::results).post(experiments::action),
        )
        .route("/console/decisions", get(decisions))
        .route("/console/decisions/replay", post(replay))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
}

/// The forms that carry a whole ruleset (a draft to check, publish or preview beside the
/// live one): their bodies are read within `rules.body_limit_bytes`, as the admin API's.
pub fn drafts() -> Router<AppState> {
    Router::new()
        .route("/console/preview", post(preview::post))
        .route("/console/rulesets/draft", post(rulesets::draft))
}

async fn css() -> impl IntoResponse {
    asset(
        "text/css; charset=utf-8",
        include_str!("assets/console.css"),
    )
}

async fn js() -> impl IntoResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    )
}

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
}

/// What every page's frame shows.
pub struct Chrome {
    /// No keys are configured: the console is open.
    pub open: bool,
    pub signed_in: bool,
    pub label: String,
    pub csrf: String,
    pub page: &'static str,
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Whether the request came over TLS (directly or through a proxy that says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn now() -> i64 {
    crate::domain::time::unix_now()
}

/// Why a console request is not served.
enum Denied {
    /// Not signed in: to the sign-in page, and back to this path after.
    SignIn(String),
    /// A form without its session's token.
    Forged,
    /// The store that says whether a session was revoked does not answer.
    Unchecked,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::SignIn(here) => {
                Redirect::to(&format!("/console/sign-in?next={}", url_encode(&here)))
                    .into_response()
            }
            Denied::Unchecked => refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The store does not answer, so the session cannot be checked. Try again in a moment.",
            ),
            Denied::Forged => refused(
                StatusCode::FORBIDDEN,
                "This form was not sent by a console page (its token is missing or wrong). Go back, reload the page and try again.",
            ),
        }
    }
}

/// The signed-in session: its cookie verifies, and it was not signed out of.
async fn signed_in(state: &AppState, headers: &HeaderMap, here: &str) -> Result<Session, Denied> {
    if state.keys.is_open() {
        return Ok(state.sessions.open());
    }
    let session = cookie(headers, COOKIE)
        .and_then(|c| state.sessions.verify(c, now()))
        .ok_or_else(|| Denied::SignIn(here.to_owned()))?;
    match state
        .catalog
        .store()
        .session_revoked(session.id(), now())
        .await
    {
        Ok(false) => Ok(session),
        Ok(true) => Err(Denied::SignIn(here.to_owned())),
        Err(e) => {
            tracing::warn!(error = %e, "console session not checked");
            Err(Denied::Unchecked)
        }
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only a path of the console is a place to go back to after signing in.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/console/") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/console/overview",
    }
}

fn chrome(state: &AppState, session: &Session, page: &'static str) -> Chrome {
    Chrome {
        open: state.keys.is_open(),
        signed_in: true,
        label: session.label.clone(),
        csrf: state.sessions.csrf(session),
        page,
    }
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console page not rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console/refused.html")]
struct RefusedPage {
    chrome: Chrome,
    message: String,
}

/// A page saying why a request was refused.
fn refused(status: StatusCode, message: impl Into<String>) -> Response {
    let mut r = render(&RefusedPage {
        chrome: Chrome {
            open: false,
            signed_in: false,
            label: String::new(),
            csrf: String::new(),
            page: "refused",
        },
        message: message.into(),
    });
    *r.status_mut() = status;
    r
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    token: String,
    next: String,
    error: Option<&'static str>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn sign_in_form(
    headers: &HeaderMap,
    next: &str,
    error: Option<&'static str>,
    status: StatusCode,
) -> Response {
    let token = session::random_token();
    let page = SignInPage {
        chrome: Chrome {
            open: false,
            signed_in: false,
            label: String::new(),
            csrf: String::new(),
            page: "sign-in",
        },
        token: token.clone(),
        next: next.to_owned(),
        error,
    };
    let mut r = render(&page);
    *r.status_mut() = status;
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, SIGN_IN_COOKIE, &token, 600),
    );
    r
}

async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if state.keys.is_open() || signed_in(&state, &headers, next).await.is_ok() {
        return Redirect::to(next).into_response();
    }
    sign_in_form(&headers, next, None, StatusCode::OK)
}

#[derive(Deserialize)]
struct SignInForm {
    key: String,
    csrf: String,
    next: Option<String>,
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    // The form's token must be the one its page set (a form posted from elsewhere has
    // none).
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if !session::same(expected, &form.csrf) {
        return sign_in_form(
            &headers,
            &next,
            Some("The form expired; sign in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let Some(label) = state.keys.admin_label(form.key.trim()) else {
        tracing::warn!("console sign-in with an unknown key");
        return sign_in_form(
            &headers,
            &next,
            Some("That is not an admin key."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let (value, _) = state.sessions.issue(label, now());
    tracing::info!(label, "console sign-in");
    let mut r = Redirect::to(&next).into_response();
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, COOKIE, &value, state.sessions.ttl_s()),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, SIGN_IN_COOKIE, "", 0),
    );
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// A form post's session, checked against the form's token.
async fn checked_post(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
    here: &str,
) -> Result<Session, Denied> {
    let session = signed_in(state, headers, here).await?;
    if state.sessions.csrf_ok(&session, token) {
        Ok(session)
    } else {
        Err(Denied::Forged)
    }
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let session = match checked_post(&state, &headers, &form.csrf, "/console/overview").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    // Revoked on every replica: a copy of the cookie no longer signs anyone in (an
    // open console has nothing to end).
    if !state.keys.is_open()
        && let Err(e) = state
            .catalog
            .store()
            .revoke_session(session.id(), session.expires)
            .await
    {
        tracing::warn!(error = %e, "console session not revoked");
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "The store does not answer, so the session could not be ended. Try again in a moment.",
        );
    }
    tracing::info!(label = %session.label, "console sign-out");
    let mut r = Redirect::to("/console/sign-in").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&headers, COOKIE, "", 0));
    r
}

/// The overview's figures, as shown.
#[derive(Debug, serde::Serialize)]
struct Figures {
    window_s: u64,
    answers_per_s: String,
    p50_ms: String,
    p99_ms: String,
    degraded: String,
    events_per_s: String,
    drift: String,
    drift_class: &'static str,
    model_version: String,
    ruleset_version: String,
    products: String,
    out_of_stock: String,
}

const NONE: &str = "–";

fn figures(state: &AppState) -> Figures {
    let now = now();
    let pulse = state.pulse.figures(now, 10);
    let snapshot = state.snapshot.load();
    let catalog = &snapshot.catalog;
    let out_of_stock = catalog.out_of_stock();
    let drift = state.drift.check(now);
    let drifting: Vec<&str> = drift
        .features
        .iter()
        .filter(|f| f.drifting)
        .map(|f| f.feature)
        .collect();
    let ms = |v: Option<f64>| v.map_or_else(|| NONE.to_owned(), |v| format!("{v:.2}"));
    Figures {
        window_s: pulse.window_s,
        answers_per_s: format!("{:.1}", pulse.answers_per_s),
        p50_ms: ms(pulse.p50_ms),
        p99_ms: ms(pulse.p99_ms),
        degraded: pulse
            .degraded_share
            .map_or_else(|| NONE.to_owned(), |s| format!("{:.1}%", s * 100.0)),
        events_per_s: format!("{:.1}", pulse.events_per_s),
        drift: if drifting.is_empty() {
            "none".to_owned()
        } else {
            drifting.join(", ")
        },
        drift_class: if drifting.is_empty() { "good" } else { "bad" },
        model_version: snapshot.models.version.clone(),
        ruleset_version: state.rules.load().version.clone(),
        products: catalog.len().to_string(),
        out_of_stock: out_of_stock.to_string(),
    }
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    figures: Figures,
}

async fn overview(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, "/console/overview").await {
        Ok(session) => render(&OverviewPage {
            chrome: chrome(&state, &session, "overview"),
            figures: figures(&state),
        }),
        Err(denied) => denied.into_response(),
    }
}

async fn overview_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers, "/console/overview").await {
        Ok(_) => Json(figures(&state)).into_response(),
        Err(_) => super::error::ApiError::new(
            super::error::ErrorCode::MissingApiKey,
            "sign in to the console",
        )
        .into_response(),
    }
}

/// A product as a review row shows it.
struct ProductCell {
    id: String,
    title: String,
    image_url: String,
    category: String,
    price: String,
}

fn product_cell(catalog: &crate::domain::Catalog, p: crate::domain::ProductIdx) -> ProductCell {
    let product = catalog.product(p);
    ProductCell {
        id: product.id.to_string(),
        title: product.title.to_string(),
        image_url: product.image_url.to_string(),
        category: catalog.categories()[usize::from(product.category)]
            .path
            .to_string(),
        price: product.price.to_string(),
    }
}

/// The catalog's categories as a select lists them: (handle, path), by path.
fn category_options(catalog: &crate::domain::Catalog) -> Vec<(String, String)> {
    let mut categories: Vec<(String, String)> = catalog
        .categories()
        .iter()
        .map(|c| (c.handle.to_string(), c.path.to_string()))
        .collect();
    categories.sort_by(|a, b| a.1.cmp(&b.1));
    categories
}

struct PairRow {
    a: ProductCell,
    b: ProductCell,
    kind: &'static str,
    support: u32,
    score: String,
    outlier: bool,
    flags: Vec<&'static str>,
    blocked: bool,
    pinned: bool,
}

#[derive(Template)]
#[template(path = "console/review.html")]
struct ReviewPage {
    chrome: Chrome,
    kind: String,
    category: String,
    q: String,
    outliers: bool,
    /// (handle, path)
    categories: Vec<(String, String)>,
    pairs: Vec<PairRow>,
    model_version: String,
    weak: u32,
    /// This page, to come back to after an override.
    back: String,
}

#[derive(Deserialize)]
struct ReviewQuery {
    kind: Option<String>,
    category: Option<String>,
    q: Option<String>,
    outliers: Option<String>,
}

/// Pairs a review page lists at most.
const REVIEW_ROWS: usize = 100;

async fn review(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ReviewQuery>,
) -> Response {
    let session = match signed_in(&state, &headers, "/console/review").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    use crate::recommend::review::{self, Filter, PairKind};
    fn nonempty(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let kind = nonempty(&query.kind).and_then(PairKind::parse);
    let category = nonempty(&query.category);
    let search = nonempty(&query.q);
    let outliers = query.outliers.is_some();
    let snapshot = state.snapshot.load();
    let catalog = &snapshot.catalog;
    let rules = state.rules.load();
    let filter = Filter {
        kind,
        category,
        search,
        outliers_only: outliers,
    };
    let pairs = review::strongest(
        &snapshot.models,
        catalog,
        &snapshot.models.live,
        &filter,
        REVIEW_ROWS,
    )
    .into_iter()
    .map(|p| {
        let (a, b) = (product_cell(catalog, p.a), product_cell(catalog, p.b));
        PairRow {
            blocked: rules.overrides.blocks(&a.id, &b.id),
            pinned: rules
                .overrides
                .pinned
                .iter()
                .any(|x| x.a == a.id && x.b == b.id),
            a,
            b,
            kind: p.kind.as_str(),
            support: p.support,
            score: format!("{:.4}", p.score),
            outlier: p.outlier(),
            flags: [
                (p.unrelated, "unrelated departments, little support"),
                (p.out_of_stock, "out of stock"),
            ]
            .into_iter()
            .filter_map(|(on, f)| on.then_some(f))
            .collect(),
        }
    })
    .collect();
    let categories = category_options(catalog);
    let back = format!(
        "/console/review?kind={}&category={}&q={}{}",
        url_encode(kind.map_or("", PairKind::as_str)),
        url_encode(category.unwrap_or("")),
        url_encode(search.unwrap_or("")),
        if outliers { "&outliers=1" } else { "" }
    );
    render(&ReviewPage {
        back,
        chrome: chrome(&state, &session, "review"),
        kind: kind.map_or("", PairKind::as_str).to_owned(),
        category: category.unwrap_or("").to_owned(),
        q: search.unwrap_or("").to_owned(),
        outliers,
        categories,
        pairs,
        model_version: snapshot.models.version.clone(),
        weak: review::WEAK_SUPPORT,
    })
}

#[derive(Template)]
#[template(path = "console/decision.html")]
struct DecisionPage {
    chrome: Chrome,
    id: String,
    error: Option<String>,
    summary: String,
    /// The record as pretty JSON.
    record: Option<String>,
    replay: Option<crate::audit::ReplayAnswer>,
}

#[derive(Deserialize)]
struct DecisionQuery {
    id: Option<String>,
}

/// The decision page for `id`: its record (and a replay's outcome).
async fn decision_page(
    state: &AppState,
    session: &Session,
    id: &str,
    replay: Option<Result<crate::audit::ReplayAnswer, crate::audit::AuditError>>,
) -> Response {
    let mut page = DecisionPage {
        chrome: chrome(state, session, "decisions"),
        id: id.to_owned(),
        error: None,
        summary: String::new(),
        record: None,
        replay: None,
    };
    if !id.is_empty() {
        match uuid::Uuid::try_parse(id) {
            Err(_) => {
                page.error =
                    Some("A decision id is a UUID, as answers carry it in decision_id.".into());
            }
            Ok(uuid) => match state.audit.get(&uuid).await {
                Ok(r) => {
                    page.summary = format!(
                        "{} · {} · {} · model {} · ruleset {}{}",
                        r.endpoint.as_str(),
                        r.placement.as_str(),
                        crate::domain::time::format_rfc3339(r.at_ms.div_euclid(1000)),
                        r.versions.model,
                        r.versions.ruleset,
                        if r.experiments.is_empty() {
                            String::new()
                        } else {
                            format!(
                                " · arms {}",
                                r.experiments
                                    .iter()
                                    .map(|(e, v)| format!("{e}={v}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    );
                    page.record = serde_json::to_string_pretty(&r).ok();
                }
                Err(e) => page.error = Some(e.to_string()),
            },
        }
    }
    match replay {
        Some(Ok(answer)) => page.replay = Some(answer),
        Some(Err(e)) => page.error = Some(format!("Not replayed: {e}")),
        None => {}
    }
    render(&page)
}

async fn decisions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<DecisionQuery>,
) -> Response {
    match signed_in(&state, &headers, "/console/decisions").await {
        Ok(session) => {
            let id = query.id.as_deref().map(str::trim).unwrap_or("");
            decision_page(&state, &session, id, None).await
        }
        Err(denied) => denied.into_response(),
    }
}

#[derive(Deserialize)]
struct ReplayForm {
    csrf: String,
    id: String,
}

async fn replay(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ReplayForm>,
) -> Response {
    let session = match checked_post(&state, &headers, &form.csrf, "/console/decisions").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let id = form.id.trim();
    let answer = match uuid::Uuid::try_parse(id) {
        Ok(uuid) => {
            let serving = state.snapshot.load_full();
            Some(
                state
                    .audit
                    .replay(&uuid, &serving, &state.rules, &state.policy, &state.banners)
                    .await,
            )
        }
        Err(_) => None,
    };
    tracing::info!(label = %session.label, decision_id = %id, "console replay");
    decision_page(&state, &session, id, answer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_gone_back_to() {
        assert_eq!(
            safe_next(Some("/console/review?x=1")),
            "/console/review?x=1"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/admin/v1/status",
            "/console/\\evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console/overview", "{bad}");
        }
        assert_eq!(url_encode("/console/a b?c=d"), "/console/a%20b%3Fc%3Dd");
    }
}
