//! The streaming rewriter against a serde_json `Value` round trip doing the
//! same rewrite, on a generated ~1 MiB Meta Conversions API batch (500
//! events, 11 hashed `user_data` fields each), plus pass-through cases where
//! no rule matches, each also with a preset route's default `scan:` (every
//! other string through the detectors). All in one criterion group, so the ratios come from one
//! run on one machine.
//!
//! A second group, `scaling`, measures what issue 10 bounds: 200 descendant
//! rules against one, and one-byte chunks against 64 KiB chunks.
//!
//! A third, `vault_capi_1mib`, puts the same batch's 11 fields through
//! `tokenize` with every value in the vault's cache, against `hmac` of the
//! same normalized values: what a token costs once the vault knows it.
//!
//! `cargo bench --bench rewrite` (`-- scaling` for the second group only)

use std::hint::black_box;

#[path = "../tests/common/bodies.rs"]
mod bodies;
use bodies::tiny_objects;
mod support;
use support::{CountSink, chunks};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use scrim::policy::{Limits, OnInvalid, Rules, Unlisted};
use scrim::rewrite::{BodyKind, BodyRewriter, Framing, JsonRewriter, tree};
use scrim::transform::{Action, Encoding, Normalizer, PhoneOptions};
use sha2::{Digest, Sha256};

const FIELDS: [(&str, &str); 11] = [
    ("em", "email"),
    ("ph", "phone"),
    ("fn", "name"),
    ("ln", "name"),
    ("db", "date"),
    ("ge", "gender"),
    ("ct", "city"),
    ("st", "state"),
    ("zp", "zip"),
    ("country", "country"),
    ("external_id", "external_id"),
];

/// A Meta CAPI batch: `events` events of about 2 KiB each.
fn meta_batch(events: usize) -> Vec<u8> {
    let mut data = Vec::new();
    for i in 0..events {
        data.push(meta_event(i));
    }
    serde_json::to_vec(&serde_json::json!({ "data": data, "test_event_code": "TEST12345" }))
        .unwrap()
}

