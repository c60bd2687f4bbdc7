//! Ta-Feng grocery baskets: next basket, and frequently bought together.
//!
//! Next basket: for every customer, the last basket is predicted from the earlier
//! baskets (everyone's earlier baskets train the models; the customer's own reach their
//! profile through the events path as purchases). Recall@10 = |top 10 ∩ basket| /
//! |basket|; NDCG@10 against the ideal DCG over the whole basket. Items bought before
//! are valid answers.
//!
//! FBT (basket completion): in every last basket with at least two distinct items one
//! item (seeded RNG) is hidden and ranked from the rest of the basket, sent as the cart
//! of an anonymous visitor. HR@10, MRR@20.

use std::path::Path;

use rand::{Rng, SeedableRng};

use super::baselines::ItemKnn;
use super::metrics::{Metrics, rank_of};
use super::{
    EvalError, Harness, MethodResult, Split, field, fill_up, gz_rows, most_popular, product_id,
    single_category_catalog,
};
use crate::domain::{Interaction, InteractionKind, Placement};
use crate::ingest::events::RawEvent;
use crate::recommend::Models;
use crate::recommend::engine::CartItem;

const DAY: i64 = 86_400;
const NOW: i64 = 1_700_000_000;
const SEED: u64 = 42;

/// Each customer's baskets, in order; each basket's distinct items.
type Customers = Vec<Vec<Vec<u32>>>;

fn customers(path: &Path) -> Result<(Customers, u32), EvalError> {
    let mut out: Customers = Vec::new();
    let mut ids: Vec<u64> = Vec::new();
    let mut items = 0u32;
    for (line, row) in gz_rows(path, ',')? {
        let user: u64 = field(path, line, &row, 0)?;
        let basket: usize = field(path, line, &row, 1)?;
        let item: u32 = field(path, line, &row, 2)?;
        items = items.max(item + 1);
        if ids.last() != Some(&user) {
            ids.push(user);
            out.push(Vec::new());
        }
        let Some(baskets) = out.last_mut() else {
            continue;
        };
        while baskets.len() <= basket {
            baskets.push(Vec::new());
        }
        if !baskets[basket].contains(&item) {
            baskets[basket].push(item);
        }
    }
    Ok((out, items))
}

/// The target basket's index for a customer: the last, or for validation the one
/// before it (the last is then never seen).
fn target_index(baskets: &[Vec<u32>], validation: bool) -> usize {
    baskets.len() - 1 - usize::from(validation)
}

