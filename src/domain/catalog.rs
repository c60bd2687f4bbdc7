//! The product catalog: immutable product data plus the indexes the recommenders need
//! (id -> index, category -> products, search token -> products).
//!
//! Products are addressed by a dense `u32` index everywhere on the hot path; the string
//! id only appears at the edges. Stock levels live beside the products in atomics, so an
//! inventory change is one store and never needs a new catalog snapshot.

use std::sync::atomic::{AtomicI64, Ordering};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::money::{Currency, Money};

pub type ProductIdx = u32;

/// The stock level recorded for a product whose platform does not track its inventory
/// (always available); the admin API shows it as `"inventory": null,
/// "inventory_tracked": false`.
pub const UNTRACKED_STOCK: i64 = i32::MAX as i64;
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
    /// The handle of this category and of each one above it (`a/b/c`, `a/b`, `a`), each
    /// with its 128-bit hash: a rule naming categories (by handle, made canonical by
    /// [`category_handle`] when compiled) matches this one when any of these is named,
    /// found by integer lookups rather than string scans, however long the rule's list
    /// (128 bits: two names never share a hash in practice).
    pub ancestry: Box<[(u128, Box<str>)]>,
}

impl Category {
    /// A category named by `name`, a handle (`kitchen/cookware`) or a path
    /// (`Kitchen > Cookware`); its handle is [`category_handle`] of the name.
    pub fn named(name: &str) -> Self {
        let handle = category_handle(name);
        let path = if name.contains('>') {
            name.split('>')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" > ")
        } else {
            name.trim().to_owned()
        };
        Self::new(&handle, &path)
    }

    pub fn new(handle: &str, path: &str) -> Self {
        let mut ancestry: Vec<(u128, Box<str>)> = std::iter::once(handle)
            .chain(handle.match_indices('/').map(|(i, _)| &handle[..i]))
            .map(|s| (name_hash(s), s.into()))
            .collect();
        ancestry.sort();
        Self {
            handle: handle.into(),
            path: path.into(),
            ancestry: ancestry.into_boxed_slice(),
        }
    }

    /// Whether the category with handle `handle` is this one or one above it.
    pub fn is_within(&self, handle: &str) -> bool {
        self.ancestry.iter().any(|(_, a)| **a == *handle)
    }
}

/// The handle a category name stands for: a path's levels (`Kitchen > Cookware`) or a
/// handle's (`kitchen/cookware`, `Kitchen`, `Tea Ware`), each made a slug, joined by
/// `/`. Every place a category is named (catalog, imports, rules, queries) goes through
/// it, so one category has one handle whichever way it is written. Empty when the name
/// has no letter or digit.
pub fn category_handle(name: &str) -> String {
    let sep = if name.contains('>') { '>' } else { '/' };
    name.split(sep)
        .map(slug)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// The hash categories are looked up by (see [`Category::ancestry`]).
pub fn name_hash(name: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(name.as_bytes())
}

/// A product as the catalog store keeps it (stock is kept apart): what replicas share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub id: String,
    pub title: String,
    pub handle: String,
    pub url: String,
    pub image_url: String,
    /// The category's path (`Kitchen > Cookware`) or handle.
    pub category: String,
    pub tags: Vec<String>,
    pub price: Money,
    pub cost: Option<Money>,
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
    #[error("category {0:?} has no letter or digit to name it by")]
    UnnamedCategory(String),
    #[error("too many products or categories for the index type")]
    TooLarge,
}

