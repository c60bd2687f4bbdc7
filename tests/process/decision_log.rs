//! A full decision-log queue drops records, never requests (read off the process-wide
//! metrics).

use crate::common;

use common::{TestApp, settings};

#[tokio::test]
async fn a_full_writer_queue_drops_records_not_requests() {
    let mut s = settings();
    s.audit.queue = 1;
    let app = TestApp::spawn(s).await;
    let mut ok = 0;
    let requests = (0..200).map(|i| {
        let app = &app;
        async move {
            app.get(&format!("/v1/recommend?session_id=q{i}&placement=home"))
                .await
                .status()
        }
    });
    for status in futures::future::join_all(requests).await {
        assert_eq!(status, 200);
        ok += 1;
    }
    assert_eq!(ok, 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let dropped: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("vitrine_audit_dropped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(dropped > 0.0, "{metrics}");
}
