//! `scrim run` as a process: SIGTERM lets requests in flight finish, SIGHUP
//! reloads the configuration.

mod support;

use std::process::Child;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::Signal;
use support::process::start;
use support::{Mock, PATIENCE, eventually, eventually_async};

fn config(upstream: &str, action: &str) -> String {
    format!(
        "listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
server:
  shutdown_grace: 10s
routes:
  - name: meta
    match: {{path_prefix: /meta}}
    upstream: {upstream}
    rules:
      - select: $.data[*].user_data.em
        action: {action}
"
    )
}

fn signal(child: &Child, signal: Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
}

async fn post(url: String) -> Result<u16, String> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let request = support::email_event_post(url);
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish() {
    let mock = Mock::start(Duration::from_millis(1500)).await;
    let mut scrim = start("term", &config(&mock.url(), "hash"));
    let url = format!("http://{}/meta/events", scrim.listen);
    let in_flight: Vec<_> = (0..5).map(|_| tokio::spawn(post(url.clone()))).collect();
    // SIGTERM once all five are in flight: at the upstream, which holds each
    // for 1.5 s before it answers.
    eventually("the five requests reach the upstream", PATIENCE, || {
        mock.requests().len() == 5
    })
    .await;
    signal(&scrim.child, Signal::SIGTERM);
    for request in in_flight {
        assert_eq!(request.await.unwrap(), Ok(200));
    }
    let exited = tokio::task::spawn_blocking(move || {
        let status = scrim.child.wait().unwrap();
        (status, scrim)
    });
    let (status, _scrim) = tokio::time::timeout(Duration::from_secs(10), exited)
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(mock.requests().len(), 5);
    assert!(
        post(url).await.is_err(),
        "a stopped scrim accepts no new request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = start("hup", &config(&mock.url(), "hash"));
    let url = format!("http://{}/meta/events", scrim.listen);
    assert_eq!(post(url.clone()).await, Ok(200));
    std::fs::write(scrim.dir.join("scrim.yaml"), config(&mock.url(), "drop")).unwrap();
    signal(&scrim.child, Signal::SIGHUP);
    eventually_async("the new rules apply", PATIENCE, || async {
        assert_eq!(post(url.clone()).await, Ok(200));
        let last = mock.requests().pop().unwrap();
        !String::from_utf8_lossy(&last.body).contains("\"em\"")
    })
    .await;
    // An invalid file is refused on SIGHUP: the last good rules keep working.
    std::fs::write(scrim.dir.join("scrim.yaml"), "routes: [").unwrap();
    signal(&scrim.child, Signal::SIGHUP);
    eventually("scrim refuses the invalid file", PATIENCE, || {
        let log = scrim.log.lock().unwrap();
        log.iter()
            .any(|line| line.contains("configuration refused; the previous one stays"))
    })
    .await;
    assert_eq!(post(url.clone()).await, Ok(200));
    let last = mock.requests().pop().unwrap();
    assert!(
        !String::from_utf8_lossy(&last.body).contains("\"em\""),
        "still the dropping rules"
    );
    let first = String::from_utf8(mock.requests()[0].body.to_vec()).unwrap();
    assert!(
        first.contains("\"em\":\"5dfec14a") && !first.contains("John"),
        "hashed before the reload: {first}"
    );
}
