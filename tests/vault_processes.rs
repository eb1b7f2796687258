//! The token vault across `scrim run` processes: two replicas sharing one
//! real Redis, a Redis that goes away, and an embedded store that survives
//! `kill -9` under load.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::process::{self, Running};
use support::redis::Redis;
use support::{KEY, Mock, TempDir};

fn config(vault: &str, upstream: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
keys:
  vault: ${{SCRIM_PSEUDONYM_KEY}}
  admin: ${{SCRIM_PSEUDONYM_KEY}}
vault:
{vault}
routes:
  - name: crm
    match: {{path_prefix: /crm}}
    upstream: {upstream}
    rules:
      - select: $.email
        action: tokenize
        normalize: email
  - name: plain
    match: {{path_prefix: /plain}}
    upstream: {upstream}
    rules:
      - select: $.email
        action: hash
        normalize: email
"#
    )
}

fn redis_config(redis: &Redis, upstream: &str) -> String {
    config(
        &format!("  store: redis\n  url: {}\n  timeout: 1s", redis.url()),
        upstream,
    )
}

/// Sends one event; its status, or `None` when the connection failed.
async fn post(address: &str, path: &str, body: String) -> Option<http::StatusCode> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let request = Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    client.request(request).await.ok().map(|r| r.status())
}

