//! Recommendations: models learned from interactions, and the engine that blends
//! them for one request.
//!
//! Models are built off the serving path ([`Models::train`]) into plain sorted arrays,
//! so that answering a request is a handful of slice reads, a small merge and a sort.

pub mod audience;
pub mod content;
pub mod cooccur;
pub mod curation;
pub mod engine;
pub mod features;
pub mod live;
pub mod model;
pub mod portable;
pub mod reads;
pub mod review;
pub mod sknn;
pub mod slots;
pub mod trending;

use std::sync::Arc;

use crate::domain::Catalog;

pub use curation::Curation;
pub use engine::{CartItem, Considered, Query, Reason, Scored, recommend, recommend_explained};
pub use model::Models;

/// The catalog and the models trained on it: always swapped together, because the
/// models address products by catalog index.
pub struct Snapshot {
    pub catalog: Catalog,
    pub models: Arc<Models>,
}
