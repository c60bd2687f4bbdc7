//! A compact behavioural signal, the input the recommenders learn from: who (session,
//! customer), what (product index), how (view, cart add, purchase) and when.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InteractionKind {
    View,
    AddToCart,
    Purchase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interaction {
    pub session: u64,
    pub customer: Option<u32>,
    /// Purchases of one order share an order number; that is what "bought together" means.
    pub order: Option<u64>,
    pub product: super::ProductIdx,
    pub kind: InteractionKind,
    /// Unix seconds.
    pub ts: i64,
    /// The visitor's country and device, when the event said.
    pub audience: super::Audience,
}
