//! The HTTP surface: one file per resource, each exporting `router()`, assembled here
//! with the layers every route shares.

pub mod admin;
pub mod auth;
pub mod cart;
pub mod catalog;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod observe;
pub mod recommend;
pub mod rules;
pub mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;

use crate::app::AppState;

/// The API router. Ops routes are included unless they have a listener of their own.
pub fn router(state: &AppState, include_ops: bool) -> Router {
    let storefront = recommend::router()
        .merge(events::router())
        .merge(cart::router())
        .route_layer(from_fn_with_state(state.keys.clone(), auth::storefront))
        .route_layer(from_fn_with_state(state.permits.clone(), observe::shed));
    let admin = admin::router()
        .merge(catalog::router())
        .merge(rules::router(state))
        .route_layer(from_fn_with_state(state.keys.clone(), auth::admin));
    let hooks = webhooks::router(state)
        .route_layer(from_fn_with_state(state.permits.clone(), observe::shed));
    let mut app = Router::new().merge(storefront).merge(admin).merge(hooks);
    if include_ops {
        app = app.merge(health::router());
    }
    finish(app, state)
}

/// The separate ops listener's router, when `ops.addr` is set.
pub fn ops_router(state: &AppState) -> Router {
    finish(health::router(), state)
}

fn finish(router: Router<AppState>, state: &AppState) -> Router {
    let compression = CompressionLayer::new().gzip(true);
    let router = router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(
            state.settings.server.body_limit_bytes,
        ));
    let router = if state.settings.server.compression {
        router.layer(compression)
    } else {
        router
    };
    router
        .layer(from_fn(observe::observe))
        .layer(CatchPanicLayer::custom(|_| {
            use axum::response::IntoResponse;
            error::ApiError::new(error::ErrorCode::Internal, "internal error").into_response()
        }))
        .with_state(state.clone())
}