fn event(i: usize) -> String {
    format!(r#"{{"i":{i},"email":"User{i}@Example.com"}}"#)
}

/// Each event the mock received: its `i` and its email token.
fn received(mock: &Mock) -> Vec<(u64, String)> {
    mock.requests()
        .iter()
        .filter(|r| r.uri.starts_with("/crm"))
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            (
                body["i"].as_u64().unwrap(),
                body["email"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn admin(running: &Running, path: &str, body: &str) -> serde_json::Value {
    let request = Request::post(format!("http://{}{path}", running.admin))
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let (status, _, body) = support::send(request).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

async fn reveal(running: &Running, tokens: &[String]) -> Vec<serde_json::Value> {
    let body = serde_json::json!({ "tokens": tokens }).to_string();
    admin(running, "/vault/reveal", &body).await["values"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_converge_erase_everywhere_and_fail_closed_without_it() {
    let mut redis = Redis::start();
    let mock = Mock::start(Duration::ZERO).await;
    let yaml = redis_config(&redis, &mock.url());
    let a = process::start("vault-replica-a", &yaml);
    let b = process::start("vault-replica-b", &yaml);

    // 100 values both replicas see for the first time, at once.
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..100 {
        for replica in [a.listen.clone(), b.listen.clone()] {
            sends.spawn(async move { post(&replica, "/crm/e", event(i)).await });
        }
    }
    while let Some(status) = sends.join_next().await {
        assert_eq!(status.unwrap(), Some(http::StatusCode::OK));
    }
    let mut tokens: HashMap<u64, HashSet<String>> = HashMap::new();
    for (i, token) in received(&mock) {
        assert!(token.starts_with("tok_"), "{token}");
        tokens.entry(i).or_default().insert(token);
    }
    assert_eq!(tokens.len(), 100);
    for (i, seen) in &tokens {
        assert_eq!(
            seen.len(),
            1,
            "value {i} got {} tokens across the replicas",
            seen.len()
        );
    }
    let token = |i: u64| tokens[&i].iter().next().unwrap().clone();

    // Each replica reveals what the other issued.
    let all: Vec<String> = (0..100).map(token).collect();
    for replica in [&a, &b] {
        let values = reveal(replica, &all).await;
        for (i, value) in values.iter().enumerate() {
            assert_eq!(value, &format!("user{i}@example.com"));
        }
    }

    // Erased through one replica, by value and by token: dead on both.
    let erased = admin(
        &a,
        "/vault/erase",
        r#"{"values":["user0@example.com","USER1@example.com"]}"#,
    )
    .await;
    assert_eq!(erased["erased"], 2);
    let by_token = serde_json::json!({ "tokens": [token(2)] }).to_string();
    assert_eq!(admin(&b, "/vault/erase", &by_token).await["erased"], 1);
    let dead = vec![token(0), token(1), token(2)];
    for replica in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let values = reveal(replica, &dead).await;
            if values.iter().all(serde_json::Value::is_null) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "an erased token still reveals: {values:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(reveal(replica, &[token(3)]).await[0], "user3@example.com");
    }
    // The value comes back with a new token, the same on both replicas.
    let before = mock.requests().len();
    assert_eq!(
        post(&b.listen, "/crm/e", event(0)).await,
        Some(http::StatusCode::OK)
    );
    assert_eq!(
        post(&a.listen, "/crm/e", event(0)).await,
        Some(http::StatusCode::OK)
    );
    let fresh: Vec<String> = received(&mock)[before..]
        .iter()
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(fresh.len(), 2);
    assert_ne!(fresh[0], token(0));
    assert_eq!(fresh[0], fresh[1]);

    // Redis loses its data while they run, and a third replica starts on
    // it (with a fingerprint key of its own): the first two refuse to make
    // tokens rather than give a value another token than the third would.
    redis.flush_all();
    let c = process::start("vault-replica-c", &yaml);
    let before = mock.requests().len();
    let status = post(&a.listen, "/crm/e", event(400)).await;
    assert_eq!(status, Some(http::StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(
        post(&c.listen, "/crm/e", event(400)).await,
        Some(http::StatusCode::OK)
    );
    assert_eq!(
        mock.requests().len(),
        before + 1,
        "only the third replica forwarded"
    );
    drop(c);

    // Redis goes away: a value the vault has not seen gets 503 and
    // nothing reaches the platform; routes without vault rules work on.
    redis.stop();
    let before = mock.requests().len();
    for replica in [&a, &b] {
        let status = post(&replica.listen, "/crm/e", event(500)).await;
        assert_eq!(status, Some(http::StatusCode::SERVICE_UNAVAILABLE));
        let status = post(&replica.listen, "/plain/e", event(501)).await;
        assert_eq!(status, Some(http::StatusCode::OK));
    }
    let after: Vec<_> = mock.requests()[before..]
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    assert_eq!(
        after,
        ["/plain/e", "/plain/e"],
        "only the plain route forwarded"
    );
}

/// `kill -9` while requests with new values stream in: after a restart
/// every token the platform received reveals to its value, and values get
/// the tokens they had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_loses_no_forwarded_token_to_a_kill() {
    let dir = TempDir::new("vault-crash");
    let mock = Mock::start(Duration::ZERO).await;
    let yaml = config(&format!("  path: {}", dir.file("vault.redb")), &mock.url());
    let first = process::start("vault-crash-1", &yaml);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let (listen, stop) = (first.listen.clone(), stop.clone());
        load.spawn(async move {
            let mut i = worker;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if post(&listen, "/crm/e", event(i)).await.is_none() {
                    break;
                }
                i += 16;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(first); // SIGKILL, mid-load
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while load.join_next().await.is_some() {}

    let sent = received(&mock);
    assert!(
        sent.len() > 100,
        "only {} events reached the upstream before the kill",
        sent.len()
    );
    let second = process::start("vault-crash-2", &yaml);
    let tokens: Vec<String> = sent.iter().map(|(_, token)| token.clone()).collect();
    let values = reveal(&second, &tokens).await;
    let lost: Vec<_> = sent
        .iter()
        .zip(&values)
        .filter(|((i, _), value)| **value != format!("user{i}@example.com"))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} forwarded tokens lost: {:?}",
        lost.len(),
        sent.len(),
        &lost[..lost.len().min(3)]
    );

    // Convergence holds across the restart.
    let (i, token) = sent[0].clone();
    let before = mock.requests().len();
    assert_eq!(
        post(&second.listen, "/crm/e", event(i as usize)).await,
        Some(http::StatusCode::OK)
    );
    assert_eq!(received(&mock)[before..][0], (i, token));
}
