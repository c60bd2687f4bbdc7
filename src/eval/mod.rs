//! `vitrine eval`: offline evaluation on public datasets, with each dataset's published
//! protocol (full ranking over every item, no sampled negatives).
//!
//! The method named `vitrine` is the serving code itself: the dataset's training data
//! becomes a catalog and interactions, the models are trained as at start-up, each test
//! visitor's history is fed through the events path into a profile store, and the
//! answer is [`crate::recommend::engine::recommend`] for the placement that matches the
//! task. The simple baselines are computed here, from the same training data.

pub mod baselines;
pub mod beauty;
pub mod diginetica;
pub mod metrics;
pub mod served;
pub mod tafeng;

use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

pub use metrics::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataset {
    Diginetica,
    Beauty,
    Tafeng,
}

impl Dataset {
    pub const fn name(self) -> &'static str {
        match self {
            Dataset::Diginetica => "diginetica",
            Dataset::Beauty => "beauty",
            Dataset::Tafeng => "tafeng",
        }
    }
}

/// One method's figures.
#[derive(Debug, Serialize)]
pub struct MethodResult {
    pub method: String,
    #[serde(flatten)]
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// One method's cases, all of them and apart by whether the target was something the
/// visitor had already had (repeat) or not (new); for a basket, its items bought
/// before and the others, each part over the baskets that hold such items.
#[derive(Default)]
pub(crate) struct Split {
    all: Metrics,
    repeat: Metrics,
    new: Metrics,
}

impl Split {
    pub(crate) fn single(&mut self, rank: Option<usize>, ks: &[usize], repeat: bool) {
        self.all.single(rank, ks);
        let part = if repeat {
            &mut self.repeat
        } else {
            &mut self.new
        };
        part.single(rank, ks);
    }

    /// One basket case: Recall@10 and NDCG@10 over the whole `basket`, and over its
    /// items in `bought` and the others.
    pub(crate) fn set(&mut self, answer: &[u32], basket: &[u32], bought: &[u32]) {
        self.all.set(answer, basket, &[10]);
        let (repeat, new): (Vec<u32>, Vec<u32>) =
            basket.iter().copied().partition(|p| bought.contains(p));
        for (part, items) in [(&mut self.repeat, repeat), (&mut self.new, new)] {
            if !items.is_empty() {
                part.set(answer, &items, &[10]);
            }
        }
    }

    pub(crate) fn cases(&self) -> u64 {
        self.all.cases()
    }

