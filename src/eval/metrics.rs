//! Ranking metrics over full rankings, accumulated case by case.

use std::collections::BTreeMap;

/// Sums per metric, divided by the case count at the end.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    sums: BTreeMap<String, f64>,
    cases: u64,
}

impl Metrics {
    /// One case with a single target: `rank` is its 0-based position in the answer,
    /// `None` when absent. Adds HR@k, NDCG@k (one relevant item) and MRR@k for each k.
    pub fn single(&mut self, rank: Option<usize>, ks: &[usize]) {
        self.cases += 1;
        for &k in ks {
            let hit = rank.filter(|&r| r < k);
            self.add(format!("hr@{k}"), f64::from(u8::from(hit.is_some())));
            self.add(
                format!("ndcg@{k}"),
                hit.map_or(0.0, |r| 1.0 / ((r + 2) as f64).log2()),
            );
            self.add(
                format!("mrr@{k}"),
                hit.map_or(0.0, |r| 1.0 / (r + 1) as f64),
            );
        }
    }

    /// One case with a set of targets (a basket): Recall@k = hits / |targets|, and
    /// NDCG@k against the ideal DCG over all targets (not truncated at k).
    pub fn set(&mut self, answer: &[u32], targets: &[u32], ks: &[usize]) {
        self.cases += 1;
        if targets.is_empty() {
            return;
        }
        let ideal: f64 = (0..targets.len())
            .map(|r| 1.0 / ((r + 2) as f64).log2())
            .sum();
        for &k in ks {
            let mut hits = 0usize;
            let mut dcg = 0.0;
            for (r, p) in answer.iter().take(k).enumerate() {
                if targets.contains(p) {
                    hits += 1;
                    dcg += 1.0 / ((r + 2) as f64).log2();
                }
            }
            self.add(format!("recall@{k}"), hits as f64 / targets.len() as f64);
            self.add(format!("ndcg@{k}"), dcg / ideal);
        }
    }

    fn add(&mut self, name: String, v: f64) {
        *self.sums.entry(name).or_default() += v;
    }

    pub fn cases(&self) -> u64 {
        self.cases
    }

    /// Means over the cases, keeping only the metrics named in `keep` (all when empty).
    pub fn means(&self, keep: &[&str]) -> BTreeMap<String, f64> {
        self.sums
            .iter()
            .filter(|(k, _)| keep.is_empty() || keep.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v / self.cases.max(1) as f64))
            .collect()
    }
}

/// The 0-based position of `target` in `answer`.
pub fn rank_of(answer: &[u32], target: u32) -> Option<usize> {
    answer.iter().position(|&p| p == target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_target_metrics_follow_their_definitions() {
        let mut m = Metrics::default();
        m.single(Some(0), &[10]);
        m.single(Some(1), &[10]);
        m.single(None, &[10]);
        m.single(Some(10), &[10]); // just outside the top 10
        let got = m.means(&[]);
        assert!((got["hr@10"] - 0.5).abs() < 1e-12);
        assert!((got["mrr@10"] - (1.0 + 0.5) / 4.0).abs() < 1e-12);
        let ndcg = (1.0 + 1.0 / 3f64.log2()) / 4.0;
        assert!((got["ndcg@10"] - ndcg).abs() < 1e-12);
    }

    #[test]
    fn basket_recall_uses_the_whole_basket_and_untruncated_ideal() {
        let mut m = Metrics::default();
        m.set(&[5, 1, 7], &[1, 2, 3, 4], &[2]);
        let got = m.means(&[]);
        assert!((got["recall@2"] - 0.25).abs() < 1e-12);
        let ideal: f64 = (0..4).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
        assert!((got["ndcg@2"] - (1.0 / 3f64.log2()) / ideal).abs() < 1e-12);
    }
}
