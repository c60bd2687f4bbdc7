//! A circuit breaker in front of the profile store, so an outage costs requests
//! nothing: after `failures` consecutive failed calls (errors, or calls abandoned at the
//! request's deadline) the circuit opens, and every call fails at once with
//! [`StoreError::Unavailable`] instead of waiting for the store. Requests then answer
//! from L1 or the fallback, and events go to the journal, at full speed.
//!
//! While open, a background probe pings the store after the open interval (starting at
//! `open_for`, doubling up to [`MAX_OPEN`] while the store stays down); the first ping
//! that answers closes the circuit. No request is ever used as a probe.
//! `vitrine_store_circuit_open` is 1 while it is open.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{Applied, ProfileKey, ProfileStore, StoreError};
use crate::domain::Profile;
use crate::domain::profile::ProfileOp;

/// The longest the circuit stays open between probes.
pub const MAX_OPEN: Duration = Duration::from_secs(5);
/// How long a probe waits for the store's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

struct State {
    inner: Arc<dyn ProfileStore>,
    failures: u32,
    open_for: Duration,
    /// Failed calls in a row.
    consecutive: AtomicU32,
    open: AtomicBool,
}

pub struct Breaker {
    state: Arc<State>,
}

impl Breaker {
    pub fn new(inner: Arc<dyn ProfileStore>, failures: u32, open_for: Duration) -> Self {
        metrics::gauge!("vitrine_store_circuit_open").set(0.0);
        Self {
            state: Arc::new(State {
                inner,
                failures: failures.max(1),
                open_for,
                consecutive: AtomicU32::new(0),
                open: AtomicBool::new(false),
            }),
        }
    }

    pub fn is_open(&self) -> bool {
        self.state.open.load(Ordering::Acquire)
    }

    fn admit(&self) -> Result<Call<'_>, StoreError> {
        if self.is_open() {
            return Err(StoreError::Unavailable(
                "circuit open: the store failed repeatedly; probing it in the background".into(),
            ));
        }
        Ok(Call {
            state: &self.state,
            done: false,
        })
    }

    /// Runs one call through the breaker.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let mut call = self.admit()?;
        let result = f.await;
        call.done = true;
        match &result {
            Err(StoreError::Unavailable(_)) => self.state.failed(),
            Ok(_) | Err(StoreError::Codec(_) | StoreError::Contention(_)) => {
                self.state.consecutive.store(0, Ordering::Release);
            }
        }
        result
    }
}

/// One admitted call; abandoned (dropped before it finished, as when the request's
/// deadline passes) it counts as a failure: the store is too slow to be waited for.
struct Call<'a> {
    state: &'a Arc<State>,
    done: bool,
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.state.failed();
        }
    }
}

impl State {
    fn failed(self: &Arc<Self>) {
        let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.failures
            && self
                .open
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            metrics::gauge!("vitrine_store_circuit_open").set(1.0);
            tracing::warn!(
                failures = n,
                "store circuit open: calls fail at once until a probe answers"
            );
            // Opened inside a call, so on the runtime.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(Arc::clone(self).probe());
            }
        }
    }

    /// Pings the store after each open interval (doubling while it stays down) and
    /// closes the circuit when it answers.
    async fn probe(self: Arc<Self>) {
        let mut wait = self.open_for;
        loop {
            tokio::time::sleep(wait).await;
            let answered = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, self.inner.ping()).await,
                Ok(Ok(()))
            );
            if answered {
                self.consecutive.store(0, Ordering::Release);
                self.open.store(false, Ordering::Release);
                metrics::gauge!("vitrine_store_circuit_open").set(0.0);
                tracing::info!("store answers again: circuit closed");
                return;
            }
            wait = (wait * 2).min(MAX_OPEN);
        }
    }
}

