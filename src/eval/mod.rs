//! `vitrine eval`: offline evaluation on public datasets, with each dataset's published
//! protocol (full ranking over every item, no sampled negatives).
//!
//! The method named `vitrine` is the serving code itself: the dataset's training data
//! becomes a catalog and interactions, the models are trained as at start-up, each test
//! visitor's history is fed through the events path into a profile store, and the
//! answer is [`crate::recommend::engine::recommend`] for the placement that matches the
//! task. The simple baselines are computed here, from the same training data.

pub mod beauty;
pub mod diginetica;
pub mod metrics;
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

#[derive(Debug, Serialize)]
pub struct Report {
    pub dataset: &'static str,
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
pub async fn run(dataset: Dataset, dir: &Path, validation: bool) -> Result<Report, EvalError> {
    let started = std::time::Instant::now();
    let (cases, results) = match dataset {
        Dataset::Diginetica => diginetica::evaluate(dir, validation).await?,
        Dataset::Beauty => beauty::evaluate(dir, validation).await?,
        Dataset::Tafeng => tafeng::evaluate(dir, validation).await?,
    };
    Ok(Report {
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
            let id = (first_id + i).to_string();
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
    let categories = vec![Category {
        handle: category.into(),
        path: category.into(),
    }];
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
    let mut out = format!(
        "{}: {} cases, {:.1} s\n{:<28}",
        report.dataset, report.cases, report.seconds, "method"
    );
    for n in &names {
        out.push_str(&format!("{n:>12}"));
    }
    out.push('\n');
    for r in &report.results {
        out.push_str(&format!("{:<28}", r.method));
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
