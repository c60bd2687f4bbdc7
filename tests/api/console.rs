//! The console through HTTP: open in the demo (and saying so), otherwise signed in with
//! an admin key for a session cookie, every form bound to the session, signed-out pages
//! sent to sign-in; the overview's figures.

use crate::common;

use common::{TestApp, settings};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

pub const KEY: &str = "console-test-key-0123456789";

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value a response sets for cookie `name`, and the whole header.
pub fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (pair, _) = v.split_once(';')?;
        let (k, value) = pair.split_once('=')?;
        (k == name).then(|| (value.to_owned(), v.to_owned()))
    })
}

/// The value of a form's hidden `csrf` field in a page.
pub fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

/// A GET with the session cookie.
pub async fn get(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    session: &str,
) -> reqwest::Response {
    client
        .get(app.url(path))
        .header(COOKIE, format!("vitrine_console={session}"))
        .send()
        .await
        .unwrap()
}

pub async fn keyed_app() -> TestApp {
    let mut s = settings();
    s.auth.admin_keys = vec![format!("ops:{KEY}").into()];
    TestApp::spawn(s).await
}

/// Signs in: the session cookie's value.
pub async fn sign_in(app: &TestApp, client: &reqwest::Client) -> String {
    let page = client
        .get(app.url("/console/sign-in?next=/console/overview"))
        .send()
        .await
        .unwrap();
    let (token_cookie, _) = set_cookie(&page, "vitrine_console_sign_in").unwrap();
    let html = page.text().await.unwrap();
    let r = client
        .post(app.url("/console/sign-in"))
        .header(COOKIE, format!("vitrine_console_sign_in={token_cookie}"))
        .form(&[
            ("key", KEY),
            ("csrf", &csrf(&html)),
            ("next", "/console/overview"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    set_cookie(&r, "vitrine_console").unwrap().0
}

#[tokio::test]
async fn without_keys_the_console_is_open_and_says_so() {
    let app = TestApp::spawn(settings()).await;
    let r = app.get("/console/overview").await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains("No admin keys are configured"), "{html}");
    let version = app.state.snapshot.load().models.version.clone();
    assert!(html.contains(&version), "the model version on the page");
    assert!(html.contains("Out of stock"));
    // The assets the page links to.
    let css = app.get("/console/assets/console.css").await;
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

#[tokio::test]
async fn an_admin_key_signs_in_for_a_session_that_forms_are_bound_to() {
    let app = keyed_app().await;
    let client = no_redirects();
    // Signed out: sent to sign in, and back after.
    let r = client
        .get(app.url("/console/overview"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()[LOCATION],
        "/console/sign-in?next=/console/overview"
    );
    let json = client
        .get(app.url("/console/overview.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        common::error_code(json).await,
        (401, "missing_api_key".into())
    );

    // The sign-in form's token must come with its cookie; a wrong key is refused.
    let page = client
        .get(app.url("/console/sign-in"))
        .send()
        .await
        .unwrap();
    let (token_cookie, header) = set_cookie(&page, "vitrine_console_sign_in").unwrap();
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Strict"),
        "{header}"
    );
    let token = csrf(&page.text().await.unwrap());
    let post = |key: &'static str, cookie: String, token: String| {
        client
            .post(app.url("/console/sign-in"))
            .header(COOKIE, cookie)
            .form(&[("key", key), ("csrf", &token)])
            .send()
    };
    // A form without its fields: the error shape, nothing set.
    let empty = client
        .post(app.url("/console/sign-in"))
        .form(&[("next", "/console/overview")])
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&empty, "vitrine_console").is_none());
    assert_eq!(
        common::error_code(empty).await,
        (422, "invalid_body".into())
    );
    let forged = post(KEY, String::new(), token.clone()).await.unwrap();
    assert_eq!(
        forged.status(),
        403,
        "no token cookie: a form from elsewhere"
    );
    assert!(set_cookie(&forged, "vitrine_console").is_none());
    let wrong = post(
        "not-the-key",
        format!("vitrine_console_sign_in={token_cookie}"),
        token.clone(),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("not an admin key"));

    // The right key: a session cookie, HttpOnly, SameSite=Strict, ending; Secure when
    // the request came over TLS.
    let ok = client
        .post(app.url("/console/sign-in"))
        .header(COOKIE, format!("vitrine_console_sign_in={token_cookie}"))
        .header("x-forwarded-proto", "https")
        .form(&[("key", KEY), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()[LOCATION], "/console/overview");
    let (session, header) = set_cookie(&ok, "vitrine_console").unwrap();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=28800",
        "Secure",
        "Path=/console",
    ] {
        assert!(header.contains(attr), "{attr} in {header}");
    }
    let plain = sign_in(&app, &client).await;
    assert!(!plain.is_empty());

    // Signed in: the page names who, and carries the form token.
    let page = get(&app, &client, "/console/overview", &session).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Signed in as <strong>ops</strong>"), "{html}");
    assert!(!html.contains("No admin keys are configured"));
    let token = csrf(&html);

    // A tampered cookie is no session.
    let mut tampered = session.clone();
    tampered.insert(0, 'x');
    let r = get(&app, &client, "/console/overview", &tampered).await;
    assert_eq!(r.status(), 303);

    // CSRF: signing out without the page's token is refused, and changes nothing.
    let sign_out = |token: String| {
        client
            .post(app.url("/console/sign-out"))
            .header(COOKIE, format!("vitrine_console={session}"))
            .form(&[("csrf", token)])
            .send()
    };
    let refused = sign_out("made-up".into()).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(set_cookie(&refused, "vitrine_console").is_none());
    let other_sessions_token = {
        let other = sign_in(&app, &client).await;
        let html = get(&app, &client, "/console/overview", &other)
            .await
            .text()
            .await
            .unwrap();
        csrf(&html)
    };
    assert_eq!(sign_out(other_sessions_token).await.unwrap().status(), 403);
    let out = sign_out(token).await.unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()[LOCATION], "/console/sign-in");
    let (cleared, header) = set_cookie(&out, "vitrine_console").unwrap();
    assert!(
        cleared.is_empty() && header.contains("Max-Age=0"),
        "{header}"
    );
    // A copy of the signed-out cookie no longer signs anyone in (nor to the sign-in
    // page's shortcut); the other session still does.
    let r = get(&app, &client, "/console/overview", &session).await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()[LOCATION],
        "/console/sign-in?next=/console/overview"
    );
    let r = get(&app, &client, "/console/sign-in", &session).await;
    assert_eq!(r.status(), 200, "the form, not a loop back");

    // The labelled key still works on the admin API, by its key alone.
    let status = app
        .client
        .get(app.url("/admin/v1/status"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_overview_counts_answers_and_events_of_the_last_seconds() {
    let app = keyed_app().await;
    let client = no_redirects();
    let session = sign_in(&app, &client).await;
    for i in 0..30 {
        app.client
            .get(app.url(&format!("/v1/recommend?session_id=o-{i}&placement=home")))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
    }
    let events: Vec<Value> = (0..12)
        .map(|i| {
            serde_json::json!({"event_id": format!("ov-{i}"), "type": "view",
            "session_id": "o-1", "product_id": "p000001"})
        })
        .collect();
    let sent = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(KEY)
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    // Whole seconds only: the figures include these once their second is over.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let figures: Value = get(&app, &client, "/console/overview.json", &session)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(figures["answers_per_s"], "3.0", "{figures}");
    assert_eq!(figures["events_per_s"], "1.2", "{figures}");
    assert_eq!(figures["degraded"], "0.0%");
    assert_ne!(figures["p50_ms"], "–");
    assert_eq!(
        figures["products"],
        app.state.snapshot.load().catalog.len().to_string()
    );
}

/// The review page's rows: (the row's html) for each pair.
fn rows(html: &str) -> Vec<&str> {
    html.split("<tr class=\"pair").skip(1).collect()
}

#[tokio::test]
async fn the_review_lists_the_strongest_pairs_filtered_by_category_product_and_outliers() {
    let app = TestApp::spawn(settings()).await;
    let page = |q: String| {
        let app = &app;
        async move {
            let r = app.get(&format!("/console/review{q}")).await;
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let all = page(String::new()).await;
    let listed = rows(&all);
    assert!(listed.len() >= 20, "{} pairs", listed.len());
    assert!(all.contains("bought_together") && all.contains("viewed_together"));
    // Strongest first.
    let scores: Vec<f64> = listed
        .iter()
        .map(|r| {
            let cells: Vec<&str> = r.split("<td class=\"num\">").skip(1).collect();
            cells[1].split('<').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // One product: every pair names it.
    let only = page("?q=p000001".into()).await;
    assert!(!rows(&only).is_empty());
    assert!(rows(&only).iter().all(|r| r.contains("p000001")));

    // One category: every pair has a product in it.
    let snapshot = app.state.snapshot.load();
    let catalog = &snapshot.catalog;
    let p = catalog.product(catalog.lookup("p000001").unwrap());
    let category = &catalog.categories()[usize::from(p.category)];
    let in_category = page(format!("?category={}", category.handle)).await;
    assert!(!rows(&in_category).is_empty());
    let path = category.path.replace('>', "&#62;");
    assert!(
        rows(&in_category).iter().all(|r| r.contains(&path)),
        "every row in {path}"
    );

    // Outliers only: each is flagged, and says why.
    let outliers = page("?outliers=1".into()).await;
    assert!(
        !rows(&outliers).is_empty(),
        "the demo has products out of stock"
    );
    for r in rows(&outliers) {
        assert!(r.starts_with(" outlier\""), "{r}");
        assert!(r.contains("class=\"flag\""), "{r}");
    }
    let bought = page("?kind=bought_together".into()).await;
    assert!(rows(&bought).iter().all(|r| r.contains("bought_together")));
}

#[tokio::test]
async fn a_decision_is_looked_up_and_replayed_from_its_page() {
    let app = TestApp::spawn(settings()).await;
    let answer = app.recommend("session_id=dc-1&placement=home").await;
    let id = answer["decision_id"].as_str().unwrap().to_owned();
    common::eventually("the decision recorded", || async {
        app.get(&format!("/admin/v1/decisions/{id}")).await.status() == 200
    })
    .await;
    let html = app
        .get(&format!("/console/decisions?id={id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("recommend · home"), "{html}");
    assert!(
        html.contains(&format!("&#34;decision_id&#34;: &#34;{id}&#34;")),
        "{html}"
    );
    // Replay through the page's form, with its token.
    let client = no_redirects();
    let replayed = client
        .post(app.url("/console/decisions/replay"))
        .form(&[("csrf", csrf(&html).as_str()), ("id", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    let html = replayed.text().await.unwrap();
    assert!(
        html.contains("Replayed: identical to the record."),
        "{html}"
    );
    // Without it: refused, nothing replayed.
    let forged = client
        .post(app.url("/console/decisions/replay"))
        .form(&[("csrf", "forged"), ("id", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // An unknown id says so.
    let unknown = app
        .get("/console/decisions?id=0190d5a8-0000-7000-8000-000000000000")
        .await
        .text()
        .await
        .unwrap();
    assert!(unknown.contains("no decision"), "{unknown}");
}
