//! Every metric the process exposes at `/metrics`, with its help text, registered at
//! start-up so that dashboards and alerts see each family at zero before its first
//! increment. A family whose labels come from a small closed set (error codes, reasons,
//! event types, store tiers) gets every series at zero; the request families get the
//! storefront API's routes, as Prometheus' own HTTP handlers start `code="200"` at zero.
//! The experiments' counts and revenue are labelled by the running experiments and their
//! variants, and appear with the first answer of one.

use crate::decide::record::Endpoint;
use crate::domain::profile::Behaviour;
use crate::ingest::events::Rejection;
use crate::store::Degraded;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family.
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family { name, kind, help }
}

pub const FAMILIES: &[Family] = &[
    family(
        "vitrine_http_requests_total",
        Kind::Counter,
        "HTTP requests by route template, method and status",
    ),
    family(
        "vitrine_http_request_duration_seconds",
        Kind::Histogram,
        "HTTP request latency by route template and method",
    ),
    family(
        "vitrine_http_errors_total",
        Kind::Counter,
        "Error answers by stable error code",
    ),
    family(
        "vitrine_http_shed_total",
        Kind::Counter,
        "Requests answered 503 overloaded for want of a permit",
    ),
    family("vitrine_http_connections", Kind::Gauge, "Open connections"),
    family(
        "vitrine_http_connections_closed_total",
        Kind::Counter,
        "Connections closed by a timeout, by reason",
    ),
    family(
        "vitrine_store_reads_total",
        Kind::Counter,
        "Profile reads by tier and result",
    ),
    family(
        "vitrine_store_circuit_open",
        Kind::Gauge,
        "1 while the profile store's circuit breaker is open",
    ),
    family(
        "vitrine_store_expired_total",
        Kind::Counter,
        "Profiles erased after storage.profile_ttl_s without a write",
    ),
    family(
        "vitrine_store_cas_conflicts_total",
        Kind::Counter,
        "Profile writes retried after another replica's write",
    ),
    family(
        "vitrine_store_resets_total",
        Kind::Counter,
        "Stores found reset or replaced and reloaded",
    ),
    family(
        "vitrine_recommend_degraded_total",
        Kind::Counter,
        "Recommendations answered without the profile, by reason",
    ),
    family(
        "vitrine_cart_degraded_total",
        Kind::Counter,
        "Carts evaluated without the profile, by reason",
    ),
    family(
        "vitrine_cart_evaluate_seconds",
        Kind::Histogram,
        "Cart evaluation latency",
    ),
    family(
        "vitrine_events_total",
        Kind::Counter,
        "Storefront events accepted, by type",
    ),
    family(
        "vitrine_events_rejected_total",
        Kind::Counter,
        "Storefront events rejected, by code",
    ),
    family(
        "vitrine_events_buffered",
        Kind::Gauge,
        "Events in the journal, waiting for the store",
    ),
    family(
        "vitrine_events_journaled_total",
        Kind::Counter,
        "Events journaled while the store was down",
    ),
    family(
        "vitrine_events_flushed_total",
        Kind::Counter,
        "Journaled events written to the store",
    ),
    family(
        "vitrine_event_log_queued",
        Kind::Gauge,
        "Event-log entries waiting to be written",
    ),
    family(
        "vitrine_event_log_written_total",
        Kind::Counter,
        "Event-log entries written",
    ),
    family(
        "vitrine_event_log_learned_total",
        Kind::Counter,
        "Event-log entries learned from other replicas or relearned",
    ),
    family(
        "vitrine_event_log_dropped_total",
        Kind::Counter,
        "Event-log entries not logged: the queue was full",
    ),
    family(
        "vitrine_webhooks_total",
        Kind::Counter,
        "Platform webhooks by platform, topic and result",
    ),
    family(
        "vitrine_ruleset_unusable",
        Kind::Gauge,
        "1 while the stored live ruleset cannot be used",
    ),
    family(
        "vitrine_audit_recorded_total",
        Kind::Counter,
        "Decisions recorded",
    ),
    family(
        "vitrine_audit_dropped_total",
        Kind::Counter,
        "Decision records not kept: the writer's queue was full",
    ),
    family(
        "vitrine_audit_write_failed_total",
        Kind::Counter,
        "Decision-record batches the store refused",
    ),
    family(
        "vitrine_audit_bytes_total",
        Kind::Counter,
        "Bytes of decision records written",
    ),
    family(
        "vitrine_drift_psi",
        Kind::Gauge,
        "Population stability index of each served feature against training",
    ),
    family(
        "vitrine_drift_retrains_total",
        Kind::Counter,
        "Retrains started by drift",
    ),
    family(
        "vitrine_experiment_counts_total",
        Kind::Counter,
        "Running experiments' counts by variant",
    ),
    family(
        "vitrine_experiment_revenue_minor_total",
        Kind::Counter,
        "Running experiments' attributed revenue in minor units",
    ),
    family(
        "vitrine_experiment_uncredited_total",
        Kind::Counter,
        "Events and orders not credited to an arm, by reason",
    ),
];

