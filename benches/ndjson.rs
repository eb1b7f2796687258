//! Hashing bodies near the cost of SHA-256 itself (issue 17): Meta CAPI
//! events as NDJSON, one event per line, shaped like a real export (`em`
//! and `ph` as arrays, names with accents, long user agents and URLs), 11
//! `user_data` fields hashed after trim and lowercase. In one criterion
//! group, so that the ratios come from one run:
//!
//! - `scrim/hash`: `BodyRewriter` for NDJSON, as `scrim rewrite` uses it,
//!   64 KiB chunks;
//! - `serde_tree/hash`: the obvious program doing the same job with
//!   serde_json: each line parsed to a `Value`, the same values trimmed,
//!   lowercased and replaced with their SHA-256 hex, written back;
//! - the floor, in two rows that add up: `scrim/passthrough` (the same
//!   rewriter with no rule matching: reading and writing the bytes) and
//!   `floor/hash_only` (trim + lowercase + SHA-256 + hex of exactly the
//!   values the rules select, already extracted, into a reused buffer).
//!
//! `cargo bench --bench ndjson` (EVENTS=200000 for the full 160 MB file;
//! the default, 20,000 events, keeps a criterion run short).
//!
//! To profile one row with nothing else in the process (no generation of
//! the other rows' inputs, no criterion): `PROFILE=scrim/hash` (or any row's
//! name) runs it `ROUNDS` times (default 10) and exits, e.g.
//! `EVENTS=2000 PROFILE=scrim/hash valgrind --tool=callgrind
//! target/release/deps/ndjson-HASH --bench`; divide by EVENTS × ROUNDS for
//! the instructions of one event.
//!
//! On a shared machine whose speed swings within a criterion run (its rows
//! are timed a minute apart), `TURNS=11` times the four rows in turns
//! instead: one run of each a turn, the row that goes first rotating, and
//! prints each row's median and the ratios of the issue, each the median
//! of the turns' own ratios (rows timed seconds apart).

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use scrim::policy::{Limits, OnInvalid, Rules, Unlisted};
use scrim::rewrite::{BodyKind, BodyRewriter};
use scrim::transform::{Action, Encoding, Normalizer};
use sha2::{Digest, Sha256};

mod support;
use support::{CountSink, chunks};

const FIELDS: [&str; 11] = [
    "em",
    "ph",
    "fn",
    "ln",
    "db",
    "ge",
    "ct",
    "st",
    "zp",
    "country",
    "external_id",
];

const FIRST: [&str; 8] = [
    "Zoë", "José", "Ana", "Björn", "Chloé", "Øyvind", "Renée", "Mikołaj",
];
const LAST: [&str; 6] = ["O'Brien", "Müller", "García", "Nuñez", "Dvořák", "Smith"];
const CITIES: [&str; 5] = ["Menlo Park", "São Paulo", "Zürich", "Kraków", "Montréal"];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
];

fn event(i: usize) -> serde_json::Value {
    serde_json::json!({
        "event_name": "Purchase",
        "event_time": 1764400000 + i,
        "event_id": format!("order-{i:07}"),
        "action_source": "website",
        "event_source_url": format!("https://bakery.example/checkout/confirm/{i}?utm_source=newsletter&utm_medium=email&utm_campaign=winter-{}", i % 97),
        "user_data": {
            "em": [format!("  {}.{i}@Example.com ", FIRST[i % FIRST.len()]), format!("Orders+{i}@Bakery.Example")],
            "ph": [format!("+1 (650) 555-{:04}", i % 10000), format!("+44 20 7946 {:04}", (i * 7) % 10000)],
            "fn": FIRST[i % FIRST.len()],
            "ln": format!("{}-{i}", LAST[i % LAST.len()]),
            "db": "19900213",
            "ge": "F",
            "ct": CITIES[i % CITIES.len()],
            "st": "CA",
            "zp": "94025",
            "country": "US",
            "external_id": format!("Cust-{i:08}"),
            "client_ip_address": format!("203.0.{}.{}", i % 250, i % 200),
            "client_user_agent": AGENTS[i % AGENTS.len()],
            "fbc": format!("fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz{i}"),
            "fbp": format!("fb.1.1558571054389.{}", 1098115397 + i)
        },
        "custom_data": {
            "currency": "usd",
            "value": 12.5 + (i % 40) as f64,
            "content_ids": [format!("sku-{:05}", i % 3000), format!("sku-{:05}", (i * 13) % 3000)],
            "content_type": "product"
        }
    })
}