/// The same batch as an app that hashes on its own sends it: every
/// `user_data` field a rule would hash is a SHA-256 digest already, so a
/// scan of every string finds nothing and the body passes unchanged.
fn meta_batch_prehashed(events: usize) -> Vec<u8> {
    let mut data = Vec::new();
    for i in 0..events {
        let mut event = meta_event(i);
        for (field, _) in FIELDS {
            let value = &mut event["user_data"][field];
            let raw = match value.take() {
                serde_json::Value::Array(mut items) => items.remove(0),
                other => other,
            };
            let digest: String = Sha256::digest(raw.as_str().unwrap().as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            *value = serde_json::json!([digest]);
        }
        data.push(event);
    }
    serde_json::to_vec(&serde_json::json!({ "data": data, "test_event_code": "TEST12345" }))
        .unwrap()
}

fn meta_event(i: usize) -> serde_json::Value {
    serde_json::json!({
        "event_name": "Purchase",
        "event_time": 1764400000 + i,
        "event_id": format!("order-{i:06}"),
        "action_source": "website",
        "event_source_url": format!("https://bakery.example/checkout/{i}?utm_source=newsletter&utm_medium=email"),
        "user_data": {
            "em": [format!("  Customer.{i}@Example.com ")],
            "ph": [format!("+1 (650) 555-{:04}", i % 10000)],
            "fn": "Zoë",
            "ln": format!("O'Brien-{i}"),
            "db": "1990-02-13",
            "ge": "female",
            "ct": "Menlo Park",
            "st": "California",
            "zp": "94025-1234",
            "country": "US",
            "external_id": format!("cust-{i:08}"),
            "client_ip_address": format!("203.0.{}.{}", i % 250, i % 200),
            "client_user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
            "fbc": "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890",
            "fbp": format!("fb.1.1558571054389.{}", 1098115397 + i)
        },
        "custom_data": {
            "currency": "usd",
            "value": 123.45,
            "content_type": "product",
            "order_id": format!("ORD-{i:08}"),
            "contents": (0..11).map(|j| serde_json::json!({
                "id": format!("sku-{j:05}"), "quantity": j + 1, "item_price": 4.5 + j as f64,
                "title": "Sourdough loaf, whole wheat, 800 g", "category": "bread"
            })).collect::<Vec<_>>()
        }
    })
}

fn rules(selectors: impl Iterator<Item = (String, Action)>) -> Rules {
    Rules::build(
        selectors.map(|(s, a)| (s, a, OnInvalid::Drop)),
        Unlisted::Keep,
        Limits::default(),
    )
    .unwrap()
}

fn hash_rules(prefix: &str, normalized: bool) -> Rules {
    field_rules(prefix, normalized, |normalizer| Action::Hash {
        normalizer,
        encoding: Encoding::Hex,
    })
}

/// One rule per user_data field, with the field's normalizer (or none).
fn field_rules(prefix: &str, normalized: bool, action: impl Fn(Normalizer) -> Action) -> Rules {
    rules(FIELDS.iter().map(|(field, normalizer)| {
        let normalizer = match (normalized, *normalizer) {
            (false, _) => Normalizer::None,
            (true, "phone") => Normalizer::Phone(PhoneOptions {
                default_region: Some(phonenumber::country::Id::US),
                plus: false,
            }),
            (true, name) => serde_saphyr::from_str(name).unwrap(),
        };
        (format!("{prefix}.{field}"), action(normalizer))
    }))
}

fn stream(rules: &Rules, body: &Bytes) -> usize {
    let mut rewriter = JsonRewriter::new(rules, Framing::Single, CountSink(0));
    for chunk in chunks(body, 64 * 1024) {
        rewriter.write(chunk).unwrap();
    }
    rewriter.finish().unwrap().0.0
}

fn bench(c: &mut Criterion) {
    let body = Bytes::from(meta_batch(500));
    eprintln!("Meta CAPI batch: 500 events, {} bytes", body.len());
    let hashed = hash_rules("$.data[*].user_data", false);
    let normalized = hash_rules("$.data[*].user_data", true);
    let untracked = rules(std::iter::once(("$.nothing".to_owned(), Action::Drop)));
    let tracked_miss = hash_rules("$.data[*].user_data.absent", false);
    // What a preset route does by default: its rules, and every other
    // string through the default detectors.
    let scanning = |mut rules: Rules| {
        rules.scan = Some(scrim::detect::Scan::preset_default(Some(
            phonenumber::country::Id::US,
        )));
        rules
    };
    let normalized_scanned = scanning(normalized.clone());
    let untracked_scanned = scanning(untracked.clone());

    // Both implementations must agree before they are timed.
    for rules in [&hashed, &normalized] {
        let mut streamed = Vec::new();
        let mut rewriter = JsonRewriter::new(rules, Framing::Single, &mut streamed);
        rewriter.write(body.clone()).unwrap();
        rewriter.finish().unwrap();
        let streamed: serde_json::Value = serde_json::from_slice(&streamed.concat()).unwrap();
        let round_trip: serde_json::Value =
            serde_json::from_slice(&tree::rewrite_bytes(rules, &body).unwrap()).unwrap();
        assert_eq!(streamed, round_trip);
    }

    let mut group = c.benchmark_group("meta_capi_1mib");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.sample_size(30);
    group.bench_function("stream/hash", |b| {
        b.iter(|| stream(black_box(&hashed), black_box(&body)))
    });
    group.bench_function("serde_value/hash", |b| {
        b.iter(|| tree::rewrite_bytes(black_box(&hashed), black_box(&body)).unwrap())
    });
    group.bench_function("stream/hash_normalized", |b| {
        b.iter(|| stream(black_box(&normalized), black_box(&body)))
    });
    group.bench_function("serde_value/hash_normalized", |b| {
        b.iter(|| tree::rewrite_bytes(black_box(&normalized), black_box(&body)).unwrap())
    });
    group.bench_function("stream/passthrough_untracked", |b| {
        b.iter(|| stream(black_box(&untracked), black_box(&body)))
    });
    group.bench_function("stream/passthrough_tracked", |b| {
        b.iter(|| stream(black_box(&tracked_miss), black_box(&body)))
    });
    group.bench_function("stream/hash_normalized_scan", |b| {
        b.iter(|| stream(black_box(&normalized_scanned), black_box(&body)))
    });
    group.bench_function("stream/passthrough_scan", |b| {
        b.iter(|| stream(black_box(&untracked_scanned), black_box(&body)))
    });
    group.bench_function("serde_value/passthrough", |b| {
        b.iter(|| tree::rewrite_bytes(black_box(&untracked), black_box(&body)).unwrap())
    });
    group.finish();

    // A body that passes unchanged although every string is scanned.
    let prehashed = Bytes::from(meta_batch_prehashed(500));
    assert_eq!(stream(&untracked_scanned, &prehashed), prehashed.len());
    let mut group = c.benchmark_group("meta_capi_prehashed_1mib");
    group.throughput(Throughput::Bytes(prehashed.len() as u64));
    group.sample_size(30);
    group.bench_function("stream/passthrough", |b| {
        b.iter(|| stream(black_box(&untracked), black_box(&prehashed)))
    });
    group.bench_function("stream/passthrough_scan", |b| {
        b.iter(|| stream(black_box(&untracked_scanned), black_box(&prehashed)))
    });
    group.finish();
}

/// `$..k7`, then `$..k0`, `$..k1`, ... up to `count` rules.
fn descendant_rules(count: usize) -> Rules {
    let hash = Action::Hash {
        normalizer: Normalizer::None,
        encoding: Encoding::Hex,
    };
    rules(
        std::iter::once(7)
            .chain((0..count).filter(|n| *n != 7))
            .take(count)
            .map(|n| (format!("$..k{n}"), hash.clone())),
    )
}

/// Through `BodyRewriter`, the entry the proxy and `scrim rewrite` use. The
/// pieces are owned, as the proxy owns the frames hyper hands it (cloning
/// them in the timed loop would time two atomic operations per piece that
/// the proxy does not pay).
fn body_rewriter(rules: &Rules, pieces: Vec<Bytes>) -> usize {
    let mut rewriter = BodyRewriter::new(BodyKind::Json, rules, CountSink(0), false);
    for piece in pieces {
        rewriter.write(piece).unwrap();
    }
    rewriter.finish().unwrap().0.0
}

fn pieces(body: &Bytes, size: usize) -> Vec<Bytes> {
    chunks(body, size).collect()
}

/// The cost of many rules and of many chunks (issue 10): 200 descendant
/// rules against one on the same body, and a body in one-byte chunks
/// against the same body in 64 KiB chunks.
fn scaling(c: &mut Criterion) {
    let body = Bytes::from(tiny_objects(16_000));
    eprintln!("tiny objects: {} bytes", body.len());
    let one = descendant_rules(1);
    let two_hundred = descendant_rules(200);
    let mut group = c.benchmark_group("scaling");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.sample_size(20);
    group.bench_function("rules/1_descendant", |b| {
        b.iter(|| stream(black_box(&one), black_box(&body)))
    });
    group.bench_function("rules/200_descendant", |b| {
        b.iter(|| stream(black_box(&two_hundred), black_box(&body)))
    });
    let large = pieces(&body, 64 * 1024);
    let tiny = pieces(&body, 1);
    let three = descendant_rules(3);
    group.bench_function("chunks/64KiB", |b| {
        b.iter_batched(
            || large.clone(),
            |pieces| body_rewriter(black_box(&three), pieces),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("chunks/1B", |b| {
        b.iter_batched(
            || tiny.clone(),
            |pieces| body_rewriter(black_box(&three), pieces),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The detectors over the clean values of the labelled corpus (order ids,
/// timestamps, URLs, digests: what a body's strings hold, none an
/// identifier), one value at a time, as a scan of every string would see
/// them.
fn detection(c: &mut Criterion) {
    let corpus = include_str!("../tests/data/scan/clean.jsonl");
    let values: Vec<String> = corpus
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|row| row["text"].as_str().map(str::to_owned))
        .collect();
    let bytes: usize = values.iter().map(String::len).sum();
    let detectors = scrim::detect::Detectors::default_set(Some(phonenumber::country::Id::US));
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(20);
    group.bench_function("clean_values/default_set", |b| {
        let mut findings = Vec::new();
        b.iter(|| {
            let mut found = 0;
            for value in &values {
                detectors.find(black_box(value), &mut findings);
                found += findings.len();
            }
            found
        })
    });
}

/// `tokenize` with every value cached, against `hmac`, on the CAPI batch.
fn vault(c: &mut Criterion) {
    use scrim::rewrite::Lookups;
    use scrim::transform::{HmacKey, PseudonymKey, Shape, TokenFormat, Tokenize};
    use std::sync::Arc;

    let body = Bytes::from(meta_batch(500));
    let key = Arc::new(PseudonymKey::new(
        b"a bench key of at least 16 bytes".to_vec(),
    ));
    let hmac = field_rules("$.data[*].user_data", true, |normalizer| Action::Hmac {
        key: HmacKey::Fixed(key.clone()),
        prefix: String::new(),
        length: 22,
        normalizer,
        shape: Shape::Token,
    });
    let tokenize = field_rules("$.data[*].user_data", true, |normalizer| {
        Action::Tokenize(Arc::new(Tokenize {
            namespace: "meta".to_owned(),
            format: TokenFormat::Opaque {
                prefix: "tok_".to_owned(),
            },
            ttl: None,
            normalizer,
        }))
    });
    let dir = std::env::temp_dir().join(format!("scrim-bench-vault-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = scrim::policy::VaultSettings {
        store: scrim::policy::VaultStore::Embedded {
            path: dir.join("vault.redb"),
        },
        cache_entries: 1_000_000,
        timeout: std::time::Duration::from_secs(30),
        key: key.clone(),
        previous_keys: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = scrim::metrics::Metrics::new();
    let vault = Arc::new(
        runtime
            .block_on(scrim::vault::Vault::open(&settings, metrics.vault.clone()))
            .unwrap(),
    );
    // One pass asks for every value; the vault answers and caches them.
    let lookups = Lookups::new(vault.clone());
    let mut warm =
        JsonRewriter::new(&tokenize, Framing::Single, CountSink(0)).lookups(lookups.clone());
    warm.write(body.clone()).unwrap();
    let (_, _, mut asked) = warm.finish_with_lookups().unwrap();
    let questions = asked.take_questions();
    eprintln!("vault: {} values tokenized before timing", questions.len());
    runtime.block_on(vault.answer(questions)).unwrap();
    let cached = |rules: &Rules, lookups: &Lookups| {
        let mut rewriter =
            JsonRewriter::new(rules, Framing::Single, CountSink(0)).lookups(lookups.clone());
        let mut at = 0;
        while at < body.len() {
            let end = (at + 64 * 1024).min(body.len());
            rewriter.write(body.slice(at..end)).unwrap();
            at = end;
        }
        let (sink, _, lookups) = rewriter.finish_with_lookups().unwrap();
        assert!(!lookups.asked(), "a cached value was asked for");
        sink.0
    };
    let mut group = c.benchmark_group("vault_capi_1mib");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.sample_size(30);
    group.bench_function("stream/hmac_normalized", |b| {
        b.iter(|| stream(black_box(&hmac), black_box(&body)))
    });
    group.bench_function("stream/tokenize_cached", |b| {
        b.iter(|| cached(black_box(&tokenize), black_box(&lookups)))
    });
    group.finish();
    drop(vault);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench, scaling, detection, vault);
criterion_main!(benches);
