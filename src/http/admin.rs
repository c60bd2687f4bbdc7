//! The admin API (admin keys). For now: what is being served.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/v1/status", get(status))
}

async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = state.snapshot.load();
    let catalog = &snapshot.catalog;
    let out_of_stock = (0..catalog.len() as u32)
        .filter(|&i| !catalog.in_stock(i))
        .count();
    Json(json!({
        "model_version": snapshot.models.version,
        "model_memory_bytes": snapshot.models.memory_bytes(),
        "products": catalog.len(),
        "products_out_of_stock": out_of_stock,
        "categories": catalog.categories().len(),
        "store": state.store.backend(),
    }))
}
