//! The console's rulesets: the stored versions (the live one marked), a readable diff
//! between any two, rolling back to one, and a draft editor that validates (every
//! problem at its JSON path), previews and publishes over the version it was started
//! from (a draft started before another publish is refused, never overwrites it).

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use super::edit::{not_changed, publish_refused, validated};
use super::{Chrome, checked_post, chrome, now, render, signed_in, url_encode};
use crate::decide::live::{Change, PublishError};
use crate::domain::time::format_rfc3339;
use crate::http::state::AppState;

/// Lines of context around each change in a diff.
const CONTEXT: usize = 3;

struct VersionRow {
    version: String,
    published_at: String,
    live: bool,
}

struct DiffLine {
    /// `add`, `del`, `ctx` or `hunk`.
    kind: &'static str,
    text: String,
}

#[derive(Template)]
#[template(path = "console/rulesets.html")]
struct RulesetsPage {
    chrome: Chrome,
    live: String,
    versions: Vec<VersionRow>,
    from: String,
    to: String,
    diff: Option<Vec<DiffLine>>,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RulesetsQuery {
    from: Option<String>,
    to: Option<String>,
    published: Option<String>,
}

/// A stored version's document, pretty (`none`: no rules at all).
async fn document(state: &AppState, version: &str) -> Result<String, String> {
    let rules = state
        .rules
        .version(version)
        .await
        .map_err(|e| format!("{version}: {e}"))?;
    Ok(pretty(&rules.source))
}

fn pretty(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).unwrap_or_default()
}

/// A unified diff of two documents' lines, in hunks with a little context.
fn diff(before: &str, after: &str) -> Vec<DiffLine> {
    let text = similar::TextDiff::from_lines(before, after);
    let mut out = Vec::new();
    for group in text.grouped_ops(CONTEXT) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let (old, new) = (first.old_range().start, first.new_range().start);
        out.push(DiffLine {
            kind: "hunk",
            text: format!(
                "@@ -{},{} +{},{} @@",
                old + 1,
                last.old_range().end - old,
                new + 1,
                last.new_range().end - new
            ),
        });
        for op in &group {
            for change in text.iter_changes(op) {
                let kind = match change.tag() {
                    similar::ChangeTag::Delete => "del",
                    similar::ChangeTag::Insert => "add",
                    similar::ChangeTag::Equal => "ctx",
                };
                out.push(DiffLine {
                    kind,
                    text: change.value().trim_end_matches('\n').to_owned(),
                });
            }
        }
    }
    out
}

pub(super) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<RulesetsQuery>,
) -> Response {
    let session = match signed_in(&state, &headers, "/console/rulesets").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let live = state.rules.load().version.clone();
    let mut page = RulesetsPage {
        chrome: chrome(&state, &session, "rulesets"),
        live: live.clone(),
        versions: Vec::new(),
        from: String::new(),
        to: String::new(),
        diff: None,
        error: None,
        notice: query
            .published
            .map(|v| format!("Published {v}: every replica follows within a moment.")),
    };
    match state.rules.versions().await {
        Ok(list) => {
            page.versions = list
                .into_iter()
                .map(|(version, at)| VersionRow {
                    live: version == live,
                    version,
                    published_at: format_rfc3339(at),
                })
                .collect();
        }
        Err(e) => page.error = Some(format!("The stored versions are not readable now: {e}")),
    }
    let given = |v: Option<String>| v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    // By default: what the live version changed from the one before it.
    let to = given(query.to).unwrap_or_else(|| live.clone());
    let from = given(query.from).or_else(|| {
        let i = page.versions.iter().position(|v| v.version == to)?;
        page.versions.get(i + 1).map(|v| v.version.clone())
    });
    if let Some(from) = from {
        match (document(&state, &from).await, document(&state, &to).await) {
            (Ok(a), Ok(b)) => page.diff = Some(diff(&a, &b)),
            (Err(e), _) | (_, Err(e)) => page.error = Some(format!("No diff: {e}")),
        }
        page.from = from;
    }
    page.to = to;
    let mut r = render(&page);
    if page.error.is_some() && page.diff.is_none() && !page.from.is_empty() {
        *r.status_mut() = StatusCode::NOT_FOUND;
    }
    r
}

