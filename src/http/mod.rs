//! The HTTP surface: one file per resource, each exporting `router()`, assembled here
//! with the layers every route shares.

pub mod admin;
pub mod auth;
pub mod cart;
pub mod catalog;
pub mod console;
pub mod decisions;
pub mod error;
pub mod events;
pub mod extract;
pub mod fragments;
pub mod guard;
pub mod health;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod proxy;
pub mod recommend_api;
pub mod rules;
pub mod schema;
pub mod serve;
pub mod state;
pub mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;

use state::AppState;

/// Reads a request's body whole, under `max_bytes` and the body timeout, before the
/// layers inside it run (see [`guard`]).
pub(crate) fn read_body<S: Clone + Send + Sync + 'static>(
    state: &AppState,
    max_bytes: usize,
    router: Router<S>,
) -> Router<S> {
    router.route_layer(from_fn_with_state(
        guard::BodyLimits::new(max_bytes, &state.settings.server),
        guard::read_body,
    ))
}

/// The API router. Ops routes are included unless they have a listener of their own.
///
/// Layers run outermost first, so on the storefront API the key is checked before a
/// byte of the body is read, and the body is read before a permit is taken: a caller
/// without a key, or with a slow body, never holds one.
pub fn router(state: &AppState, include_ops: bool) -> Router {
    let limit = state.settings.server.body_limit_bytes;
    let storefront = recommend_api::router()
        .merge(events::router())
        .merge(cart::router())
        .route_layer(from_fn_with_state(
            std::sync::Arc::new(guard::Storefront {
                keys: state.keys.clone(),
                limits: guard::BodyLimits::new(limit, &state.settings.server),
                permits: state.permits.clone(),
            }),
            guard::storefront,
        ));
    let admin = read_body(state, limit, admin::router())
        .merge(catalog::router(state))
        .merge(rules::router(state))
        .merge(decisions::router())
        .route_layer(from_fn_with_state(state.keys.clone(), auth::admin));
    let hooks = webhooks::router(state);
    // Signed by Shopify, not keyed: the signature is checked by the route itself.
    let proxied = proxy::router(state);
    // The console signs its own people in (session cookies), and reads its forms'
    // bodies within the same limits.
    let drafts = state.settings.rules.body_limit_bytes;
    let console = read_body(state, limit, console::router()).merge(read_body(
        state,
        drafts,
        console::drafts().route_layer(DefaultBodyLimit::max(drafts)),
    ));
    let mut app = Router::new()
        .merge(storefront)
        .merge(admin)
        .merge(hooks)
        .merge(proxied)
        .merge(console);
    if include_ops {
        app = app.merge(health::router());
    }
    // The API's contract: public, like the API's documentation.
    app = app.merge(openapi::router());
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
        .layer(tower::util::MapResponseLayer::new(error::error_shape))
        .layer(from_fn(observe::observe))
        .layer(CatchPanicLayer::custom(|_| {
            use axum::response::IntoResponse;
            error::ApiError::new(error::ErrorCode::Internal, "internal error").into_response()
        }))
        .with_state(state.clone())
}
