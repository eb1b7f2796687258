//! The Redis store, for several scrims of one site: every replica hands
//! out the same token for the same value, because a mapping is made by one
//! Lua script that either finds the fingerprint's token or sets both
//! directions at once (Redis runs a script whole, one at a time), and
//! erasures are published so that every replica drops what it cached.
//!
//! The connection lives on a thread of its own with its own runtime (the
//! workers' runtimes come and go with their connections); calls reach it
//! over a channel, and concurrent calls share the one multiplexed
//! connection, pipelined.
//!
//! Keys: `scrim:vault:fp:<fingerprint bytes>` → token,
//! `scrim:vault:tok:<token>` → fingerprint (32 bytes) and sealed value,
//! both with the mapping's `ttl` as their expiry;
//! `scrim:vault:retired:<token>` for each erased token (never handed out
//! again); `scrim:vault:meta:fingerprint_key`. Erasures are published on
//! `scrim:vault:erased`.
//!
//! A Redis that lost its data (flushed, or restarted without persistence)
//! would let a replica started since make another fingerprint key, and the
//! replicas would then give one value two tokens: every mapping is made
//! only while the store's fingerprint key is the one this replica holds,
//! told by its identifier (`scrim:vault:meta:fingerprint_id`, which a
//! rotation of `keys.vault` leaves as it is).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};

use super::cache::{Cache, Expiry, now};
use super::store::{Issued, NewMapping, StoreError, Stored};
use crate::rewrite::{Fingerprint, Token};

const FINGERPRINTS: &[u8] = b"scrim:vault:fp:";
const TOKENS: &[u8] = b"scrim:vault:tok:";
const RETIRED: &[u8] = b"scrim:vault:retired:";
const FINGERPRINT_KEY: &str = "scrim:vault:meta:fingerprint_key";
const FINGERPRINT_ID: &str = "scrim:vault:meta:fingerprint_id";
const ERASED: &str = "scrim:vault:erased";

