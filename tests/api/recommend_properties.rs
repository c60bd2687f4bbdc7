//! Properties of every answer, over random visitors, pages and stock: filtered products
//! never appear, the diversity cap holds, and the same state gives the same answer.

use std::sync::OnceLock;

use proptest::prelude::*;
use vitrine::config::{DemoSettings, MaxPerCategory, RecommendSettings};
use vitrine::domain::profile::{Behaviour, ProfileOp};
use vitrine::domain::{Catalog, Placement, ProductIdx, Profile};
use vitrine::ingest::demo;
use vitrine::recommend::engine::Policy;
use vitrine::recommend::{CartItem, Models, Query, recommend};

struct Shop {
    catalog: Catalog,
    models: Models,
}

fn shop() -> &'static Shop {
    static SHOP: OnceLock<Shop> = OnceLock::new();
    SHOP.get_or_init(|| {
        let settings = DemoSettings {
            products: 600,
            customers: 50,
            events: 20_000,
            ..DemoSettings::default()
        };
        let demo = demo::generate(&settings, 1_700_000_000).unwrap();
        let models = Models::train(
            &demo.catalog,
            &demo.interactions,
            &RecommendSettings::default(),
        );
        Shop {
            catalog: demo.catalog,
            models,
        }
    })
}

/// A random visitor: products viewed and bought.
fn profile(catalog: &Catalog, viewed: &[usize], bought: &[usize]) -> Profile {
    let mut p = Profile::default();
    let mut id = 0;
    for (list, behaviour) in [(viewed, Behaviour::View), (bought, Behaviour::Purchase)] {
        for &i in list {
            id += 1;
            let product = catalog.product((i % catalog.len()) as ProductIdx);
            p.apply(&ProfileOp::Event {
                id,
                at: 1_700_000_000 + id as i64,
                behaviour,
                product_id: Some(product.id.to_string()),
                category: Some(
                    catalog.categories()[usize::from(product.category)]
                        .handle
                        .to_string(),
                ),
                quantity: 1,
                price: None,
                query: None,
                order: None,
                counts_order: true,
            });
        }
    }
    p
}

