//! New values on the embedded store: tokens made per second when requests,
//! each with one value the vault has never seen, come one at a time and
//! many at once. Each token is durable (a commit with `fsync`) before its
//! request is answered; with many requests waiting, the store's thread
//! commits all of them at once (group commit), so tokens per second grow
//! with the number of requests in flight while commits per second stay what
//! the disk allows.
//!
//! `cargo bench --bench vault_issue [-- SECONDS]` (default 3 per row,
//! 3 rounds; the median is printed)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scrim::policy::{VaultSettings, VaultStore};
use scrim::rewrite::{Lookups, VaultCache};
use scrim::transform::{Normalizer, PseudonymKey, TokenFormat, Tokenize};
use scrim::vault::Vault;

const CONCURRENCY: [usize; 5] = [1, 8, 64, 256, 1024];
const ROUNDS: usize = 3;

fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("scrim-bench-issue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let settings = VaultSettings {
        store: VaultStore::Embedded {
            path: dir.join("vault.redb"),
        },
        cache_entries: 100_000,
        timeout: Duration::from_secs(30),
        key: Arc::new(PseudonymKey::new(
            b"a bench key of at least 16 bytes".to_vec(),
        )),
        previous_keys: Vec::new(),
    };
    let metrics = scrim::metrics::Metrics::new();
    let vault = Arc::new(
        runtime
            .block_on(Vault::open(&settings, metrics.vault.clone()))
            .unwrap(),
    );
    let rule = Arc::new(Tokenize {
        namespace: "bench".to_owned(),
        format: TokenFormat::Opaque {
            prefix: "tok_".to_owned(),
        },
        ttl: None,
        normalizer: Normalizer::Email,
    });
    let next = Arc::new(AtomicU64::new(0));
    println!(
        "requests in flight | new tokens/s (median of {ROUNDS} rounds of {seconds} s) | rounds"
    );
    println!("---|---|---");
    for concurrency in CONCURRENCY {
        let mut rates: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                runtime.block_on(round(
                    &vault,
                    &rule,
                    &next,
                    concurrency,
                    Duration::from_secs(seconds),
                ))
            })
            .collect();
        let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "{concurrency} | {:.0} | {}",
            rates[ROUNDS / 2],
            shown.join(" / ")
        );
    }
    drop(vault);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tokens per second made by `concurrency` tasks, each asking for the
/// token of one new value at a time, as a request's rewrite asks.
async fn round(
    vault: &Arc<Vault>,
    rule: &Arc<Tokenize>,
    next: &Arc<AtomicU64>,
    concurrency: usize,
    length: Duration,
) -> f64 {
    let made = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + length;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (vault, rule, next, made) = (vault.clone(), rule.clone(), next.clone(), made.clone());
        tasks.spawn(async move {
            let cache: Arc<dyn VaultCache> = vault.clone();
            while Instant::now() < until {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let mut lookups = Lookups::new(cache.clone());
                let mut token = String::new();
                lookups.token(&rule, &format!("customer.{i}@example.com"), &mut token);
                let answers = vault.answer(lookups.take_questions()).await.unwrap();
                assert_eq!(answers.tokens.len(), 1);
                made.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    made.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
