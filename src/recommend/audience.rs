//! Trending per audience segment: what visitors of one country, or on one kind of
//! device, favour. Trained like the global trend (time-decayed event weights), kept as a
//! short ranked list per segment; a visitor with no history of their own gets their
//! segments' lists.

use rustc_hash::FxHashMap;

use super::trending::{decay, kind_weight};
use crate::domain::{Interaction, ProductIdx, Segment};

/// Products kept ranked per segment.
pub const SEGMENT_TOP: usize = 100;
/// Segments trained (the busiest first would need a second pass; the first seen win).
const MAX_SEGMENTS: usize = 512;

/// One segment's ranked products, scores normalised so the best is 1, and the raw
/// score that normalises to 1 (live weight divides by it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SegmentTrend {
    pub top: Vec<(ProductIdx, f32)>,
    pub unit: f64,
}

#[derive(Default)]
pub struct AudienceTrend {
    segments: FxHashMap<Segment, SegmentTrend>,
}

impl AudienceTrend {
    pub fn train(interactions: &[Interaction], half_life_s: f64, now: i64) -> Self {
        let mut raw: FxHashMap<Segment, FxHashMap<ProductIdx, f64>> = FxHashMap::default();
        for i in interactions {
            let w = kind_weight(i.kind) * decay((now - i.ts).max(0), half_life_s);
            for s in i.audience.segments() {
                if raw.len() >= MAX_SEGMENTS && !raw.contains_key(&s) {
                    continue;
                }
                *raw.entry(s).or_default().entry(i.product).or_default() += w;
            }
        }
        let segments = raw
            .into_iter()
            .map(|(s, scores)| {
                let mut list: Vec<(ProductIdx, f64)> = scores.into_iter().collect();
                list.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                list.truncate(SEGMENT_TOP);
                let unit = list.first().map_or(1.0, |f| f.1.max(f64::MIN_POSITIVE));
                let top = list.iter().map(|&(p, w)| (p, (w / unit) as f32)).collect();
                (s, SegmentTrend { top, unit })
            })
            .collect();
        Self { segments }
    }

    pub fn from_parts(segments: FxHashMap<Segment, SegmentTrend>) -> Self {
        Self { segments }
    }

    /// Every segment, in a stable order.
    pub fn parts(&self) -> Vec<(Segment, &SegmentTrend)> {
        let mut out: Vec<_> = self.segments.iter().map(|(s, t)| (*s, t)).collect();
        out.sort_unstable_by_key(|(s, _)| *s);
        out
    }

    pub fn of(&self, segment: Segment) -> Option<&SegmentTrend> {
        self.segments.get(&segment)
    }

    pub fn memory_bytes(&self) -> usize {
        self.segments
            .values()
            .map(|t| 48 + t.top.len() * 8)
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Audience, Country, Device, InteractionKind};

    fn view(product: ProductIdx, audience: Audience) -> Interaction {
        Interaction {
            session: 1,
            customer: None,
            order: None,
            product,
            kind: InteractionKind::View,
            ts: 0,
            audience,
        }
    }

    #[test]
    fn each_segment_ranks_its_own_events() {
        let de = Country::parse("DE").unwrap();
        let fr = Country::parse("FR").unwrap();
        let at = |country, device| Audience {
            country: Some(country),
            device,
        };
        let events = vec![
            view(1, at(de, Some(Device::Mobile))),
            view(1, at(de, None)),
            view(2, at(de, None)),
            view(3, at(fr, Some(Device::Mobile))),
            view(9, Audience::default()),
        ];
        let t = AudienceTrend::train(&events, 3600.0, 0);
        let in_de = t.of(Segment::Country(de)).unwrap();
        assert_eq!(in_de.top, vec![(1, 1.0), (2, 0.5)]);
        assert_eq!(in_de.unit, 2.0);
        let mobile: Vec<_> = t.of(Segment::Device(Device::Mobile)).unwrap().top.clone();
        assert_eq!(mobile, vec![(1, 1.0), (3, 1.0)]);
        assert!(t.of(Segment::Device(Device::App)).is_none());
        assert_eq!(t.parts().len(), 3);
    }
}
