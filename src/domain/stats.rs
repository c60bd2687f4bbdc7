//! The statistics of experiment results: a variant's relative lift over control with
//! its confidence interval and p-value, for rates (click-through, add-to-cart,
//! conversion) and for means (revenue per visitor), and the sample-ratio mismatch check.
//!
//! Relative lift by the delta method: `L = v / c - 1`, with
//! `var(L) = var_v / c^2 + v^2 var_c / c^4`, where `var` is the variance of each arm's
//! estimate. For rates, `var = p (1 - p) / n` and the interval and p-value use the
//! normal distribution. For means, `var = s^2 / n` (the sample variance `s^2`, from
//! the arm's count, sum and sum of squares: bounded memory) and they use Student's t
//! with Welch's degrees of freedom. The mismatch check is Pearson's chi-square of the
//! exposed counts against the weights. `tests/fixtures/experiments/stats.json` holds
//! the same computed by SciPy (`make_stats.py` beside it).

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

/// Successes out of trials (clicks of impressions, converted visitors of exposed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    pub successes: u64,
    pub trials: u64,
}

/// A per-visitor quantity's count, sum and sum of squares.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The sample variance (`n - 1` in the denominator).
    pub fn variance(&self) -> Option<f64> {
        let n = self.n as f64;
        (self.n > 1).then(|| ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0))
    }
}

/// A variant against control.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Lift {
    /// Relative: 0.2 is 20% above control.
    pub lift: f64,
    pub low: f64,
    pub high: f64,
    pub p_value: f64,
}

/// The delta method's relative lift and its standard error (`None` when control's
/// estimate is 0 or there is no variance to speak of).
fn delta(c: f64, v: f64, var_c: f64, var_v: f64) -> Option<(f64, f64)> {
    if c == 0.0 || !c.is_finite() || !v.is_finite() {
        return None;
    }
    let se = (var_v / (c * c) + v * v * var_c / (c * c * c * c)).sqrt();
    (se > 0.0 && se.is_finite()).then_some((v / c - 1.0, se))
}

/// A rate's lift over control at `confidence` (0.95: a 95% interval).
pub fn rate_lift(control: Rate, variant: Rate, confidence: f64) -> Option<Lift> {
    if control.trials == 0 || variant.trials == 0 || !(0.0..1.0).contains(&confidence) {
        return None;
    }
    let p = |r: Rate| r.successes.min(r.trials) as f64 / r.trials as f64;
    let (pc, pv) = (p(control), p(variant));
    let (lift, se) = delta(
        pc,
        pv,
        pc * (1.0 - pc) / control.trials as f64,
        pv * (1.0 - pv) / variant.trials as f64,
    )?;
    let normal = Normal::standard();
    let z = normal.inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    Some(Lift {
        lift,
        low: lift - z * se,
        high: lift + z * se,
        p_value: 2.0 * normal.sf(lift.abs() / se),
    })
}

/// A mean's lift over control at `confidence`, Welch's degrees of freedom.
pub fn mean_lift(control: Moments, variant: Moments, confidence: f64) -> Option<Lift> {
    if !(0.0..1.0).contains(&confidence) {
        return None;
    }
    let (mc, mv) = (control.mean()?, variant.mean()?);
    let vc = control.variance()? / control.n as f64;
    let vv = variant.variance()? / variant.n as f64;
    let (lift, se) = delta(mc, mv, vc, vv)?;
    let df =
        (vc + vv).powi(2) / (vc * vc / (control.n - 1) as f64 + vv * vv / (variant.n - 1) as f64);
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    let q = t.inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    Some(Lift {
        lift,
        low: lift - q * se,
        high: lift + q * se,
        p_value: 2.0 * t.sf(lift.abs() / se),
    })
}

/// The sample-ratio mismatch check's p-value: exposed visitors per arm against the
/// arms' weights (flag a mismatch under 0.001).
pub fn srm_p_value(observed: &[u64], weights: &[f64]) -> Option<f64> {
    let total: u64 = observed.iter().sum();
    let weight: f64 = weights.iter().sum();
    if observed.len() != weights.len() || observed.len() < 2 || total == 0 || weight <= 0.0 {
        return None;
    }
    let mut chi = 0.0;
    for (&o, &w) in observed.iter().zip(weights) {
        let expected = w / weight * total as f64;
        if expected <= 0.0 {
            return None;
        }
        chi += (o as f64 - expected).powi(2) / expected;
    }
    let dist = ChiSquared::new((observed.len() - 1) as f64).ok()?;
    Some(dist.sf(chi))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../../tests/fixtures/experiments/stats.json");

    /// Agreement to 4 decimal places (relative for p-values far below 1).
    fn close(a: f64, b: f64, what: &str) {
        let tolerance = 5e-5_f64.max(b.abs() * 1e-6);
        assert!((a - b).abs() <= tolerance, "{what}: {a} against {b}");
    }

    fn check(got: Lift, case: &serde_json::Value) {
        for (field, value) in [
            ("lift", got.lift),
            ("low", got.low),
            ("high", got.high),
            ("p_value", got.p_value),
        ] {
            close(
                value,
                case[field].as_f64().unwrap(),
                &format!("{field} of {case}"),
            );
        }
    }

    #[test]
    fn the_statistics_agree_with_scipy() {
        let v: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
        let pair = |c: &serde_json::Value| Rate {
            successes: c[0].as_u64().unwrap(),
            trials: c[1].as_u64().unwrap(),
        };
        for case in v["rates"].as_array().unwrap() {
            let got = rate_lift(
                pair(&case["control"]),
                pair(&case["variant"]),
                case["confidence"].as_f64().unwrap(),
            )
            .unwrap();
            check(got, case);
        }
        let moments = |m: &serde_json::Value| Moments {
            n: m[0].as_u64().unwrap(),
            sum: m[1].as_f64().unwrap(),
            sum_sq: m[2].as_f64().unwrap(),
        };
        for case in v["means"].as_array().unwrap() {
            let got = mean_lift(
                moments(&case["control"]),
                moments(&case["variant"]),
                case["confidence"].as_f64().unwrap(),
            )
            .unwrap();
            check(got, case);
        }
        for case in v["srm"].as_array().unwrap() {
            let observed: Vec<u64> = case["observed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            let weights: Vec<f64> = case["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            close(
                srm_p_value(&observed, &weights).unwrap(),
                case["p_value"].as_f64().unwrap(),
                &case.to_string(),
            );
        }
    }

    #[test]
    fn moments_added_one_by_one_give_the_sample_mean_and_variance() {
        let mut m = Moments::default();
        for x in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            m.add(x);
        }
        assert_eq!(m.mean(), Some(5.0));
        close(m.variance().unwrap(), 32.0 / 7.0, "variance");
    }

    #[test]
    fn degenerate_arms_have_no_lift_rather_than_a_wrong_one() {
        let none = Rate {
            successes: 0,
            trials: 100,
        };
        let some = Rate {
            successes: 5,
            trials: 100,
        };
        assert!(rate_lift(none, some, 0.95).is_none(), "control at 0");
        assert!(rate_lift(some, Rate::default(), 0.95).is_none());
        assert!(mean_lift(Moments::default(), Moments::default(), 0.95).is_none());
        assert!(srm_p_value(&[0, 0], &[0.5, 0.5]).is_none());
        assert!(srm_p_value(&[10], &[1.0]).is_none());
    }
}
