//! Redis as the shared profile store for replicas.
//!
//! Layout (all under the configured prefix): `{prefix}p:<16-byte keyed hash>` is a plain
//! string holding the encoded profile, with a TTL set on every write so memory stays
//! bounded. (A string, not a hash with a version field: a hash whose value is over 64
//! bytes leaves Redis's compact encoding and costs about 200 bytes more per profile.)
//! Updates are optimistic compare-and-set: read the value, apply the ops in this
//! process, then a Lua script writes only if the value is still byte-for-byte the one
//! read; on a conflict the ops are re-applied to the fresh profile. Equal bytes are an
//! equal profile, so the comparison is exact without a version counter. Two replicas
//! updating one profile at once therefore never lose an update, and no lock is ever
//! held in Redis. A profile remembers the ops applied to it in its own ring (the last
//! [`APPLIED_WINDOW`]); the ones that fall off the ring within the op window go to
//! `{prefix}p:<hash>:f` beside it, a sorted set of their 4-byte fingerprints scored by
//! when each may be forgotten, written by the same script that writes the profile,
//! pruned now and then and expiring with the window. Most profiles never fill their
//! ring, so they have no set, and an apply to one is a GET and the script; the set is
//! read only for a profile whose ring is full. A batch (events, webhooks, imports) takes
//! two round trips for up to 500 profiles: one MGET, then one pipeline of scripts.
//! (`{prefix}p:<hash>:o`, the 8-byte op ids of every op that earlier versions kept, is
//! read as well until it expires.) Erasing a profile deletes all three.
//!
//! The catalog lives in `{prefix}catalog:products` (a hash of product id -> MessagePack
//! record), `{prefix}catalog:stock` (product id -> level) and `{prefix}catalog:version`
//! (a counter), written together in one MULTI. These keys have no TTL: their size is
//! bounded by the catalog, and a catalog must not expire. Platform inventory lives in
//! `{prefix}inv:items` (item -> product) and `{prefix}inv:p:<product>` (`item/location`
//! -> available), each change one Lua script on one key.
//!
//! The event log is the stream `{prefix}events`, trimmed to about `events.log_keep`
//! entries on every append; each entry is one field `e` holding the MessagePack
//! [`LogEntry`], and the stream ids are the log's cursors.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{
    Applied, CatalogChange, CatalogStore, EventLog, LogEntry, ProfileKey, ProfileStore, StoreError,
    StoredDecision, apply_ops, codec, record_result,
};
use crate::domain::Profile;
use crate::domain::catalog::ProductRecord;
use crate::domain::profile::{APPLIED_WINDOW, ProfileOp, fingerprint};
use crate::domain::time::unix_now;

/// KEYS: the profile, the fingerprints of ops fallen off its ring; ARGV: the value
/// read, the new value, the profile's TTL (ms), now (s), when the fallen ops may be
/// forgotten (s), the window (ms), whether to drop forgotten ones now (`1`), then the
/// fingerprints that fell off the ring. Writes nothing (0) when the profile changed
/// since it was read. Only this script writes either key, in one step, and every write
/// changes the value (its ring), so an unchanged value means that what was read of the
/// set beside it still holds.
const CAS: &str = r"
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if #ARGV >= 8 then
  local members = {}
  for i = 8, #ARGV do
    members[#members + 1] = ARGV[5]
    members[#members + 1] = ARGV[i]
    if #members >= 200 then
      redis.call('ZADD', KEYS[2], unpack(members))
      members = {}
    end
  end
  if #members > 0 then redis.call('ZADD', KEYS[2], unpack(members)) end
  if ARGV[7] == '1' then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[4])
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return 1
";
/// [`CAS`] for many profiles at once, where no op falls off a ring. KEYS: the profiles;
/// ARGV: their TTL (ms), then for each profile the value read and the new value.
/// Returns, per profile, whether it was written (1) or had changed since it was read (0).
const CAS_MANY: &str = r"
local written = {}
for i = 1, #KEYS do
  if (redis.call('GET', KEYS[i]) or '') == ARGV[2 * i] then
    redis.call('SET', KEYS[i], ARGV[2 * i + 1], 'PX', ARGV[1])
    written[i] = 1
  else
    written[i] = 0
  end
end
return written
";
/// Profiles one [`CAS_MANY`] call writes: Redis runs a script to its end, so this bounds
/// how long other clients wait behind one (about 0.2 ms).
const CAS_MANY_KEYS: usize = 100;
const MAX_ATTEMPTS: u32 = 64;
/// Replaces an inventory item's levels of one product with its all-locations total.
/// KEYS[1]: the product's levels hash; ARGV: the item's field prefix, the field, the total.
const LINK_ITEM: &str = r"
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, string.len(ARGV[1])) == ARGV[1] then redis.call('HDEL', KEYS[1], field) end
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) end
return 1
";
/// Sets one level and sums the product's levels. KEYS[1]: the product's levels hash;
/// ARGV: the item's all-locations field, the level's field, the level.
const SET_LEVEL: &str = r"
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  local n = tonumber(v)
  if n and n > 0 then total = total + n end
end
return total
";
/// Stores a ruleset and makes it live. KEYS: the document, the order (sorted set by
/// publish sequence), the live pointer, the sequence, the publish times (hash), the
/// change log (list, newest first); ARGV: the version, the document, the time, the
/// history kept, the documents' key prefix, '1' to publish only while the live version is
/// the next argument ('' none), the change to log ('' none) and the entries kept. All
/// keys share the `{rules}` hash tag, so the script also runs on Redis Cluster. Returns
/// 0 when the live version was not the one expected (nothing written).
const PUBLISH_RULESET: &str = r"
if ARGV[6] == '1' and (redis.call('GET', KEYS[3]) or '') ~= ARGV[7] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[3])
redis.call('SET', KEYS[3], ARGV[1])
local keep = tonumber(ARGV[4])
local n = redis.call('ZCARD', KEYS[2])
if n > keep then
  for _, v in ipairs(redis.call('ZRANGE', KEYS[2], 0, n - keep - 1)) do
    redis.call('DEL', ARGV[5] .. v)
    redis.call('ZREM', KEYS[2], v)
    redis.call('HDEL', KEYS[5], v)
  end
end
if ARGV[8] ~= '' then
  redis.call('LPUSH', KEYS[6], ARGV[8])
  redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[9]) - 1)
