//! The embedded store: one redb file, written by one thread of its own.
//!
//! redb because it is a maintained, pure-Rust, crash-safe B-tree store with
//! ACID transactions and a stable file format, and nothing to run beside
//! scrim (sled's format is not stable; RocksDB and SQLite are C to build).
//!
//! Group commit: requests queue on a channel; the thread takes everything
//! queued, makes all of it in one write transaction and one durable commit
//! (one `fsync`), and only then answers each. A token is durable before any
//! request that carries it is sent, and concurrent requests share the cost
//! of the flush: the more of them, the more tokens per flush.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use super::cache::{Expiry, now};
use super::store::{Issued, NewMapping, StoreError, Stored};
use crate::rewrite::{Fingerprint, Token};

/// The sealed fingerprint key, under [`FINGERPRINT_KEY`].
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FINGERPRINT_KEY: &str = "fingerprint_key";
/// Fingerprint → (token, expiry).
const BY_FINGERPRINT: TableDefinition<&[u8], (&str, u64)> = TableDefinition::new("by_fingerprint");
/// Token → (fingerprint, sealed value, expiry).
const BY_TOKEN: TableDefinition<&str, (&[u8], &[u8], u64)> = TableDefinition::new("by_token");
/// (expiry, token) of every mapping that expires, for the sweep.
const EXPIRING: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiring");
/// Tokens whose mapping was erased or expired: never handed out again,
/// so that a platform never joins a new person to an old one's history.
const RETIRED: TableDefinition<&str, ()> = TableDefinition::new("retired");

/// Most operations taken into one transaction.
const MAX_BATCH: usize = 4096;
/// Most operations waiting: past it, callers are refused at once (503)
/// rather than queued behind work their clients have given up on.
const MAX_QUEUE: usize = 65_536;
/// How often expired mappings are removed from the file (lookups never
/// answer them in between).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Op {
    Issue(Vec<NewMapping>, Reply<Vec<Issued>>),
    Lookup(Vec<Token>, Reply<Vec<Option<Stored>>>),
    EraseTokens(Vec<Token>, Reply<Vec<Option<Fingerprint>>>),
    EraseFingerprints(Vec<Fingerprint>, Reply<Vec<Option<Token>>>),
    Count(Reply<u64>),
    /// The stored fingerprint key, or `candidate` stored as it when there
    /// is none; with `replace`, `candidate` replaces it.
    FingerprintKey {
        candidate: Vec<u8>,
        replace: bool,
        reply: Reply<Vec<u8>>,
    },
}

impl Op {
    fn abandoned(&self) -> bool {
        match self {
            Op::Issue(_, reply) => reply.is_closed(),
            Op::Lookup(_, reply) => reply.is_closed(),
            Op::Count(reply) => reply.is_closed(),
            Op::EraseTokens(..) | Op::EraseFingerprints(..) | Op::FingerprintKey { .. } => false,
        }
    }
}

/// A handle to the store's thread; the thread ends when the last handle
/// goes.
#[derive(Clone)]
pub struct Embedded {
    ops: mpsc::SyncSender<Op>,
}

impl Embedded {
    /// Opens (or creates, readable by this user only) the store's file.
    pub fn open(path: &Path) -> Result<Embedded, StoreError> {
        let place = path.display();
        create_private(path)
            .map_err(|e| StoreError::new(format!("vault file {place}: cannot create it: {e}")))?;
        let database = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::new(format!(
                "vault file {place} is in use by another scrim (stop it, or use its admin API)"
            )),
            e => StoreError::new(format!("vault file {place}: {e}")),
        })?;
        // Every table exists from the start, so that reads need not ask.
        let tables = || -> Result<(), redb::Error> {
            let txn = database.begin_write()?;
            txn.open_table(META)?;
            txn.open_table(BY_FINGERPRINT)?;
            txn.open_table(BY_TOKEN)?;
            txn.open_table(EXPIRING)?;
            txn.open_table(RETIRED)?;
            txn.commit()?;
            Ok(())
        };
        tables().map_err(|e| StoreError::new(format!("vault file {place}: {e}")))?;
        let (ops, queue) = mpsc::sync_channel(MAX_QUEUE);
        std::thread::Builder::new()
            .name("scrim-vault".to_owned())
            .spawn(move || serve(database, queue))
            .map_err(|e| StoreError::new(format!("cannot start the vault's thread: {e}")))?;
        Ok(Embedded { ops })
    }

    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.ops.try_send(op(reply)).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => StoreError::new("the vault's store is overloaded"),
            mpsc::TrySendError::Disconnected(_) => {
                StoreError::new("the vault's thread has stopped")
            }
        })?;
        answer
            .await
            .map_err(|_| StoreError::new("the vault's thread has stopped"))?
    }

    pub async fn issue(&self, items: Vec<NewMapping>) -> Result<Vec<Issued>, StoreError> {
        self.call(|reply| Op::Issue(items, reply)).await
    }

    pub async fn lookup(&self, tokens: Vec<Token>) -> Result<Vec<Option<Stored>>, StoreError> {
        self.call(|reply| Op::Lookup(tokens, reply)).await
    }

    pub async fn erase_tokens(
        &self,
        tokens: Vec<Token>,
    ) -> Result<Vec<Option<Fingerprint>>, StoreError> {
        self.call(|reply| Op::EraseTokens(tokens, reply)).await
    }

    pub async fn erase_fingerprints(
        &self,
        fingerprints: Vec<Fingerprint>,
    ) -> Result<Vec<Option<Token>>, StoreError> {
        self.call(|reply| Op::EraseFingerprints(fingerprints, reply))
            .await
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        self.call(Op::Count).await
    }

    pub async fn fingerprint_key(
        &self,
        candidate: Vec<u8>,
        replace: bool,
    ) -> Result<Vec<u8>, StoreError> {
        self.call(|reply| Op::FingerprintKey {
            candidate,
            replace,
            reply,
        })
        .await
    }
}

