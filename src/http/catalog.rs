//! The catalog admin API (admin keys): batch upsert, read, partial update, delete.
//! Stock changes reach recommendations on the next request.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::domain::catalog::UNTRACKED_STOCK;

use super::error::{ApiError, ErrorCode};
use super::extract::{JsonBody, PathId};
use super::state::AppState;
use crate::ingest::catalog::{CatalogChangeError, ProductInput, ProductPatch};

pub const MAX_BATCH: usize = 1_000;

/// The body a batch of [`MAX_BATCH`] products may take (8 MiB: 8 KiB a product, well
/// over a typical one's half kilobyte).
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

pub fn router(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/admin/v1/products", put(upsert))
        .route(
            "/admin/v1/products/{id}",
            get(read).patch(patch).delete(delete),
        )
        .route_layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
    super::read_body(state, BODY_LIMIT, routes)
}

fn change_error(e: CatalogChangeError) -> ApiError {
    match e {
        CatalogChangeError::Invalid(m) => ApiError::new(ErrorCode::InvalidProduct, m),
        CatalogChangeError::NotFound => {
            ApiError::new(ErrorCode::ProductNotFound, "no product with this id")
        }
        CatalogChangeError::Catalog(e) => ApiError::new(ErrorCode::InvalidProduct, e.to_string()),
        CatalogChangeError::Store(e) => {
            tracing::warn!(error = %e, "catalog change not applied: store unavailable");
            ApiError::new(
                ErrorCode::StoreUnavailable,
                "the catalog store is unavailable; nothing was changed",
            )
        }
        CatalogChangeError::StoreReset => ApiError::new(
            ErrorCode::StoreUnavailable,
            "the catalog store is being restored after losing its data; nothing was changed",
        ),
    }
}

/// `PUT /admin/v1/products`: an array of products, all validated before any is applied.
async fn upsert(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Vec<Value>>,
) -> Result<Json<Value>, ApiError> {
    if body.len() > MAX_BATCH {
        return Err(ApiError::new(
            ErrorCode::BatchTooLarge,
            format!("at most {MAX_BATCH} products per request"),
        ));
    }
    let mut inputs = Vec::with_capacity(body.len());
    for (i, value) in body.into_iter().enumerate() {
        let input: ProductInput = serde_json::from_value(value)
            .map_err(|e| ApiError::new(ErrorCode::InvalidProduct, format!("[{i}]: {e}")))?;
        input
            .validate()
            .map_err(|e| ApiError::new(ErrorCode::InvalidProduct, format!("[{i}]: {e}")))?;
        inputs.push(input);
    }
    let count = inputs.len();
    state.catalog.upsert(inputs).await.map_err(change_error)?;
    Ok(Json(json!({"upserted": count})))
}

async fn read(State(state): State<AppState>, PathId(id): PathId) -> Result<Json<Value>, ApiError> {
    let snapshot = state.snapshot.load();
    let catalog = &snapshot.catalog;
    let idx = catalog
        .lookup(&id)
        .ok_or_else(|| ApiError::new(ErrorCode::ProductNotFound, "no product with this id"))?;
    let p = catalog.product(idx);
    let category = &catalog.categories()[usize::from(p.category)];
    Ok(Json(json!({
        "id": p.id,
        "title": p.title,
        "handle": p.handle,
        "url": p.url,
        "image_url": p.image_url,
        "category": category.handle,
        "category_path": category.path,
        "tags": p.tags,
        "price": p.price,
        "cost": p.cost,
        // Untracked stock is not a number of units.
        "inventory": Some(catalog.inventory(idx)).filter(|&l| l != UNTRACKED_STOCK),
        "inventory_tracked": catalog.inventory(idx) != UNTRACKED_STOCK,
        "in_stock": catalog.in_stock(idx),
    })))
}

async fn patch(
    State(state): State<AppState>,
    PathId(id): PathId,
    JsonBody(change): JsonBody<ProductPatch>,
) -> Result<StatusCode, ApiError> {
    state
        .catalog
        .patch(&id, change)
        .await
        .map_err(change_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(state): State<AppState>, PathId(id): PathId) -> Result<StatusCode, ApiError> {
    state.catalog.delete(&id).await.map_err(change_error)?;
    Ok(StatusCode::NO_CONTENT)
}
