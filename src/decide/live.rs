//! The live ruleset of this replica, published through the store and followed from it.
//!
//! Publishing validates, stores the document under its version and moves the store's
//! live pointer in one step; every replica polls the pointer every `rules.sync_ms` and
//! swaps the compiled ruleset in atomically. A request loads the ruleset once, so its
//! whole answer comes from one version.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use super::expr::RuleError;
use super::ruleset::{self, Ruleset};
use crate::store::{CatalogStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the ruleset is invalid")]
    Invalid(Vec<RuleError>),
    #[error("no stored ruleset version {0:?}")]
    UnknownVersion(String),
    #[error("nothing to roll back to")]
    NoPrevious,
    #[error("the live ruleset changed meanwhile (it is now {})", .0.as_deref().unwrap_or("none"))]
    Moved(Option<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored version, compiled off the async workers (a large one takes a while).
pub async fn stored(store: &dyn CatalogStore, version: &str) -> Result<Arc<Ruleset>, PublishError> {
    let bytes = store
        .load_ruleset(version)
        .await?
        .ok_or_else(|| PublishError::UnknownVersion(version.to_owned()))?;
    tokio::task::spawn_blocking(move || {
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Codec(e.to_string()))?;
        ruleset::compile(&doc)
            .map(Arc::new)
            .map_err(PublishError::Invalid)
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("ruleset task: {e}")))?
}

/// The store's live ruleset, compiled (no rules when none was published).
pub async fn stored_live(store: &dyn CatalogStore) -> Result<Arc<Ruleset>, PublishError> {
    match store.live_ruleset().await? {
        Some(version) => stored(store, &version).await,
        None => Ok(Arc::new(Ruleset::empty())),
    }
}

/// One entry of the change log: who changed the live ruleset, when, what, and the part
/// changed before and after.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// Unix seconds.
    pub at: i64,
    /// The admin key's label (`open` on an open service).
    pub who: String,
    /// What was done, as people read it.
    pub what: String,
    /// The live version before (`None`: none was) and after.
    pub from_version: Option<String>,
    pub to_version: String,
    /// The part changed, before and after (`null`: absent, or the whole document).
    #[serde(default)]
    pub before: serde_json::Value,
    #[serde(default)]
    pub after: serde_json::Value,
}

impl Change {
    /// `who`'s change at `at`; its versions are filled in when it is published, the
    /// part changed (before and after) is left out unless set.
    pub fn new(at: i64, who: &str, what: impl Into<String>) -> Self {
        Self {
            at,
            who: who.to_owned(),
            what: what.into(),
            from_version: None,
            to_version: String::new(),
            before: serde_json::Value::Null,
            after: serde_json::Value::Null,
        }
    }
}

/// The version a store pointer names, as a publish expects it (`none` is no ruleset).
fn stored_version(version: &str) -> Option<&str> {
    (version != Ruleset::empty().version).then_some(version)
}

pub struct LiveRules {
    current: ArcSwap<Ruleset>,
    /// Budgeted promotions' usage as of the last look (every `rules.sync_ms`), for offers;
    /// checkouts read the store itself.
    usage: ArcSwap<rustc_hash::FxHashMap<String, (u64, i64)>>,
    store: Arc<dyn CatalogStore>,
    /// Serialises publishes and swaps from this replica.
    turn: tokio::sync::Mutex<()>,
    /// A live version in the store that does not compile here, and why.
    refused: ArcSwapOption<String>,
    problem: ArcSwapOption<String>,
}

impl LiveRules {
    pub fn new(store: Arc<dyn CatalogStore>) -> Self {
        Self {
            current: ArcSwap::from_pointee(Ruleset::empty()),
            usage: ArcSwap::default(),
            store,
            turn: tokio::sync::Mutex::new(()),
            refused: ArcSwapOption::empty(),
            problem: ArcSwapOption::empty(),
        }
    }

    /// The ruleset in force now; hold it for the whole request.
    pub fn load(&self) -> Arc<Ruleset> {
        self.current.load_full()
    }

    /// Compiles a document without publishing it.
    pub fn validate(document: &serde_json::Value) -> Result<Ruleset, Vec<RuleError>> {
        ruleset::compile(document)
    }

    /// Serves `compiled` from now on: a ruleset that compiles here ends any problem.
    fn serve(&self, compiled: Arc<Ruleset>) {
        self.current.store(compiled);
        self.refused.store(None);
        self.problem.store(None);
        metrics::gauge!("vitrine_ruleset_unusable").set(0.0);
    }

