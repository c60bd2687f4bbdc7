//! A generated, seeded demo shop: catalog, customers and a behavioural history that
//! looks like real traffic, so that recommendations mean something on first start.
//!
//! The generator models what makes real e-commerce data hard: a heavy popularity skew
//! (a few products get most views), customers who keep to two or three favourite
//! categories, sessions that wander into complementary categories, and products that
//! are bought together (each has a few complements, mostly in related categories), and
//! histories as long as real ones: visits as long as DIGINETICA's sessions, and known
//! customers who order as often, and as much at a time, as Ta-Feng's.
//! Everything comes from one ChaCha stream seeded by `demo.seed`, so two runs with the
//! same settings produce the same shop.

use rand::distr::{Distribution, weighted::WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::DemoSettings;
use crate::domain::catalog::{Category, NewProduct, ProductRecord, slug};
use crate::domain::profile::{Behaviour, ProfileOp};
use crate::domain::{
    Catalog, CategoryId, Currency, Interaction, InteractionKind, Money, Product, ProductIdx,
    Profile,
};

/// Departments, their subcategories, and for each subcategory the nouns its products
/// are named after and a typical price range in minor units.
/// A subcategory: name, product nouns, price range in minor units.
type Sub = (&'static str, &'static [&'static str], (i64, i64));
/// A (department, subcategory) position.
type Pos = (usize, usize);

const DEPARTMENTS: &[(&str, &[Sub])] = &[
    (
        "Kitchen",
        &[
            (
                "Cookware",
                &["Skillet", "Saucepan", "Stock Pot", "Dutch Oven", "Wok"],
                (1500, 18000),
            ),
            (
                "Knives",
                &[
                    "Chef Knife",
                    "Paring Knife",
                    "Bread Knife",
                    "Knife Block",
                    "Santoku",
                ],
                (900, 15000),
            ),
            (
                "Coffee",
                &[
                    "Espresso Maker",
                    "French Press",
                    "Grinder",
                    "Pour-Over Kit",
                    "Milk Frother",
                ],
                (1500, 40000),
            ),
            (
                "Bakeware",
                &[
                    "Loaf Tin",
                    "Baking Sheet",
                    "Cake Pan",
                    "Muffin Tray",
                    "Cooling Rack",
                ],
                (500, 4000),
            ),
            (
                "Utensils",
                &["Spatula", "Whisk", "Tongs", "Ladle", "Peeler"],
                (300, 2500),
            ),
        ],
    ),
    (
        "Home",
        &[
            (
                "Bedding",
                &[
                    "Duvet Cover",
                    "Pillowcase Set",
                    "Fitted Sheet",
                    "Throw",
                    "Duvet",
                ],
                (1500, 12000),
            ),
            (
                "Lighting",
                &[
                    "Table Lamp",
                    "Floor Lamp",
                    "Pendant",
                    "LED Strip",
                    "Desk Lamp",
                ],
                (1200, 20000),
            ),
            (
                "Storage",
                &[
                    "Basket",
                    "Storage Box",
                    "Shelf Unit",
                    "Drawer Divider",
                    "Coat Rack",
                ],
                (600, 9000),
            ),
            (
                "Decor",
                &["Vase", "Candle", "Picture Frame", "Mirror", "Cushion"],
                (500, 8000),
            ),
            (
                "Bath",
                &[
                    "Bath Towel",
                    "Bath Mat",
                    "Soap Dispenser",
                    "Shower Curtain",
                    "Robe",
                ],
                (500, 6000),
            ),
        ],
    ),
    (
        "Outdoor",
        &[
            (
                "Camping",
                &[
                    "Tent",
                    "Sleeping Bag",
                    "Camping Stove",
                    "Lantern",
                    "Camp Chair",
                ],
                (1500, 35000),
            ),
            (
                "Hiking",
                &[
                    "Backpack",
                    "Trekking Poles",
                    "Water Bottle",
                    "Head Torch",
                    "Map Case",
                ],
                (800, 15000),
            ),
            (
                "Garden",
                &["Trowel", "Pruners", "Watering Can", "Planter", "Hose"],
                (500, 8000),
            ),
            (
                "Cycling",
                &["Bike Light", "Helmet", "Lock", "Pump", "Saddle Bag"],
                (800, 12000),
            ),
            (
                "Picnic",
                &[
                    "Picnic Blanket",
                    "Cool Bag",
                    "Flask",
                    "Picnic Set",
                    "Tumbler",
                ],
                (600, 7000),
            ),
        ],
    ),
    (
        "Fashion",
        &[
            (
                "Tops",
                &["T-Shirt", "Shirt", "Sweater", "Hoodie", "Polo"],
                (1200, 9000),
            ),
            (
                "Bottoms",
                &["Jeans", "Chinos", "Shorts", "Joggers", "Skirt"],
                (1800, 11000),
            ),
            (
                "Outerwear",
                &["Rain Jacket", "Parka", "Gilet", "Fleece", "Coat"],
                (3500, 30000),
            ),
            (
                "Shoes",
                &["Trainers", "Boots", "Sandals", "Loafers", "Slippers"],
                (2500, 18000),
            ),
            (
                "Accessories",
                &["Scarf", "Belt", "Cap", "Gloves", "Wallet"],
                (800, 6000),
            ),
        ],
    ),
    (
        "Beauty",
        &[
            (
                "Skincare",
                &["Cleanser", "Moisturiser", "Serum", "Face Mask", "Toner"],
                (600, 6000),
            ),
            (
                "Haircare",
                &[
                    "Shampoo",
                    "Conditioner",
                    "Hair Oil",
                    "Hair Mask",
                    "Styling Cream",
                ],
                (400, 4000),
            ),
            (
                "Makeup",
                &["Lipstick", "Mascara", "Foundation", "Blush", "Eyeliner"],
                (500, 4500),
            ),
            (
                "Fragrance",
                &[
                    "Eau de Parfum",
                    "Eau de Toilette",
                    "Body Mist",
                    "Solid Perfume",
                    "Gift Set",
                ],
                (1500, 12000),
            ),
            (
                "Bath & Body",
                &[
                    "Body Wash",
                    "Body Lotion",
                    "Bath Salts",
                    "Hand Cream",
                    "Scrub",
                ],
                (400, 3500),
            ),
        ],
    ),
    (
        "Electronics",
        &[
            (
                "Audio",
                &["Headphones", "Earbuds", "Speaker", "Soundbar", "Turntable"],
                (2000, 40000),
            ),
            (
                "Phone Accessories",
                &[
                    "Phone Case",
                    "Charger",
                    "Cable",
                    "Power Bank",
                    "Screen Protector",
                ],
                (500, 6000),
            ),
            (
                "Smart Home",
                &["Smart Plug", "Smart Bulb", "Doorbell", "Thermostat", "Hub"],
                (1500, 25000),
            ),
            (
                "Computing",
                &["Keyboard", "Mouse", "Monitor Stand", "USB Hub", "Webcam"],
                (1200, 20000),
            ),
            (
                "Cameras",
                &[
                    "Action Camera",
                    "Tripod",
                    "Memory Card",
                    "Camera Bag",
                    "Lens Cloth",
                ],
                (600, 45000),
            ),
        ],
    ),
    (
        "Sports",
        &[
            (
                "Fitness",
                &[
                    "Yoga Mat",
                    "Dumbbells",
                    "Kettlebell",
                    "Resistance Bands",
                    "Foam Roller",
                ],
                (800, 15000),
            ),
            (
                "Running",
                &[
                    "Running Shoes",
                    "Running Belt",
                    "Running Jacket",
                    "Socks",
                    "Armband",
                ],
                (800, 16000),
            ),
            (
                "Swimming",
                &[
                    "Goggles",
                    "Swim Cap",
                    "Towel Poncho",
                    "Kickboard",
                    "Swimsuit",
                ],
                (500, 6000),
            ),
            (
                "Team Sports",
                &[
                    "Football",
                    "Shin Pads",
                    "Basketball",
                    "Training Cones",
                    "Whistle",
                ],
                (400, 5000),
            ),
            (
                "Racket Sports",
                &[
                    "Tennis Racket",
                    "Tennis Balls",
                    "Badminton Set",
                    "Grip Tape",
                    "Racket Bag",
                ],
                (400, 20000),
            ),
        ],
    ),
    (
        "Pantry",
        &[
            (
                "Tea",
                &["Green Tea", "Black Tea", "Herbal Tea", "Chai", "Matcha"],
                (300, 2500),
            ),
            (
                "Coffee Beans",
                &[
                    "Espresso Beans",
                    "Filter Coffee",
                    "Decaf",
                    "Single Origin",
                    "Cold Brew",
                ],
                (500, 3000),
            ),
            (
                "Snacks",
                &[
                    "Granola",
                    "Crackers",
                    "Nut Mix",
                    "Dark Chocolate",
                    "Dried Fruit",
                ],
                (200, 1500),
            ),
            (
                "Condiments",
                &["Olive Oil", "Hot Sauce", "Balsamic", "Sea Salt", "Honey"],
                (300, 2500),
            ),
            (
                "Baking",
                &["Flour", "Vanilla", "Cocoa", "Yeast", "Sprinkles"],
                (200, 1500),
            ),
        ],
    ),
];

/// Pairs of subcategories whose products are bought together, by (department,
/// subcategory) position. Each also complements itself a little.
const COMPLEMENTS: &[(Pos, Pos)] = &[
    ((0, 2), (7, 1)), // coffee makers - coffee beans
    ((0, 0), (0, 4)), // cookware - utensils
    ((0, 0), (7, 3)), // cookware - condiments
    ((0, 3), (7, 4)), // bakeware - baking
    ((0, 1), (0, 4)), // knives - utensils
    ((1, 0), (1, 3)), // bedding - decor
    ((1, 4), (4, 4)), // bath - bath & body
    ((1, 1), (5, 2)), // lighting - smart home
    ((2, 0), (2, 1)), // camping - hiking
    ((2, 4), (7, 2)), // picnic - snacks
    ((2, 3), (5, 1)), // cycling - phone accessories
    ((3, 0), (3, 1)), // tops - bottoms
    ((3, 2), (3, 4)), // outerwear - accessories
    ((3, 3), (6, 1)), // shoes - running
    ((4, 0), (4, 2)), // skincare - makeup
    ((4, 1), (4, 4)), // haircare - bath & body
    ((5, 0), (5, 1)), // audio - phone accessories
    ((5, 3), (5, 4)), // computing - cameras
    ((6, 0), (6, 1)), // fitness - running
    ((6, 4), (6, 3)), // racket - team sports
    ((7, 0), (7, 2)), // tea - snacks
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Essential",
    "Pro",
    "Compact",
    "Everyday",
    "Premium",
    "Heritage",
    "Nordic",
    "Urban",
    "Coastal",
    "Studio",
    "Signature",
    "Lightweight",
    "Deluxe",
    "Organic",
    "Modern",
];
const COLOURS: &[&str] = &[
    "Black",
    "White",
    "Slate",
    "Sage",
    "Navy",
    "Sand",
    "Terracotta",
    "Olive",
    "Charcoal",
    "Ivory",
    "Ochre",
    "Teal",
];

/// Everything the generator makes.
pub struct DemoShop {
    pub catalog: Catalog,
    /// Customer id and profile, one per demo customer.
    pub customers: Vec<(String, Profile)>,
    pub interactions: Vec<Interaction>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo.currency: {0}")]
    Currency(#[from] crate::domain::money::InvalidCurrency),
    #[error("demo catalog: {0}")]
    Catalog(#[from] crate::domain::catalog::CatalogError),
    #[error("demo generator: {0}")]
    Weights(#[from] rand::distr::weighted::Error),
}

/// The demo product id of the product at `idx`: `p000001` onwards.
pub fn product_id(idx: usize) -> String {
    format!("p{:06}", idx + 1)
}

/// The demo customer id of customer `n`: `c0000001` onwards.
pub fn customer_id(n: usize) -> String {
    format!("c{:07}", n + 1)
}

/// Generates the demo shop; `now` is the Unix time the history ends at.
/// A demo visit's market and device: five countries, three kinds of device.
fn demo_audience(session: u64) -> crate::domain::Audience {
    use crate::domain::{Country, Device};
    const COUNTRIES: [&str; 5] = ["GB", "US", "DE", "FR", "NL"];
    const DEVICES: [Device; 3] = [Device::Desktop, Device::Mobile, Device::App];
    crate::domain::Audience {
        country: Country::parse(COUNTRIES[(session % 5) as usize]).ok(),
        device: Some(DEVICES[(session / 5 % 3) as usize]),
    }
}

pub fn generate(settings: &DemoSettings, now: i64) -> Result<DemoShop, DemoError> {
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let currency = Currency::parse(&settings.currency)?;

    let (categories, cat_meta) = categories();
    let n_cats = categories.len();
    let products = make_products(settings, currency, &cat_meta, &mut rng);
    let popularity: Vec<f64> = products.iter().map(|p| p.1).collect();
    let product_cats: Vec<usize> = products
        .iter()
        .map(|p| usize::from(p.0.product.category))
        .collect();
    let catalog = Catalog::new(categories, products.into_iter().map(|p| p.0).collect())?;

    // Per-category samplers that follow popularity.
    let mut samplers = Vec::with_capacity(n_cats);
    for c in 0..n_cats {
        let members = catalog.category_members(c as CategoryId).to_vec();
        let sampler = if members.is_empty() {
            None
        } else {
            let weights: Vec<f64> = members.iter().map(|&i| popularity[i as usize]).collect();
            Some((members, WeightedIndex::new(weights)?))
        };
        samplers.push(sampler);
    }
    let complements = complement_map(&cat_meta);
    // Each product's bought-together partners: drawn from its complementary categories.
    let partners: Vec<[ProductIdx; 3]> = (0..catalog.len())
        .map(|i| {
            let cat = product_cats[i];
            let mut out = [i as ProductIdx; 3];
            for slot in &mut out {
                let target = complements[cat][rng.random_range(0..complements[cat].len())];
                if let Some((members, w)) = &samplers[target] {
                    *slot = members[w.sample(&mut rng)];
                }
            }
            out
        })
        .collect();

    // Customers: two or three favourite categories each.
    let cat_weights: Vec<f64> = (0..n_cats).map(|c| 1.0 / (1.0 + (c % 7) as f64)).collect();
    let cat_pick = WeightedIndex::new(&cat_weights)?;
    let favourites: Vec<[usize; 3]> = (0..settings.customers)
        .map(|_| {
            [
                cat_pick.sample(&mut rng),
                cat_pick.sample(&mut rng),
                cat_pick.sample(&mut rng),
            ]
        })
        .collect();
    let shop = Shopping {
        samplers: &samplers,
        complements: &complements,
        partners: &partners,
        span: 30 * 86_400,
        now,
    };
    let mut history = History {
        interactions: Vec::with_capacity(settings.events + 1_024),
        session: 0,
        order: 0,
    };
    // Known customers first, until they have made 70% of the events: each orders as
    // often as a Ta-Feng customer, with a browsing visit before each order (so most
    // accounts of a large customer base have no history, as in a real shop).
    let customer_events = settings.events * 7 / 10;
    for (c, favourite) in favourites.iter().enumerate() {
        if history.interactions.len() >= customer_events {
            break;
        }
        let baskets = draw(&TAFENG_BASKETS_PER_CUSTOMER, &mut rng);
        let mut times: Vec<i64> = (0..2 * baskets)
            .map(|_| now - rng.random_range(0..shop.span))
            .collect();
        times.sort_unstable();
        // The cart outlives a visit: what was left in it is bought with the next order.
        let mut cart: Vec<ProductIdx> = Vec::new();
        for (visit, ts) in times.into_iter().enumerate() {
            let cat = favourite[rng.random_range(0..3)];
            let basket = (visit % 2 == 1).then(|| draw(&TAFENG_ITEMS_PER_BASKET, &mut rng));
            shop.visit(
                &mut history,
                &mut rng,
                Some(c as u32),
                cat,
                ts,
                &mut cart,
                basket,
            );
        }
    }
    // Then visitors who never sign in, until the shop has its events; half of the carts
    // they fill are bought.
    while history.interactions.len() < settings.events {
        let cat = cat_pick.sample(&mut rng);
        let ts = now - rng.random_range(0..shop.span);
        let mut cart = Vec::new();
        let buys = rng.random_bool(0.5).then_some(0);
        shop.visit(&mut history, &mut rng, None, cat, ts, &mut cart, buys);
    }
    let mut interactions = history.interactions;
    interactions.sort_by_key(|i| i.ts);

    let mut customers = build_profiles(settings.customers, &catalog, &interactions, &favourites);
    let named = named_customers(&customers, &catalog, now);
    customers.extend(named);
    Ok(DemoShop {
        catalog,
        customers,
        interactions,
    })
}

/// Whose catalog a store holds, as far as the demo can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredShop {
    Empty,
    /// Every product under the demo's `base_url`: the demo wrote it on a first start.
    Demo,
    /// A shop's own products (imported, or from platform webhooks): the demo must not be
    /// loaded over them.
    Own {
        products: usize,
    },
}

/// What the stored `products` are: the demo's when every one's url is under
/// `base_url`, which a real shop's never are.
pub fn stored_shop(products: &[(ProductRecord, i64)], base_url: &str) -> StoredShop {
    if products.is_empty() {
        StoredShop::Empty
    } else if products.iter().all(|(p, _)| p.url.starts_with(base_url)) {
        StoredShop::Demo
    } else {
        StoredShop::Own {
            products: products.len(),
        }
    }
}

/// The demo's named customers, one of each kind the demo ruleset treats apart (a new
/// visitor is any session): a gold-tier VIP, a customer whose last order was four months
/// ago, and a buyer at the demo's B2B company.
pub const VIP: &str = "demo-vip";
pub const LAPSED: &str = "demo-lapsed";
pub const B2B_BUYER: &str = "demo-b2b";
/// The demo's B2B company: its buyers get its contract prices.
pub const COMPANY: &str = "northwind";

/// The named customers, from the generated ones' histories: the VIP is the biggest
/// spender's history, the B2B buyer the next one's; the lapsed customer bought the third
/// one's products in three orders, 200 to 120 days ago, and nothing since.
fn named_customers(
    customers: &[(String, Profile)],
    catalog: &Catalog,
    now: i64,
) -> Vec<(String, Profile)> {
    let mut by_spend: Vec<&(String, Profile)> = customers
        .iter()
        .filter(|(_, p)| p.orders_count > 0)
        .collect();
    by_spend.sort_by_key(|(id, p)| {
        (
            std::cmp::Reverse(p.total_spent.map_or(0, |m| m.amount)),
            id.clone(),
        )
    });
    let attributes =
        |segments: &[&str], tier: Option<&str>, company: Option<&str>| ProfileOp::Attributes {
            // Apart from the generated ops' ids (interactions from 0 up, favourites from
            // u64::MAX down).
            id: 1 << 62,
            at: now,
            segments: Some(segments.iter().map(|s| (*s).to_owned()).collect()),
            loyalty_tier: tier.map(str::to_owned),
            company_id: company.map(str::to_owned),
        };
    let mut named = Vec::new();
    if let Some((_, p)) = by_spend.first() {
        let mut vip = p.clone();
        vip.apply(&attributes(&["vip"], Some("gold"), None));
        named.push((VIP.to_owned(), vip));
    }
    if let Some((_, p)) = by_spend.get(1) {
        let mut buyer = p.clone();
        buyer.apply(&attributes(&["b2b"], None, Some(COMPANY)));
        named.push((B2B_BUYER.to_owned(), buyer));
    }
    let currency = catalog.products().first().map(|p| p.price.currency);
    if let (Some((_, p)), Some(currency)) = (by_spend.get(2), currency) {
        let mut lapsed = Profile::default();
        let bought: Vec<&str> = p.purchased.iter().map(|b| b.product_id.as_str()).collect();
        let mut op = 0u64;
        for (n, lines) in bought
            .chunks(bought.len().div_ceil(3).max(1))
            .take(3)
            .enumerate()
        {
            let at = now - (200 - 40 * n as i64) * 86_400;
            let mut total = 0;
            let mut order_lines = Vec::new();
            for id in lines {
                let Some(idx) = catalog.lookup(id) else {
                    continue;
                };
                let product = catalog.product(idx);
                let category = catalog.categories()[usize::from(product.category)]
                    .handle
                    .to_string();
                op += 1;
                lapsed.apply(&ProfileOp::Event {
                    id: op,
                    at: at - 600,
                    behaviour: Behaviour::View,
                    product_id: Some((*id).to_owned()),
                    category: Some(category.clone()),
                    quantity: 1,
                    price: None,
                    query: None,
                    order: None,
                    counts_order: true,
                });
                total += product.price.amount;
                order_lines.push(((*id).to_owned(), 1, Some(category)));
            }
            op += 1;
            lapsed.apply(&ProfileOp::Order {
                id: op,
                order: 1_000_000 + n as u64,
                at,
                total: Money::new(total, currency),
                lines: order_lines,
            });
        }
        named.push((LAPSED.to_owned(), lapsed));
    }
    named
}

/// The ruleset a demo store starts with (`demo.ruleset`), in the catalog's currency, so
/// that the demo shows every kind of decision: a first order gets 10% off and free
/// shipping over 30.00 (standard shipping 3.99), a customer whose last order is over 90
/// days old is offered 15% to come back, a visitor leaving is offered 5%, gold-tier
/// customers pay 5% less, the B2B company's buyers pay its contract prices (15% under
/// the catalog's, on up to the first 10,000 products), a few products cost less by the three and
/// the ten, home banners speak to each kind of visitor, and no price goes under a 10%
/// margin over cost.
pub fn ruleset(catalog: &Catalog, base_url: &str) -> serde_json::Value {
    const MAX_CONTRACT_ENTRIES: usize = 10_000;
    use serde_json::json;
    let Some(currency) = catalog.products().first().map(|p| p.price.currency) else {
        return json!({});
    };
    let money = |amount: i64| json!({"amount": amount, "currency": currency.as_str()});
    let first_order = json!({"or": [{"eq": ["customer.orders_count", 0]},
                                    {"not": {"exists": "customer.orders_count"}}]});
    let pct = |amount: i64, bps: i64| amount - (amount * bps + 5_000) / 10_000;
    let contract: Vec<serde_json::Value> = catalog
        .products()
        .iter()
        .take(MAX_CONTRACT_ENTRIES)
        .map(|p| json!({"product_id": &*p.id, "amount": pct(p.price.amount, 1_500)}))
        .collect();
    let volume: Vec<serde_json::Value> = catalog
        .products()
        .iter()
        .take(5)
        .map(|p| {
            json!({"product_id": &*p.id, "amount": p.price.amount,
                   "tiers": [{"min_qty": 3, "amount": pct(p.price.amount, 500)},
                             {"min_qty": 10, "amount": pct(p.price.amount, 1_000)}]})
        })
        .collect();
    let banner = |id: &str, title: &str, when: serde_json::Value, priority: i64| {
        json!({"id": id, "placements": ["home"], "title": title,
               "image_url": format!("{base_url}/banners/{id}.jpg"),
               "link_url": format!("{base_url}/pages/{id}"),
               "alt": title, "when": when, "priority": priority})
    };
    json!({
        "guardrails": {"min_margin_bps": 1_000},
        "price_lists": [
            {"id": "gold-members", "kind": "adjustment", "currency": currency.as_str(),
             "scope": {"eq": ["customer.loyalty_tier", "gold"]},
             "adjust": {"percent_off_bps": 500, "parent": null, "categories": []}},
            {"id": format!("{COMPANY}-contract"), "kind": "contract", "currency": currency.as_str(),
             "scope": {"eq": ["customer.company_id", COMPANY]}, "entries": contract},
            {"id": "volume", "kind": "base", "currency": currency.as_str(), "entries": volume}
        ],
        "promotions": [
            {"id": "welcome-10", "title": "10% off your first order",
             "description": "Welcome: 10% off everything in your first order", "class": "order",
             "trigger": "auto", "eligibility": first_order, "value": {"percent_bps": 1_000},
             "group": "welcome"},
            {"id": "welcome-shipping", "title": "Free shipping on your first order over 30.00",
             "description": "Your first order ships free from 30.00", "class": "shipping",
             "trigger": "auto", "eligibility": first_order,
             "condition": {"gte": ["cart.subtotal", money(3_000)]}, "value": {"free_shipping": true}},
            {"id": "come-back", "title": "15% off to welcome you back",
             "description": "It has been a while: 15% off your next order", "class": "order",
             "trigger": "offer", "codes": ["COMEBACK15"],
             "eligibility": {"gte": ["customer.days_since_last_order", 90]},
             "value": {"percent_bps": 1_500}},
            {"id": "before-you-go", "title": "5% off if you order today",
             "description": "Before you go: 5% off your order today", "class": "order",
             "trigger": "offer", "codes": ["STAY5"],
             "eligibility": {"eq": ["session.exit_intent", true]}, "value": {"percent_bps": 500}}
        ],
        "shipping": [{"id": "standard", "amount": money(399)}],
        "content": {"banners": [
            banner("welcome", "New here? 10% off your first order", json!({"eq": ["session.first_visit", true]}), 30),
            banner("vip-preview", "Gold members: the new season first", json!({"in_segment": "vip"}), 40),
            banner("trade-account", "Your trade prices are on", json!({"exists": "customer.company_id"}), 40),
            banner("we-miss-you", "We have missed you: 15% off with COMEBACK15", json!({"gte": ["customer.days_since_last_order", 90]}), 35),
            banner("seasonal", "The season's favourites", json!(true), 10)
        ]}
    })
}

/// Quantiles (the 100 midpoints, (i + 0.5) / 100) of three figures of real shops, from the
/// public datasets the offline evaluation reads (docs/quality.md): product views per
/// session in DIGINETICA (mean 4.85, from 2), orders per customer in Ta-Feng (mean 6.58,
/// from 3) and distinct products per Ta-Feng order (mean 6.27). A draw picks one at
/// random, so the demo's histories have the shape of real ones, long tails cut at the
/// 99.5th percentile.
const DIGINETICA_VIEWS_PER_SESSION: [u8; 100] = [
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5,
    5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 9, 9, 10, 10, 10, 11,
    12, 12, 13, 15, 17, 21,
];
const TAFENG_BASKETS_PER_CUSTOMER: [u8; 100] = [
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6,
    6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 11, 11, 12, 13, 13, 14,
    15, 16, 17, 19, 22, 26, 35,
];
const TAFENG_ITEMS_PER_BASKET: [u8; 100] = [
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6,
    6, 6, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 11, 11, 11, 12, 12, 13, 13, 14, 15,
    16, 16, 18, 19, 21, 23, 27, 35,
];

fn draw(quantiles: &[u8; 100], rng: &mut ChaCha8Rng) -> usize {
    usize::from(quantiles[rng.random_range(0..quantiles.len())])
}

/// What a visit draws from: products by category and popularity, complementary
/// categories, and each product's bought-together partners.
struct Shopping<'a> {
    samplers: &'a [Option<(Vec<ProductIdx>, WeightedIndex<f64>)>],
    complements: &'a [Vec<usize>],
    partners: &'a [[ProductIdx; 3]],
    /// The history covers the `span` seconds before `now`.
    span: i64,
    now: i64,
}

/// The interactions generated so far, and the last session and order numbers.
struct History {
    interactions: Vec<Interaction>,
    session: u64,
    order: u64,
}

impl Shopping<'_> {
    /// One visit starting at `ts` in category `cat`: views as many as a DIGINETICA
    /// session has, wandering into complementary categories; some products (and a
    /// partner of theirs) go into the cart. With `basket`, the visit ends in an order
    /// of the whole cart, topped up from the category to that many products first.
    #[allow(clippy::too_many_arguments)]
    fn visit(
        &self,
        history: &mut History,
        rng: &mut ChaCha8Rng,
        customer: Option<u32>,
        mut cat: usize,
        mut ts: i64,
        cart: &mut Vec<ProductIdx>,
        basket: Option<usize>,
    ) {
        history.session += 1;
        let session = history.session;
        // Where the visit comes from, spread over a few markets and devices.
        let audience = demo_audience(session);
        let at = |product, kind, ts| Interaction {
            session,
            customer,
            order: None,
            product,
            kind,
            ts,
            audience,
        };
        let out = &mut history.interactions;
        for _ in 0..draw(&DIGINETICA_VIEWS_PER_SESSION, rng) {
            if rng.random_bool(0.2) {
                let options = &self.complements[cat];
                cat = options[rng.random_range(0..options.len())];
            }
            let Some((members, w)) = &self.samplers[cat] else {
                continue;
            };
            let product = members[w.sample(rng)];
            out.push(at(product, InteractionKind::View, ts));
            if rng.random_bool(0.15) {
                out.push(at(product, InteractionKind::AddToCart, ts));
                cart.push(product);
                if rng.random_bool(0.4) {
                    let partner = self.partners[product as usize][rng.random_range(0..3)];
                    if partner != product {
                        out.push(at(partner, InteractionKind::AddToCart, ts));
                        cart.push(partner);
                    }
                }
            }
            ts = (ts + rng.random_range(10..120)).min(self.now);
        }
        let Some(size) = basket else { return };
        cart.sort_unstable();
        cart.dedup();
        if let Some((members, w)) = &self.samplers[cat] {
            // A few draws at most: a small category may not hold `size` products.
            for _ in 0..2 * size {
                if cart.len() >= size {
                    break;
                }
                let product = members[w.sample(rng)];
                if let Err(i) = cart.binary_search(&product) {
                    out.push(at(product, InteractionKind::AddToCart, ts));
                    cart.insert(i, product);
                }
            }
        }
        if cart.is_empty() {
            return;
        }
        history.order += 1;
        for product in cart.drain(..) {
            out.push(Interaction {
                order: Some(history.order),
                ..at(product, InteractionKind::Purchase, ts)
            });
        }
    }
}

struct CategoryMeta {
    nouns: &'static [&'static str],
    price: (i64, i64),
    department: usize,
    position: (usize, usize),
}

fn categories() -> (Vec<Category>, Vec<CategoryMeta>) {
    let mut cats = Vec::new();
    let mut meta = Vec::new();
    for (d, (dept, subs)) in DEPARTMENTS.iter().enumerate() {
        for (s, (sub, nouns, price)) in subs.iter().enumerate() {
            cats.push(Category::new(
                &format!("{}/{}", slug(dept), slug(sub)),
                &format!("{dept} > {sub}"),
            ));
            meta.push(CategoryMeta {
                nouns,
                price: *price,
                department: d,
                position: (d, s),
            });
        }
    }
    (cats, meta)
}

/// For each category, the categories its products are bought with (itself included).
fn complement_map(meta: &[CategoryMeta]) -> Vec<Vec<usize>> {
    let index_of = |pos: (usize, usize)| meta.iter().position(|m| m.position == pos);
    let mut out: Vec<Vec<usize>> = (0..meta.len()).map(|c| vec![c]).collect();
    for &(a, b) in COMPLEMENTS {
        if let (Some(a), Some(b)) = (index_of(a), index_of(b)) {
            out[a].push(b);
            out[b].push(a);
        }
    }
    // Categories with no listed complement wander within their department.
    for (c, list) in out.iter_mut().enumerate() {
        if list.len() == 1 {
            let dept = meta[c].department;
            list.extend(
                (0..meta.len())
                    .filter(|&o| o != c && meta[o].department == dept)
                    .take(2),
            );
        }
    }
    out
}

fn make_products(
    settings: &DemoSettings,
    currency: Currency,
    meta: &[CategoryMeta],
    rng: &mut ChaCha8Rng,
) -> Vec<(NewProduct, f64)> {
    let n = settings.products;
    let base = settings.base_url.trim_end_matches('/');
    // Popularity: Zipf over a random permutation of ranks.
    let mut ranks: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        ranks.swap(i, rng.random_range(0..=i));
    }
    (0..n)
        .map(|i| {
            let cat = i % meta.len();
            let m = &meta[cat];
            let noun = m.nouns[rng.random_range(0..m.nouns.len())];
            let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
            let colour = COLOURS[rng.random_range(0..COLOURS.len())];
            let title = format!("{adjective} {noun}, {colour}");
            let id = product_id(i);
            let handle = format!("{}-{}", slug(&title), i + 1);
            // Log-uniform price, rounded to .99 / .49 endings as shops do.
            let (lo, hi) = m.price;
            let u: f64 = rng.random();
            let raw = (lo as f64) * ((hi as f64) / (lo as f64)).powf(u);
            let amount = ((raw / 50.0).round() as i64).max(2) * 50 - 1;
            let cost = amount * rng.random_range(35..=70) / 100;
            let inventory = if rng.random_bool(0.04) {
                0
            } else {
                rng.random_range(1..=500)
            };
            let tags: Box<[Box<str>]> = vec![
                colour.to_lowercase().into_boxed_str(),
                adjective.to_lowercase().into_boxed_str(),
                slug(noun).into_boxed_str(),
            ]
            .into();
            let product = Product {
                url: format!("{base}/products/{handle}").into(),
                image_url: format!("{base}/images/{id}.jpg").into(),
                id: id.into(),
                title: title.into(),
                handle: handle.into(),
                category: cat as CategoryId,
                tags,
                price: Money::new(amount, currency),
                cost: Some(Money::new(cost, currency)),
            };
            let popularity = 1.0 / ((ranks[i] + 10) as f64).powf(1.1);
            (NewProduct { product, inventory }, popularity)
        })
        .collect()
}

fn build_profiles(
    customers: usize,
    catalog: &Catalog,
    interactions: &[Interaction],
    favourites: &[[usize; 3]],
) -> Vec<(String, Profile)> {
    let mut profiles: Vec<Profile> = vec![Profile::default(); customers];
    let cats = catalog.categories();
    // Every customer starts with a light affinity for their favourite categories, as if
    // they had browsed them before the history began.
    for (n, p) in profiles.iter_mut().enumerate() {
        for (k, &c) in favourites[n].iter().enumerate() {
            p.apply(&ProfileOp::Event {
                id: u64::MAX - (n * 3 + k) as u64,
                at: interactions.first().map_or(0, |i| i.ts),
                behaviour: Behaviour::View,
                product_id: None,
                category: Some(cats[c].handle.to_string()),
                quantity: 1,
                price: None,
                query: None,
                order: None,
                counts_order: true,
            });
        }
    }
    for (n, i) in interactions.iter().enumerate() {
        let Some(c) = i.customer else { continue };
        let product = catalog.product(i.product);
        let behaviour = match i.kind {
            InteractionKind::View => Behaviour::View,
            InteractionKind::AddToCart => Behaviour::AddToCart,
            InteractionKind::Purchase => Behaviour::Purchase,
        };
        profiles[c as usize].apply(&ProfileOp::Event {
            id: n as u64,
            at: i.ts,
            behaviour,
            product_id: Some(product.id.to_string()),
            category: Some(cats[usize::from(product.category)].handle.to_string()),
            quantity: 1,
            price: Some(product.price),
            query: None,
            order: i.order,
            counts_order: true,
        });
    }
    profiles
        .into_iter()
        .enumerate()
        .map(|(n, p)| (customer_id(n), p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RecommendSettings;
    use crate::domain::Placement;
    use crate::recommend::engine::{Policy, Query, recommend};
    use crate::recommend::{Models, portable};

    fn small() -> DemoSettings {
        DemoSettings {
            products: 400,
            customers: 100,
            events: 5_000,
            ..DemoSettings::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_shop() {
        let a = generate(&small(), 1_700_000_000).unwrap();
        let b = generate(&small(), 1_700_000_000).unwrap();
        assert_eq!(a.interactions, b.interactions);
        assert_eq!(a.catalog.product(7).title, b.catalog.product(7).title);
        assert_eq!(a.customers, b.customers);
    }

    #[test]
    fn the_shop_has_the_configured_size_and_a_popularity_skew() {
        let shop = generate(&small(), 1_700_000_000).unwrap();
        assert_eq!(shop.catalog.len(), 400);
        assert_eq!(shop.catalog.categories().len(), 40);
        // The generated accounts, then the named customers of each kind.
        assert_eq!(shop.customers.len(), 100 + 3);
        let named = |id: &str| &shop.customers.iter().find(|(c, _)| c == id).unwrap().1;
        assert_eq!(named(VIP).loyalty_tier.as_deref(), Some("gold"));
        assert!(named(VIP).orders_count > 0);
        assert_eq!(named(B2B_BUYER).company_id.as_deref(), Some(COMPANY));
        let lapsed = named(LAPSED);
        assert_eq!(lapsed.orders_count, 3);
        assert_eq!(
            lapsed.last_order_at,
            Some(1_700_000_000 - 120 * 86_400),
            "the last order four months ago"
        );
        assert!(shop.interactions.len() >= 5_000);
        let mut views = vec![0u32; 400];
        for i in &shop.interactions {
            views[i.product as usize] += 1;
        }
        views.sort_unstable_by(|a, b| b.cmp(a));
        let top: u32 = views[..40].iter().sum();
        let all: u32 = views.iter().sum();
        assert!(
            top * 4 > all,
            "top 10% of products should get over 25% of events"
        );
        assert!(
            shop.interactions
                .iter()
                .any(|i| i.kind == InteractionKind::Purchase)
        );
    }

    /// The histories have the shape of real shops' (the quantile tables' means: 4.85
    /// views a session, 6.58 orders a customer, 6.27 products an order), not hundreds
    /// of events and a cart of dozens of lines per customer.
    #[test]
    fn customers_histories_are_as_long_as_real_ones() {
        let settings = DemoSettings {
            products: 2_000,
            customers: 1_000,
            events: 60_000,
            ..DemoSettings::default()
        };
        let shop = generate(&settings, 1_700_000_000).unwrap();
        let mean = |q: &[u8; 100]| q.iter().map(|&x| f64::from(x)).sum::<f64>() / 100.0;
        assert!((mean(&DIGINETICA_VIEWS_PER_SESSION) - 4.85).abs() < 0.05);
        assert!((mean(&TAFENG_BASKETS_PER_CUSTOMER) - 6.58).abs() < 0.05);
        assert!((mean(&TAFENG_ITEMS_PER_BASKET) - 6.27).abs() < 0.05);

        let mut orders: Vec<std::collections::BTreeSet<u64>> = vec![Default::default(); 1_000];
        let mut events = vec![0usize; 1_000];
        for i in &shop.interactions {
            let Some(c) = i.customer else { continue };
            events[c as usize] += 1;
            if let Some(o) = i.order {
                orders[c as usize].insert(o);
            }
        }
        let known: Vec<usize> = (0..1_000).filter(|&c| events[c] > 0).collect();
        // 70% of 60,000 events at about a hundred a customer: some hundreds of customers.
        assert!((200..=700).contains(&known.len()), "{}", known.len());
        let per = |f: &dyn Fn(usize) -> usize| {
            known.iter().map(|&c| f(c)).sum::<usize>() as f64 / known.len() as f64
        };
        let mean_orders = per(&|c| orders[c].len());
        assert!((5.0..=8.0).contains(&mean_orders), "{mean_orders}");
        let mean_events = per(&|c| events[c]);
        assert!((60.0..=160.0).contains(&mean_events), "{mean_events}");
        let profiles: Vec<&Profile> = known.iter().map(|&c| &shop.customers[c].1).collect();
        let cart_lines: usize = profiles.iter().map(|p| p.cart.len()).sum();
        assert!(
            (cart_lines as f64) < 3.0 * profiles.len() as f64,
            "{cart_lines} cart lines for {} customers",
            profiles.len()
        );
        let mut viewed: Vec<usize> = profiles.iter().map(|p| p.recently_viewed.len()).collect();
        viewed.sort_unstable();
        assert!((10..30).contains(&viewed[viewed.len() / 2]), "{viewed:?}");
    }

    #[test]
    fn prices_are_positive_and_costs_below_price() {
        let shop = generate(&small(), 0).unwrap();
        for p in shop.catalog.products() {
            assert!(p.price.amount > 0);
            let cost = p.cost.unwrap().amount;
            assert!(cost > 0 && cost < p.price.amount);
        }
    }

    #[test]
    fn slugs_are_lower_case_words_joined_by_dashes() {
        assert_eq!(slug("Bath & Body"), "bath-body");
        assert_eq!(slug("Classic Skillet, Black"), "classic-skillet-black");
    }

    #[test]
    fn models_survive_the_round_trip_and_answer_alike() {
        let shop = generate(
            &DemoSettings {
                products: 300,
                customers: 20,
                events: 5_000,
                ..DemoSettings::default()
            },
            1_700_000_000,
        )
        .unwrap();
        let models = Models::train(
            &shop.catalog,
            &shop.interactions,
            &RecommendSettings::default(),
        );
        let bytes = portable::encode(&models, &shop.catalog).unwrap();
        let back = portable::decode(&bytes, &shop.catalog).unwrap();
        assert_eq!(back.version, models.version);
        assert!(!models.audience.parts().is_empty());
        for ((s, t), (s2, t2)) in models.audience.parts().iter().zip(back.audience.parts()) {
            assert_eq!((s, *t), (&s2, t2));
        }
        let policy = Policy::default();
        for placement in [Placement::Home, Placement::Product, Placement::Cart] {
            for product in ["p000001", "p000150"] {
                let cart = [crate::recommend::CartItem {
                    product_id: product.into(),
                    quantity: 1,
                }];
                let q = Query {
                    policy: &policy,
                    placement,
                    product: Some(product),
                    category: None,
                    search: None,
                    cart: &cart,
                    candidates: &[],
                    limit: 10,
                    audience: crate::domain::Audience {
                        country: crate::domain::Country::parse("DE").ok(),
                        device: Some(crate::domain::Device::Mobile),
                    },
                    volatile: &crate::recommend::reads::NO_LIVE,
                };
                for profile in [Some(&shop.customers[0].1), None] {
                    let a = recommend(&models, &shop.catalog, &q, profile);
                    let b = recommend(&back, &shop.catalog, &q, profile);
                    assert_eq!(a, b, "{placement:?} {product}");
                }
            }
        }
        assert!(portable::decode(&[9, 0], &shop.catalog).is_err());
        assert!(portable::decode(&[], &shop.catalog).is_err());
    }
}
