//! What Vitrine knows about one visitor, as read on the serving path.
//!
//! Every list is bounded, so a profile's size is bounded whatever the visitor does.

use serde::{Deserialize, Serialize};

use super::money::Money;

/// The most products kept in `recently_viewed`.
pub const MAX_RECENTLY_VIEWED: usize = 50;
/// The most distinct products kept in `purchased`.
pub const MAX_PURCHASED: usize = 200;
/// The most categories kept in `top_categories`.
pub const MAX_TOP_CATEGORIES: usize = 10;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Product ids, most recent first.
    pub recently_viewed: Vec<String>,
    /// Product ids with purchase counts, most recent purchase first.
    pub purchased: Vec<(String, u32)>,
    pub orders_count: u32,
    pub total_spent: Option<Money>,
    /// Category handles, strongest affinity first.
    pub top_categories: Vec<String>,
}

impl Profile {
    /// Records a product view: moves it to the front and keeps the list bounded.
    pub fn record_view(&mut self, product_id: &str) {
        self.recently_viewed.retain(|p| p != product_id);
        self.recently_viewed.insert(0, product_id.to_owned());
        self.recently_viewed.truncate(MAX_RECENTLY_VIEWED);
    }

    /// Records a purchased product: bumps its count and moves it to the front.
    pub fn record_purchase(&mut self, product_id: &str) {
        let count = match self.purchased.iter().position(|(p, _)| p == product_id) {
            Some(i) => self.purchased.remove(i).1 + 1,
            None => 1,
        };
        self.purchased.insert(0, (product_id.to_owned(), count));
        self.purchased.truncate(MAX_PURCHASED);
    }

    pub fn has_history(&self) -> bool {
        !self.recently_viewed.is_empty() || !self.purchased.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recently_viewed_is_most_recent_first_without_duplicates_and_bounded() {
        let mut p = Profile::default();
        for i in 0..(MAX_RECENTLY_VIEWED + 10) {
            p.record_view(&format!("p{i}"));
        }
        p.record_view("p20");
        assert_eq!(p.recently_viewed.len(), MAX_RECENTLY_VIEWED);
        assert_eq!(p.recently_viewed[0], "p20");
        assert_eq!(p.recently_viewed.iter().filter(|x| *x == "p20").count(), 1);
    }

    #[test]
    fn purchases_are_counted() {
        let mut p = Profile::default();
        p.record_purchase("a");
        p.record_purchase("b");
        p.record_purchase("a");
        assert_eq!(p.purchased, vec![("a".into(), 2), ("b".into(), 1)]);
    }
}
