//! Deterministic, stateless assignment of visitors to experiment arms: GrowthBook's
//! published bucketing, so that an edge function or a GrowthBook SDK given the same
//! seed, value and ranges computes the same arm.
//!
//! - `hash(seed, value, 2)` is `fnv1a32(decimal(fnv1a32(seed + value))) % 10000 / 10000`
//!   (version 1: `fnv1a32(value + seed) % 1000 / 1000`, what namespaces use).
//! - FNV-1a 32 runs over the text's UTF-16 code units, as the JavaScript SDK's
//!   `charCodeAt` loop does and the Python SDK does after it: for ASCII (ids, as a rule)
//!   the same as over its UTF-8 bytes; for other text the SDKs agree with each other
//!   only this way.
//! - Arm `i` holds `[start_i, start_i + coverage * weight_i)`, where `start_i` is the sum
//!   of the weights before it: raising coverage widens each arm from its own start, so
//!   visitors already in an arm stay there.
//!
//! The vectors in `tests/fixtures/experiments/bucketing.json` were computed by the
//! `growthbook` package from PyPI (see `make_vectors.py` beside them).

/// FNV-1a, 32 bits, over the UTF-16 code units of `s`.
pub fn fnv1a32(s: &str) -> u32 {
    s.encode_utf16().fold(0x811C_9DC5, |h: u32, unit| {
        (h ^ u32::from(unit)).wrapping_mul(0x0100_0193)
    })
}

/// Where `value` falls in `[0, 1)` for `seed`, by hashing version 1 or 2 (`None` for
/// another version).
pub fn hash(seed: &str, value: &str, version: u8) -> Option<f64> {
    match version {
        2 => {
            let inner = fnv1a32(&format!("{seed}{value}"));
            Some(f64::from(fnv1a32(&inner.to_string()) % 10_000) / 10_000.0)
        }
        1 => Some(f64::from(fnv1a32(&format!("{value}{seed}")) % 1_000) / 1_000.0),
        _ => None,
    }
}

/// Each arm's range for `coverage` (clamped to `[0, 1]`) and `weights` (equal weights
/// unless there is one finite non-negative weight per arm and they sum to 1 within
/// 0.01).
pub fn ranges(arms: usize, coverage: f64, weights: Option<&[f64]>) -> Vec<(f64, f64)> {
    let coverage = if coverage.is_nan() {
        0.0
    } else {
        coverage.clamp(0.0, 1.0)
    };
    let valid = weights.filter(|w| {
        let sum: f64 = w.iter().sum();
        w.len() == arms
            && w.iter().all(|x| x.is_finite() && *x >= 0.0)
            && (0.99..=1.01).contains(&sum)
    });
    let equal = vec![1.0 / arms as f64; arms];
    let weights = valid.unwrap_or(&equal);
    let mut cumulative = 0.0;
    weights
        .iter()
        .map(|w| {
            let start = cumulative;
            cumulative += w;
            (start, start + coverage * w)
        })
        .collect()
}

/// The first arm whose range holds `n` (`None`: outside every arm, not in the
/// experiment).
pub fn choose(n: f64, ranges: &[(f64, f64)]) -> Option<usize> {
    ranges
        .iter()
        .position(|&(start, end)| start <= n && n < end)
}

/// Whether `value` falls in `[start, end)` of namespace `id` (hash version 1 of `__id`,
/// as the SDKs compute it).
pub fn in_namespace(value: &str, id: &str, start: f64, end: f64) -> bool {
    hash(&format!("__{id}"), value, 1).is_some_and(|n| start <= n && n < end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../../tests/fixtures/experiments/bucketing.json");

    fn str_of(v: &serde_json::Value) -> &str {
        v.as_str().unwrap()
    }

    fn pairs(v: &serde_json::Value) -> Vec<(f64, f64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_f64().unwrap(), r[1].as_f64().unwrap()))
            .collect()
    }

    #[test]
    fn assignment_matches_growthbooks_own_implementation() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
        let hashes = v["hashes"].as_array().unwrap();
        assert!(hashes.len() >= 60);
        for h in hashes {
            let version = u8::try_from(h["version"].as_u64().unwrap()).unwrap();
            assert_eq!(
                hash(str_of(&h["seed"]), str_of(&h["value"]), version),
                h["hash"].as_f64(),
                "{h}"
            );
        }
        for r in v["ranges"].as_array().unwrap() {
            let weights: Option<Vec<f64>> = r["weights"]
                .as_array()
                .map(|w| w.iter().map(|x| x.as_f64().unwrap()).collect());
            let arms = usize::try_from(r["variations"].as_u64().unwrap()).unwrap();
            let got = ranges(arms, r["coverage"].as_f64().unwrap(), weights.as_deref());
            assert_eq!(got, pairs(&r["ranges"]), "{r}");
        }
        for c in v["choices"].as_array().unwrap() {
            let expected = c["variation"].as_i64().unwrap();
            let got = choose(c["n"].as_f64().unwrap(), &pairs(&c["ranges"]));
            assert_eq!(got.map_or(-1, |i| i as i64), expected, "{c}");
        }
        for n in v["namespaces"].as_array().unwrap() {
            assert_eq!(
                in_namespace(
                    str_of(&n["value"]),
                    str_of(&n["namespace"]),
                    n["start"].as_f64().unwrap(),
                    n["end"].as_f64().unwrap()
                ),
                n["in"].as_bool().unwrap(),
                "{n}"
            );
        }
    }

    #[test]
    fn the_worked_example_of_docs_experiments_md_holds() {
        assert_eq!(fnv1a32("s-4__pdp"), 2_632_791_319);
        assert!(in_namespace("s-4", "pdp", 0.0, 0.5));
        assert_eq!(fnv1a32("pdp-recs-v2s-4"), 2_495_410_072);
        assert_eq!(fnv1a32("2495410072"), 2_634_900_607);
        let r = ranges(2, 0.5, Some(&[0.5, 0.5]));
        assert_eq!(r, [(0.0, 0.25), (0.5, 0.75)]);
        let arm = |v: &str| choose(hash("pdp-recs-v2", v, 2).unwrap(), &r);
        assert_eq!(hash("pdp-recs-v2", "s-4", 2), Some(0.0607));
        assert_eq!(arm("s-4"), Some(0));
        assert_eq!(hash("pdp-recs-v2", "s-11", 2), Some(0.6384));
        assert_eq!(arm("s-11"), Some(1));
        assert_eq!(hash("__pdp", "s-7", 1), Some(0.2));
        assert_eq!(arm("s-7"), None);
    }

    #[test]
    fn raising_coverage_keeps_every_visitor_in_the_arm_they_were_in() {
        let half = ranges(2, 0.5, Some(&[0.5, 0.5]));
        let all = ranges(2, 1.0, Some(&[0.5, 0.5]));
        for i in 0..10_000 {
            let n = hash("pdp-recs-v2", &format!("s-{i}"), 2).unwrap();
            if let Some(arm) = choose(n, &half) {
                assert_eq!(choose(n, &all), Some(arm));
            }
        }
    }
}
