//! The console's preview: "see as" a customer (their stored profile, found through the
//! keyed hash of their id) or a made-up visitor (segments, tier, company, orders, history,
//! country, device, cart), on a placement at a time: the answer exactly as the storefront
//! would get it, decided by the serving code (products with reasons and personalized
//! prices, offers, banners, merchandising effects, arms). With a draft ruleset, the same
//! visitor under the live ruleset and under the draft, side by side; the draft is
//! validated (errors at their path) and never published from here.

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::answer::AnswerView;
use super::{Chrome, checked_post, chrome, render, signed_in};
use crate::decide::live::LiveRules;
use crate::domain::{Placement, Profile, RawPageContext, VisitorKey};
use crate::http::recommend_api::RawRequest;
use crate::http::state::AppState;

/// The session a made-up visitor is previewed as.
pub(super) const MADE_UP_SESSION: &str = "console-preview";

/// The preview form, as GET parameters or a POST body (the draft only by POST).
#[derive(Debug, Default, Deserialize)]
pub(super) struct PreviewForm {
    #[serde(default)]
    csrf: String,
    /// `customer` or `made_up`.
    #[serde(default)]
    who: String,
    #[serde(default)]
    customer_id: String,
    #[serde(default)]
    segments: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    orders: String,
    #[serde(default)]
    history: String,
    #[serde(default)]
    marketing: Option<String>,
    #[serde(default)]
    country: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    exit_intent: Option<String>,
    #[serde(default)]
    placement: String,
    #[serde(default)]
    product_id: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    query: String,
    /// `id:qty, id:qty`
    #[serde(default)]
    cart: String,
    /// `YYYY-MM-DDTHH:MM` (UTC); empty: now.
    #[serde(default)]
    at: String,
    #[serde(default)]
    draft: String,
}

fn given(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl PreviewForm {
    fn made_up(&self) -> bool {
        self.who != "customer"
    }

    /// Whether the form asks for an answer (a fresh page only shows the form); a draft
    /// sent from the editor is previewed on the home page.
    fn asked(&mut self) -> bool {
        if self.placement.trim().is_empty() && !self.draft.trim().is_empty() {
            self.placement = Placement::Home.as_str().into();
        }
        !self.placement.trim().is_empty()
    }

    /// The request as a storefront would send it, checked by the same validation.
    fn request(
        &self,
        default_limit: u32,
    ) -> Result<crate::http::recommend_api::RecommendRequest, String> {
        // As the GET parameter, without the spaces people type (ids and quantities have
        // none) or empty lines.
        let lines = list(&self.cart.split_whitespace().collect::<String>());
        let cart = if lines.is_empty() {
            Vec::new()
        } else {
            crate::http::recommend_api::cart_param(&lines.join(","))
                .map_err(|e| e.message.to_string())?
        };
        let raw = RawRequest {
            customer_id: if self.made_up() {
                None
            } else {
                Some(self.customer_id.trim().to_owned())
            },
            session_id: self.made_up().then(|| MADE_UP_SESSION.to_owned()),
            placement: given(&self.placement),
            product_id: given(&self.product_id),
            category: given(&self.category),
            query: given(&self.query),
            cart: (!cart.is_empty()).then_some(cart),
            context: Some(RawPageContext {
                country: given(&self.country),
                currency: given(&self.currency),
                device: given(&self.device),
                exit_intent: Some(self.exit_intent.is_some()),
                ..RawPageContext::default()
            }),
            ..RawRequest::default()
        };
        raw.validate(default_limit)
            .map_err(|e| e.message.to_string())
    }

    /// The made-up visitor's profile (`None`: a visitor the service has never seen).
    fn profile(&self) -> Result<Option<Profile>, String> {
        let orders = match self.orders.trim() {
            "" => None,
            n => Some(
                n.parse::<u32>()
                    .map_err(|_| "Orders is a whole number.".to_owned())?,
            ),
        };
        let segments = list(&self.segments);
        let history = list(&self.history);
        for id in &history {
            crate::domain::ids::check_id(id).map_err(|e| format!("The history id {id:?}: {e}."))?;
        }
        let described = orders.is_some()
            || !segments.is_empty()
            || !history.is_empty()
            || given(&self.tier).is_some()
            || given(&self.company).is_some()
            || self.marketing.is_some();
        if !described {
            return Ok(None);
        }
        let mut p = Profile {
            segments,
            loyalty_tier: given(&self.tier),
            company_id: given(&self.company),
            orders_count: orders.unwrap_or(0),
            recently_viewed: history,
            ..Profile::default()
        };
        p.consent.marketing = self.marketing.is_some();
        Ok(Some(p))
    }

    /// The time to decide at.
    fn now(&self) -> Result<i64, String> {
        match self.at.trim() {
            "" => Ok(crate::domain::time::unix_now()),
            t => {
                // `datetime-local` sends minutes; RFC 3339 wants seconds and a zone.
                let full = match t.len() {
                    16 => format!("{t}:00Z"),
                    19 => format!("{t}Z"),
                    _ => t.to_owned(),
                };
                crate::domain::time::parse_rfc3339(&full)
                    .ok_or_else(|| "The time is YYYY-MM-DDTHH:MM (UTC).".to_owned())
            }
        }
    }
}

#[derive(Template)]
#[template(path = "console/preview.html")]
struct PreviewPage {
    chrome: Chrome,
    form: PreviewForm,
    placements: Vec<&'static str>,
    error: Option<String>,
    visitor: String,
    /// (path, message)
    draft_errors: Vec<(String, String)>,
    live: Option<AnswerView>,
    draft: Option<AnswerView>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(mut form): Query<PreviewForm>,
) -> Response {
    let session = match signed_in(&state, &headers, "/console/preview").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    // A draft is sent by POST only (it does not belong in a URL).
    form.draft.clear();
    preview(&state, chrome(&state, &session, "preview"), form).await
}

pub(super) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<PreviewForm>,
) -> Response {
    let session = match checked_post(&state, &headers, &form.csrf, "/console/preview").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    preview(&state, chrome(&state, &session, "preview"), form).await
}

