//! Each product's part of an answer — `"product_id":…,"title":…,"url":…,"image_url":…`,
//! escaped — written once per catalog version and copied into every answer after: the
//! escaping of titles and addresses was the largest part of writing an answer.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use crate::domain::{Catalog, ProductIdx};

/// The fragments of one catalog version, each written when first needed.
pub struct Fragments {
    version: u64,
    cells: Box<[OnceLock<Box<[u8]>>]>,
}

impl Fragments {
    fn new(catalog: &Catalog) -> Self {
        Self {
            version: catalog.version(),
            cells: (0..catalog.len()).map(|_| OnceLock::new()).collect(),
        }
    }

    fn fits(&self, catalog: &Catalog) -> bool {
        self.version == catalog.version() && self.cells.len() == catalog.len()
    }

    /// `p`'s fragment.
    pub fn of(&self, catalog: &Catalog, p: ProductIdx) -> &[u8] {
        match self.cells.get(p as usize) {
            Some(cell) => cell.get_or_init(|| write(catalog, p).into_boxed_slice()),
            // Not this catalog's product (cannot happen for a catalog that fits).
            None => &[],
        }
    }
}

/// `p`'s fragment, written now.
pub fn write(catalog: &Catalog, p: ProductIdx) -> Vec<u8> {
    let product = catalog.product(p);
    let mut out = Vec::with_capacity(
        64 + product.id.len() + product.title.len() + product.url.len() + product.image_url.len(),
    );
    for (i, (key, value)) in [
        ("product_id", &*product.id),
        ("title", &*product.title),
        ("url", &*product.url),
        ("image_url", &*product.image_url),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, value);
    }
    out
}

/// The fragments of the catalog serving now, replaced when the catalog changes.
#[derive(Default)]
pub struct Cache {
    current: ArcSwapOption<Fragments>,
}

impl Cache {
    /// The fragments for `catalog`.
    pub fn for_catalog(&self, catalog: &Catalog) -> Arc<Fragments> {
        if let Some(f) = self.current.load_full().filter(|f| f.fits(catalog)) {
            return f;
        }
        let fresh = Arc::new(Fragments::new(catalog));
        self.current.store(Some(fresh.clone()));
        fresh
    }
}