pub async fn evaluate(
    dir: &Path,
    validation: bool,
    setup: &super::Setup,
) -> Result<(u64, Vec<MethodResult>), EvalError> {
    let (customers, items) = customers(&dir.join("baskets.csv.gz"))?;
    let catalog = single_category_catalog(items, 0, "grocery")?;

    // Everyone's baskets before their target basket train the models.
    let mut interactions = Vec::new();
    let mut order = 0u64;
    for (c, baskets) in customers.iter().enumerate() {
        let target = target_index(baskets, validation);
        for (b, basket) in baskets[..target].iter().enumerate() {
            order += 1;
            for &item in basket {
                interactions.push(Interaction {
                    session: order,
                    customer: Some(c as u32),
                    order: Some(order),
                    product: item,
                    kind: InteractionKind::Purchase,
                    ts: NOW - (target - b) as i64 * DAY,
                    audience: Default::default(),
                });
            }
        }
    }
    let models = Models::train(&catalog, &interactions, &setup.recommend);
    let (counts, popular) = most_popular(items, interactions.iter().map(|i| i.product), 40);
    drop(interactions);
    // Item-kNN: items of one basket are neighbours.
    let knn = ItemKnn::train(
        items,
        customers
            .iter()
            .flat_map(|baskets| &baskets[..target_index(baskets, validation)])
            .map(Vec::as_slice),
        100,
    );

    // Groceries are bought again.
    let harness = Harness::new(&models, &catalog, vec!["grocery".into()], setup);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(SEED);
    let (mut engine, mut g_top, mut gp_top, mut item_knn) = (
        Split::default(),
        Metrics::default(),
        Split::default(),
        Split::default(),
    );
    let (mut fbt, mut fbt_pop) = (Metrics::default(), Metrics::default());
    for (c, baskets) in customers.iter().enumerate() {
        let target = target_index(baskets, validation);
        // The customer's earlier baskets, as the storefront would have sent them.
        let mut raws = Vec::new();
        for (b, basket) in baskets[..target].iter().enumerate() {
            for &item in basket {
                raws.push(RawEvent {
                    event_id: Some(format!("{c}-{b}-{item}")),
                    kind: Some("purchase".into()),
                    customer_id: Some(format!("customer-{c}")),
                    product_id: Some(product_id(item)),
                    order_id: Some(format!("{c}-{b}")),
                    timestamp: Some(NOW - (target - b) as i64 * DAY),
                    ..RawEvent::default()
                });
            }
        }
        let Some(profile) = harness.recall(raws, NOW).await? else {
            continue;
        };
        let basket = &baskets[target];

        let bought: Vec<u32> = baskets[..target].iter().flatten().copied().collect();
        let answer = harness.answer(Placement::Home, &[], 10, Some(&profile));
        engine.set(&answer, basket, &bought);
        g_top.set(&popular[..10], basket, &[10]);
        item_knn.set(&knn.rank(&bought, 10, &popular), basket, &bought);

        // GP-TopFreq: the customer's own most frequent items, then global popularity.
        // (item, times bought): most often first, ties by global popularity.
        let mut own: Vec<(u32, u32)> = Vec::new();
        for earlier in &baskets[..target] {
            for &item in earlier {
                match own.iter_mut().find(|e| e.0 == item) {
                    Some(e) => e.1 += 1,
                    None => own.push((item, 1)),
                }
            }
        }
        own.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then(counts[b.0 as usize].cmp(&counts[a.0 as usize]))
                .then(a.0.cmp(&b.0))
        });
        let mut answer: Vec<u32> = own.iter().map(|e| e.0).take(10).collect();
        fill_up(&mut answer, &popular, 10);
        gp_top.set(&answer, basket, &bought);

        // Basket completion.
        if basket.len() >= 2 {
            let hidden = basket[rng.random_range(0..basket.len())];
            let cart: Vec<CartItem> = basket
                .iter()
                .filter(|&&p| p != hidden)
                .map(|p| CartItem {
                    product_id: product_id(*p),
                    quantity: 1,
                })
                .collect();
            let answer = harness.answer(Placement::Cart, &cart, 20, None);
            fbt.single(rank_of(&answer, hidden), &[10, 20]);
            let pop: Vec<u32> = popular
                .iter()
                .copied()
                .filter(|p| !basket.contains(p) || *p == hidden)
                .take(20)
                .collect();
            fbt_pop.single(rank_of(&pop, hidden), &[10, 20]);
        }
    }
    const BASKET: [&str; 2] = ["recall@10", "ndcg@10"];
    let basket_result = |method: &str, m: &Metrics| MethodResult {
        method: method.into(),
        metrics: m.means(&BASKET),
    };
    let fbt_result = |method: &str, m: &Metrics| MethodResult {
        method: method.into(),
        metrics: m
            .means(&["hr@10", "mrr@20"])
            .into_iter()
            .map(|(k, v)| (format!("fbt_{k}"), v))
            .collect(),
    };
    let mut results = engine.results("vitrine (next basket)", &BASKET);
    results.push(basket_result("g-topfreq", &g_top));
    results.extend(gp_top.results("gp-topfreq", &BASKET));
    results.extend(item_knn.results("item-knn", &BASKET));
    results.push(fbt_result("vitrine (cart: fbt)", &fbt));
    results.push(fbt_result("popularity (fbt)", &fbt_pop));
    Ok((engine.cases(), results))
}