    /// Publishes a compiled document only while `expected` is still the live version
    /// (`"none"`: no ruleset yet), and logs `change` with it in one step; the change's
    /// versions are filled in here.
    pub async fn publish_change(
        &self,
        compiled: Ruleset,
        document: &serde_json::Value,
        expected: &str,
        mut change: Change,
    ) -> Result<Arc<Ruleset>, PublishError> {
        let compiled = Arc::new(compiled);
        let bytes = serde_json::to_vec(document).map_err(|e| StoreError::Codec(e.to_string()))?;
        change.from_version = stored_version(expected).map(str::to_owned);
        change.to_version = compiled.version.clone();
        let entry = serde_json::to_vec(&change).map_err(|e| StoreError::Codec(e.to_string()))?;
        let _turn = self.turn.lock().await;
        if !self
            .store
            .publish_ruleset_if(
                &compiled.version,
                &bytes,
                change.at,
                stored_version(expected),
                &entry,
            )
            .await?
        {
            return Err(PublishError::Moved(self.store.live_ruleset().await?));
        }
        self.serve(compiled.clone());
        tracing::info!(ruleset_version = %compiled.version, who = %change.who, what = %change.what, "ruleset published");
        Ok(compiled)
    }

    /// Publishes over whatever is live in the store now, logging who did it (another
    /// publish landing in between is taken as the new base, a few times over).
    pub async fn publish_by(
        &self,
        compiled: Ruleset,
        document: &serde_json::Value,
        who: &str,
        now: i64,
    ) -> Result<Arc<Ruleset>, PublishError> {
        let mut tries = 0;
        loop {
            let live = self.store.live_ruleset().await?;
            let expected = live.unwrap_or_else(|| Ruleset::empty().version);
            let change = Change::new(now, who, "published a ruleset");
            match self
                .publish_change(compiled.clone(), document, &expected, change)
                .await
            {
                Err(PublishError::Moved(_)) if tries < 5 => tries += 1,
                done => return done,
            }
        }
    }

    /// The change log, newest first (entries that do not read are skipped).
    pub async fn changes(&self, limit: usize) -> Result<Vec<Change>, PublishError> {
        Ok(self
            .store
            .changes(limit)
            .await?
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect())
    }

    /// [`LiveRules::rollback`], logged as `who`'s change.
    pub async fn rollback_by(
        &self,
        version: Option<&str>,
        who: &str,
        now: i64,
    ) -> Result<Arc<Ruleset>, PublishError> {
        let from = self.store.live_ruleset().await?;
        let rules = self.rollback(version).await?;
        let change = Change {
            from_version: from,
            to_version: rules.version.clone(),
            ..Change::new(now, who, format!("rolled back to {}", rules.version))
        };
        let entry = serde_json::to_vec(&change).map_err(|e| StoreError::Codec(e.to_string()))?;
        self.store.append_change(&entry).await?;
        Ok(rules)
    }

    /// Makes a stored version live again (`None`: the one published before the live one).
    pub async fn rollback(&self, version: Option<&str>) -> Result<Arc<Ruleset>, PublishError> {
        let _turn = self.turn.lock().await;
        let target = match version {
            Some(v) => v.to_owned(),
            None => {
                // The version published just before the live one (versions are listed
                // newest first): repeated rollbacks walk back, one version each.
                let live = self.store.live_ruleset().await?;
                let versions = self.store.ruleset_versions().await?;
                let next = match versions.iter().position(|(v, _)| Some(v) == live.as_ref()) {
                    Some(i) => i + 1,
                    None => 0,
                };
                versions
                    .into_iter()
                    .nth(next)
                    .map(|(v, _)| v)
                    .ok_or(PublishError::NoPrevious)?
            }
        };
        let compiled = self.fetch(&target).await?;
        if !self.store.activate_ruleset(&target).await? {
            return Err(PublishError::UnknownVersion(target));
        }
        self.current.store(compiled.clone());
        tracing::info!(ruleset_version = %compiled.version, "ruleset rolled back");
        Ok(compiled)
    }

    /// A stored version, compiled off the async workers (a large one takes a while).
    /// The ruleset of `version`: the live one, or a stored one compiled again (a replay
    /// of an older decision).
    pub async fn version(&self, version: &str) -> Result<Arc<Ruleset>, PublishError> {
        let live = self.load();
        if live.version == version {
            return Ok(live);
        }
        if version == Ruleset::empty().version {
            return Ok(Arc::new(Ruleset::empty()));
        }
        self.fetch(version).await
    }

    async fn fetch(&self, version: &str) -> Result<Arc<Ruleset>, PublishError> {
        stored(self.store.as_ref(), version).await
    }

    /// Why the live version in the store is not the one serving, when it is not.
    pub fn problem(&self) -> Option<Arc<String>> {
        self.problem.load_full()
    }