end
return 1
";
/// Records one order's redemptions if every one fits its limits. KEYS: the usage hash
/// (`<id>:uses`, `<id>:spent`), the order's marker, the customers' uses hash; ARGV: the
/// count, then per redemption id, amount, max uses, max spend (-1: none), the customer's
/// field ('' for none), max uses per customer (-1: none), then the marker's TTL in
/// seconds. Returns -2 recorded, -1 already recorded, else the index over its limit.
const REDEEM: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local id = ARGV[2 + i * 6]
  local amount = tonumber(ARGV[3 + i * 6])
  local max_uses = tonumber(ARGV[4 + i * 6])
  local max_spend = tonumber(ARGV[5 + i * 6])
  local customer = ARGV[6 + i * 6]
  local max_customer = tonumber(ARGV[7 + i * 6])
  local uses = tonumber(redis.call('HGET', KEYS[1], id .. ':uses') or '0')
  local spent = tonumber(redis.call('HGET', KEYS[1], id .. ':spent') or '0')
  if (max_uses >= 0 and uses >= max_uses) or (max_spend >= 0 and spent + amount > max_spend) then
    return i
  end
  if customer ~= '' and max_customer >= 0
    and tonumber(redis.call('HGET', KEYS[3], customer) or '0') >= max_customer then
    return i
  end
end
for i = 0, n - 1 do
  redis.call('HINCRBY', KEYS[1], ARGV[2 + i * 6] .. ':uses', 1)
  redis.call('HINCRBY', KEYS[1], ARGV[2 + i * 6] .. ':spent', ARGV[3 + i * 6])
  if ARGV[6 + i * 6] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[6 + i * 6], 1) end
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2 + n * 6])
return -2
";
/// Raises each promotion's uses and spend to at least the given. KEYS: the usage hash;
/// ARGV: id, uses, spent, per promotion.
const RESTORE_USAGE: &str = r"
for i = 1, #ARGV, 3 do
  for j, part in ipairs({':uses', ':spent'}) do
    local field = ARGV[i] .. part
    local given = tonumber(ARGV[i + j])
    if given > tonumber(redis.call('HGET', KEYS[1], field) or '0') then
      redis.call('HSET', KEYS[1], field, ARGV[i + j])
    end
  end
end
return 1
";
/// How long an order's redemptions are remembered (a repeated commit within it changes
/// nothing).
const REDEEMED_TTL_S: u64 = 90 * 86_400;
/// KEYS: the epoch; ARGV: the value expected ('' for none), the new value, its TTL in
/// ms (0: none). Returns 1 when it was set.
const SWAP_EPOCH: &str = r"
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
";
/// KEYS: the document, the live pointer; ARGV: the version.
const ACTIVATE_RULESET: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
";
/// Applies to one key from this process queue on one of these async locks, so CAS
/// conflicts only come from other replicas. An async (tokio) mutex is the right tool
/// here: it is held across the Redis round trips, which a std mutex must never be.
const STRIPES: usize = 256;
/// Profiles a batch reads with one MGET and writes with one pipeline.
const PIPELINED: usize = 500;

#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub url: String,
    pub key_prefix: String,
    pub retention: super::Retention,
    pub timeout: Duration,
}

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Vec<u8>,
    ttl_ms: u64,
    window_s: i64,
    cas: Arc<redis::Script>,
    cas_many: Arc<redis::Script>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// The minute before which the decision id hashes are gone (0: not swept yet).
    decisions_swept: std::sync::atomic::AtomicU64,
    /// The minute of the last sweep.
    decisions_swept_at: std::sync::atomic::AtomicU64,
}

