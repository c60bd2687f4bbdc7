//! The product catalog: immutable product data plus the indexes the recommenders need
//! (id -> index, category -> products, search token -> products).
//!
//! Products are addressed by a dense `u32` index everywhere on the hot path; the string
//! id only appears at the edges. Stock levels live beside the products in atomics, so an
//! inventory change is one store and never needs a new catalog snapshot.

use std::sync::atomic::{AtomicI64, Ordering};

use rustc_hash::FxHashMap;

use super::money::Money;

pub type ProductIdx = u32;
pub type CategoryId = u16;

#[derive(Clone, Debug)]
pub struct Product {
    pub id: Box<str>,
    pub title: Box<str>,
    pub handle: Box<str>,
    pub url: Box<str>,
    pub image_url: Box<str>,
    pub category: CategoryId,
    pub tags: Box<[Box<str>]>,
    pub price: Money,
    /// Unit cost, when the merchant shares it; used for margin guardrails.
    pub cost: Option<Money>,
}

#[derive(Clone, Debug)]
pub struct Category {
    /// Stable slug, e.g. `kitchen/cookware`.
    pub handle: Box<str>,
    /// Human path, e.g. `Kitchen > Cookware`.
    pub path: Box<str>,
}

/// A product as handed to [`Catalog::new`], with its starting stock level.
pub struct NewProduct {
    pub product: Product,
    pub inventory: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("duplicate product id {0:?}")]
    DuplicateProduct(String),
    #[error("product {0:?} names category {1}, which does not exist")]
    UnknownCategory(String, CategoryId),
    #[error("too many products or categories for the index type")]
    TooLarge,
}

pub struct Catalog {
    products: Vec<Product>,
    inventory: Vec<AtomicI64>,
    by_id: FxHashMap<Box<str>, ProductIdx>,
    categories: Vec<Category>,
    category_by_key: FxHashMap<Box<str>, CategoryId>,
    by_category: Vec<Vec<ProductIdx>>,
    tokens: FxHashMap<Box<str>, Vec<ProductIdx>>,
}

impl Catalog {
    pub fn new(categories: Vec<Category>, products: Vec<NewProduct>) -> Result<Self, CatalogError> {
        if categories.len() > usize::from(CategoryId::MAX)
            || products.len() > ProductIdx::MAX as usize
        {
            return Err(CatalogError::TooLarge);
        }
        let mut category_by_key = FxHashMap::default();
        for (i, c) in categories.iter().enumerate() {
            let id = CategoryId::try_from(i).map_err(|_| CatalogError::TooLarge)?;
            category_by_key.insert(c.handle.clone(), id);
            category_by_key.insert(c.path.clone(), id);
        }
        let mut by_id = FxHashMap::default();
        by_id.reserve(products.len());
        let mut by_category = vec![Vec::new(); categories.len()];
        let mut tokens: FxHashMap<Box<str>, Vec<ProductIdx>> = FxHashMap::default();
        let mut list = Vec::with_capacity(products.len());
        let mut inventory = Vec::with_capacity(products.len());
        for (
            i,
            NewProduct {
                product,
                inventory: stock,
            },
        ) in products.into_iter().enumerate()
        {
            let idx = ProductIdx::try_from(i).map_err(|_| CatalogError::TooLarge)?;
            if by_id.insert(product.id.clone(), idx).is_some() {
                return Err(CatalogError::DuplicateProduct(product.id.to_string()));
            }
            let Some(members) = by_category.get_mut(usize::from(product.category)) else {
                return Err(CatalogError::UnknownCategory(
                    product.id.to_string(),
                    product.category,
                ));
            };
            members.push(idx);
            let words = search_tokens(&product.title)
                .chain(product.tags.iter().flat_map(|t| search_tokens(t)));
            for token in words {
                let entry = tokens.entry(token.into()).or_default();
                if entry.last() != Some(&idx) {
                    entry.push(idx);
                }
            }
            list.push(product);
            inventory.push(AtomicI64::new(stock));
        }
        Ok(Self {
            products: list,
            inventory,
            by_id,
            categories,
            category_by_key,
            by_category,
            tokens,
        })
    }