    /// Budgeted promotions' usage as of the last look.
    pub fn usage(&self) -> Arc<rustc_hash::FxHashMap<String, (u64, i64)>> {
        self.usage.load_full()
    }

    /// Counts redemptions this replica just recorded (promotion, discount) into its
    /// view of the budgets at once, rather than at the next look: what it knows is
    /// never less than what it did, and a store reset right after loses nothing.
    pub fn note_redeemed(&self, redeemed: &[(String, i64)]) {
        // Read-copy-update: two checkouts noting at once both count.
        self.usage.rcu(|current| {
            let mut usage = rustc_hash::FxHashMap::clone(current);
            for (id, amount) in redeemed {
                let (uses, spent) = usage.entry(id.clone()).or_default();
                *uses += 1;
                *spent = spent.saturating_add(*amount);
            }
            usage
        });
    }

    /// Reads the budgeted promotions' usage from the store.
    pub async fn refresh_usage(&self) -> Result<(), PublishError> {
        let rules = self.load();
        let ids: Vec<String> = rules
            .promotions
            .iter()
            .filter(|p| p.budget != super::promo::Budget::default())
            .map(|p| p.id.clone())
            .collect();
        let used = if ids.is_empty() {
            Vec::new()
        } else {
            self.store.promotion_usage(&ids).await?
        };
        // Usage only grows, so a lower reading is a store that lost its data (a reset):
        // what this replica knew stays, and is written back by the restore.
        let known = self.usage.load();
        self.usage.store(Arc::new(
            ids.into_iter()
                .zip(used)
                .map(|(id, (uses, spent))| {
                    let (u, s) = known.get(&id).copied().unwrap_or_default();
                    (id, (uses.max(u), spent.max(s)))
                })
                .collect(),
        ));
        Ok(())
    }

    /// Stored versions, newest first, with when each was published.
    pub async fn versions(&self) -> Result<Vec<(String, i64)>, PublishError> {
        Ok(self.store.ruleset_versions().await?)
    }

    /// Takes the store's live version when it differs from this replica's; true when it
    /// swapped. A live version that does not compile here (stored by an older release,
    /// past a limit this one sets) is not taken: the newest stored version that compiles
    /// serves instead (at start-up; later, the one serving stays), and the problem is
    /// reported (log, `vitrine_ruleset_unusable`, `/readyz`).
    pub async fn sync(&self) -> Result<bool, PublishError> {
        let Some(live) = self.store.live_ruleset().await? else {
            return Ok(false);
        };
        let serving = self.current.load().version.clone();
        if serving == live || self.refused.load().as_deref() == Some(&live) {
            return Ok(false);
        }
        let _turn = self.turn.lock().await;
        match self.fetch(&live).await {
            Ok(compiled) => {
                self.serve(compiled);
                tracing::info!(ruleset_version = %live, "ruleset swapped in");
                Ok(true)
            }
            Err(PublishError::Invalid(errors)) => {
                let first = errors
                    .first()
                    .map_or_else(String::new, |e| format!("{}: {}", e.path, e.message));
                let fallback = if serving == Ruleset::empty().version {
                    self.newest_that_compiles(&live).await
                } else {
                    None
                };
                let serving = match fallback {
                    Some(compiled) => {
                        let version = compiled.version.clone();
                        self.current.store(compiled);
                        version
                    }
                    None => serving,
                };
                let problem = format!(
                    "the live ruleset {live} does not compile here ({} problems, first {first}); serving {serving}",
                    errors.len()
                );
                tracing::error!(ruleset_version = %live, serving = %serving, problems = errors.len(), first = %first, "live ruleset refused");
                metrics::gauge!("vitrine_ruleset_unusable").set(1.0);
                self.refused.store(Some(Arc::new(live)));
                self.problem.store(Some(Arc::new(problem)));
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The newest stored version other than `except` that compiles here.
    async fn newest_that_compiles(&self, except: &str) -> Option<Arc<Ruleset>> {
        let versions = self.store.ruleset_versions().await.ok()?;
        for (version, _) in versions.into_iter().filter(|(v, _)| v != except) {
            if let Ok(compiled) = self.fetch(&version).await {
                return Some(compiled);
            }
        }
        None
    }

    /// Keeps following the store in the background.
    pub fn spawn_follower(self: &Arc<Self>, every: Duration) {
        crate::background::every(self, every, |rules: Arc<Self>| async move {
            if let Err(e) = rules.sync().await {
                tracing::warn!(error = %e, "ruleset sync failed; retrying");
            }
            if let Err(e) = rules.refresh_usage().await {
                tracing::debug!(error = %e, "promotion usage not refreshed");
            }
        });
    }
}