fn unavailable(e: &redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

impl RedisStore {
    pub async fn connect(options: &RedisOptions) -> Result<Self, StoreError> {
        let client = redis::Client::open(options.url.as_str()).map_err(|e| unavailable(&e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(Self {
            conn,
            prefix: options.key_prefix.as_bytes().to_vec(),
            ttl_ms: u64::try_from(options.retention.profile_ttl.as_millis()).unwrap_or(u64::MAX),
            window_s: options.retention.op_window_s(),
            cas: Arc::new(redis::Script::new(CAS)),
            cas_many: Arc::new(redis::Script::new(CAS_MANY)),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            decisions_swept: std::sync::atomic::AtomicU64::new(0),
            decisions_swept_at: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn redis_key(&self, key: &ProfileKey) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 18);
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(b"p:");
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// `{prefix}p:<hash>:<suffix>`: a set beside the profile (`f`: fingerprints of ops
    /// fallen off its ring; `o`: op ids, as earlier versions kept them).
    fn beside(&self, key: &ProfileKey, suffix: u8) -> Vec<u8> {
        let mut k = self.redis_key(key);
        k.extend_from_slice(&[b':', suffix]);
        k
    }

    /// For each op, whether it fell off the profile's ring within the window: one
    /// round trip, for a profile whose ring is full.
    async fn fallen(
        &self,
        key: &ProfileKey,
        ops: &[ProfileOp],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZMSCORE").arg(self.beside(key, b'f'));
        for op in ops {
            pipe.arg(&fingerprint(op.id()).to_le_bytes()[..]);
        }
        pipe.cmd("ZMSCORE").arg(self.beside(key, b'o'));
        for op in ops {
            pipe.arg(&op.id().to_le_bytes()[..]);
        }
        let mut conn = self.conn.clone();
        let (fallen, ids): (Vec<Option<f64>>, Vec<Option<f64>>) = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let live = |s: &Option<f64>| s.is_some_and(|until| until >= now as f64);
        Ok(fallen
            .iter()
            .zip(&ids)
            .map(|(f, o)| live(f) || live(o))
            .collect())
    }

    /// The script that writes `profile` over the value `read` (its ring was `before`)
    /// only if that value is still there.
    fn write_if_unchanged<'a>(
        &'a self,
        key: &ProfileKey,
        read: &[u8],
        before: &[u32],
        profile: &Profile,
        now: i64,
    ) -> Result<redis::ScriptInvocation<'a>, StoreError> {
        let fallen = fell_off(before, &profile.applied);
        let mut script = self.cas.key(self.redis_key(key));
        script
            .key(self.beside(key, b'f'))
            .arg(read)
            .arg(codec::encode(profile)?)
            .arg(self.ttl_ms)
            .arg(now)
            .arg(now.saturating_add(self.window_s))
            .arg(self.window_s.saturating_mul(1000))
            .arg(trim_now(fallen));
        for f in fallen {
            script.arg(&f.to_le_bytes()[..]);
        }
        Ok(script)
    }

    /// Applies a chunk of a batch with two round trips in all: one MGET of every
    /// profile, then one pipeline of [`CAS_MANY`] calls. Sets the slots it settles;
    /// leaves to [`ProfileStore::apply`] a key named twice, a profile whose full ring needs
    /// the set beside it read or whose ops push some off its ring, and a write that met
    /// another replica's.
    async fn apply_pipelined(
        &self,
        chunk: &[(ProfileKey, Vec<ProfileOp>)],
        out: &mut [Option<Result<Applied, StoreError>>],
    ) -> Result<(), StoreError> {
        let mut seen = rustc_hash::FxHashSet::default();
        let once: Vec<bool> = chunk.iter().map(|(key, _)| seen.insert(*key)).collect();
        let mut mget = redis::cmd("MGET");
        for (key, _) in chunk {
            mget.arg(self.redis_key(key));
        }
        let mut conn = self.conn.clone();
        let values: Vec<Option<Vec<u8>>> = mget
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut written = Vec::new();
        let mut writes = Vec::new();
        for (i, ((key, ops), value)) in chunk.iter().zip(values).enumerate() {
            if !once[i] {
                continue;
            }
            let (read, mut profile) = match decoded(value) {
                Ok((read, current)) => (read, current.unwrap_or_default()),
                Err(e) => {
                    out[i] = Some(Err(e));
                    continue;
                }
            };
            if profile.applied.len() >= APPLIED_WINDOW {
                continue;
            }
            // Ops fall off a ring from its front: what it started with is all that can.
            let first = profile.applied.first().copied();
            let fresh = apply_ops(&mut profile, ops, &[]);
            if !fresh.contains(&true) {
                out[i] = Some(Ok(Applied {
                    profile: Arc::new(profile),
                    fresh,
                }));
            } else if fell_off(first.as_slice(), &profile.applied).is_empty() {
                writes.push((self.redis_key(key), read, codec::encode(&profile)?));
                written.push((i, profile, fresh));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        // Loaded first, so a Redis that forgot the script still runs the writes.
        pipe.cmd("SCRIPT").arg("LOAD").arg(CAS_MANY).ignore();
        for group in writes.chunks(CAS_MANY_KEYS) {
            let mut script = self.cas_many.prepare_invoke();
            script.arg(self.ttl_ms);
            for (key, read, blob) in group {
                script.key(key).arg(read).arg(blob);
            }
            pipe.invoke_script(&script);
        }
        let results: Vec<Vec<i64>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        for ((i, profile, fresh), result) in written.into_iter().zip(results.into_iter().flatten())
        {
            if result == 1 {
                out[i] = Some(Ok(Applied {
                    profile: Arc::new(profile),
                    fresh,
                }));
            } else {
                metrics::counter!("vitrine_store_cas_conflicts_total").increment(1);
            }
        }
        Ok(())
    }

    /// The stored bytes (empty when there is none) and the profile they encode.
    async fn read(&self, key: &[u8]) -> Result<(Vec<u8>, Option<Profile>), StoreError> {
        let mut conn = self.conn.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        decoded(value)
    }
}

/// A stored value as bytes (empty when there is none) and the profile they encode.
fn decoded(value: Option<Vec<u8>>) -> Result<(Vec<u8>, Option<Profile>), StoreError> {
    let profile = value.as_deref().map(codec::decode).transpose()?;
    Ok((value.unwrap_or_default(), profile))
}

/// The fingerprints that fell off a ring: those before the ring's new first one.
fn fell_off<'a>(before: &'a [u32], after: &[u32]) -> &'a [u32] {
    let kept = after
        .first()
        .and_then(|first| before.iter().position(|f| f == first))
        .unwrap_or(before.len());
    &before[..kept]
}

/// Whether an apply drops forgotten fingerprints: about one apply in eight that adds
/// some (by their random bits, so replicas need not agree on a count).
fn trim_now(fallen: &[u32]) -> u8 {
    u8::from(fallen.iter().any(|f| f & 7 == 0))
}

impl RedisStore {
    /// `{prefix}{promo}:<part>`: promotion budgets, in one hash slot.
    fn promo_key(&self, part: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"{promo}:");
        k.extend_from_slice(part.as_bytes());
        k
    }

    /// `{prefix}{rules}:<part>`: every ruleset key in one hash slot.
    /// Publishes a ruleset (while the live version is `expected`, when given; `""`:
    /// none live) and logs `change` (when not empty), in one script.
    async fn publish(
        &self,
        version: &str,
        document: &[u8],
        published_at: i64,
        expected: Option<&str>,
        change: &[u8],
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        redis::Script::new(PUBLISH_RULESET)
            .key(self.rules_key(&format!("doc:{version}")))
            .key(self.rules_key("order"))
            .key(self.rules_key("live"))
            .key(self.rules_key("seq"))
            .key(self.rules_key("published"))
            .key(self.rules_key("changes"))
            .arg(version)
            .arg(document)
            .arg(published_at)
            .arg(super::RULESET_HISTORY)
            .arg(self.rules_key("doc:"))
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or(""))
            .arg(change)
            .arg(super::CHANGE_HISTORY)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|n| n == 1)
            .map_err(|e| unavailable(&e))
    }

    /// A revoked console session's key (the session id is random, not a person's).
    fn console_key(&self, session: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"console:revoked:");
        k.extend_from_slice(session.as_bytes());
        k
    }

    fn rules_key(&self, part: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"{rules}:");
        k.extend_from_slice(part.as_bytes());
        k
    }

    /// `{prefix}epoch`: see [`CatalogStore::epoch`].
    fn epoch_key(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"epoch");
        k
    }

    fn log_key(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"events");
        k
    }
}

/// A stream range reply: (id, [field, value, ...]) per entry.
type StreamEntries = Vec<(String, Vec<Vec<u8>>)>;

