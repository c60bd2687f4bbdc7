//! Session-based k-nearest-neighbours (V-SKNN): past sessions that share the current
//! session's items, weighted by how recently the current session viewed them, vote for
//! their other items.

use rustc_hash::FxHashMap;

use crate::domain::{Interaction, InteractionKind, ProductIdx};

thread_local! {
    /// Where each session's entry is in [`SessionIndex::score`].
    static SLOTS: std::cell::RefCell<super::slots::Slots> = std::cell::RefCell::default();
}

pub struct SessionIndex {
    /// Each past session's distinct items.
    sessions: Vec<Box<[ProductIdx]>>,
    /// Item -> the sessions that hold it, most recent last (at most `per_item`).
    by_item: Vec<Box<[u32]>>,
}

impl SessionIndex {
    pub fn train(n_products: usize, interactions: &[Interaction], per_item: usize) -> Self {
        let mut order: Vec<u64> = Vec::new();
        let mut grouped: FxHashMap<u64, Vec<ProductIdx>> = FxHashMap::default();
        let mut last_ts: FxHashMap<u64, i64> = FxHashMap::default();
        for i in interactions {
            if i.kind != InteractionKind::View {
                continue;
            }
            let items = grouped.entry(i.session).or_insert_with(|| {
                order.push(i.session);
                Vec::new()
            });
            if !items.contains(&i.product) {
                items.push(i.product);
            }
            let t = last_ts.entry(i.session).or_insert(i.ts);
            *t = (*t).max(i.ts);
        }
        order.sort_by_key(|s| (last_ts[s], *s));
        let sessions = order
            .into_iter()
            .map(|s| grouped.remove(&s).unwrap_or_default())
            .collect();
        Self::from_sessions(n_products, sessions, per_item)
    }

    /// Builds the index from past sessions' distinct items, oldest session first.
    pub fn from_sessions(n_products: usize, all: Vec<Vec<ProductIdx>>, per_item: usize) -> Self {
        let mut sessions = Vec::with_capacity(all.len());
        let mut by_item: Vec<Vec<u32>> = vec![Vec::new(); n_products];
        for items in all {
            if items.len() < 2 {
                continue;
            }
            let id = sessions.len() as u32;
            for &p in &items {
                if let Some(list) = by_item.get_mut(p as usize) {
                    list.push(id);
                }
            }
            sessions.push(items.into_boxed_slice());
        }
        let by_item = by_item
            .into_iter()
            .map(|mut l| {
                if l.len() > per_item {
                    l.drain(..l.len() - per_item);
                }
                l.into_boxed_slice()
            })
            .collect();
        Self { sessions, by_item }
    }

    /// Scores for items of the `k` past sessions most like `current` (items with their
    /// weights, most recent first), each session's score added to each of its items.
    pub fn score(
        &self,
        current: &[(ProductIdx, f32)],
        sample: usize,
        k: usize,
        out: &mut Vec<(ProductIdx, f32)>,
    ) {
        // Each touched session's similarity, summed through slots per thread indexed by
        // session (no hashing; nothing is cleared between requests).
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(current.len() * sample);
        SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            slots.begin(self.sessions.len());
            for &(p, w) in current {
                let Some(list) = self.by_item.get(p as usize) else {
                    continue;
                };
                for &s in list.iter().rev().take(sample) {
                    match slots.get(s as usize) {
                        Some(at) => best[at].1 += w,
                        None => {
                            slots.set(s as usize, best.len());
                            best.push((s, w));
                        }
                    }
                }
            }
        });
        for (s, v) in &mut best {
            let len = self.sessions[*s as usize].len() as f32;
            *v /= len.sqrt();
        }
        // The k best in order: a partial selection, then a sort of those k only (the
        // order is total, so this is the full sort's first k).
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0));
        if k == 0 {
            return;
        }
        if best.len() > k {
            best.select_nth_unstable_by(k - 1, order);
            best.truncate(k);
        }
        best.sort_unstable_by(order);
        for (s, v) in best {
            for &p in self.sessions[s as usize].iter() {
                out.push((p, v));
            }
        }
    }

    /// The past sessions, oldest first.
    pub fn sessions(&self) -> &[Box<[ProductIdx]>] {
        &self.sessions
    }

    pub fn memory_bytes(&self) -> usize {
        self.sessions
            .iter()
            .map(|s| s.len() * 4 + 16)
            .sum::<usize>()
            + self.by_item.iter().map(|s| s.len() * 4 + 16).sum::<usize>()
    }
}