pub struct Catalog {
    products: Vec<Product>,
    /// Deleted products keep their index (the models address products by index) but
    /// are never found, listed or recommended.
    deleted: Vec<bool>,
    inventory: Vec<AtomicI64>,
    by_id: FxHashMap<Box<str>, ProductIdx>,
    categories: Vec<Category>,
    category_by_key: FxHashMap<Box<str>, CategoryId>,
    by_category: Vec<Vec<ProductIdx>>,
    tokens: FxHashMap<Box<str>, Vec<ProductIdx>>,
    /// The currencies live products are priced in.
    currencies: Vec<Currency>,
    /// Live products by handle (the first, when two share one).
    by_handle: FxHashMap<Box<str>, ProductIdx>,
    /// A digest of the products and categories (not stock): two catalogs with the same
    /// contents have the same version, on every replica and after every restart.
    version: u64,
}

impl Catalog {
    /// The currencies the catalog's live products are priced in.
    pub fn currencies(&self) -> &[Currency] {
        &self.currencies
    }

    pub fn new(categories: Vec<Category>, products: Vec<NewProduct>) -> Result<Self, CatalogError> {
        let deleted = vec![false; products.len()];
        Self::with_deleted(categories, products, deleted)
    }

    fn with_deleted(
        categories: Vec<Category>,
        products: Vec<NewProduct>,
        deleted: Vec<bool>,
    ) -> Result<Self, CatalogError> {
        if categories.len() > usize::from(CategoryId::MAX)
            || products.len() > ProductIdx::MAX as usize
        {
            return Err(CatalogError::TooLarge);
        }
        let mut category_by_key = FxHashMap::default();
        for (i, c) in categories.iter().enumerate() {
            let id = CategoryId::try_from(i).map_err(|_| CatalogError::TooLarge)?;
            category_by_key.insert(c.handle.clone(), id);
        }
        let mut by_id = FxHashMap::default();
        by_id.reserve(products.len());
        let mut by_category = vec![Vec::new(); categories.len()];
        let mut tokens: FxHashMap<Box<str>, Vec<ProductIdx>> = FxHashMap::default();
        let mut list = Vec::with_capacity(products.len());
        let mut inventory = Vec::with_capacity(products.len());
        let mut currencies: Vec<Currency> = Vec::new();
        let mut by_handle: FxHashMap<Box<str>, ProductIdx> = FxHashMap::default();
        let mut digest = xxhash_rust::xxh3::Xxh3::new();
        for c in &categories {
            digest.update(c.handle.as_bytes());
            digest.update(&[0x1f]);
            digest.update(c.path.as_bytes());
            digest.update(&[0x1e]);
        }
        for (i, new) in products.iter().enumerate() {
            let p = &new.product;
            for field in [&*p.id, &*p.title, &*p.handle, &*p.url, &*p.image_url] {
                digest.update(field.as_bytes());
                digest.update(&[0x1f]);
            }
            for t in &p.tags {
                digest.update(t.as_bytes());
                digest.update(&[0x1f]);
            }
            digest.update(&p.category.to_le_bytes());
            for m in std::iter::once(Some(p.price)).chain(std::iter::once(p.cost)) {
                if let Some(m) = m {
                    digest.update(&m.amount.to_le_bytes());
                    digest.update(m.currency.as_str().as_bytes());
                }
                digest.update(&[0x1f]);
            }
            digest.update(&[u8::from(deleted[i]), 0x1e]);
        }
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
            if deleted[i] {
                list.push(product);
                inventory.push(AtomicI64::new(stock));
                continue;
            }
            if !product.handle.is_empty() {
                by_handle.entry(product.handle.clone()).or_insert(idx);
            }
            members.push(idx);
            let words = search_tokens(&product.title)
                .chain(product.tags.iter().flat_map(|t| search_tokens(t)));
            for token in words {
                let entry = tokens.entry(token.into()).or_default();
                if entry.last() != Some(&idx) {
                    entry.push(idx);
                }
            }
            if !currencies.contains(&product.price.currency) {
                currencies.push(product.price.currency);
            }
            list.push(product);
            inventory.push(AtomicI64::new(stock));
        }
        currencies.sort_unstable();
        Ok(Self {
            version: digest.digest(),
            currencies,
            by_handle,
            products: list,
            deleted,
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

    /// The contents' digest (products and categories; stock is read per answer).
    pub fn version(&self) -> u64 {
        self.version
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

    /// The index of a live (not deleted) product.
    /// The live product with this id, else the one with this handle (a platform's
    /// exports and storefronts may name a product by its handle: an alias of its id).
    pub fn lookup(&self, id: &str) -> Option<ProductIdx> {
        self.by_id
            .get(id)
            .copied()
            .filter(|&i| !self.deleted[i as usize])
            .or_else(|| self.by_handle.get(id).copied())
    }

    /// How many products are out of stock.
    pub fn out_of_stock(&self) -> usize {
        (0..self.len() as ProductIdx)
            .filter(|&i| !self.in_stock(i))
            .count()
    }

    /// Sellable: live and with stock.
    pub fn in_stock(&self, idx: ProductIdx) -> bool {
        !self.deleted[idx as usize] && self.inventory[idx as usize].load(Ordering::Relaxed) > 0
    }

    /// Live products, in index order.
    /// Whether `idx` is a product of this catalog that is not deleted.
    pub fn is_live(&self, idx: ProductIdx) -> bool {
        self.deleted.get(idx as usize).is_some_and(|d| !d)
    }

    pub fn live(&self) -> impl Iterator<Item = ProductIdx> + '_ {
        (0..self.products.len() as ProductIdx).filter(|&i| !self.deleted[i as usize])
    }

    /// Starts an edit: a copy of this catalog's contents to change and rebuild. Indexes of
    /// existing products never change, so models trained on this catalog stay valid.
    pub fn edit(&self) -> CatalogEdit {
        CatalogEdit {
            categories: self.categories.clone(),
            products: self
                .products
                .iter()
                .zip(&self.inventory)
                .map(|(p, stock)| NewProduct {
                    product: p.clone(),
                    inventory: stock.load(Ordering::Relaxed),
                })
                .collect(),
            deleted: self.deleted.clone(),
            by_id: self.by_id.clone(),
        }
    }

    /// The stored form of a product.
    pub fn record(&self, idx: ProductIdx) -> ProductRecord {
        let p = self.product(idx);
        ProductRecord {
            id: p.id.to_string(),
            title: p.title.to_string(),
            handle: p.handle.to_string(),
            url: p.url.to_string(),
            image_url: p.image_url.to_string(),
            category: self.categories[usize::from(p.category)].path.to_string(),
            tags: p.tags.iter().map(ToString::to_string).collect(),
            price: p.price,
            cost: p.cost,
        }
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

    /// Finds a category by its handle or its path (see [`category_handle`]).
    pub fn category(&self, key: &str) -> Option<CategoryId> {
        match self.category_by_key.get(key) {
            Some(&c) => Some(c),
            None => self
                .category_by_key
                .get(category_handle(key).as_str())
                .copied(),
        }
    }

    /// The categories a name (handle or path) covers: the one it names and every one
    /// below it (`kitchen` covers `kitchen/cookware`), whether or not the name is itself a
    /// category products are filed under. Empty: the name covers no category.
    pub fn categories_within(&self, name: &str) -> Vec<CategoryId> {
        let handle = category_handle(name);
        if handle.is_empty() {
            return Vec::new();
        }
        self.categories
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_within(&handle))
            .filter_map(|(i, _)| CategoryId::try_from(i).ok())
            .collect()
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

/// Changes to a catalog, applied by [`CatalogEdit::build`].
pub struct CatalogEdit {
    categories: Vec<Category>,
    products: Vec<NewProduct>,
    deleted: Vec<bool>,
    by_id: FxHashMap<Box<str>, ProductIdx>,
}

impl CatalogEdit {
    /// The id of the category with this handle or path, created when new. Its handle is
    /// [`category_handle`] of the name (`Kitchen > Cookware` and `kitchen/cookware` are
    /// one category, `Kitchen` is `kitchen`).
    pub fn category(&mut self, key: &str) -> Result<CategoryId, CatalogError> {
        let handle = category_handle(key);
        if handle.is_empty() {
            return Err(CatalogError::UnnamedCategory(
                key.chars().take(64).collect(),
            ));
        }
        if let Some(i) = self.categories.iter().position(|c| *c.handle == handle) {
            return CategoryId::try_from(i).map_err(|_| CatalogError::TooLarge);
        }
        let id = CategoryId::try_from(self.categories.len()).map_err(|_| CatalogError::TooLarge)?;
        self.categories.push(Category::named(key));
        Ok(id)
    }

    /// Inserts a product, or replaces the one with its id (reviving it if deleted).
    pub fn upsert(&mut self, new: NewProduct) -> Result<(), CatalogError> {
        match self.by_id.get(&new.product.id) {
            Some(&i) => {
                self.products[i as usize] = new;
                self.deleted[i as usize] = false;
            }
            None => {
                let idx = ProductIdx::try_from(self.products.len())
                    .map_err(|_| CatalogError::TooLarge)?;
                self.by_id.insert(new.product.id.clone(), idx);
                self.products.push(new);
                self.deleted.push(false);
            }
        }
        Ok(())
    }

    /// Inserts or replaces a product from its stored form.
    pub fn upsert_record(&mut self, r: &ProductRecord, inventory: i64) -> Result<(), CatalogError> {
        let category = self.category(&r.category)?;
        self.upsert(NewProduct {
            product: Product {
                id: r.id.as_str().into(),
                title: r.title.as_str().into(),
                handle: r.handle.as_str().into(),
                url: r.url.as_str().into(),
                image_url: r.image_url.as_str().into(),
                category,
                tags: r.tags.iter().map(|t| t.as_str().into()).collect(),
                price: r.price,
                cost: r.cost,
            },
            inventory,
        })
    }

    /// The live product with this id, to change in place.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut NewProduct> {
        let i = *self.by_id.get(id)? as usize;
        (!self.deleted[i]).then(|| &mut self.products[i])
    }

    /// Deletes a live product; false when there was none.
    pub fn delete(&mut self, id: &str) -> bool {
        match self.by_id.get(id) {
            Some(&i) if !self.deleted[i as usize] => {
                self.deleted[i as usize] = true;
                true
            }
            Some(_) | None => false,
        }
    }

    pub fn build(self) -> Result<Catalog, CatalogError> {
        Catalog::with_deleted(self.categories, self.products, self.deleted)
    }
}

/// A URL-safe slug: lower-case ASCII words joined by dashes.
pub fn slug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut dash = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
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
        let cats = vec![Category::new("kitchen/cookware", "Kitchen > Cookware")];
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
    fn an_edit_keeps_indexes_adds_and_deletes() {
        let c = catalog();
        let mut edit = c.edit();
        let cat = edit.category("Garden > Tools").unwrap();
        assert_eq!(edit.category("garden/tools").unwrap(), cat);
        let mut trowel = product("d", "Trowel", cat);
        trowel.inventory = 5;
        edit.upsert(trowel).unwrap();
        assert!(edit.delete("b"));
        assert!(!edit.delete("b"));
        edit.get_mut("a").unwrap().product.title = "Skillet Deluxe".into();
        let next = edit.build().unwrap();
        assert_eq!(next.lookup("a"), Some(0));
        assert_eq!(next.lookup("b"), None);
        assert!(!next.in_stock(1));
        assert_eq!(next.lookup("d"), Some(3));
        assert_eq!(next.category("garden/tools"), Some(cat));
        assert_eq!(next.search("skillet"), vec![0]);
        assert_eq!(next.live().count(), 3);
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let r = Catalog::new(
            vec![Category::new("x", "X")],
            vec![product("a", "A", 0), product("a", "B", 0)],
        );
        assert!(matches!(r, Err(CatalogError::DuplicateProduct(_))));
    }
}