impl RedisStore {
    /// `{prefix}decisions`: the decision log's stream.
    fn decisions_key(&self) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"decisions");
        k
    }

    /// `{prefix}deci:<minute>`: a hash of the decisions whose ids (UUIDv7s) were made
    /// in that minute, each pointing at its stream entry until it expires
    /// (`<entry>|<expires, Unix ms>`): one `HSET` an append for all of a minute's
    /// decisions rather than one key each.
    fn decision_index_key(&self, id: &[u8; 16]) -> Vec<u8> {
        self.decision_minute_key(super::decisions::id_ms(id) / 60_000)
    }

    fn decision_minute_key(&self, minute: u64) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"deci:");
        k.extend_from_slice(minute.to_string().as_bytes());
        k
    }

    /// `{prefix}x:<experiment>`: an experiment's counts, one hash: fields
    /// `<variant>\n<count>`, and `<variant>\nrevenue\n<currency>` and
    /// `<variant>\nsquares\n<currency>` (a float) per currency.
    fn tally_key(&self, experiment: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"x:");
        k.extend_from_slice(experiment.as_bytes());
        k
    }

    /// `{prefix}decv:<visitor>`: a visitor's decisions (id + stream entry id), by time.
    fn visitor_decisions_key(&self, visitor: &ProfileKey) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"decv:");
        k.extend_from_slice(visitor.as_bytes());
        k
    }

    /// Deletes the id hashes of the minutes well before the stream's first entry: count
    /// retention trimmed their decisions, and the hashes would otherwise wait out
    /// `max_age`. A record is written within seconds of its decision (a failed write
    /// drops it), so a minute's hash is kept until the first entry is
    /// [`DECISION_SWEEP_MARGIN_MS`] past it. At most once a minute.
    async fn sweep_decision_index(
        &self,
        now_ms: i64,
        retention: super::DecisionRetention,
    ) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let now_minute = u64::try_from(now_ms).unwrap_or(0) / 60_000;
        if self.decisions_swept_at.swap(now_minute, Ordering::Relaxed) == now_minute {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let first: StreamEntries = redis::cmd("XRANGE")
            .arg(self.decisions_key())
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let first_ms = first
            .first()
            .and_then(|(entry, _)| entry.split('-').next()?.parse::<u64>().ok())
            .unwrap_or(u64::try_from(now_ms).unwrap_or(0));
        let until = first_ms.saturating_sub(DECISION_SWEEP_MARGIN_MS) / 60_000;
        let swept = self.decisions_swept.load(Ordering::Relaxed);
        // A process's first sweep starts from the oldest minute age keeps.
        let from = if swept == 0 {
            u64::try_from(retention.oldest_ms(now_ms)).unwrap_or(0) / 60_000
        } else {
            swept
        };
        let minutes: Vec<u64> = (from..until).collect();
        for chunk in minutes.chunks(1_000) {
            let mut pipe = redis::pipe();
            for m in chunk {
                pipe.cmd("DEL").arg(self.decision_minute_key(*m)).ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        self.decisions_swept
            .store(until.max(swept), Ordering::Relaxed);
        Ok(())
    }

    /// The decisions at these stream entry ids (those trimmed since are left out).
    async fn decisions_at(&self, entries: &[String]) -> Result<Vec<StoredDecision>, StoreError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.decisions_key();
        let mut pipe = redis::pipe();
        for e in entries {
            pipe.cmd("XRANGE").arg(&key).arg(e).arg(e);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<StreamEntries> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        replies
            .into_iter()
            .flatten()
            .map(|(_, fields)| stream_decision(&fields))
            .collect()
    }
}

/// A decision entry's one field `d`: the decision as [`StoredDecision::encode_into`]
/// writes it.
fn stream_decision(fields: &[Vec<u8>]) -> Result<StoredDecision, StoreError> {
    let v = fields
        .get(1)
        .ok_or_else(|| StoreError::Codec("decision entry without its record".into()))?;
    StoredDecision::decode(v)
}

/// Decisions appended in one pipeline, at most.
const DECISION_PIPELINE: usize = 128;

/// How far stream entry times (the server's clock when written) may lie from decision
/// times when a time range is read.
const DECISION_CLOCK_SLACK_MS: i64 = 60_000;

/// How far the stream's first entry must be past a minute before that minute's id hash
/// goes (the time a record may take to be written, and clock skew, with room).
const DECISION_SWEEP_MARGIN_MS: u64 = 10 * 60_000;

/// The decision log: records in one stream (`{prefix}decisions`), trimmed by count
/// (`MAXLEN ~`) and by age (`MINID ~`) on every append; `{prefix}deci:<minute>` hashes
/// point from decision ids to their entries until each expires; `{prefix}decv:<visitor>`
/// is a sorted set of a visitor's entries by time, expiring with their last decision,
/// pruned by age now and then and erased with the visitor.
#[async_trait]
impl super::ExperimentTally for RedisStore {
    async fn add_tallies(&self, tallies: &[super::ArmTally]) -> Result<(), StoreError> {
        if tallies.is_empty() {
            return Ok(());
        }
        // Increments only: replicas add at once, none reads first.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for t in tallies {
            let key = self.tally_key(&t.experiment);
            for c in super::Count::ALL {
                let n = t.counts.get(c);
                if n != 0 {
                    pipe.cmd("HINCRBY")
                        .arg(&key)
                        .arg(format!("{}\n{}", t.variant, c.as_str()))
                        .arg(n)
                        .ignore();
                }
            }
            for r in &t.counts.revenue {
                pipe.cmd("HINCRBY")
                    .arg(&key)
                    .arg(format!("{}\nrevenue\n{}", t.variant, r.currency))
                    .arg(r.total)
                    .ignore();
                pipe.cmd("HINCRBYFLOAT")
                    .arg(&key)
                    .arg(format!("{}\nsquares\n{}", t.variant, r.currency))
                    .arg(r.squares)
                    .ignore();
            }
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn tallies(&self, experiment: &str) -> Result<Vec<(String, super::Counts)>, StoreError> {
        let mut conn = self.conn.clone();
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.tally_key(experiment))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut out: Vec<(String, super::Counts)> = Vec::new();
        for (field, value) in fields {
            let mut parts = field.split('\n');
            let (Some(variant), Some(what)) = (parts.next(), parts.next()) else {
                continue;
            };
            let i = match out.iter().position(|(v, _)| v == variant) {
                Some(i) => i,
                None => {
                    out.push((variant.to_owned(), super::Counts::default()));
                    out.len() - 1
                }
            };
            let counts = &mut out[i].1;
            let bad = || StoreError::Codec(format!("experiment count {field:?}: {value:?}"));
            match (what, parts.next()) {
                ("revenue", Some(cur)) => {
                    let currency = crate::domain::Currency::parse(cur).map_err(|_| bad())?;
                    counts.add_revenue(currency, value.parse().map_err(|_| bad())?, 0.0);
                }
                ("squares", Some(cur)) => {
                    let currency = crate::domain::Currency::parse(cur).map_err(|_| bad())?;
                    counts.add_revenue(currency, 0, value.parse().map_err(|_| bad())?);
                }
                (name, None) => {
                    if let Some(c) = super::Count::parse(name) {
                        counts.add(c, value.parse().map_err(|_| bad())?);
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl super::DecisionLog for RedisStore {
    async fn append_decisions(
        &self,
        records: std::sync::Arc<super::DecisionBatch>,
        retention: super::DecisionRetention,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // Small pipelines: Redis runs one pipeline's commands back to back, and profile
        // reads from the serving path must not wait behind thousands of appends.
        let stream = self.decisions_key();
        let all: Vec<super::DecisionRef<'_>> = records.iter().collect();
        for records in all.chunks(DECISION_PIPELINE) {
            let mut pipe = redis::pipe();
            for r in records {
                pipe.cmd("XADD").arg(&stream).arg("*").arg("d").arg(r.entry);
            }
            let mut conn = self.conn.clone();
            let ids: Vec<String> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            let oldest = retention.oldest_ms(now_ms);
            let ttl = retention.max_age_ms.max(1);
            let expires = now_ms.saturating_add(ttl);
            let mut pipe = redis::pipe();
            // The id index: one HSET a minute of ids (an append spans one or two).
            let mut index: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
            for (r, entry) in records.iter().zip(&ids) {
                let key = self.decision_index_key(&r.id);
                let value = format!("{entry}|{expires}").into_bytes();
                match index.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, fields)) => fields.extend([r.id.to_vec(), value]),
                    None => index.push((key, vec![r.id.to_vec(), value])),
                }
            }
            for (key, fields) in &index {
                pipe.cmd("HSET").arg(key).arg(fields).ignore();
                pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
            }
            for (r, entry) in records.iter().zip(&ids) {
                let key = self.visitor_decisions_key(&r.visitor);
                let mut member = r.id.to_vec();
                member.extend_from_slice(entry.as_bytes());
                pipe.cmd("ZADD").arg(&key).arg(r.at_ms).arg(member).ignore();
                pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
                // A visitor's expired members go one append in eight (by the id's
                // random bits): their set stays within about eight of what is kept,
                // without a command more for every decision.
                if r.id[15] % 8 == 0 {
                    pipe.cmd("ZREMRANGEBYSCORE")
                        .arg(&key)
                        .arg("-inf")
                        .arg(format!("({oldest}"))
                        .ignore();
                }
            }
            // Trimmed once a pipeline, not on every XADD.
            pipe.cmd("XTRIM")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(retention.keep)
                .ignore();
            pipe.cmd("XTRIM")
                .arg(&stream)
                .arg("MINID")
                .arg("~")
                .arg(oldest.max(0))
                .ignore();
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        self.sweep_decision_index(now_ms, retention).await
    }

    async fn decision(&self, id: &[u8; 16]) -> Result<Option<StoredDecision>, StoreError> {
        let mut conn = self.conn.clone();
        let indexed: Option<String> = redis::cmd("HGET")
            .arg(self.decision_index_key(id))
            .arg(id.as_slice())
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let Some((entry, expires)) = indexed.as_deref().and_then(|v| v.split_once('|')) else {
            return Ok(None);
        };
        if expires
            .parse::<i64>()
            .map_err(|_| StoreError::Codec(format!("decision index entry {indexed:?}")))?
            <= crate::domain::time::unix_now_ms()
        {
            return Ok(None);
        }
        let entry = entry.to_owned();
        Ok(self
            .decisions_at(&[entry])
            .await?
            .into_iter()
            .find(|d| d.id == *id))
    }

    async fn visitor_decisions(
        &self,
        visitor: &ProfileKey,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredDecision>, StoreError> {
        let mut conn = self.conn.clone();
        let members: Vec<Vec<u8>> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(self.visitor_decisions_key(visitor))
            .arg("+inf")
            .arg(since_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let entries: Vec<String> = members
            .iter()
            .filter(|m| m.len() > 16)
            .map(|m| String::from_utf8_lossy(&m[16..]).into_owned())
            .collect();
        self.decisions_at(&entries).await
    }

    async fn erase_decisions(&self, visitor: &ProfileKey) -> Result<u64, StoreError> {
        let key = self.visitor_decisions_key(visitor);
        let mut conn = self.conn.clone();
        let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut pipe = redis::pipe();
        let stream = self.decisions_key();
        for m in members.iter().filter(|m| m.len() > 16) {
            let id: [u8; 16] = m[..16].try_into().unwrap_or([0; 16]);
            pipe.cmd("XDEL").arg(&stream).arg(&m[16..]).ignore();
            pipe.cmd("HDEL")
                .arg(self.decision_index_key(&id))
                .arg(id.as_slice())
                .ignore();
        }
        pipe.cmd("DEL").arg(&key).ignore();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(members.len() as u64)
    }

    async fn erase_all_decisions(&self) -> Result<u64, StoreError> {
        // Every entry names its decision and visitor: their keys go with the stream.
        let stream = self.decisions_key();
        let mut conn = self.conn.clone();
        let mut cursor = "-".to_owned();
        let mut erased = 0u64;
        loop {
            let reply: StreamEntries = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&cursor)
                .arg("+")
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            let Some((last, _)) = reply.last() else {
                break;
            };
            cursor = format!("({last}");
            let mut pipe = redis::pipe();
            for (_, fields) in &reply {
                let d = stream_decision(fields)?;
                pipe.cmd("HDEL")
                    .arg(self.decision_index_key(&d.id))
                    .arg(d.id.as_slice())
                    .ignore();
                pipe.cmd("DEL")
                    .arg(self.visitor_decisions_key(&d.visitor))
                    .ignore();
            }
            erased += reply.len() as u64;
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        redis::cmd("DEL")
            .arg(&stream)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(erased)
    }

    async fn decisions_between(
        &self,
        from_ms: i64,
        until_ms: i64,
        cursor: &str,
        limit: usize,
    ) -> Result<(Vec<StoredDecision>, Option<String>), StoreError> {
        let start = if cursor.is_empty() {
            (from_ms - DECISION_CLOCK_SLACK_MS).max(0).to_string()
        } else {
            format!("({cursor}")
        };
        let end = until_ms.saturating_add(DECISION_CLOCK_SLACK_MS).to_string();
        let mut conn = self.conn.clone();
        let reply: StreamEntries = redis::cmd("XRANGE")
            .arg(self.decisions_key())
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let next = (reply.len() >= limit)
            .then(|| reply.last().map(|(id, _)| id.clone()))
            .flatten();
        let mut out = Vec::with_capacity(reply.len());
        for (_, fields) in &reply {
            let d = stream_decision(fields)?;
            if d.at_ms >= from_ms && d.at_ms < until_ms {
                out.push(d);
            }
        }
        Ok((out, next))
    }
}

#[async_trait]
impl EventLog for RedisStore {
    async fn append_log(&self, entries: &[LogEntry], keep: u64) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let key = self.log_key();
        let mut pipe = redis::pipe();
        for e in entries {
            let cmd = pipe.cmd("XADD").arg(&key);
            if keep > 0 {
                cmd.arg("MAXLEN").arg("~").arg(keep);
            }
            cmd.arg("*").arg("e").arg(super::encode_entry(e)?).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn read_log(
        &self,
        cursor: &str,
        max: usize,
    ) -> Result<Vec<(String, LogEntry)>, StoreError> {
        let start = if cursor.is_empty() {
            "-".to_owned()
        } else {
            format!("({cursor}")
        };
        let mut conn = self.conn.clone();
        let reply: StreamEntries = redis::cmd("XRANGE")
            .arg(self.log_key())
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        reply
            .into_iter()
            .map(|(id, fields)| {
                let value = fields
                    .chunks(2)
                    .find(|kv| kv[0] == b"e")
                    .and_then(|kv| kv.get(1))
                    .ok_or_else(|| StoreError::Codec(format!("event log entry {id} has no e")))?;
                Ok((id, super::decode_entry(value)?))
            })
            .collect()
    }

    async fn log_end(&self) -> Result<String, StoreError> {
        let mut conn = self.conn.clone();
        let reply: StreamEntries = redis::cmd("XREVRANGE")
            .arg(self.log_key())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(reply
            .into_iter()
            .next()
            .map(|(id, _)| id)
            .unwrap_or_default())
    }
}

impl RedisStore {
    /// The stored models' version and chunk count (`{prefix}models:current` holds
    /// `version/chunks`).
    async fn models_pointer(&self) -> Result<Option<(String, usize)>, StoreError> {
        let mut conn = self.conn.clone();
        let pointer: Option<String> = redis::cmd("GET")
            .arg(self.models_key("current"))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(pointer
            .as_deref()
            .and_then(|p| p.rsplit_once('/'))
            .and_then(|(v, n)| Some((v.to_owned(), n.parse().ok()?))))
    }

    fn models_key(&self, part: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"models:");
        k.extend_from_slice(part.as_bytes());
        k
    }

    fn inventory_key(&self, part: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"inv:");
        k.extend_from_slice(part.as_bytes());
        k
    }

    fn catalog_key(&self, part: &str) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"catalog:");
        k.extend_from_slice(part.as_bytes());
        k
    }

    async fn scan_hash<V: redis::FromRedisValue>(
        &self,
        part: &str,
    ) -> Result<Vec<(String, V)>, StoreError> {
        let key = self.catalog_key(part);
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, page): (u64, Vec<(String, V)>) = redis::cmd("HSCAN")
                .arg(&key)
                .arg(cursor)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            out.extend(page);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

#[async_trait]
impl CatalogStore for RedisStore {
    async fn epoch(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(self.epoch_key())
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn swap_epoch(
        &self,
        expected: Option<&str>,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        redis::Script::new(SWAP_EPOCH)
            .key(self.epoch_key())
            .arg(expected.unwrap_or(""))
            .arg(value)
            .arg(ttl.map_or(0, |t| t.as_millis().max(1) as u64))
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|n| n == 1)
            .map_err(|e| unavailable(&e))
    }

    async fn catalog_version(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let v: Option<u64> = redis::cmd("GET")
            .arg(self.catalog_key("version"))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(v.unwrap_or(0))
    }

    async fn load_catalog(&self) -> Result<(u64, Vec<(ProductRecord, i64)>), StoreError> {
        // A large catalog is read in HSCAN pages (no single reply outlasts the timeout,
        // and Redis is never blocked); the version read before and after tells whether
        // a write came in between, and then the read starts over.
        for _ in 0..MAX_ATTEMPTS {
            let before = self.catalog_version().await?;
            // HSCAN may return a field twice: keyed maps keep one of each.
            let products: std::collections::BTreeMap<String, Vec<u8>> =
                self.scan_hash("products").await?.into_iter().collect();
            let stock: std::collections::HashMap<String, i64> =
                self.scan_hash("stock").await?.into_iter().collect();
            if self.catalog_version().await? != before {
                continue;
            }
            let mut out = Vec::with_capacity(products.len());
            for (id, bytes) in products {
                let record: ProductRecord =
                    rmp_serde::from_slice(&bytes).map_err(|e| StoreError::Codec(e.to_string()))?;
                out.push((record, stock.get(&id).copied().unwrap_or(0)));
            }
            return Ok((before, out));
        }
        Err(StoreError::Contention(MAX_ATTEMPTS))
    }

    async fn write_catalog(&self, change: &CatalogChange) -> Result<u64, StoreError> {
        let (products, stock) = (self.catalog_key("products"), self.catalog_key("stock"));
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in change.upserts.chunks(1_000) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&products);
            for r in chunk {
                let bytes = rmp_serde::to_vec(r).map_err(|e| StoreError::Codec(e.to_string()))?;
                cmd.arg(r.id.as_str()).arg(bytes);
            }
            pipe.add_command(cmd).ignore();
        }
        for chunk in change.stock.chunks(1_000) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&stock);
            for (id, level) in chunk {
                cmd.arg(id.as_str()).arg(*level);
            }
            pipe.add_command(cmd).ignore();
        }
        if !change.deletes.is_empty() {
            pipe.cmd("HDEL")
                .arg(&products)
                .arg(&change.deletes)
                .ignore();
            pipe.cmd("HDEL").arg(&stock).arg(&change.deletes).ignore();
        }
        pipe.cmd("INCR").arg(self.catalog_key("version"));
        let mut conn = self.conn.clone();
        let (version,): (u64,) = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(version)
    }

    async fn publish_ruleset(
        &self,
        version: &str,
        document: &[u8],
        published_at: i64,
    ) -> Result<(), StoreError> {
        self.publish(version, document, published_at, None, b"")
            .await
            .map(|_| ())
    }

    async fn publish_ruleset_if(
        &self,
        version: &str,
        document: &[u8],
        published_at: i64,
        expected: Option<&str>,
        change: &[u8],
    ) -> Result<bool, StoreError> {
        self.publish(
            version,
            document,
            published_at,
            Some(expected.unwrap_or("")),
            change,
        )
        .await
    }

    async fn append_change(&self, change: &[u8]) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("LPUSH")
            .arg(self.rules_key("changes"))
            .arg(change)
            .ignore()
            .cmd("LTRIM")
            .arg(self.rules_key("changes"))
            .arg(0)
            .arg(super::CHANGE_HISTORY - 1)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn revoke_session(&self, session: &str, until: i64) -> Result<(), StoreError> {
        let ttl = (until - crate::domain::time::unix_now()).max(1);
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.console_key(session))
            .arg(until)
            .arg("EX")
            .arg(ttl)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn session_revoked(&self, session: &str, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let until: Option<i64> = redis::cmd("GET")
            .arg(self.console_key(session))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(until.is_some_and(|u| u > now))
    }

    async fn changes(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        redis::cmd("LRANGE")
            .arg(self.rules_key("changes"))
            .arg(0)
            .arg(limit - 1)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn promotion_usage(&self, ids: &[String]) -> Result<Vec<(u64, i64)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = ids
            .iter()
            .flat_map(|id| [format!("{id}:uses"), format!("{id}:spent")])
            .collect();
        let mut conn = self.conn.clone();
        let values: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(self.promo_key("usage"))
            .arg(fields)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(values
            .chunks(2)
            .map(|v| (v[0].unwrap_or(0).max(0) as u64, v[1].unwrap_or(0)))
            .collect())
    }

    async fn restore_usage(&self, usage: &[(String, u64, i64)]) -> Result<(), StoreError> {
        if usage.is_empty() {
            return Ok(());
        }
        let restore = redis::Script::new(RESTORE_USAGE);
        let mut script = restore.prepare_invoke();
        script.key(self.promo_key("usage"));
        for (id, uses, spent) in usage {
            script.arg(id).arg(*uses).arg(*spent);
        }
        let mut conn = self.conn.clone();
        script
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&e))
    }

    async fn redeem(
        &self,
        order: &str,
        redemptions: &[super::Redemption],
    ) -> Result<super::Redeemed, StoreError> {
        let redeem = redis::Script::new(REDEEM);
        let mut script = redeem.prepare_invoke();
        script
            .key(self.promo_key("usage"))
            .key(self.promo_key(&format!("order:{order}")))
            .key(self.promo_key("customers"))
            .arg(redemptions.len());
        let count = |m: u64| i64::try_from(m).unwrap_or(i64::MAX);
        for r in redemptions {
            script
                .arg(&r.promotion)
                .arg(r.amount)
                .arg(r.max_uses.map_or(-1, count))
                .arg(r.max_spend.unwrap_or(-1))
                .arg(r.customer_field().unwrap_or_default())
                .arg(r.per_customer.as_ref().map_or(-1, |(_, m)| count(*m)));
        }
        script.arg(REDEEMED_TTL_S);
        let mut conn = self.conn.clone();
        let n: i64 = script
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(match n {
            -2 => super::Redeemed::Recorded,
            -1 => super::Redeemed::AlreadyRecorded,
            i => super::Redeemed::OverLimit(usize::try_from(i).unwrap_or(0)),
        })
    }

    async fn live_ruleset(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(self.rules_key("live"))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn load_ruleset(&self, version: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(self.rules_key(&format!("doc:{version}")))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))
    }

    async fn ruleset_versions(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut conn = self.conn.clone();
        let versions: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(self.rules_key("order"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        if versions.is_empty() {
            return Ok(Vec::new());
        }
        let times: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(self.rules_key("published"))
            .arg(&versions)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(versions
            .into_iter()
            .zip(times)
            .map(|(v, t)| (v, t.unwrap_or(0)))
            .collect())
    }

    async fn activate_ruleset(&self, version: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        redis::Script::new(ACTIVATE_RULESET)
            .key(self.rules_key(&format!("doc:{version}")))
            .key(self.rules_key("live"))
            .arg(version)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|n| n == 1)
            .map_err(|e| unavailable(&e))
    }

    async fn models_version(&self) -> Result<Option<String>, StoreError> {
        Ok(self.models_pointer().await?.map(|(version, _)| version))
    }

    async fn load_models(&self) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let Some((version, chunks)) = self.models_pointer().await? else {
            return Ok(None);
        };
        let mut conn = self.conn.clone();
        // Chunk by chunk: no single reply outlasts the timeout.
        let mut bytes = Vec::new();
        for i in 0..chunks {
            let chunk: Option<Vec<u8>> = redis::cmd("GET")
                .arg(self.models_key(&format!("{version}:{i}")))
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            let Some(chunk) = chunk else {
                // Replaced while reading: the next look finds the new version.
                return Err(StoreError::Unavailable(
                    "models replaced while loading".into(),
                ));
            };
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some((version, bytes)))
    }

    async fn save_models(&self, version: &str, bytes: &[u8]) -> Result<(), StoreError> {
        const CHUNK: usize = 1 << 20;
        let previous = self.models_pointer().await?;
        let mut conn = self.conn.clone();
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let _: () = redis::cmd("SET")
                .arg(self.models_key(&format!("{version}:{i}")))
                .arg(*chunk)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        let _: () = redis::cmd("SET")
            .arg(self.models_key("current"))
            .arg(format!("{version}/{}", chunks.len()))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        if let Some((old, n)) = previous.filter(|(v, _)| v != version) {
            let keys: Vec<Vec<u8>> = (0..n)
                .map(|i| self.models_key(&format!("{old}:{i}")))
                .collect();
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| unavailable(&e))?;
            }
        }
        Ok(())
    }

    async fn link_inventory(
        &self,
        product: &str,
        items: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(LINK_ITEM);
        for (item, total) in items {
            let previous: Option<String> = redis::cmd("HGET")
                .arg(self.inventory_key("items"))
                .arg(item)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            if let Some(previous) = previous.filter(|p| p != product) {
                let _: i64 = script
                    .key(self.inventory_key(&format!("p:{previous}")))
                    .arg(format!("{item}/"))
                    .arg("")
                    .arg(0)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| unavailable(&e))?;
            }
            let _: () = redis::cmd("HSET")
                .arg(self.inventory_key("items"))
                .arg(item)
                .arg(product)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            let _: i64 = script
                .key(self.inventory_key(&format!("p:{product}")))
                .arg(format!("{item}/"))
                .arg(format!("{item}/{}", super::ALL_LOCATIONS))
                .arg(*total)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        Ok(())
    }

    async fn set_inventory_level(
        &self,
        item: &str,
        location: &str,
        available: i64,
    ) -> Result<Option<(String, i64)>, StoreError> {
        let mut conn = self.conn.clone();
        let product: Option<String> = redis::cmd("HGET")
            .arg(self.inventory_key("items"))
            .arg(item)
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(product) = product else {
            return Ok(None);
        };
        let total: i64 = redis::Script::new(SET_LEVEL)
            .key(self.inventory_key(&format!("p:{product}")))
            .arg(format!("{item}/{}", super::ALL_LOCATIONS))
            .arg(format!("{item}/{location}"))
            .arg(available)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(Some((product, total)))
    }
}

