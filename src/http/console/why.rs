//! For one product, what each placement would show and why: the models' neighbours of
//! it (bought and viewed together, with support and score), and the answer of each
//! placement the product is part of (its page, a cart holding it, checkout, after the
//! purchase, its category) for a visitor on a first visit, under the live ruleset, with
//! every item's reason and the merchandising effects.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::answer::AnswerView;
use super::{Chrome, ProductCell, chrome, product_cell, render, signed_in};
use crate::domain::Placement;
use crate::http::recommend_api::{RawCartLine, RawRequest};
use crate::http::state::AppState;

/// Neighbours listed per kind.
const NEIGHBOURS: usize = 10;

struct Neighbour {
    product: ProductCell,
    score: String,
    blocked: bool,
}

struct PlacementAnswer {
    placement: &'static str,
    how: String,
    answer: Result<AnswerView, String>,
}

#[derive(Template)]
#[template(path = "console/why.html")]
struct WhyPage {
    chrome: Chrome,
    id: String,
    error: Option<String>,
    product: Option<ProductCell>,
    bought: Vec<Neighbour>,
    viewed: Vec<Neighbour>,
    placements: Vec<PlacementAnswer>,
}

#[derive(Deserialize)]
pub(super) struct WhyQuery {
    id: Option<String>,
}

pub(super) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<WhyQuery>,
) -> Response {
    let session = match signed_in(&state, &headers, "/console/product").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let id = query.id.as_deref().map(str::trim).unwrap_or("").to_owned();
    let mut page = WhyPage {
        chrome: chrome(&state, &session, "review"),
        id: id.clone(),
        error: None,
        product: None,
        bought: Vec::new(),
        viewed: Vec::new(),
        placements: Vec::new(),
    };
    if id.is_empty() {
        return render(&page);
    }
    let snapshot = state.snapshot.load_full();
    let catalog = &snapshot.catalog;
    let Some(p) = catalog.lookup(&id) else {
        page.error = Some(format!("There is no product {id:?} in the catalog."));
        let mut r = render(&page);
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let rules = state.rules.load();
    let models = &snapshot.models;
    let neighbours = |list: &[(crate::domain::ProductIdx, f32)]| -> Vec<Neighbour> {
        list.iter()
            .take(NEIGHBOURS)
            .map(|&(q, score)| {
                let cell = product_cell(catalog, q);
                Neighbour {
                    blocked: rules.overrides.blocks(&id, &cell.id),
                    product: cell,
                    score: format!("{score:.4}"),
                }
            })
            .collect()
    };
    page.bought = neighbours(&models.bought_with(&models.live, p));
    page.viewed = neighbours(models.viewed.of(p));
    let category = catalog.categories()[usize::from(catalog.product(p).category)]
        .handle
        .to_string();
    let now = crate::domain::time::unix_now();
    let cart = || {
        Some(vec![RawCartLine {
            product_id: id.clone(),
            quantity: Some(1),
        }])
    };
    let asks = [
        (
            Placement::Product,
            "on its page".to_owned(),
            Some(id.clone()),
            None,
            None,
        ),
        (
            Placement::Cart,
            "with it in the cart".into(),
            None,
            None,
            cart(),
        ),
        (
            Placement::Checkout,
            "at checkout with it".into(),
            None,
            None,
            cart(),
        ),
        (
            Placement::PostPurchase,
            "after buying it".into(),
            None,
            None,
            cart(),
        ),
        (
            Placement::Category,
            format!("on its category page, {category}"),
            None,
            Some(category),
            None,
        ),
    ];
    for (placement, how, product_id, category, cart) in asks {
        let raw = RawRequest {
            session_id: Some(super::preview::MADE_UP_SESSION.into()),
            placement: Some(placement.as_str().into()),
            product_id,
            category,
            cart,
            ..RawRequest::default()
        };
        let answer = raw
            .validate(state.settings.recommend.default_limit)
            .and_then(|request| {
                crate::http::recommend_api::preview(&state, &request, None, &rules, now)
            })
            .map(|(body, lists)| AnswerView::of(&body, &lists))
            .map_err(|e| e.message.to_string());
        page.placements.push(PlacementAnswer {
            placement: placement.as_str(),
            how,
            answer,
        });
    }
    page.product = Some(product_cell(catalog, p));
    render(&page)
}
