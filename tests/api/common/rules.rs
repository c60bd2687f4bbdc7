//! Rulesets and carts through the admin and checkout APIs.

use serde_json::{Value, json};

use super::TestApp;

impl TestApp {
    /// `PUT /admin/v1/ruleset`, answered as it is.
    pub async fn put_ruleset(&self, doc: &Value) -> reqwest::Response {
        self.client
            .put(self.url("/admin/v1/ruleset"))
            .json(doc)
            .send()
            .await
            .unwrap()
    }

    /// Publishes a ruleset that must be valid; its version.
    pub async fn publish_ruleset(&self, doc: &Value) -> String {
        publish(self, doc).await
    }

    /// The problems of a ruleset that must be refused: (path, message).
    pub async fn refused_ruleset(&self, doc: &Value) -> Vec<(String, String)> {
        refused(self, doc).await
    }

    /// `POST /v1/cart/evaluate` that must answer 200.
    pub async fn evaluate_cart(&self, body: Value) -> Value {
        evaluate(self, body).await
    }
}

async fn publish(app: &TestApp, doc: &Value) -> String {
    let r = app.put_ruleset(doc).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["version"].as_str().unwrap().to_owned()
}

async fn refused(app: &TestApp, doc: &Value) -> Vec<(String, String)> {
    let r = app.put_ruleset(doc).await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_ruleset");
    body["error"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn evaluate(app: &TestApp, body: Value) -> Value {
    let r = app.post_json("/v1/cart/evaluate", &body).await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// Cart lines from (product, quantity).
pub fn cart(lines: &[(&str, u32)]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|(p, q)| json!({"product_id": p, "quantity": q}))
            .collect(),
    )
}