async fn preview(state: &AppState, chrome: Chrome, mut form: PreviewForm) -> Response {
    let asked = form.asked();
    let mut page = PreviewPage {
        chrome,
        placements: Placement::ALL.iter().map(|p| p.as_str()).collect(),
        error: None,
        visitor: String::new(),
        draft_errors: Vec::new(),
        live: None,
        draft: None,
        form,
    };
    if !asked {
        return render(&page);
    }
    match answers(state, &page.form).await {
        Ok(done) => {
            page.visitor = done.visitor;
            page.live = Some(done.live);
            page.draft = done.draft;
            page.draft_errors = done.draft_errors;
        }
        Err(e) => page.error = Some(e),
    }
    let mut r = render(&page);
    if page.error.is_some() {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

struct Answers {
    visitor: String,
    live: AnswerView,
    draft: Option<AnswerView>,
    draft_errors: Vec<(String, String)>,
}

async fn answers(state: &AppState, form: &PreviewForm) -> Result<Answers, String> {
    let request = form.request(state.settings.recommend.default_limit)?;
    let now = form.now()?;
    let (profile, visitor) = if form.made_up() {
        let p = form.profile()?;
        let who = if p.is_some() {
            "a made-up visitor"
        } else {
            "a made-up visitor on a first visit (no profile)"
        };
        (p.map(std::sync::Arc::new), who.to_owned())
    } else {
        let key = state.hasher.key(&request.visitor);
        let stored = state
            .store
            .get(&key)
            .await
            .map_err(|e| format!("The customer's profile could not be read: {e}."))?;
        let id = match &request.visitor {
            VisitorKey::Customer(c) | VisitorKey::Session(c) => c.as_str().to_owned(),
        };
        let who = match &stored {
            Some(p) => format!(
                "customer {id}: their stored profile ({} orders, {} segments)",
                p.orders_count,
                p.segments.len()
            ),
            None => format!("customer {id}: no profile stored, so a visitor never seen"),
        };
        (stored, who)
    };
    let live_rules = state.rules.load();
    let (body, lists) =
        crate::http::recommend_api::preview(state, &request, profile.as_deref(), &live_rules, now)
            .map_err(|e| e.message.to_string())?;
    let live = AnswerView::of(&body, &lists);
    let mut draft = None;
    let mut draft_errors = Vec::new();
    if let Some(text) = given(&form.draft) {
        match serde_json::from_str::<Value>(&text) {
            Err(e) => draft_errors.push(("$".to_owned(), format!("not JSON: {e}"))),
            Ok(doc) => {
                let compiled = tokio::task::spawn_blocking(move || LiveRules::validate(&doc))
                    .await
                    .map_err(|e| e.to_string())?;
                match compiled {
                    Err(errors) => {
                        draft_errors = errors.into_iter().map(|e| (e.path, e.message)).collect();
                    }
                    Ok(rules) => {
                        let (body, lists) = crate::http::recommend_api::preview(
                            state,
                            &request,
                            profile.as_deref(),
                            &rules,
                            now,
                        )
                        .map_err(|e| e.message.to_string())?;
                        draft = Some(AnswerView::of(&body, &lists));
                    }
                }
            }
        }
    }
    Ok(Answers {
        visitor,
        live,
        draft,
        draft_errors,
    })
}
