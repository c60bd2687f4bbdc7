//! `/metrics` names every family from start-up, each at zero before its first
//! increment, with the help text a dashboard shows.

use crate::common;

use common::{TestApp, settings};
use vitrine::http::metrics::{FAMILIES, Kind};

#[tokio::test]
async fn every_metric_family_is_exposed_before_anything_counts() {
    let app = TestApp::spawn(settings()).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for f in FAMILIES {
        if f.name.starts_with("vitrine_experiment_counts")
            || f.name.starts_with("vitrine_experiment_revenue")
        {
            // Labelled by the running experiments: none run here.
            continue;
        }
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(
            text.contains(&format!("# TYPE {} {kind}\n", f.name)),
            "{} typed {kind} in:\n{text}",
            f.name
        );
        assert!(
            text.contains(&format!("# HELP {} {}\n", f.name, f.help)),
            "{} described",
            f.name
        );
        let sample = match f.kind {
            Kind::Histogram => format!("{}_count", f.name),
            Kind::Counter | Kind::Gauge => f.name.to_owned(),
        };
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{sample}{{"))
                    || l.starts_with(&format!("{sample} "))),
            "a series of {}",
            f.name
        );
    }
    // The closed sets have every series: every error code, every result of this store's
    // tiers, every rejection (other tests of this process may have counted some).
    for series in [
        "vitrine_http_errors_total{code=\"stale_signature\"} ",
        "vitrine_store_reads_total{tier=\"embedded\",result=\"error\"} ",
        "vitrine_events_rejected_total{code=\"invalid_timestamp\"} ",
    ] {
        assert!(text.contains(series), "{series}");
    }
}