fn ndjson(events: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..events {
        serde_json::to_writer(&mut body, &event(i)).unwrap();
        body.push(b'\n');
    }
    body
}

fn rules(selectors: impl Iterator<Item = String>) -> Rules {
    Rules::build(
        selectors.map(|selector| {
            let action = Action::Hash {
                normalizer: Normalizer::Lowercase,
                encoding: Encoding::Hex,
            };
            (selector, action, OnInvalid::Drop)
        }),
        Unlisted::Keep,
        Limits::default(),
    )
    .unwrap()
}

fn scrim(rules: &Rules, body: &Bytes) -> usize {
    let kind = BodyKind::for_route("application/x-ndjson", rules).unwrap();
    let mut rewriter = BodyRewriter::new(kind, rules, CountSink(0), false);
    for chunk in chunks(body, 64 * 1024) {
        rewriter.write(chunk).unwrap();
    }
    rewriter.finish().unwrap().0.0
}

fn hex_digest(normalized: &str, out: &mut String) {
    let digest = Sha256::digest(normalized.as_bytes());
    for byte in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
}

fn hashed(value: &str) -> serde_json::Value {
    let mut out = String::with_capacity(64);
    hex_digest(&value.trim().to_lowercase(), &mut out);
    serde_json::Value::String(out)
}

/// The serde_json program: each line to a `Value`, the fields hashed,
/// written back.
fn serde_tree(body: &[u8]) -> usize {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut event: serde_json::Value = serde_json::from_slice(line).unwrap();
        let user_data = &mut event["user_data"];
        for field in FIELDS {
            match &mut user_data[field] {
                serde_json::Value::String(text) => {
                    let replaced = hashed(text);
                    user_data[field] = replaced;
                }
                serde_json::Value::Array(items) => {
                    for item in items {
                        if let serde_json::Value::String(text) = item {
                            *item = hashed(text);
                        }
                    }
                }
                _ => {}
            }
        }
        serde_json::to_writer(&mut out, &event).unwrap();
        out.push(b'\n');
    }
    out.len()
}

/// Every value the rules select, in order.
fn selected_values(body: &[u8]) -> Vec<String> {
    let mut values = Vec::new();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let event: serde_json::Value = serde_json::from_slice(line).unwrap();
        for field in FIELDS {
            match &event["user_data"][field] {
                serde_json::Value::String(text) => values.push(text.clone()),
                serde_json::Value::Array(items) => values.extend(
                    items
                        .iter()
                        .filter_map(|item| item.as_str().map(str::to_owned)),
                ),
                _ => {}
            }
        }
    }
    values
}

/// The floor's digits: a table of every byte's two, written to an array
/// and appended at once (the tree program's `hex_digest` pushes them one
/// character at a time, as the obvious program would).
fn hex_digits(normalized: &str, out: &mut String) {
    const PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut pairs = [[0u8; 2]; 256];
        let mut b = 0;
        while b < 256 {
            pairs[b] = [DIGITS[b >> 4], DIGITS[b & 15]];
            b += 1;
        }
        pairs
    };
    let digest = Sha256::digest(normalized.as_bytes());
    let mut digits = [[0u8; 2]; 32];
    for (pair, byte) in digits.iter_mut().zip(digest) {
        *pair = PAIRS[usize::from(byte)];
    }
    out.push_str(std::str::from_utf8(digits.as_flattened()).unwrap());
}

