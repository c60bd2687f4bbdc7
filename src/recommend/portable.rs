//! Models in a form that outlives one process: products named by id rather than by
//! catalog index, encoded with rmp-serde. `vitrine train` writes this to the store;
//! every replica reads it and maps the ids onto its own catalog (products it does not
//! have are left out), so the same trained models serve everywhere.

use serde::{Deserialize, Serialize};

use super::audience::{AudienceTrend, SegmentTrend};
use super::cooccur::Neighbors;
use super::model::{Models, SESSIONS_PER_ITEM};
use super::sknn::SessionIndex;
use super::trending::Trending;
use crate::domain::{Catalog, ProductIdx, Segment};

/// One format byte, then MessagePack.
const FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct PortableNeighbors {
    lists: Vec<Vec<(u32, f32)>>,
    occurrences: Vec<f32>,
    similarity: (f32, f32),
}

/// A segment, its ranked products and the raw score that normalises to 1.
type PortableSegment = (Segment, Vec<(u32, f32)>, f64);

#[derive(Serialize, Deserialize)]
struct PortableModels {
    version: String,
    /// Product ids; every other index in here points into this list.
    ids: Vec<String>,
    trend: Vec<f32>,
    trend_unit: f64,
    bought: PortableNeighbors,
    viewed: PortableNeighbors,
    sessions: Vec<Vec<u32>>,
    /// Per segment: its ranked products and the raw score that normalises to 1.
    #[serde(default)]
    audience: Vec<PortableSegment>,
    #[serde(default)]
    log_cursor: String,
    /// The time the trend is as of and its half-life (0: models written before either
    /// was kept; they count from when they are read).
    #[serde(default)]
    trend_at: i64,
    #[serde(default)]
    trend_half_life_s: f64,
    /// The training interactions' request features (see [`super::features`]).
    #[serde(default)]
    mix: super::features::Mix,
}

fn export(n: &Neighbors) -> PortableNeighbors {
    let (lists, occurrences, similarity) = n.parts();
    PortableNeighbors {
        lists: lists.iter().map(|l| l.to_vec()).collect(),
        occurrences: occurrences.to_vec(),
        similarity,
    }
}

/// Encodes models trained on `catalog`.
pub fn encode(models: &Models, catalog: &Catalog) -> Result<Vec<u8>, String> {
    let n = catalog.len();
    let portable = PortableModels {
        version: models.version.clone(),
        ids: catalog
            .products()
            .iter()
            .map(|p| p.id.to_string())
            .collect(),
        trend: (0..n as ProductIdx)
            .map(|p| models.trending.score(p))
            .collect(),
        trend_unit: models.trending.unit(),
        bought: export(&models.bought),
        viewed: export(&models.viewed),
        sessions: models
            .sessions
            .sessions()
            .iter()
            .map(|s| s.to_vec())
            .collect(),
        audience: models
            .audience
            .parts()
            .into_iter()
            .map(|(s, t)| (s, t.top.clone(), t.unit))
            .collect(),
        log_cursor: models.log_cursor.clone(),
        trend_at: models.trending.clock().0,
        trend_half_life_s: models.trending.clock().1,
        mix: models.mix.clone(),
    };
    let mut out = vec![FORMAT];
    rmp_serde::encode::write(&mut out, &portable).map_err(|e| e.to_string())?;
    Ok(out)
}

/// Decodes stored models onto `catalog`.
pub fn decode(bytes: &[u8], catalog: &Catalog) -> Result<Models, String> {
    let rest = match bytes.split_first() {
        Some((&FORMAT, rest)) => rest,
        Some((other, _)) => return Err(format!("unknown model format {other}")),
        None => return Err("empty model".into()),
    };
    let p: PortableModels = rmp_serde::from_slice(rest).map_err(|e| e.to_string())?;
    // Stored index -> this catalog's index (None: not in this catalog).
    let map: Vec<Option<ProductIdx>> = p.ids.iter().map(|id| catalog.lookup(id)).collect();
    let local = |i: u32| map.get(i as usize).copied().flatten();
    let n = catalog.len();

    let mut trend = vec![0f32; n];
    for (i, s) in p.trend.iter().enumerate() {
        if let Some(l) = local(i as u32) {
            trend[l as usize] = *s;
        }
    }
    let neighbors = |pn: &PortableNeighbors| {
        let mut lists: Vec<Box<[(ProductIdx, f32)]>> = vec![Box::new([]); n];
        let mut occurrences = vec![0f32; n];
        for (i, list) in pn.lists.iter().enumerate() {
            if let Some(l) = local(i as u32) {
                lists[l as usize] = list
                    .iter()
                    .filter_map(|&(q, s)| Some((local(q)?, s)))
                    .collect();
            }
        }
        for (i, o) in pn.occurrences.iter().enumerate() {
            if let Some(l) = local(i as u32) {
                occurrences[l as usize] = *o;
            }
        }
        Neighbors::from_parts(lists, occurrences, pn.similarity)
    };
    let sessions = p
        .sessions
        .iter()
        .map(|s| s.iter().filter_map(|&i| local(i)).collect())
        .collect();
    let clock = (
        if p.trend_at > 0 {
            p.trend_at
        } else {
            crate::domain::time::unix_now()
        },
        if p.trend_half_life_s > 0.0 {
            p.trend_half_life_s
        } else {
            72.0 * 3600.0
        },
    );
    Ok(Models {
        version: p.version,
        trending: Trending::from_scores(catalog, trend, p.trend_unit, clock),
        bought: neighbors(&p.bought),
        viewed: neighbors(&p.viewed),
        sessions: SessionIndex::from_sessions(n, sessions, SESSIONS_PER_ITEM),
        audience: AudienceTrend::from_parts(
            p.audience
                .into_iter()
                .map(|(s, top, unit)| {
                    let top = top.into_iter().filter_map(|(i, w)| Some((local(i)?, w)));
                    (
                        s,
                        SegmentTrend {
                            top: top.collect(),
                            unit,
                        },
                    )
                })
                .collect(),
        ),
        log_cursor: p.log_cursor,
        live: super::live::Live::new(clock.0, clock.1),
        mix: p.mix,
        content: arc_swap::ArcSwapOption::empty(),
    })
}
