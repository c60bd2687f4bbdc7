//! Shopify webhooks as Shopify sends them: signed with the app's secret.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::TestApp;

pub const SECRET: &str = "shopify-app-secret-for-tests";

pub fn sign(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub async fn deliver(
    app: &TestApp,
    topic: &str,
    id: &str,
    body: &[u8],
    signature: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/webhooks/shopify"))
        .header("content-type", "application/json")
        .header("x-shopify-topic", topic)
        .header("x-shopify-webhook-id", id)
        .header("x-shopify-hmac-sha256", signature)
        .header("x-shopify-shop-domain", "example.myshopify.com")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Delivers a correctly signed webhook: its status and body.
pub async fn send(app: &TestApp, topic: &str, id: &str, body: &[u8]) -> (u16, Value) {
    let r = deliver(app, topic, id, body, &sign(body)).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}
