//! Where on the storefront a recommendation is shown. A closed set: adding a variant
//! makes every `match` that must decide on it fail to compile.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    Home,
    Product,
    Cart,
    Category,
    Search,
    Checkout,
    PostPurchase,
}

impl Placement {
    pub const ALL: [Placement; 7] = [
        Placement::Home,
        Placement::Product,
        Placement::Cart,
        Placement::Category,
        Placement::Search,
        Placement::Checkout,
        Placement::PostPurchase,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Placement::Home => "home",
            Placement::Product => "product",
            Placement::Cart => "cart",
            Placement::Category => "category",
            Placement::Search => "search",
            Placement::Checkout => "checkout",
            Placement::PostPurchase => "post_purchase",
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Placement {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Placement::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placement_round_trips_through_its_name() {
        for p in Placement::ALL {
            assert_eq!(p.as_str().parse::<Placement>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert!("landing".parse::<Placement>().is_err());
    }
}