/// The storefront API's routes and the status each answers when all is well.
const ROUTES: [(&str, &str, &str); 4] = [
    ("/v1/recommend", "GET", "200"),
    ("/v1/recommend", "POST", "200"),
    ("/v1/events", "POST", "202"),
    ("/v1/cart/evaluate", "POST", "200"),
];

const CLOSED_BY: [&str; 4] = ["idle", "header_read", "body_read", "stalled"];

const UNCREDITED: [&str; 3] = ["queue_full", "unknown_decision", "unreadable_decision"];

/// Describes every family and starts each closed set of series at zero, for a process
/// whose profile store is `backend`. Gauges are moved by zero, so a value set before
/// (the journal's backlog at start-up) stays.
pub fn register(backend: &'static str) {
    for f in FAMILIES {
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, f.help),
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram => metrics::describe_histogram!(f.name, f.help),
        }
    }
    for name in [
        "vitrine_http_shed_total",
        "vitrine_store_expired_total",
        "vitrine_store_cas_conflicts_total",
        "vitrine_store_resets_total",
        "vitrine_events_journaled_total",
        "vitrine_events_flushed_total",
        "vitrine_event_log_written_total",
        "vitrine_event_log_learned_total",
        "vitrine_event_log_dropped_total",
        "vitrine_audit_recorded_total",
        "vitrine_audit_write_failed_total",
        "vitrine_drift_retrains_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for name in [
        "vitrine_http_connections",
        "vitrine_store_circuit_open",
        "vitrine_events_buffered",
        "vitrine_event_log_queued",
        "vitrine_ruleset_unusable",
    ] {
        metrics::gauge!(name).increment(0.0);
    }
    let _ = metrics::histogram!("vitrine_cart_evaluate_seconds");
    for (route, method, status) in ROUTES {
        metrics::counter!("vitrine_http_requests_total", "route" => route, "method" => method, "status" => status)
            .increment(0);
        let _ = metrics::histogram!("vitrine_http_request_duration_seconds", "route" => route, "method" => method);
    }
    for code in super::error::ErrorCode::ALL {
        metrics::counter!("vitrine_http_errors_total", "code" => code.as_str()).increment(0);
    }
    for reason in CLOSED_BY {
        metrics::counter!("vitrine_http_connections_closed_total", "reason" => reason).increment(0);
    }
    for tier in ["l1", backend] {
        for result in ["hit", "miss", "error"] {
            metrics::counter!("vitrine_store_reads_total", "tier" => tier, "result" => result)
                .increment(0);
        }
    }
    for d in [Degraded::Deadline, Degraded::StoreError] {
        metrics::counter!("vitrine_recommend_degraded_total", "reason" => d.as_str()).increment(0);
        metrics::counter!("vitrine_cart_degraded_total", "reason" => d.as_str()).increment(0);
    }
    for b in Behaviour::ALL {
        metrics::counter!("vitrine_events_total", "type" => b.as_str(), "result" => "valid")
            .increment(0);
    }
    for r in Rejection::ALL {
        metrics::counter!("vitrine_events_rejected_total", "code" => r.as_str()).increment(0);
    }
    for (platform, topic) in super::webhooks::platform_topics() {
        metrics::counter!("vitrine_webhooks_total", "platform" => platform, "topic" => topic, "result" => "applied")
            .increment(0);
    }
    for e in [Endpoint::Recommend, Endpoint::CartEvaluate] {
        metrics::counter!("vitrine_audit_dropped_total", "endpoint" => e.as_str()).increment(0);
        metrics::counter!("vitrine_audit_bytes_total", "endpoint" => e.as_str()).increment(0);
    }
    for feature in crate::recommend::features::FEATURES {
        metrics::gauge!("vitrine_drift_psi", "feature" => feature).increment(0.0);
    }
    for reason in UNCREDITED {
        metrics::counter!("vitrine_experiment_uncredited_total", "reason" => reason).increment(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the code records, found by its name in the source, is a family here,
    /// and the README lists exactly these families.
    #[test]
    fn every_recorded_metric_is_registered_and_documented() {
        let mut recorded = std::collections::BTreeSet::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("metrics.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for macro_ in ["counter!(", "gauge!(", "histogram!("] {
                        for (at, _) in text.match_indices(macro_) {
                            let rest = text[at + macro_.len()..].trim_start();
                            if let Some(name) = rest.strip_prefix("\"vitrine_") {
                                let end = name.find('"').unwrap();
                                recorded.insert(format!("vitrine_{}", &name[..end]));
                            }
                        }
                    }
                }
            }
        }
        let families: std::collections::BTreeSet<String> =
            FAMILIES.iter().map(|f| f.name.to_owned()).collect();
        assert_eq!(families.len(), FAMILIES.len(), "a family named twice");
        assert!(recorded.len() > 20, "found {recorded:?}");
        assert_eq!(
            recorded, families,
            "recorded in the code against registered"
        );

        let readme = include_str!("../../README.md");
        let section = readme
            .split("\nMetrics (labels")
            .nth(1)
            .and_then(|s| s.split("\n\n").next())
            .expect("the README's list of metrics");
        let documented: std::collections::BTreeSet<String> = section
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("vitrine_"))
            .map(|s| s.split('{').next().unwrap_or(s).to_owned())
            .collect();
        assert_eq!(documented, families, "the README's list against registered");
    }

    /// The `vitrine_*` metric names a text uses (a histogram's series by its family).
    fn names_in(text: &str) -> std::collections::BTreeSet<String> {
        text.match_indices("vitrine_")
            .filter(|(at, _)| {
                !text[..*at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .map(|(at, _)| {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| FAMILIES.iter().any(|x| x.name == *f))
                    .map_or(name.clone(), str::to_owned)
            })
            .collect()
    }

    /// The Grafana dashboard shows every family, and it and the alerts name no metric
    /// the process does not expose.
    #[test]
    fn the_dashboard_shows_every_family_and_the_alerts_name_real_ones() {
        let families: std::collections::BTreeSet<String> =
            FAMILIES.iter().map(|f| f.name.to_owned()).collect();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../deploy/grafana/vitrine.json")).unwrap();
        let exprs: Vec<&str> = dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .map(|t| t["expr"].as_str().unwrap())
            .collect();
        let shown = names_in(&exprs.join("\n"));
        assert_eq!(
            shown, families,
            "the dashboard's metrics against the families"
        );
        let alerted = names_in(include_str!("../../deploy/prometheus/alerts.yml"));
        assert!(alerted.len() >= 6, "{alerted:?}");
        for name in &alerted {
            assert!(families.contains(name), "the alerts name {name}");
        }
    }
}
