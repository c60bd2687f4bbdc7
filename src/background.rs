//! Periodic background work that lives as long as its owner: the followers that keep a
//! replica in step with the shared store (catalog and models, ruleset, event log).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Runs `tick` on `owner` every `every` (first at once; late ticks are delayed, not
/// bunched) until the owner is dropped. Only a weak reference is held between ticks, so
/// the task never keeps its owner alive.
pub fn every<T, F, Fut>(owner: &Arc<T>, every: Duration, tick: F)
where
    T: Send + Sync + ?Sized + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let owner = Arc::downgrade(owner);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(this) = owner.upgrade() else {
                return;
            };
            tick(this).await;
        }
    });
}