/// The floor's hashing half: normalize, SHA-256 and hex each selected
/// value, with no allocation per value.
fn hash_only(values: &[String]) -> usize {
    let (mut normalized, mut hex) = (String::new(), String::with_capacity(64));
    let mut total = 0;
    for value in values {
        normalized.clear();
        let trimmed = value.trim();
        // ASCII, nearly every value, lowercases byte by byte.
        if trimmed.is_ascii() {
            normalized.push_str(trimmed);
            normalized.make_ascii_lowercase();
        } else {
            // Accented text: its ASCII and Latin-1 letters without
            // Unicode's tables, as scrim's normalizer does.
            for c in trimmed.chars() {
                match c {
                    'A'..='Z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{DE}' => {
                        normalized.push(char::from(c as u8 + 0x20));
                    }
                    '\0'..='\u{FF}' => normalized.push(c),
                    _ => normalized.extend(c.to_lowercase()),
                }
            }
        }
        hex.clear();
        hex_digits(&normalized, &mut hex);
        total += hex.len();
    }
    total
}

fn bench(c: &mut Criterion) {
    let inputs = Inputs::new(true);
    eprintln!(
        "CAPI NDJSON: {} bytes, {} values hashed",
        inputs.body.len(),
        inputs.values.len()
    );
    // The two programs agree on what they write.
    assert_eq!(inputs.run("scrim/hash"), inputs.run("serde_tree/hash"));

    let mut group = c.benchmark_group("capi_ndjson");
    group.throughput(Throughput::Bytes(inputs.body.len() as u64));
    group.sample_size(10);
    for row in ROWS {
        group.bench_function(row, |b| b.iter(|| inputs.run(black_box(row))));
    }
    group.finish();
}

const ROWS: [&str; 4] = [
    "scrim/hash",
    "serde_tree/hash",
    "scrim/passthrough",
    "floor/hash_only",
];

fn number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The rows' inputs, made once.
struct Inputs {
    body: Bytes,
    /// Empty unless the hashing-only row is run.
    values: Vec<String>,
    hashing: Rules,
    nothing: Rules,
}

impl Inputs {
    fn new(with_values: bool) -> Self {
        let body = Bytes::from(ndjson(number("EVENTS", 20_000)));
        let values = if with_values {
            selected_values(&body)
        } else {
            Vec::new()
        };
        Inputs {
            body,
            values,
            hashing: rules(FIELDS.iter().map(|field| format!("$.user_data.{field}"))),
            nothing: rules(std::iter::once("$.user_data.nothing".to_owned())),
        }
    }

    fn run(&self, row: &str) -> usize {
        match row {
            "scrim/hash" => scrim(&self.hashing, &self.body),
            "serde_tree/hash" => serde_tree(&self.body),
            "scrim/passthrough" => scrim(&self.nothing, &self.body),
            "floor/hash_only" => hash_only(&self.values),
            other => panic!("{other}: no such row (rows: {ROWS:?})"),
        }
    }
}

/// Runs the row named by `PROFILE` `ROUNDS` times, for a profiler.
fn profile(row: &str) {
    let inputs = Inputs::new(row == "floor/hash_only");
    for _ in 0..number("ROUNDS", 10) {
        black_box(inputs.run(black_box(row)));
    }
}

/// Times the rows in `turns` turns (see the module's documentation).
fn side_by_side(turns: usize) {
    let inputs = Inputs::new(true);
    let mut times = [const { Vec::new() }; ROWS.len()];
    for turn in 0..turns {
        for k in 0..ROWS.len() {
            let row = (turn + k) % ROWS.len();
            let start = Instant::now();
            black_box(inputs.run(black_box(ROWS[row])));
            times[row].push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    for (row, ms) in ROWS.iter().zip(&times) {
        println!(
            "{row}: median {:.1} ms over {turns} turns",
            median(ms.clone())
        );
    }
    let [rewrite, tree, pass, hash_alone] = &times;
    let per_turn = |f: &dyn Fn(usize) -> f64| median((0..turns).map(f).collect());
    println!(
        "tree / scrim = {:.2}; scrim / (passthrough + hash_only) = {:.2} (medians of the turns' ratios)",
        per_turn(&|t| tree[t] / rewrite[t]),
        per_turn(&|t| rewrite[t] / (pass[t] + hash_alone[t])),
    );
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(row) = std::env::var("PROFILE") {
        return profile(&row);
    }
    match number("TURNS", 0) {
        0 => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
        turns => side_by_side(turns),
    }
}
