//! The API's OpenAPI 3.1 document, generated from the handlers' annotations and the
//! request, answer and error types they use (so it follows the code), served at
//! `GET /openapi.json` and written to `docs/openapi.json` by `vitrine openapi` (a test
//! fails when that file is stale).
//!
//! It covers the storefront API's `/v1/recommend` (GET and POST) and `/v1/events`, and
//! the ops routes, so far; the other routes are documented in the README until they join
//! it.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vitrine",
        description = "Real-time personalization for headless commerce: recommendations, offers, personalized prices and content in one answer per page view."
    ),
    paths(
        super::recommend_api::recommend_get,
        super::recommend_api::recommend_post,
        super::events::post_events,
        super::health::livez,
        super::health::readyz,
        super::health::metrics
    ),
    modifiers(&Keys),
    tags(
        (name = "storefront", description = "Called by storefronts and edge functions on every page view, with a publishable storefront key"),
        (name = "ops", description = "For load balancers and Prometheus; no key (on ops.addr when set)")
    )
)]
struct ApiDoc;

/// The API keys, as bearer tokens (`Authorization: Bearer <key>`).
struct Keys;

impl utoipa::Modify for Keys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "storefront_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A storefront key (publishable), or an admin key; none when the service has no keys (the demo)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as `docs/openapi.json` holds it: pretty JSON, a newline at the end.
pub fn document_text() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

#[cfg(test)]
mod tests {
    /// `docs/openapi.json` is the document the code generates: run `vitrine openapi >
    /// docs/openapi.json` after changing the API.
    #[test]
    fn docs_openapi_json_is_current() {
        let written = include_str!("../../docs/openapi.json");
        assert!(
            written == super::document_text(),
            "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json`"
        );
    }
}
