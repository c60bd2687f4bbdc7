//! Baselines computed from the same training data as the engine: item-kNN over the
//! whole prefix, and S-POP (the visitor's own most frequent items).

use rustc_hash::FxHashMap;

/// Item-kNN: items seen together in a training sequence are neighbours, by cosine
/// similarity over the sequences that hold them (`c / sqrt(n_a n_b)`); a prefix scores
/// each candidate by the similarities summed over its distinct items.
pub struct ItemKnn {
    lists: Vec<Vec<(u32, f32)>>,
}

impl ItemKnn {
    /// Trains on `sequences` of item indexes below `items`, keeping the best `k`
    /// neighbours per item.
    pub fn train<'a>(items: u32, sequences: impl Iterator<Item = &'a [u32]>, k: usize) -> Self {
        let n = items as usize;
        let mut occurrences = vec![0f32; n];
        let mut pairs: Vec<FxHashMap<u32, f32>> = vec![FxHashMap::default(); n];
        let mut distinct = Vec::new();
        for seq in sequences {
            distinct.clear();
            distinct.extend(seq.iter().copied().filter(|&i| (i as usize) < n));
            distinct.sort_unstable();
            distinct.dedup();
            for &a in &distinct {
                occurrences[a as usize] += 1.0;
                for &b in &distinct {
                    if a != b {
                        *pairs[a as usize].entry(b).or_default() += 1.0;
                    }
                }
            }
        }
        let lists = pairs
            .into_iter()
            .enumerate()
            .map(|(a, with)| {
                let mut list: Vec<(u32, f32)> = with
                    .into_iter()
                    .map(|(b, c)| (b, c / (occurrences[a] * occurrences[b as usize]).sqrt()))
                    .collect();
                list.sort_unstable_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                list.truncate(k);
                list
            })
            .collect();
        Self { lists }
    }

    /// The best `n` items for `prefix`, topped up from `fill`.
    pub fn rank(&self, prefix: &[u32], n: usize, fill: &[u32]) -> Vec<u32> {
        let mut scores: FxHashMap<u32, f32> = FxHashMap::default();
        let mut seen: Vec<u32> = Vec::with_capacity(prefix.len());
        for &a in prefix {
            if seen.contains(&a) {
                continue;
            }
            seen.push(a);
            for &(b, s) in self.lists.get(a as usize).map_or(&[][..], Vec::as_slice) {
                *scores.entry(b).or_default() += s;
            }
        }
        let mut ranked: Vec<(u32, f32)> = scores.into_iter().collect();
        ranked.sort_unstable_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        let mut out: Vec<u32> = ranked.into_iter().take(n).map(|(p, _)| p).collect();
        super::fill_up(&mut out, fill, n);
        out
    }
}

/// S-POP: the prefix's own items, most frequent first (the latest on ties), topped up
/// from `fill`.
pub fn spop(prefix: &[u32], n: usize, fill: &[u32]) -> Vec<u32> {
    // (item, count, last position)
    let mut own: Vec<(u32, u32, usize)> = Vec::new();
    for (pos, &p) in prefix.iter().enumerate() {
        match own.iter_mut().find(|e| e.0 == p) {
            Some(e) => {
                e.1 += 1;
                e.2 = pos;
            }
            None => own.push((p, 1, pos)),
        }
    }
    own.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
    let mut out: Vec<u32> = own.iter().map(|e| e.0).take(n).collect();
    super::fill_up(&mut out, fill, n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_knn_sums_cosine_over_the_prefix() {
        let seqs: Vec<Vec<u32>> = vec![vec![0, 1], vec![0, 1], vec![0, 2], vec![3, 2], vec![3, 2]];
        let knn = ItemKnn::train(5, seqs.iter().map(Vec::as_slice), 10);
        // 0: with 1 twice (n0 3, n1 2), with 2 once (n2 3).
        assert_eq!(knn.rank(&[0], 2, &[]), vec![1, 2]);
        // 0 and 3 together: 2 gains from both and leads.
        assert_eq!(knn.rank(&[0, 3, 3], 1, &[]), vec![2]);
        assert_eq!(
            knn.rank(&[4], 2, &[9, 8]),
            vec![9, 8],
            "no neighbours: the fill"
        );
    }

    #[test]
    fn spop_counts_then_recency() {
        assert_eq!(spop(&[5, 6, 5, 7], 3, &[1]), vec![5, 7, 6]);
        assert_eq!(spop(&[5], 3, &[5, 1, 2]), vec![5, 1, 2]);
    }
}