#[derive(Deserialize)]
pub(super) struct RollbackForm {
    csrf: String,
    version: String,
}

pub(super) async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<RollbackForm>,
) -> Response {
    let session = match checked_post(&state, &headers, &form.csrf, "/console/rulesets").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let version = form.version.trim();
    let target = (!version.is_empty()).then_some(version);
    match state.rules.rollback_by(target, &session.label, now()).await {
        Ok(rules) => Redirect::to(&format!(
            "/console/rulesets?published={}",
            url_encode(&rules.version)
        ))
        .into_response(),
        Err(e) => publish_refused(e),
    }
}

#[derive(Template)]
#[template(path = "console/draft.html")]
struct DraftPage {
    chrome: Chrome,
    base: String,
    draft: String,
    /// (path, message)
    errors: Vec<(String, String)>,
    valid: Option<String>,
    error: Option<String>,
}

pub(super) async fn draft_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let session = match signed_in(&state, &headers, "/console/rulesets/draft").await {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let live = state.rules.load();
    render(&DraftPage {
        chrome: chrome(&state, &session, "rulesets"),
        base: live.version.clone(),
        draft: pretty(&live.source),
        errors: Vec::new(),
        valid: None,
        error: None,
    })
}

#[derive(Deserialize)]
pub(super) struct DraftForm {
    csrf: String,
    base: String,
    draft: String,
    /// `validate` or `publish`.
    action: String,
}

pub(super) async fn draft(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<DraftForm>,
) -> Response {
    let session = match checked_post(&state, &headers, &form.csrf, "/console/rulesets/draft").await
    {
        Ok(s) => s,
        Err(denied) => return denied.into_response(),
    };
    let mut page = DraftPage {
        chrome: chrome(&state, &session, "rulesets"),
        base: form.base.clone(),
        draft: form.draft.clone(),
        errors: Vec::new(),
        valid: None,
        error: None,
    };
    let refused = |page: &DraftPage, status: StatusCode| {
        let mut r = render(page);
        *r.status_mut() = status;
        r
    };
    let doc: Value = match serde_json::from_str(&form.draft) {
        Ok(d) => d,
        Err(e) => {
            page.errors = vec![("$".into(), format!("not JSON: {e}"))];
            return refused(&page, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    let (doc, compiled) = match validated(doc).await {
        Ok(done) => done,
        Err(errors) => {
            page.errors = errors;
            return refused(&page, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    if form.action != "publish" {
        page.valid = Some(format!(
            "Valid: published, it would be version {}.",
            compiled.version
        ));
        return render(&page);
    }
    let change = Change::new(now(), &session.label, "published a draft");
    match state
        .rules
        .publish_change(compiled, &doc, form.base.trim(), change)
        .await
    {
        Ok(rules) => Redirect::to(&format!(
            "/console/rulesets?published={}",
            url_encode(&rules.version)
        ))
        .into_response(),
        Err(e @ PublishError::Moved(_)) => {
            page.error = Some(format!(
                "Not published: {e}, after this draft was started from {}. Your draft is below: compare it with the live version, then start again from it.",
                form.base.trim()
            ));
            refused(&page, StatusCode::CONFLICT)
        }
        Err(e) => not_changed(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_shows_what_changed_with_a_little_context() {
        let a = "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}\n";
        let b = "{\n  \"a\": 1,\n  \"b\": 5,\n  \"c\": 3\n}\n";
        let shown: Vec<String> = diff(a, b)
            .iter()
            .map(|l| format!("{} {}", l.kind, l.text))
            .collect();
        assert_eq!(
            shown,
            [
                "hunk @@ -1,5 +1,5 @@",
                "ctx {",
                "ctx   \"a\": 1,",
                "del   \"b\": 2,",
                "add   \"b\": 5,",
                "ctx   \"c\": 3",
                "ctx }",
            ]
        );
        assert!(diff(a, a).is_empty());
    }
}
