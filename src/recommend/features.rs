//! The request features drift is watched on, bucketed one way for the training data
//! and for live answers, so that the two distributions compare bucket for bucket.
//!
//! Four features can be read off the training interactions (the visitor's device class
//! and country, how many products the session had viewed before, the department of the
//! product viewed); the others exist only when answering (the placement, cold visitors,
//! degraded answers, the top item's score), and their reference is the first answers a
//! model version serves.

use rustc_hash::FxHashMap;

use crate::domain::{Catalog, Country, Device, Interaction, InteractionKind, ProductIdx};

/// The features, in the order every distribution lists them.
pub const FEATURES: [&str; 8] = [
    "placement",
    "device",
    "country",
    "history_length",
    "category",
    "cold",
    "degraded",
    "top_score",
];

/// Whether the training data shows the feature at `FEATURES[i]`.
pub const fn trained(i: usize) -> bool {
    matches!(i, 1..=4)
}

/// Counts per bucket of each feature (by `FEATURES` index).
pub type Mix = Vec<Vec<(String, f64)>>;

pub fn device(d: Option<Device>) -> &'static str {
    match d {
        None => "unknown",
        Some(Device::Desktop) => "desktop",
        Some(Device::Mobile) => "mobile",
        Some(Device::Tablet) => "tablet",
        Some(Device::App) => "app",
    }
}

pub fn country(c: Option<&Country>) -> &str {
    c.map_or("unknown", Country::as_str)
}

/// Products viewed before, in buckets that double.
pub fn history_length(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2..=3 => "2-3",
        4..=7 => "4-7",
        8..=15 => "8-15",
        _ => "16+",
    }
}

/// The department (the top category) of a product.
pub fn department(catalog: &Catalog, p: ProductIdx) -> &str {
    let c = &catalog.categories()[usize::from(catalog.product(p).category)];
    c.handle.split('/').next().unwrap_or("")
}

pub fn flag(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The top item's score (`none`: an empty answer).
pub fn top_score(s: Option<f32>) -> &'static str {
    match s {
        None => "none",
        Some(s) if s < 0.1 => "<0.1",
        Some(s) if s < 0.25 => "0.1-0.25",
        Some(s) if s < 0.5 => "0.25-0.5",
        Some(s) if s < 1.0 => "0.5-1",
        Some(s) if s < 2.0 => "1-2",
        Some(_) => "2+",
    }
}

/// The training interactions' distribution of the features they show (the others
/// empty).
pub fn trained_mix(catalog: &Catalog, interactions: &[Interaction]) -> Mix {
    let mut mix: Vec<FxHashMap<String, f64>> = vec![FxHashMap::default(); FEATURES.len()];
    let mut add = |f: usize, bucket: &str| {
        *mix[f].entry(bucket.to_owned()).or_default() += 1.0;
    };
    let mut order: Vec<usize> = (0..interactions.len()).collect();
    order.sort_by_key(|&i| (interactions[i].ts, i));
    let mut viewed: FxHashMap<u64, usize> = FxHashMap::default();
    for i in order {
        let it = &interactions[i];
        add(1, device(it.audience.device));
        add(2, country(it.audience.country.as_ref()));
        if it.kind == InteractionKind::View && (it.product as usize) < catalog.len() {
            let seen = viewed.entry(it.session).or_default();
            add(3, history_length(*seen));
            *seen += 1;
            add(4, department(catalog, it.product));
        }
    }
    mix.into_iter()
        .map(|m| {
            let mut v: Vec<(String, f64)> = m.into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        })
        .collect()
}

/// The population stability index of `live` against `reference` (counts per bucket):
/// `sum((a - e) * ln(a / e))` over the buckets of either, shares floored at 0.0001 so
/// a bucket one side lacks counts but does not divide by zero. `None` when either side
/// is empty.
pub fn psi(reference: &[(&str, f64)], live: &[(&str, f64)]) -> Option<f64> {
    const FLOOR: f64 = 1e-4;
    let e_sum: f64 = reference.iter().map(|x| x.1).sum();
    let a_sum: f64 = live.iter().map(|x| x.1).sum();
    if e_sum <= 0.0 || a_sum <= 0.0 {
        return None;
    }
    let mut buckets: Vec<&str> = reference.iter().chain(live).map(|x| x.0).collect();
    buckets.sort_unstable();
    buckets.dedup();
    let share = |of: &[(&str, f64)], b: &str, sum: f64| {
        (of.iter().filter(|x| x.0 == b).map(|x| x.1).sum::<f64>() / sum).max(FLOOR)
    };
    Some(
        buckets
            .iter()
            .map(|b| {
                let e = share(reference, b, e_sum);
                let a = share(live, b, a_sum);
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[(&'static str, f64)]) -> Option<f64> {
        psi(v, v)
    }

    #[test]
    fn psi_is_zero_for_one_distribution_and_grows_with_the_shift() {
        assert_eq!(p(&[("a", 3.0), ("b", 1.0)]), Some(0.0));
        let reference = [("mobile", 50.0), ("desktop", 50.0)];
        let slight = [("mobile", 55.0), ("desktop", 45.0)];
        let all_mobile = [("mobile", 100.0)];
        let s = psi(&reference, &slight).unwrap();
        let big = psi(&reference, &all_mobile).unwrap();
        assert!(s > 0.0 && s < 0.1, "{s}");
        assert!(big > 1.0, "{big}");
        // The textbook figure: 50/50 against 60/40.
        let t = psi(&reference, &[("mobile", 60.0), ("desktop", 40.0)]).unwrap();
        assert!((t - 0.0405).abs() < 1e-3, "{t}");
        assert_eq!(psi(&reference, &[]), None);
    }
}