#[async_trait]
impl ProfileStore for Breaker {
    fn backend(&self) -> &'static str {
        self.state.inner.backend()
    }

    async fn get(&self, key: &ProfileKey) -> Result<Option<Arc<Profile>>, StoreError> {
        self.call(self.state.inner.get(key)).await
    }

    async fn apply(&self, key: &ProfileKey, ops: &[ProfileOp]) -> Result<Applied, StoreError> {
        self.call(self.state.inner.apply(key, ops)).await
    }

    async fn apply_batch(
        &self,
        batch: &[(ProfileKey, Vec<ProfileOp>)],
    ) -> Vec<Result<Applied, StoreError>> {
        let mut call = match self.admit() {
            Ok(call) => call,
            Err(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
        };
        let results = self.state.inner.apply_batch(batch).await;
        call.done = true;
        if results
            .iter()
            .any(|r| matches!(r, Err(StoreError::Unavailable(_))))
        {
            self.state.failed();
        } else {
            self.state.consecutive.store(0, Ordering::Release);
        }
        results
    }

    async fn delete(&self, key: &ProfileKey) -> Result<bool, StoreError> {
        self.call(self.state.inner.delete(key)).await
    }

    async fn erase_all(&self) -> Result<u64, StoreError> {
        self.call(self.state.inner.erase_all()).await
    }

    async fn seed(&self, profiles: Vec<(ProfileKey, Profile)>) -> Result<bool, StoreError> {
        self.state.inner.seed(profiles).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.call(self.state.inner.ping()).await
    }

    async fn sweep(&self) -> Result<u64, StoreError> {
        // Background upkeep, not a sign of the store's health (on Redis it does not even
        // call the store): it neither opens nor closes the circuit.
        if self.is_open() {
            return Ok(0);
        }
        self.state.inner.sweep().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// A store that fails while `down` is set.
    struct Flaky {
        inner: MemoryStore,
        down: AtomicBool,
        calls: AtomicU32,
    }

    #[async_trait]
    impl ProfileStore for Flaky {
        fn backend(&self) -> &'static str {
            "flaky"
        }
        async fn get(&self, key: &ProfileKey) -> Result<Option<Arc<Profile>>, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down".into()));
            }
            self.inner.get(key).await
        }
        async fn apply(&self, key: &ProfileKey, ops: &[ProfileOp]) -> Result<Applied, StoreError> {
            self.inner.apply(key, ops).await
        }
        async fn delete(&self, key: &ProfileKey) -> Result<bool, StoreError> {
            self.inner.delete(key).await
        }
        async fn erase_all(&self) -> Result<u64, StoreError> {
            self.inner.erase_all().await
        }
        async fn seed(&self, p: Vec<(ProfileKey, Profile)>) -> Result<bool, StoreError> {
            self.inner.seed(p).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down".into()));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn it_opens_after_repeated_failures_fails_fast_and_closes_when_a_probe_answers() {
        let flaky = Arc::new(Flaky {
            inner: MemoryStore::new(),
            down: AtomicBool::new(true),
            calls: AtomicU32::new(0),
        });
        let breaker = Breaker::new(flaky.clone(), 3, Duration::from_millis(20));
        let key = ProfileKey([1; 16]);
        for _ in 0..3 {
            assert!(breaker.get(&key).await.is_err());
        }
        assert!(breaker.is_open());
        // Open: calls no longer reach the store.
        for _ in 0..100 {
            assert!(breaker.get(&key).await.is_err());
        }
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        flaky.down.store(false, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while breaker.is_open() {
            assert!(tokio::time::Instant::now() < deadline, "never closed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(breaker.get(&key).await.unwrap(), None);
    }

    #[tokio::test]
    async fn calls_abandoned_at_the_deadline_count_as_failures() {
        struct Hanging;
        #[async_trait]
        impl ProfileStore for Hanging {
            fn backend(&self) -> &'static str {
                "hanging"
            }
            async fn get(&self, _: &ProfileKey) -> Result<Option<Arc<Profile>>, StoreError> {
                std::future::pending().await
            }
            async fn apply(&self, _: &ProfileKey, _: &[ProfileOp]) -> Result<Applied, StoreError> {
                std::future::pending().await
            }
            async fn delete(&self, _: &ProfileKey) -> Result<bool, StoreError> {
                std::future::pending().await
            }
            async fn erase_all(&self) -> Result<u64, StoreError> {
                std::future::pending().await
            }
            async fn seed(&self, _: Vec<(ProfileKey, Profile)>) -> Result<bool, StoreError> {
                Ok(false)
            }
            async fn ping(&self) -> Result<(), StoreError> {
                std::future::pending().await
            }
        }
        let breaker = Breaker::new(Arc::new(Hanging), 2, Duration::from_secs(60));
        let key = ProfileKey([2; 16]);
        for _ in 0..2 {
            let r = tokio::time::timeout(Duration::from_millis(10), breaker.get(&key)).await;
            assert!(r.is_err(), "timed out");
        }
        assert!(breaker.is_open());
        assert!(
            breaker.get(&key).await.is_err(),
            "at once, not after a wait"
        );
    }
}