/// Makes a mapping unless the fingerprint has one. KEYS: fingerprint key,
/// token key, the fingerprint id's key, the retired token's key. ARGV:
/// token, fingerprint, sealed value, ttl (0: none), the fingerprint id
/// this replica holds. Returns `{0, token, ttl}` (existing), `{1}`
/// (made), `{2}` (token taken), `{3}` (another fingerprint key).
const ISSUE: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[5] then return {3} end
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing, redis.call('TTL', KEYS[1])} end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then return {2} end
redis.call('SET', KEYS[2], ARGV[2] .. ARGV[3])
redis.call('SET', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return {1}
";

/// Erases a token's mapping. KEYS: token key, retired token key. ARGV:
/// fingerprint key prefix, channel, token. Returns the fingerprint, or
/// nil.
const ERASE_TOKEN: &str = r"
local mapping = redis.call('GET', KEYS[1])
if not mapping then return false end
redis.call('SET', KEYS[2], '1')
local fingerprint = string.sub(mapping, 1, 32)
redis.call('DEL', KEYS[1])
local fingerprint_key = ARGV[1] .. fingerprint
if redis.call('GET', fingerprint_key) == ARGV[3] then redis.call('DEL', fingerprint_key) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return fingerprint
";

/// Erases a fingerprint's mapping. KEYS: fingerprint key. ARGV: token key
/// prefix, channel, retired token key prefix. Returns the token, or nil.
const ERASE_FINGERPRINT: &str = r"
local token = redis.call('GET', KEYS[1])
if not token then return false end
redis.call('SET', ARGV[3] .. token, '1')
redis.call('DEL', KEYS[1])
redis.call('DEL', ARGV[1] .. token)
redis.call('PUBLISH', ARGV[2], token)
return token
";

type Job = Box<dyn FnOnce(ConnectionManager) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A handle to the Redis connection's thread.
#[derive(Clone)]
pub struct RedisStore {
    jobs: mpsc::UnboundedSender<Job>,
    /// The identifier of the fingerprint key this replica holds.
    fingerprint_id: Arc<arc_swap::ArcSwap<Vec<u8>>>,
}

fn unreachable_store(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(format!("vault Redis: {e}"))
}

fn key(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    [prefix, name].concat()
}

impl RedisStore {
    /// Connects (within `timeout`), and starts listening for erasures,
    /// which `cache` then forgets.
    pub async fn open(
        url: &str,
        cache: Arc<Cache>,
        timeout: Duration,
    ) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|e| {
            StoreError::new(format!("vault.url is not a Redis URL ({:?})", e.kind()))
        })?;
        let (ready, connected) = oneshot::channel();
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("scrim-vault-redis".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(StoreError::new(format!(
                            "cannot start the vault's runtime: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout))
                        .set_number_of_retries(1)
                        .set_max_delay(Duration::from_secs(1));
                    let connection = match client.get_connection_manager_with_config(config).await {
                        Ok(connection) => connection,
                        Err(e) => {
                            let _ = ready.send(Err(unreachable_store(e)));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    tokio::spawn(forget_erased(client, cache));
                    while let Some(job) = queue.recv().await {
                        tokio::spawn(job(connection.clone()));
                    }
                });
            })
            .map_err(|e| StoreError::new(format!("cannot start the vault's thread: {e}")))?;
        connected
            .await
            .map_err(|_| StoreError::new("the vault's Redis thread stopped"))??;
        Ok(RedisStore {
            jobs,
            fingerprint_id: Arc::default(),
        })
    }

    async fn run<T, F>(
        &self,
        call: impl FnOnce(ConnectionManager) -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |connection| {
            Box::pin(async move {
                let _ = reply.send(call(connection).await);
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::new("the vault's Redis thread stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::new("the vault's Redis thread stopped"))?
    }

    pub async fn fingerprint_key(
        &self,
        candidate: Vec<u8>,
        replace: bool,
    ) -> Result<Vec<u8>, StoreError> {
        self.run(move |mut connection| async move {
            let mut set = redis::cmd("SET");
            set.arg(FINGERPRINT_KEY).arg(&candidate);
            if !replace {
                // The first replica's key stands; the others read it.
                set.arg("NX");
            }
            let _: Option<String> = set
                .query_async(&mut connection)
                .await
                .map_err(unreachable_store)?;
            let stored: Option<Vec<u8>> = redis::cmd("GET")
                .arg(FINGERPRINT_KEY)
                .query_async(&mut connection)
                .await
                .map_err(unreachable_store)?;
            let stored = stored
                .ok_or_else(|| StoreError::new("vault Redis: the fingerprint key vanished"))?;
            Ok(stored)
        })
        .await
    }

    /// Records the identifier of the fingerprint key this replica adopted
    /// (the first replica's stands), and fails if the store has another.
    pub async fn claim_fingerprint_id(&self, id: [u8; 16]) -> Result<(), StoreError> {
        let held = self.fingerprint_id.clone();
        self.run(move |mut connection| async move {
            let _: Option<String> = redis::cmd("SET")
                .arg(FINGERPRINT_ID)
                .arg(id.as_slice())
                .arg("NX")
                .query_async(&mut connection)
                .await
                .map_err(unreachable_store)?;
            let stored: Option<Vec<u8>> = redis::cmd("GET")
                .arg(FINGERPRINT_ID)
                .query_async(&mut connection)
                .await
                .map_err(unreachable_store)?;
            if stored.as_deref() != Some(id.as_slice()) {
                return Err(StoreError::new(
                    "vault Redis: the store's fingerprint key is not the one its identifier names (was Redis flushed while scrims ran?): restart every scrim that shares it",
                ));
            }
            held.store(Arc::new(id.to_vec()));
            Ok(())
        })
        .await
    }

    pub async fn issue(&self, items: Vec<NewMapping>) -> Result<Vec<Issued>, StoreError> {
        let held = self.fingerprint_id.load_full();
        self.run(move |mut connection| async move {
            let mut pipe = redis::pipe();
            for item in &items {
                let ttl = if item.expiry == Expiry::NEVER {
                    0
                } else {
                    item.expiry.0.saturating_sub(now()).max(1)
                };
                pipe.cmd("EVAL")
                    .arg(ISSUE)
                    .arg(4)
                    .arg(key(FINGERPRINTS, &item.fingerprint))
                    .arg(key(TOKENS, item.token.as_bytes()))
                    .arg(FINGERPRINT_ID)
                    .arg(key(RETIRED, item.token.as_bytes()))
                    .arg(item.token.as_bytes())
                    .arg(item.fingerprint.as_slice())
                    .arg(item.sealed.as_slice())
                    .arg(ttl)
                    .arg(held.as_slice());
            }
            let answers: Vec<redis::Value> = pipe
                .query_async(&mut connection)
                .await
                .map_err(unreachable_store)?;
            answers.into_iter().map(issued).collect()
        })
        .await
    }

    pub async fn lookup(&self, tokens: Vec<Token>) -> Result<Vec<Option<Stored>>, StoreError> {
        self.run(move |mut connection| async move {
            let mut pipe = redis::pipe();
            for token in &tokens {
                let name = key(TOKENS, token.as_bytes());
                pipe.get(&name).cmd("TTL").arg(&name);
            }
            let answers: Vec<(Option<Vec<u8>>, i64)> = pipe
                .query_async(&mut connection)
                .await
                .map_err(unreachable_store)?;
            Ok(answers
                .into_iter()
                .map(|(mapping, ttl)| {
                    let mapping = mapping?;
                    let (fingerprint, sealed) = mapping.split_at_checked(32)?;
                    Some(Stored {
                        fingerprint: fingerprint.try_into().ok()?,
                        sealed: sealed.to_vec(),
                        expiry: expiry_in(ttl),
                    })
                })
                .collect())
        })
        .await
    }

    pub async fn erase_tokens(
        &self,
        tokens: Vec<Token>,
    ) -> Result<Vec<Option<Fingerprint>>, StoreError> {
        self.run(move |mut connection| async move {
            let mut pipe = redis::pipe();
            for token in &tokens {
                pipe.cmd("EVAL")
                    .arg(ERASE_TOKEN)
                    .arg(2)
                    .arg(key(TOKENS, token.as_bytes()))
                    .arg(key(RETIRED, token.as_bytes()))
                    .arg(FINGERPRINTS)
                    .arg(ERASED)
                    .arg(token.as_bytes());
            }
            let erased: Vec<Option<Vec<u8>>> = pipe
                .query_async(&mut connection)
                .await
                .map_err(unreachable_store)?;
            Ok(erased
                .into_iter()
                .map(|fingerprint| fingerprint.and_then(|f| f.try_into().ok()))
                .collect())
        })
        .await
    }

    pub async fn erase_fingerprints(
        &self,
        fingerprints: Vec<Fingerprint>,
    ) -> Result<Vec<Option<Token>>, StoreError> {
        self.run(move |mut connection| async move {
            let mut pipe = redis::pipe();
            for fingerprint in &fingerprints {
                pipe.cmd("EVAL")
                    .arg(ERASE_FINGERPRINT)
                    .arg(1)
                    .arg(key(FINGERPRINTS, fingerprint))
                    .arg(TOKENS)
                    .arg(ERASED)
                    .arg(RETIRED);
            }
            let erased: Vec<Option<String>> = pipe
                .query_async(&mut connection)
                .await
                .map_err(unreachable_store)?;
            Ok(erased
                .into_iter()
                .map(|token| token.map(Token::from))
                .collect())
        })
        .await
    }

    /// Tokens in the store (a `SCAN` over their keys).
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.run(move |mut connection| async move {
            let mut cursor: u64 = 0;
            let mut count = 0u64;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg([TOKENS, b"*"].concat())
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut connection)
                    .await
                    .map_err(unreachable_store)?;
                count += keys.len() as u64;
                if next == 0 {
                    return Ok(count);
                }
                cursor = next;
            }
        })
        .await
    }
}

/// An `ISSUE` script's answer.
fn issued(answer: redis::Value) -> Result<Issued, StoreError> {
    let bad = || StoreError::new("vault Redis: an unexpected answer to the issue script");
    let redis::Value::Array(parts) = answer else {
        return Err(bad());
    };
    match parts.as_slice() {
        [redis::Value::Int(1)] => Ok(Issued::New),
        [redis::Value::Int(2)] => Ok(Issued::TokenTaken),
        [redis::Value::Int(3)] => Err(StoreError::new(
            "vault Redis: the store's fingerprint key is not the one this scrim started with (was Redis flushed, or restarted without persistence?): restart every scrim that shares it",
        )),
        [redis::Value::Int(0), token, redis::Value::Int(ttl)] => {
            let token: String = redis::from_redis_value_ref(token).map_err(|_| bad())?;
            Ok(Issued::Existing(token.into(), expiry_in(*ttl)))
        }
        _ => Err(bad()),
    }
}

/// The expiry of a key Redis says has `ttl` seconds left (`-1`: none).
fn expiry_in(ttl: i64) -> Expiry {
    match u64::try_from(ttl) {
        Ok(seconds) => Expiry(now() + seconds.max(1)),
        Err(_) => Expiry::NEVER,
    }
}

/// Listens for erasures published by any replica and forgets their tokens
/// here. Whenever the subscription breaks, what it may have missed is
/// unknown, so the whole cache goes, and the subscription is made again.
async fn forget_erased(client: redis::Client, cache: Arc<Cache>) {
    use futures_util::StreamExt as _;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(ERASED).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match subscribed.await {
            Ok(pubsub) => {
                // Erasures before this subscription are not known here.
                cache.clear();
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    if let Ok(token) = message.get_payload::<String>() {
                        cache.erase_token(&token);
                    }
                }
                cache.clear();
                tracing::warn!(
                    "vault: the Redis subscription to erasures broke; subscribing again"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "vault: cannot subscribe to erasures in Redis; retrying");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
