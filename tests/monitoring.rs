//! The operations pack against the real thing: `promtool` checks and
//! unit-tests the rules, and a real Prometheus (Debian's `prometheus`,
//! installed by `.ci/run`) scrapes a real `scrim run` every second while
//! every expression of the dashboard and of the rules is evaluated through
//! its query API.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{Mock, TempDir, process, send};

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.exists());
    found.unwrap_or_else(|| {
        panic!("`{name}` is not installed: run .ci/run, or `apt-get install prometheus`")
    })
}

/// Runs `command`; its standard output, or the test fails with all it
/// printed.
fn succeeds(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn promtool_checks_the_rules_and_each_alert_fires_and_stays_quiet_in_its_unit_tests() {
    let promtool = tool("promtool");
    let rules = repository("config/prometheus");
    succeeds(
        Command::new(&promtool)
            .args(["check", "rules", "scrim-rules.yaml"])
            .current_dir(&rules),
    );
    succeeds(
        Command::new(&promtool)
            .args(["test", "rules", "scrim-rules.test.yaml"])
            .current_dir(&rules),
    );
    // Every alert has a case where it fires and one where it does not.
    let rules_text = std::fs::read_to_string(rules.join("scrim-rules.yaml")).unwrap();
    let tests_text = std::fs::read_to_string(rules.join("scrim-rules.test.yaml")).unwrap();
    let alerts: Vec<&str> = rules_text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for alert in alerts {
        let cases: Vec<&str> = tests_text
            .split("- eval_time:")
            .filter(|case| case.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            cases.iter().any(|case| case.contains("exp_alerts: []")),
            "{alert} never tested quiet"
        );
        assert!(
            cases.iter().any(|case| case.contains("exp_labels:")),
            "{alert} never tested firing"
        );
    }
}

/// A process stopped by pid when dropped.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get_json(url: String) -> serde_json::Value {
    let (status, _, body) = send(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await;
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert_eq!(status, 200, "{value}");
    value
}

/// Evaluates `expr` through the query API: the result's series (an error
/// fails the test, naming the expression).
async fn query(prometheus: &str, expr: &str) -> Vec<serde_json::Value> {
    let encoded: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let url = format!("http://{prometheus}/api/v1/query?query={encoded}");
    let (status, _, body) = send(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    assert!(
        status == 200 && answer["status"] == "success",
        "Prometheus refused `{expr}`: {answer}"
    );
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The labels an expression groups by (`by (a, b)`), but `le`, which
/// `histogram_quantile` consumes.
fn grouped_by(expr: &str) -> Vec<String> {
    let mut labels = Vec::new();
    for part in expr.split("by (").skip(1) {
        let inside = part.split(')').next().unwrap_or_default();
        labels.extend(
            inside
                .split(',')
                .map(|label| label.trim().to_owned())
                .filter(|label| !label.is_empty() && label != "le"),
        );
    }
    labels
}

fn scrim_config(upstream: &str, dead: u16) -> String {
    format!(
        "listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
keys:
  pseudonym: ${{SCRIM_PSEUDONYM_KEY}}
  admin: ${{SCRIM_ADMIN_TOKEN}}
routes:
  - name: meta
    match: {{path_prefix: /meta}}
    strip_prefix: true
    upstream: {upstream}
    preset: meta_capi
    limits: {{max_body_bytes: 4096}}
    consent: {{gpc: block}}
  - name: dead
    match: {{path_prefix: /dead}}
    strip_prefix: true
    upstream: http://127.0.0.1:{dead}
    rules:
      - {{select: '$.data[*].user_data.em', action: hash, normalize: email}}
"
    )
}

const ADMIN_TOKEN: &str = "an-admin-token-of-enough-length-1";

/// Sends what makes every outcome: rewritten, invalid, rejected with 400,
/// 413 and 415, blocked by consent, a stray identifier, an upstream 502,
/// and a reload.
async fn traffic(scrim: &process::Running) {
    let post = |path: &str, content_type: &str, body: String, gpc: bool| {
        let mut request = Request::post(format!("http://{}{path}", scrim.listen))
            .header("content-type", content_type);
        if gpc {
            request = request.header("sec-gpc", "1");
        }
        request.body(Full::new(Bytes::from(body))).unwrap()
    };
    let json = "application/json";
    let event = r#"{"data":[{"event_name":"Purchase","user_data":{"em":"Jane@Example.com","ph":"not a phone"},"custom_data":{"note":"call jane.doe@example.com"}}]}"#;
    let cases = [
        (
            post("/meta/v21.0/1/events", json, event.to_owned(), false),
            200,
        ),
        (
            post("/meta/v21.0/1/events", json, "{\"data\":".to_owned(), false),
            400,
        ),
        (
            post(
                "/meta/v21.0/1/events",
                json,
                format!("{{\"data\":\"{}\"}}", "x".repeat(8192)),
                false,
            ),
            413,
        ),
        (
            post("/meta/v21.0/1/events", "text/csv", "a,b".to_owned(), false),
            415,
        ),
        (
            post("/meta/v21.0/1/events", json, event.to_owned(), true),
            204,
        ),
        (
            post("/dead/v21.0/1/events", json, event.to_owned(), false),
            502,
        ),
    ];
    for (request, expected) in cases {
        let (status, _, body) = send(request).await;
        assert_eq!(status, expected, "{}", String::from_utf8_lossy(&body));
    }
    let reload = Request::post(format!("http://{}/reload", scrim.admin))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(reload).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_and_rule_evaluates_on_a_real_prometheus_scraping_scrim() {
    let prometheus_bin = tool("prometheus");
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = process::start_with_env(
        "monitoring",
        &scrim_config(&mock.url(), free_port()),
        &[("SCRIM_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    traffic(&scrim).await;

    let dir = TempDir::new("prometheus");
    let port = free_port();
    std::fs::write(
        dir.0.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{}]
scrape_configs:
  - job_name: scrim
    static_configs: [{{targets: ['{}']}}]
",
            repository("config/prometheus/scrim-rules.yaml").display(),
            scrim.admin
        ),
    )
    .unwrap();
    let _prometheus = Stopped(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", dir.file("prometheus.yml")))
            .arg(format!("--storage.tsdb.path={}", dir.file("data")))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prometheus = format!("127.0.0.1:{port}");
    // Enough scrapes for a rate over a minute, and the rules evaluated.
    support::eventually_async(
        "Prometheus has scraped scrim 4 times",
        Duration::from_secs(60),
        || {
            let prometheus = prometheus.clone();
            async move {
                let encoded: String = form_urlencoded::byte_serialize(
                    b"count_over_time(scrim_ready{job=\"scrim\"}[1m])",
                )
                .collect();
                let url = format!("http://{prometheus}/api/v1/query?query={encoded}");
                let client = hyper_util::client::legacy::Client::builder(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .build_http::<Full<Bytes>>();
                let Ok(response) = client.get(url.parse().unwrap()).await else {
                    return false;
                };
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                answer["data"]["result"][0]["value"][1]
                    .as_str()
                    .and_then(|count| count.parse::<f64>().ok())
                    .is_some_and(|count| count >= 4.0)
            }
        },
    )
    .await;

    // Prometheus saw every outcome the traffic made.
    for seen in [
        r#"scrim_requests_total{route="meta",outcome="forwarded"}"#,
        r#"scrim_requests_total{route="meta",outcome="blocked"}"#,
        r#"scrim_requests_total{route="dead",outcome="upstream_error"}"#,
        r#"scrim_rejections_total{route="meta",reason="invalid_body"}"#,
        r#"scrim_rejections_total{route="meta",reason="body_too_large"}"#,
        r#"scrim_rejections_total{route="meta",reason="unsupported_media_type"}"#,
        r#"scrim_rewrites_total{route="meta",action="hash"}"#,
        r#"scrim_invalid_values_by_rule_total{route="meta",rule="$.data[*].user_data.ph"}"#,
        r#"scrim_detections_total{route="meta",detector="email"}"#,
        r#"scrim_consent_decisions_total{route="meta",decision="block"}"#,
        r#"scrim_config_reloads_total{result="ok"}"#,
        "scrim_config_last_reload_successful",
        r#"scrim_added_duration_seconds_count{route="meta"}"#,
    ] {
        let result = query(&prometheus, &format!("{seen} > 0")).await;
        assert!(!result.is_empty(), "Prometheus did not see {seen} above 0");
    }

    // The dashboard: every panel's every query returns data, grouped by
    // labels the series have (a misspelt metric returns nothing; a
    // misspelt label in a matcher matches nothing, in a grouping leaves
    // the label empty).
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repository("config/grafana/scrim.json")).unwrap(),
    )
    .unwrap();
    let routes = query(&prometheus, "group by (route) (scrim_requests_total)").await;
    let mut route_names: Vec<&str> = routes
        .iter()
        .filter_map(|series| series["metric"]["route"].as_str())
        .collect();
    route_names.sort_unstable();
    assert_eq!(
        route_names,
        ["-", "dead", "meta"],
        "the route variable's values"
    );
    let mut empty = Vec::new();
    let mut evaluated = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$route", "meta|dead")
                .replace("$__rate_interval", "1m");
            let result = query(&prometheus, &expr).await;
            evaluated += 1;
            let labelled = grouped_by(&expr);
            let complete = |series: &serde_json::Value| {
                labelled.iter().all(|label| {
                    series["metric"][label]
                        .as_str()
                        .is_some_and(|v| !v.is_empty())
                })
            };
            if result.is_empty() || !result.iter().all(complete) {
                empty.push(format!("{}: `{expr}` gave {result:?}", panel["title"]));
            }
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    assert!(evaluated >= 13, "{evaluated} queries");

    // The rules: each expression parses and evaluates; the recording rules
    // give data, and Prometheus itself reports every rule healthy.
    let rules: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repository("config/prometheus/scrim-rules.yaml")).unwrap(),
    )
    .unwrap();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            let result = query(&prometheus, expr).await;
            if let Some(record) = rule["record"].as_str() {
                let quantile = expr.starts_with("histogram_quantile");
                assert!(
                    !result.is_empty() || quantile,
                    "recording rule {record} gave no data: `{expr}`"
                );
            }
        }
    }
    support::eventually_async(
        "Prometheus evaluated every rule without error",
        Duration::from_secs(20),
        || {
            let prometheus = prometheus.clone();
            async move {
                let answer = get_json(format!("http://{prometheus}/api/v1/rules")).await;
                let groups = answer["data"]["groups"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let rules: Vec<serde_json::Value> = groups
                    .iter()
                    .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
                    .collect();
                rules.len() >= 21 && rules.iter().all(|rule| rule["health"] == "ok")
            }
        },
    )
    .await;
    // The recorded series exist under their names.
    let recorded = query(&prometheus, "route_outcome:scrim_requests:rate5m").await;
    assert!(!recorded.is_empty());
}

/// `scrim check` on a configuration text, with its keys set: the output
/// when it passes.
fn scrim_check(yaml: &str, name: &str) -> String {
    let dir = TempDir::new(name);
    let path = dir.file("scrim.yaml");
    std::fs::write(&path, yaml).unwrap();
    succeeds(
        Command::new(env!("CARGO_BIN_EXE_scrim"))
            .args(["check", "--config", &path])
            .env("SCRIM_PSEUDONYM_KEY", support::KEY)
            .env("SCRIM_ADMIN_TOKEN", ADMIN_TOKEN),
    )
}

fn yaml_file(path: &str) -> serde_json::Value {
    serde_saphyr::from_str(&std::fs::read_to_string(repository(path)).unwrap())
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

#[test]
fn the_compose_file_mounts_files_that_exist_and_a_configuration_that_passes_check() {
    let compose = yaml_file("config/docker-compose.yaml");
    let services = compose["services"].as_object().unwrap();
    for name in ["app", "scrim", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "no service {name}");
    }
    // Host path (from config/) of each file a service mounts, by the path
    // it has inside the container.
    let mut mounted = std::collections::BTreeMap::new();
    for (service, definition) in services {
        for volume in definition["volumes"].as_array().into_iter().flatten() {
            let volume = volume.as_str().unwrap();
            let mut parts = volume.split(':');
            let (host, inside) = (parts.next().unwrap(), parts.next().unwrap());
            if let Some(relative) = host.strip_prefix("./") {
                let path = repository("config").join(relative);
                assert!(
                    path.is_file(),
                    "{service} mounts {volume}: no {}",
                    path.display()
                );
                mounted.insert(inside.to_owned(), path);
            }
        }
    }
    let build = &services["scrim"]["build"];
    let context = repository("config").join(build["context"].as_str().unwrap());
    assert!(
        context
            .join(build["dockerfile"].as_str().unwrap())
            .is_file()
    );
    // The configuration scrim runs with passes `scrim check`.
    let config = &mounted["/etc/scrim/scrim.yaml"];
    scrim_check(&std::fs::read_to_string(config).unwrap(), "compose-scrim");
    // Prometheus's configuration passes `promtool check config`, its rule
    // files read from where they are mounted from, and scrapes job `scrim`.
    let prometheus_config =
        std::fs::read_to_string(&mounted["/etc/prometheus/prometheus.yml"]).unwrap();
    assert!(prometheus_config.contains("job_name: scrim"));
    let mut local = prometheus_config.clone();
    for (inside, host) in &mounted {
        local = local.replace(inside.as_str(), &host.display().to_string());
    }
    let dir = TempDir::new("compose-prometheus");
    std::fs::write(dir.file("prometheus.yml"), local).unwrap();
    succeeds(Command::new(tool("promtool")).args(["check", "config", &dir.file("prometheus.yml")]));
    // Grafana loads the dashboard from where it is mounted.
    let provider: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(&mounted["/etc/grafana/provisioning/dashboards/scrim.yaml"])
            .unwrap(),
    )
    .unwrap();
    let folder = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let dashboard = &mounted[&format!("{folder}/scrim.json")];
    assert_eq!(dashboard, &repository("config/grafana/scrim.json"));
    let sources: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(&mounted["/etc/grafana/provisioning/datasources/scrim.yaml"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(sources["datasources"][0]["type"], "prometheus");
}

#[test]
fn the_kubernetes_manifests_run_scrim_as_a_native_sidecar_with_a_configuration_that_passes_check() {
    let text = std::fs::read_to_string(repository("config/kubernetes-sidecar.yaml")).unwrap();
    let documents: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|document| serde_saphyr::from_str(document).unwrap())
        .collect();
    let of_kind = |kind: &str| {
        documents
            .iter()
            .find(|document| document["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let config_map = of_kind("ConfigMap");
    let described = scrim_check(
        config_map["data"]["scrim.yaml"].as_str().unwrap(),
        "k8s-scrim",
    );
    assert!(described.contains("meta_capi"), "{described}");
    let pod = &of_kind("Deployment")["spec"]["template"];
    let scrim = &pod["spec"]["initContainers"][0];
    assert_eq!(scrim["name"], "scrim");
    assert_eq!(scrim["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(scrim["startupProbe"]["httpGet"]["path"], "/readyz");
    let volume = &pod["spec"]["volumes"][0];
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);
    assert_eq!(scrim["volumeMounts"][0]["name"], volume["name"]);
    // Scraped once, through the Service, at the port scrim listens on.
    assert!(
        pod["metadata"]["annotations"].is_null(),
        "the pods are not annotated too"
    );
    let service = of_kind("Service");
    let port = &scrim["ports"][0]["containerPort"];
    assert_eq!(service["spec"]["ports"][0]["targetPort"], *port);
    let annotations = &service["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str())
    );
}
