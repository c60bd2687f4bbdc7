//! Plain domain types, parsed once at the edge and trusted after.
//!
//! Nothing in here knows about HTTP, storage or configuration files: the types only
//! guarantee their own invariants (an id is never empty, money is integer minor units
//! with a currency, a placement is one of a closed set).

pub mod arms;
pub mod audience;
pub mod bucket;
pub mod catalog;
pub mod ids;
pub mod interaction;
pub mod money;
pub mod page;
pub mod placement;
pub mod profile;
pub mod stats;
pub mod time;

pub use audience::{Audience, Country, Device, Segment};
pub use catalog::{Catalog, CategoryId, Product, ProductIdx};
pub use ids::{VisitorId, VisitorKey};
pub use interaction::{Interaction, InteractionKind};
pub use money::{Currency, Money, RawMoney};
pub use page::{PageContext, RawPageContext};
pub use placement::Placement;
pub use profile::Profile;