    pub fn empty() -> Self {
        Self::new(Vec::new(), Vec::new()).unwrap_or_else(|_| unreachable!("empty catalog"))
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    pub fn product(&self, idx: ProductIdx) -> &Product {
        &self.products[idx as usize]
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    pub fn lookup(&self, id: &str) -> Option<ProductIdx> {
        self.by_id.get(id).copied()
    }

    pub fn in_stock(&self, idx: ProductIdx) -> bool {
        self.inventory[idx as usize].load(Ordering::Relaxed) > 0
    }

    pub fn inventory(&self, idx: ProductIdx) -> i64 {
        self.inventory[idx as usize].load(Ordering::Relaxed)
    }

    pub fn set_inventory(&self, idx: ProductIdx, level: i64) {
        self.inventory[idx as usize].store(level, Ordering::Relaxed);
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// Finds a category by its handle or its full path.
    pub fn category(&self, key: &str) -> Option<CategoryId> {
        self.category_by_key.get(key).copied()
    }

    pub fn category_members(&self, id: CategoryId) -> &[ProductIdx] {
        self.by_category
            .get(usize::from(id))
            .map_or(&[], Vec::as_slice)
    }

    /// Products whose title or tags contain every word of the query (case-insensitive),
    /// in catalog order. Empty when no word is known.
    pub fn search(&self, query: &str) -> Vec<ProductIdx> {
        let mut lists: Vec<&[ProductIdx]> = Vec::new();
        for token in search_tokens(query) {
            match self.tokens.get(token.as_str()) {
                Some(list) => lists.push(list),
                None => return Vec::new(),
            }
        }
        lists.sort_by_key(|l| l.len());
        let Some((first, rest)) = lists.split_first() else {
            return Vec::new();
        };
        first
            .iter()
            .copied()
            .filter(|idx| rest.iter().all(|l| l.binary_search(idx).is_ok()))
            .collect()
    }
}

/// Lower-cased alphanumeric words, the unit of the search index.
pub fn search_tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    fn product(id: &str, title: &str, category: CategoryId) -> NewProduct {
        NewProduct {
            product: Product {
                id: id.into(),
                title: title.into(),
                handle: id.into(),
                url: format!("/products/{id}").into(),
                image_url: format!("/img/{id}.jpg").into(),
                category,
                tags: vec!["Red".into()].into(),
                price: Money::new(1000, Currency::parse("GBP").unwrap()),
                cost: None,
            },
            inventory: 3,
        }
    }

    fn catalog() -> Catalog {
        let cats = vec![Category {
            handle: "kitchen/cookware".into(),
            path: "Kitchen > Cookware".into(),
        }];
        Catalog::new(
            cats,
            vec![
                product("a", "Cast Iron Skillet", 0),
                product("b", "Steel Skillet", 0),
                product("c", "Cast Iron Wok", 0),
            ],
        )
        .unwrap()
    }

    #[test]
    fn search_needs_every_word_of_the_query() {
        let c = catalog();
        assert_eq!(c.search("skillet"), vec![0, 1]);
        assert_eq!(c.search("CAST iron"), vec![0, 2]);
        assert_eq!(c.search("cast skillet"), vec![0]);
        assert_eq!(c.search("red"), vec![0, 1, 2]);
        assert!(c.search("teapot").is_empty());
        assert!(c.search("  ").is_empty());
    }

    #[test]
    fn categories_are_found_by_handle_or_path() {
        let c = catalog();
        assert_eq!(c.category("kitchen/cookware"), Some(0));
        assert_eq!(c.category("Kitchen > Cookware"), Some(0));
        assert_eq!(c.category("garden"), None);
    }

    #[test]
    fn inventory_changes_in_place() {
        let c = catalog();
        assert!(c.in_stock(1));
        c.set_inventory(1, 0);
        assert!(!c.in_stock(1));
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let r = Catalog::new(
            vec![Category {
                handle: "x".into(),
                path: "X".into(),
            }],
            vec![product("a", "A", 0), product("a", "B", 0)],
        );
        assert!(matches!(r, Err(CatalogError::DuplicateProduct(_))));
    }
}