#[async_trait]
impl ProfileStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &ProfileKey) -> Result<Option<Arc<Profile>>, StoreError> {
        let found = self
            .read(&self.redis_key(key))
            .await
            .map(|(_, p)| p.map(Arc::new));
        record_result("redis", &found);
        found
    }

    async fn apply(&self, key: &ProfileKey, ops: &[ProfileOp]) -> Result<Applied, StoreError> {
        let rkey = self.redis_key(key);
        let _turn = self.stripes[usize::from(key.as_bytes()[0]) % STRIPES]
            .lock()
            .await;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Back off with jitter so replicas contending for one key spread out.
                let jitter = u64::from(key.as_bytes()[1] ^ (attempt as u8)) % 4;
                tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(10)) + jitter))
                    .await;
            }
            let now = unix_now();
            let (read, current) = self.read(&rkey).await?;
            let mut profile = current.unwrap_or_default();
            // An op older than the ring can only be known from the set beside it.
            let remembered = if profile.applied.len() >= APPLIED_WINDOW {
                self.fallen(key, ops, now).await?
            } else {
                Vec::new()
            };
            // (A merge pushes a whole ring: any apply may push some off.)
            let before = profile.applied.clone();
            let fresh = apply_ops(&mut profile, ops, &remembered);
            if !fresh.contains(&true) {
                return Ok(Applied {
                    profile: Arc::new(profile),
                    fresh,
                });
            }
            let mut conn = self.conn.clone();
            let written: i64 = self
                .write_if_unchanged(key, &read, &before, &profile, now)?
                .invoke_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            if written == 1 {
                return Ok(Applied {
                    profile: Arc::new(profile),
                    fresh,
                });
            }
            metrics::counter!("vitrine_store_cas_conflicts_total").increment(1);
        }
        Err(StoreError::Contention(MAX_ATTEMPTS))
    }

    async fn apply_batch(
        &self,
        batch: &[(ProfileKey, Vec<ProfileOp>)],
    ) -> Vec<Result<Applied, StoreError>> {
        let mut out: Vec<Option<Result<Applied, StoreError>>> = vec![None; batch.len()];
        for (from, chunk) in (0..batch.len())
            .step_by(PIPELINED)
            .map(|from| (from, &batch[from..(from + PIPELINED).min(batch.len())]))
        {
            if let Err(e) = self.apply_pipelined(chunk, &mut out[from..]).await {
                for slot in &mut out[from..from + chunk.len()] {
                    slot.get_or_insert_with(|| Err(e.clone()));
                }
            }
        }
        // The rest, one by one (one multiplexed connection pipelines their round trips).
        let rest: Vec<usize> = (0..batch.len()).filter(|&i| out[i].is_none()).collect();
        let singles =
            futures::future::join_all(rest.iter().map(|&i| self.apply(&batch[i].0, &batch[i].1)))
                .await;
        for (i, r) in rest.into_iter().zip(singles) {
            out[i] = Some(r);
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("not applied".into()))))
            .collect()
    }

    async fn delete(&self, key: &ProfileKey) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let (n, _): (i64, i64) = redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(self.redis_key(key))
            .cmd("DEL")
            .arg(self.beside(key, b'f'))
            .arg(self.beside(key, b'o'))
            .query_async(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(n > 0)
    }

    async fn erase_all(&self) -> Result<u64, StoreError> {
        // SCAN, never KEYS: erasure must not block Redis for other replicas.
        let mut conn = self.conn.clone();
        let mut pattern = self.prefix.clone();
        pattern.extend_from_slice(b"p:*");
        let mut cursor: u64 = 0;
        let mut erased = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            if !keys.is_empty() {
                let _: u64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| unavailable(&e))?;
                // The op-id sets go with their profiles; only profiles are counted.
                let profile_len = self.prefix.len() + 2 + 16;
                erased += keys.iter().filter(|k| k.len() == profile_len).count() as u64;
            }
            if next == 0 {
                return Ok(erased);
            }
            cursor = next;
        }
    }

    async fn seed(&self, profiles: Vec<(ProfileKey, Profile)>) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut marker = self.prefix.clone();
        marker.extend_from_slice(b"seeded");
        let first: bool = redis::cmd("SET")
            .arg(&marker)
            .arg(1)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(|e| unavailable(&e))?
            .is_some();
        if !first {
            return Ok(false);
        }
        for chunk in profiles.chunks(1_000) {
            let mut pipe = redis::pipe();
            for (key, profile) in chunk {
                let k = self.redis_key(key);
                pipe.cmd("SET")
                    .arg(&k)
                    .arg(codec::encode(profile)?)
                    .arg("PX")
                    .arg(self.ttl_ms)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
        }
        Ok(true)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&e))
    }
}