fn placement() -> impl Strategy<Value = Placement> {
    prop::sample::select(Placement::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn filters_hold_answers_are_full_the_cap_only_orders_and_answers_repeat(
        placement in placement(),
        in_view in 0usize..600,
        cart in prop::collection::vec(0usize..600, 0..6),
        viewed in prop::collection::vec(0usize..600, 0..20),
        bought in prop::collection::vec(0usize..600, 0..10),
        out_of_stock in prop::collection::vec(0usize..600, 0..200),
        cap in 0usize..5,
        repeatable_kitchen in any::<bool>(),
        limit in 1usize..40,
        candidates in prop::collection::vec(0usize..600, 0..30),
    ) {
        let shop = shop();
        let catalog = &shop.catalog;
        for i in 0..catalog.len() {
            catalog.set_inventory(i as ProductIdx, 10);
        }
        for &i in &out_of_stock {
            catalog.set_inventory(i as ProductIdx, 0);
        }
        let policy = Policy {
            repeatable: if repeatable_kitchen { vec!["kitchen".into()] } else { Vec::new() },
            max_per_category: MaxPerCategory { home: cap, product: cap, cart: cap, category: cap, search: cap, checkout: cap, post_purchase: cap },
            ..Policy::default()
        };
        let id = |i: usize| catalog.product(i as ProductIdx).id.to_string();
        let in_view_id = id(in_view);
        let cart_lines: Vec<CartItem> = cart.iter().map(|&i| CartItem { product_id: id(i), quantity: 1 }).collect();
        let visitor = profile(catalog, &viewed, &bought);
        let rerank = matches!(placement, Placement::Search | Placement::Category);
        let candidate_ids: Vec<String> = if rerank { candidates.iter().map(|&i| id(i)).collect() } else { Vec::new() };
        let category = catalog.categories()[usize::from(catalog.product(in_view as ProductIdx).category)].handle.to_string();
        let query = Query {
            policy: &policy,
            placement,
            product: Some(&in_view_id),
            category: Some(&category),
            search: Some("set"),
            cart: &cart_lines,
            candidates: &candidate_ids,
            limit,
            audience: Default::default(),
            volatile: &shop.models.live,
        };
        let answer = recommend(&shop.models, catalog, &query, Some(&visitor));
        prop_assert!(answer.len() <= limit);

        // What the filters allow: in stock, not in view, not in the cart, not bought
        // before in a category people do not buy again.
        let allowed = |p: usize| {
            let c = catalog.product(p as ProductIdx).category;
            !out_of_stock.contains(&p)
                && p != in_view
                && !cart.contains(&p)
                && (policy.repeatable(catalog, c) || !bought.contains(&p))
        };
        if rerank && !candidate_ids.is_empty() {
            // The storefront's list: every candidate answered (up to the limit), what the
            // filters would remove last.
            let mut distinct: Vec<usize> = Vec::new();
            for &c in &candidates {
                if !distinct.contains(&c) {
                    distinct.push(c);
                }
            }
            prop_assert_eq!(answer.len(), distinct.len().min(limit));
            for s in &answer {
                prop_assert!(candidates.contains(&(s.product as usize)), "not a candidate: {}", s.product);
            }
            let kept: Vec<bool> = answer.iter().map(|s| allowed(s.product as usize)).collect();
            prop_assert!(kept.windows(2).all(|w| w[0] || !w[1]), "filtered candidates come last: {:?}", kept);
        } else {
            for s in &answer {
                let p = s.product as usize;
                prop_assert!(!out_of_stock.contains(&p), "out of stock: {}", p);
                prop_assert!(p != in_view, "the product in view");
                prop_assert!(!cart.contains(&p), "in the cart: {}", p);
                prop_assert!(allowed(p), "bought before, not repeatable: {}", p);
            }
            // Full: as many as the limit while eligible products are left (on a category
            // page, the page's).
            let page = catalog.categories_within(&category);
            let eligible = (0..catalog.len())
                .filter(|&p| allowed(p))
                .filter(|&p| {
                    placement != Placement::Category
                        || page.contains(&catalog.product(p as ProductIdx).category)
                })
                .count();
            prop_assert_eq!(answer.len(), eligible.min(limit), "a short answer");
        }
        // The diversity cap is a preference: the answer is the picks within the cap, then
        // what it held back (each of a category already at the cap above it).
        if cap > 0 {
            let mut seen: std::collections::HashMap<u16, usize> = Default::default();
            let mut over = false;
            for s in answer.iter().filter(|s| allowed(s.product as usize)) {
                let c = catalog.product(s.product).category;
                let n = seen.entry(c).or_insert(0);
                if over || *n >= cap {
                    over = true;
                    prop_assert!(*n >= cap, "an item under the cap after the held-back ones: {:?}", answer);
                }
                *n += 1;
            }
        }
        let ids: Vec<ProductIdx> = answer.iter().map(|s| s.product).collect();
        prop_assert!(ids.iter().collect::<std::collections::HashSet<_>>().len() == ids.len(), "no duplicates");

        let again = recommend(&shop.models, catalog, &query, Some(&visitor));
        prop_assert_eq!(answer, again);
    }
}

/// The content neighbours worked out ahead for a catalog are exactly what a request
/// would work out itself, for every product that may need them; a catalog of another
/// version does not take the table.
#[test]
fn content_neighbours_worked_out_ahead_are_those_a_request_works_out() {
    let settings = DemoSettings {
        products: 3_000,
        customers: 50,
        events: 6_000,
        ..DemoSettings::default()
    };
    let demo = demo::generate(&settings, 1_700_000_000).unwrap();
    let models = Models::train(
        &demo.catalog,
        &demo.interactions,
        &RecommendSettings::default(),
    );
    let catalog = &demo.catalog;
    assert!(models.content_for(catalog).is_none());
    for threads in [1, 2, 3] {
        let trained = vitrine::recommend::content::Trained {
            trending: &models.trending,
            bought: &models.bought,
            viewed: &models.viewed,
        };
        let table = vitrine::recommend::content::Table::build(&trained, catalog, threads);
        assert!(table.fits(catalog));
        let mut cold = 0;
        for p in catalog.live() {
            let warm = models.trending.knows(p)
                && !(models.bought.of(p).is_empty() && models.viewed.of(p).is_empty());
            if warm {
                assert!(table.of(p).is_empty());
            } else {
                cold += 1;
                assert_eq!(
                    table.of(p),
                    vitrine::recommend::content::of(&models.trending, catalog, p).as_slice()
                );
            }
        }
        assert!(cold > 100, "the shop has cold products: {cold}");
    }
    models.prepare_content(catalog);
    assert!(models.content_for(catalog).is_some());
    let other = demo::generate(
        &DemoSettings {
            products: 2_999,
            ..settings
        },
        1_700_000_000,
    )
    .unwrap();
    assert!(models.content_for(&other.catalog).is_none());
}