    /// `method` over all cases, then over repeat and new targets, each of these with
    /// its share of the cases.
    pub(crate) fn results(&self, method: &str, keep: &[&str]) -> Vec<MethodResult> {
        let all = self.all.cases().max(1) as f64;
        let part = |suffix: &str, m: &Metrics| {
            let mut metrics = m.means(keep);
            metrics.insert("share".into(), m.cases() as f64 / all);
            MethodResult {
                method: format!("{method} {suffix}"),
                metrics,
            }
        };
        vec![
            MethodResult {
                method: method.into(),
                metrics: self.all.means(keep),
            },
            part("· repeat", &self.repeat),
            part("· new", &self.new),
        ]
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub dataset: &'static str,
    /// What ran: the served recommend settings (config/base.toml, `--config`, the
    /// environment), and any protocol switch, by name.
    pub settings: serde_json::Value,
    pub cases: u64,
    pub results: Vec<MethodResult>,
    /// Seconds for the whole run (training, feeding, ranking).
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Data {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Setup(String),
}

/// Runs the dataset's protocol on the files in `dir`.
/// The configuration an evaluation runs: the server's own, unless a protocol switch
/// says otherwise (and the report says so).
#[derive(Clone, Debug)]
pub struct Setup {
    pub recommend: crate::config::RecommendSettings,
    /// The diversity cap as served (`true`), or off (`--no-diversity`).
    pub diversity: bool,
    /// Replay the cases through a running server as well (`--via-http`).
    pub via_http: Option<served::ViaHttp>,
    /// Only the first this many test sessions (`--sessions`; Diginetica).
    pub sessions: Option<usize>,
}

impl Setup {
    /// The served settings, the switches, as the report states them.
    fn describe(&self) -> serde_json::Value {
        let r = &self.recommend;
        serde_json::json!({
            "source": "served configuration (config/base.toml, --config, VITRINE__ environment)",
            "max_per_category": if self.diversity {
                serde_json::to_value(r.max_per_category).unwrap_or_default()
            } else {
                serde_json::json!("off (--no-diversity)")
            },
            "neighbors": r.neighbors,
            "trending_half_life_hours": r.trending_half_life_hours,
            "repeatable_categories": r.repeatable_categories,
            "blend": serde_json::to_value(r.blend).unwrap_or_default(),
            "via_http": self.via_http.as_ref().map(|v| v.url.clone()),
            "sessions": self.sessions,
        })
    }
}

pub async fn run(
    dataset: Dataset,
    dir: &Path,
    validation: bool,
    setup: &Setup,
) -> Result<Report, EvalError> {
    let started = std::time::Instant::now();
    if dataset != Dataset::Diginetica && (setup.via_http.is_some() || setup.sessions.is_some()) {
        return Err(EvalError::Setup(
            "--via-http and --sessions are for the diginetica protocol".into(),
        ));
    }
    let (cases, results) = match dataset {
        Dataset::Diginetica => diginetica::evaluate(dir, validation, setup).await?,
        Dataset::Beauty => beauty::evaluate(dir, validation, setup).await?,
        Dataset::Tafeng => tafeng::evaluate(dir, validation, setup).await?,
    };
    Ok(Report {
        settings: setup.describe(),
        dataset: dataset.name(),
        cases,
        results,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The rows of a gzip'd CSV file after its header, split on `separator`, with their
/// line numbers.
pub(crate) fn gz_rows(
    path: &Path,
    separator: char,
) -> Result<Vec<(usize, Vec<String>)>, EvalError> {
    let io = |source| EvalError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut rows = Vec::new();
    for (i, line) in reader.lines().enumerate().skip(1) {
        let line = line.map_err(io)?;
        if !line.trim().is_empty() {
            rows.push((i + 1, line.split(separator).map(str::to_owned).collect()));
        }
    }
    Ok(rows)
}

/// Parses one field as an integer, naming the file and line when it is not one.
pub(crate) fn field<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    row: &[String],
    i: usize,
) -> Result<T, EvalError> {
    row.get(i)
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| EvalError::Data {
            path: path.display().to_string(),
            line,
            message: format!("column {} is not a number", i + 1),
        })
}

/// The serving side of an evaluation: test visitors' events go through the events path
/// into an in-memory profile store, and answers come from the serving engine.
pub(crate) struct Harness<'a> {
    models: &'a crate::recommend::Models,
    catalog: &'a crate::domain::Catalog,
    policy: crate::recommend::engine::Policy,
    store: crate::store::MemoryStore,
    hasher: crate::store::KeyHasher,
}

impl<'a> Harness<'a> {
    /// The served policy (`setup`), with `repeatable` (the dataset's category handles
    /// bought again) added to the configured ones.
    pub(crate) fn new(
        models: &'a crate::recommend::Models,
        catalog: &'a crate::domain::Catalog,
        repeatable: Vec<String>,
        setup: &Setup,
    ) -> Self {
        let mut policy = crate::recommend::engine::Policy::new(&setup.recommend);
        policy.repeatable.extend(repeatable);
        if !setup.diversity {
            policy.max_per_category = crate::config::MaxPerCategory::OFF;
        }
        Self {
            models,
            catalog,
            policy,
            store: crate::store::MemoryStore::new(),
            hasher: crate::store::KeyHasher::new(b"eval"),
        }
    }

    /// Sends one visitor's new events as a storefront would (validated at `now`, any
    /// age), learns them as the server does, and returns that visitor's profile
    /// afterwards; `None` when there were none.
    pub(crate) async fn feed(
        &self,
        raws: Vec<crate::ingest::events::RawEvent>,
        now: i64,
    ) -> Result<Option<std::sync::Arc<crate::domain::Profile>>, EvalError> {
        self.send(raws, now, true).await
    }

    /// Builds a visitor's profile from history the models were trained on (what an
    /// import gives the server): the profile only, nothing learned twice.
    pub(crate) async fn recall(
        &self,
        raws: Vec<crate::ingest::events::RawEvent>,
        now: i64,
    ) -> Result<Option<std::sync::Arc<crate::domain::Profile>>, EvalError> {
        self.send(raws, now, false).await
    }

    async fn send(
        &self,
        raws: Vec<crate::ingest::events::RawEvent>,
        now: i64,
        learn: bool,
    ) -> Result<Option<std::sync::Arc<crate::domain::Profile>>, EvalError> {
        use crate::store::ProfileStore;
        let mut events = Vec::with_capacity(raws.len());
        for raw in raws {
            events.push(
                raw.validate(now, i64::MAX / 4)
                    .map_err(|r| EvalError::Setup(format!("event rejected: {}", r.as_str())))?,
            );
        }
        let Some(first) = events.first() else {
            return Ok(None);
        };
        let key = self.hasher.key(&first.visitor);
        let setup = |e: crate::store::StoreError| EvalError::Setup(e.to_string());
        // As the server does: the events go into the profile, and what they teach
        // (the live trend, new co-purchases) into the models.
        let batch = crate::ingest::events::Prepared::new(&self.hasher, self.catalog, &events, 0);
        let fresh = batch.apply(&self.store).await.map_err(setup)?;
        for entry in batch.lessons(&fresh).iter().filter(|_| learn) {
            if let Some(i) = crate::ingest::log::interaction(self.catalog, entry) {
                self.models
                    .learn(&i, &crate::recommend::Curation::default());
            }
        }
        self.store.get(&key).await.map_err(setup)
    }

    /// The engine's answer, as product indexes.
    pub(crate) fn answer(
        &self,
        placement: crate::domain::Placement,
        cart: &[crate::recommend::CartItem],
        limit: usize,
        profile: Option<&crate::domain::Profile>,
    ) -> Vec<crate::domain::ProductIdx> {
        let query = crate::recommend::Query {
            policy: &self.policy,
            placement,
            product: None,
            category: None,
            search: None,
            cart,
            candidates: &[],
            limit,
            audience: crate::domain::Audience::default(),
            volatile: &self.models.live,
        };
        crate::recommend::recommend(self.models, self.catalog, &query, profile)
            .iter()
            .map(|s| s.product)
            .collect()
    }
}

/// The first `n` products by how often `products` names them (ties by index): the
/// popularity baselines.
pub(crate) fn most_popular(
    count: u32,
    products: impl Iterator<Item = crate::domain::ProductIdx>,
    n: usize,
) -> (Vec<u32>, Vec<u32>) {
    let mut counts = vec![0u32; count as usize];
    for p in products {
        counts[p as usize] += 1;
    }
    let mut popular: Vec<u32> = (0..count).collect();
    popular.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    popular.truncate(n);
    (counts, popular)
}

/// Tops `answer` up to `n` products from `fill`, skipping what it already holds.
pub(crate) fn fill_up(answer: &mut Vec<u32>, fill: &[u32], n: usize) {
    for &p in fill {
        if answer.len() >= n {
            break;
        }
        if !answer.contains(&p) {
            answer.push(p);
        }
    }
}

/// The id of the dataset's item `n`: zero-padded, so that the order of ids (a store's)
/// is the order of the numbers (the evaluation's product indexes), and ties between
/// products break alike in and out of process.
pub(crate) fn product_id(n: u32) -> String {
    format!("{n:06}")
}

/// A catalog of `count` products with ids `first_id`, `first_id + 1`, ... (product
/// index `i` has id `first_id + i`), all in one category and in stock: the datasets
/// carry no catalog.
pub(crate) fn single_category_catalog(
    count: u32,
    first_id: u32,
    category: &str,
) -> Result<crate::domain::Catalog, EvalError> {
    use crate::domain::catalog::{Category, NewProduct};
    use crate::domain::{Currency, Money, Product};
    let price = Money::new(100, Currency::XXX);
    let products = (0..count)
        .map(|i| {
            let id = product_id(first_id + i);
            NewProduct {
                product: Product {
                    title: format!("item {id}").into(),
                    handle: id.as_str().into(),
                    id: id.into(),
                    url: "".into(),
                    image_url: "".into(),
                    category: 0,
                    tags: Box::new([]),
                    price,
                    cost: None,
                },
                inventory: 1,
            }
        })
        .collect();
    let categories = vec![Category::named(category)];
    crate::domain::Catalog::new(categories, products).map_err(|e| EvalError::Setup(e.to_string()))
}

/// The report as a table for a terminal.
pub fn table(report: &Report) -> String {
    let mut names: Vec<&String> = report
        .results
        .iter()
        .flat_map(|r| r.metrics.keys())
        .collect();
    names.sort();
    names.dedup();
    let s = &report.settings;
    let width = 2 + report
        .results
        .iter()
        .map(|r| r.method.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "{}: {} cases, {:.1} s\nsettings: {}; max_per_category {}; neighbors {}; trending_half_life_hours {} (all of them: --format json)\n{:<width$}",
        report.dataset,
        report.cases,
        report.seconds,
        s["source"].as_str().unwrap_or(""),
        s["max_per_category"],
        s["neighbors"],
        s["trending_half_life_hours"],
        "method"
    );
    for n in &names {
        out.push_str(&format!("{n:>12}"));
    }
    out.push('\n');
    for r in &report.results {
        out.push_str(&format!("{:<width$}", r.method));
        for n in &names {
            match r.metrics.get(*n) {
                Some(v) => out.push_str(&format!("{v:>12.4}")),
                None => out.push_str(&format!("{:>12}", "-")),
            }
        }
        out.push('\n');
    }
    out
}