/// Creates the file, if it is not there, readable and writable by this
/// user only: it holds sealed values and their fingerprints.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The store's thread: batches of operations until every handle is gone.
fn serve(database: Database, queue: mpsc::Receiver<Op>) {
    let mut last_sweep = std::time::Instant::now();
    loop {
        let first = match queue.recv_timeout(SWEEP_EVERY) {
            Ok(op) => Some(op),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        if last_sweep.elapsed() >= SWEEP_EVERY {
            if let Err(error) = sweep(&database) {
                tracing::warn!(%error, "vault: removing expired tokens failed");
            }
            last_sweep = std::time::Instant::now();
        }
        let Some(first) = first else { continue };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        run_batch(&database, batch);
    }
}

/// The writes of a batch in one transaction, answered once it is durable;
/// then its reads, which see them. Operations whose caller has given up
/// (timed out) are dropped: but for an erasure, which is done whatever
/// becomes of its caller.
fn run_batch(database: &Database, batch: Vec<Op>) {
    let (writes, reads): (Vec<Op>, Vec<Op>) = batch
        .into_iter()
        .filter(|op| !op.abandoned())
        .partition(|op| !matches!(op, Op::Lookup(..) | Op::Count(..)));
    if !writes.is_empty() {
        write_batch(database, writes);
    }
    if !reads.is_empty() {
        read_batch(database, reads);
    }
}

fn storage(error: impl std::fmt::Display) -> StoreError {
    StoreError::new(format!("vault file: {error}"))
}

fn write_batch(database: &Database, writes: Vec<Op>) {
    let txn = match database.begin_write() {
        Ok(txn) => txn,
        Err(e) => return fail_all(writes, &storage(e)),
    };
    let mut answers = Vec::with_capacity(writes.len());
    let done = (|| -> Result<(), redb::Error> {
        let mut meta = txn.open_table(META)?;
        let mut by_fingerprint = txn.open_table(BY_FINGERPRINT)?;
        let mut by_token = txn.open_table(BY_TOKEN)?;
        let mut expiring = txn.open_table(EXPIRING)?;
        let mut retired = txn.open_table(RETIRED)?;
        let mut tables = Tables {
            by_fingerprint: &mut by_fingerprint,
            by_token: &mut by_token,
            expiring: &mut expiring,
            retired: &mut retired,
        };
        let now = now();
        for op in writes {
            let answer = match op {
                Op::Issue(items, reply) => {
                    let issued = items
                        .into_iter()
                        .map(|item| tables.issue(item, now))
                        .collect::<Result<Vec<_>, _>>()?;
                    Answer::Issue(issued, reply)
                }
                Op::EraseTokens(tokens, reply) => {
                    let erased = tokens
                        .iter()
                        .map(|token| tables.erase_token(token))
                        .collect::<Result<Vec<_>, _>>()?;
                    Answer::EraseTokens(erased, reply)
                }
                Op::EraseFingerprints(fingerprints, reply) => {
                    let erased = fingerprints
                        .iter()
                        .map(|fingerprint| tables.erase_fingerprint(fingerprint))
                        .collect::<Result<Vec<_>, _>>()?;
                    Answer::EraseFingerprints(erased, reply)
                }
                Op::FingerprintKey {
                    candidate,
                    replace,
                    reply,
                } => {
                    let stored = meta
                        .get(FINGERPRINT_KEY)?
                        .map(|guard| guard.value().to_vec());
                    let key = match stored {
                        Some(stored) if !replace => stored,
                        _ => {
                            meta.insert(FINGERPRINT_KEY, candidate.as_slice())?;
                            candidate
                        }
                    };
                    Answer::FingerprintKey(key, reply)
                }
                Op::Lookup(..) | Op::Count(..) => unreachable!("reads are partitioned out"),
            };
            answers.push(answer);
        }
        Ok(())
    })();
    // The tables are dropped with the closure; the commit flushes to disk.
    let committed = done.and_then(|()| txn.commit().map_err(redb::Error::from));
    match committed {
        Ok(()) => answers.into_iter().for_each(Answer::send),
        Err(e) => {
            let error = storage(e);
            for answer in answers {
                answer.fail(&error);
            }
        }
    }
}

/// A write's answer, held until its transaction is durable.
enum Answer {
    Issue(Vec<Issued>, Reply<Vec<Issued>>),
    EraseTokens(Vec<Option<Fingerprint>>, Reply<Vec<Option<Fingerprint>>>),
    EraseFingerprints(Vec<Option<Token>>, Reply<Vec<Option<Token>>>),
    FingerprintKey(Vec<u8>, Reply<Vec<u8>>),
}

impl Answer {
    fn send(self) {
        // A requester that gave up (timed out) no longer listens.
        match self {
            Answer::Issue(answer, reply) => drop(reply.send(Ok(answer))),
            Answer::EraseTokens(answer, reply) => drop(reply.send(Ok(answer))),
            Answer::EraseFingerprints(answer, reply) => drop(reply.send(Ok(answer))),
            Answer::FingerprintKey(answer, reply) => drop(reply.send(Ok(answer))),
        }
    }

    fn fail(self, error: &StoreError) {
        match self {
            Answer::Issue(_, reply) => refuse(reply, error),
            Answer::EraseTokens(_, reply) => refuse(reply, error),
            Answer::EraseFingerprints(_, reply) => refuse(reply, error),
            Answer::FingerprintKey(_, reply) => refuse(reply, error),
        }
    }
}

/// Answers `reply` with a copy of `error`.
fn refuse<T>(reply: Reply<T>, error: &StoreError) {
    // A requester that gave up (timed out) no longer listens.
    let _ = reply.send(Err(StoreError::new(error.to_string())));
}

fn fail_all(ops: Vec<Op>, error: &StoreError) {
    for op in ops {
        match op {
            Op::Issue(_, reply) => refuse(reply, error),
            Op::Lookup(_, reply) => refuse(reply, error),
            Op::EraseTokens(_, reply) => refuse(reply, error),
            Op::EraseFingerprints(_, reply) => refuse(reply, error),
            Op::Count(reply) => refuse(reply, error),
            Op::FingerprintKey { reply, .. } => refuse(reply, error),
        }
    }
}

/// The mapping tables of one write transaction.
struct Tables<'t, 'txn> {
    by_fingerprint: &'t mut redb::Table<'txn, &'static [u8], (&'static str, u64)>,
    by_token: &'t mut redb::Table<'txn, &'static str, (&'static [u8], &'static [u8], u64)>,
    expiring: &'t mut redb::Table<'txn, (u64, &'static str), ()>,
    retired: &'t mut redb::Table<'txn, &'static str, ()>,
}

impl Tables<'_, '_> {
    fn issue(&mut self, item: NewMapping, now: u64) -> Result<Issued, redb::Error> {
        let existing = self
            .by_fingerprint
            .get(item.fingerprint.as_slice())?
            .map(|guard| {
                let (token, expiry) = guard.value();
                (Token::from(token), Expiry(expiry))
            });
        if let Some((token, expiry)) = existing {
            if !expiry.is_past(now) {
                return Ok(Issued::Existing(token, expiry));
            }
            self.erase_token(&token)?;
        }
        let taken =
            self.by_token.get(&*item.token)?.is_some() || self.retired.get(&*item.token)?.is_some();
        if taken {
            return Ok(Issued::TokenTaken);
        }
        self.by_fingerprint
            .insert(item.fingerprint.as_slice(), (&*item.token, item.expiry.0))?;
        self.by_token.insert(
            &*item.token,
            (
                item.fingerprint.as_slice(),
                item.sealed.as_slice(),
                item.expiry.0,
            ),
        )?;
        if item.expiry != Expiry::NEVER {
            self.expiring.insert((item.expiry.0, &*item.token), ())?;
        }
        Ok(Issued::New)
    }

    fn erase_token(&mut self, token: &str) -> Result<Option<Fingerprint>, redb::Error> {
        let Some(removed) = self.by_token.remove(token)? else {
            return Ok(None);
        };
        let (fingerprint, _, expiry) = removed.value();
        let fingerprint: Option<Fingerprint> = fingerprint.try_into().ok();
        drop(removed);
        if let Some(fingerprint) = &fingerprint {
            // Only if it still points here (a later mapping is another's).
            let points_here = self
                .by_fingerprint
                .get(fingerprint.as_slice())?
                .is_some_and(|guard| guard.value().0 == token);
            if points_here {
                self.by_fingerprint.remove(fingerprint.as_slice())?;
            }
        }
        if expiry != 0 {
            self.expiring.remove((expiry, token))?;
        }
        self.retired.insert(token, ())?;
        Ok(fingerprint)
    }

    fn erase_fingerprint(
        &mut self,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Token>, redb::Error> {
        let token = self
            .by_fingerprint
            .get(fingerprint.as_slice())?
            .map(|guard| Token::from(guard.value().0));
        if let Some(token) = &token {
            self.erase_token(token)?;
        }
        self.by_fingerprint.remove(fingerprint.as_slice())?;
        Ok(token)
    }
}

fn read_batch(database: &Database, reads: Vec<Op>) {
    let txn = match database.begin_read() {
        Ok(txn) => txn,
        Err(e) => return fail_all(reads, &storage(e)),
    };
    let by_token = match txn.open_table(BY_TOKEN) {
        Ok(table) => table,
        Err(e) => return fail_all(reads, &storage(e)),
    };
    let now = now();
    for op in reads {
        match op {
            Op::Lookup(tokens, reply) => {
                let found = tokens
                    .iter()
                    .map(|token| {
                        Ok(by_token.get(&**token)?.and_then(|guard| {
                            let (fingerprint, sealed, expiry) = guard.value();
                            let expiry = Expiry(expiry);
                            Some(Stored {
                                fingerprint: fingerprint.try_into().ok()?,
                                sealed: sealed.to_vec(),
                                expiry,
                            })
                            .filter(|_| !expiry.is_past(now))
                        }))
                    })
                    .collect::<Result<Vec<_>, redb::StorageError>>()
                    .map_err(storage);
                let _ = reply.send(found);
            }
            Op::Count(reply) => {
                let _ = reply.send(by_token.len().map_err(storage));
            }
            _ => unreachable!("writes are partitioned out"),
        }
    }
}

/// Removes every mapping whose time is past.
fn sweep(database: &Database) -> Result<(), redb::Error> {
    let txn = database.begin_write()?;
    {
        let mut by_fingerprint = txn.open_table(BY_FINGERPRINT)?;
        let mut by_token = txn.open_table(BY_TOKEN)?;
        let mut expiring = txn.open_table(EXPIRING)?;
        let mut retired = txn.open_table(RETIRED)?;
        let now = now();
        let due: Vec<String> = expiring
            .range((0, "")..(now + 1, ""))?
            .map(|entry| entry.map(|(key, _)| key.value().1.to_owned()))
            .collect::<Result<_, _>>()?;
        let mut tables = Tables {
            by_fingerprint: &mut by_fingerprint,
            by_token: &mut by_token,
            expiring: &mut expiring,
            retired: &mut retired,
        };
        for token in due {
            tables.erase_token(&token)?;
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(fingerprint: u8, token: &str) -> NewMapping {
        NewMapping {
            fingerprint: [fingerprint; 32],
            token: token.into(),
            sealed: vec![fingerprint],
            expiry: Expiry::NEVER,
        }
    }

    /// A value keeps its token; a token is one value's only, even after
    /// that value's mapping is erased; an erased value gets a new token.
    #[tokio::test]
    async fn tokens_are_never_shared_nor_handed_out_again() {
        let dir = std::env::temp_dir().join(format!("scrim-embedded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Embedded::open(&dir.join("v.redb")).unwrap();
        assert_eq!(
            store.issue(vec![mapping(1, "tok_a")]).await.unwrap(),
            [Issued::New]
        );
        assert_eq!(
            store
                .issue(vec![mapping(1, "tok_b"), mapping(2, "tok_a")])
                .await
                .unwrap(),
            [
                Issued::Existing("tok_a".into(), Expiry::NEVER),
                Issued::TokenTaken
            ]
        );
        assert_eq!(
            store.erase_fingerprints(vec![[1; 32]]).await.unwrap(),
            [Some("tok_a".into())]
        );
        assert!(store.lookup(vec!["tok_a".into()]).await.unwrap()[0].is_none());
        assert_eq!(
            store.issue(vec![mapping(2, "tok_a")]).await.unwrap(),
            [Issued::TokenTaken]
        );
        assert_eq!(
            store.issue(vec![mapping(1, "tok_c")]).await.unwrap(),
            [Issued::New]
        );
        assert_eq!(store.count().await.unwrap(), 1);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
