//! The admin listener's guard (issue 9, attack 9): `POST` endpoints need the
//! bearer token `keys.admin`; an admin listener beyond loopback is refused
//! without one; scrapes and probes stay open.

mod support;

use std::process::Command;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::process::start_with_env;
use support::send;

const TOKEN: &str = "an-admin-token-of-some-length-1234";

fn config(admin_listen: &str, keys: &str) -> String {
    format!(
        "listen: 127.0.0.1:0
admin:
  listen: {admin_listen}
keys:
  pseudonym: ${{SCRIM_PSEUDONYM_KEY}}
{keys}routes:
  - name: meta
    match: {{path_prefix: /meta}}
    upstream: http://127.0.0.1:9
"
    )
}

fn post(url: &str, authorization: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::post(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_endpoints_need_the_token_and_probes_do_not() {
    let yaml = config("127.0.0.1:0", "  admin: ${SCRIM_ADMIN_TOKEN}\n");
    let scrim = start_with_env("admin-token", &yaml, &[("SCRIM_ADMIN_TOKEN", TOKEN)]);
    let reload = format!("http://{}/reload", scrim.admin);
    let wrong = format!("Bearer {TOKEN}x");
    let right = format!("Bearer {TOKEN}");
    for authorization in [None, Some(wrong.as_str()), Some(TOKEN), Some("Basic abc")] {
        let (status, headers, body) = send(post(&reload, authorization)).await;
        assert_eq!(status, 401, "{authorization:?}");
        assert!(headers.contains_key("www-authenticate"));
        assert!(!String::from_utf8_lossy(&body).contains(TOKEN));
    }
    let (status, _, body) = send(post(&reload, Some(&right))).await;
    assert_eq!(status, 200, "{body:?}");
    for path in ["/metrics", "/healthz", "/readyz"] {
        let request = Request::get(format!("http://{}{path}", scrim.admin))
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(send(request).await.0, 200, "{path}");
    }
    let log = scrim.log.lock().unwrap().join("\n");
    assert!(!log.contains(TOKEN), "the token is in the log");
}

#[test]
fn an_admin_listener_beyond_loopback_needs_a_token() {
    let dir = std::env::temp_dir().join(format!("scrim-admin-bind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scrim.yaml");
    std::fs::write(&path, config("0.0.0.0:0", "")).unwrap();
    for command in ["check", "run"] {
        let output = Command::new(env!("CARGO_BIN_EXE_scrim"))
            .args([command, "--config", path.to_str().unwrap()])
            .env("SCRIM_PSEUDONYM_KEY", support::KEY)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("scrim.yaml:3:") && stderr.contains("keys.admin"),
            "{command}: {stderr}"
        );
    }
    // With a token it is accepted.
    std::fs::write(
        &path,
        config("0.0.0.0:0", "  admin: ${SCRIM_ADMIN_TOKEN}\n"),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(["check", "--config", path.to_str().unwrap()])
        .env("SCRIM_PSEUDONYM_KEY", support::KEY)
        .env("SCRIM_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Kubernetes example binds the admin listener to the pod IP: its
/// configuration carries the admin token, and compiles.
#[test]
fn the_sidecar_example_compiles() {
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kubernetes-sidecar.yaml"),
    )
    .unwrap();
    let (_, rest) = manifest.split_once("scrim.yaml: |\n").unwrap();
    let (block, _) = rest.split_once("---").unwrap();
    let yaml: String = block
        .lines()
        .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line)))
        .collect();
    let config = scrim::config::Config::parse(&yaml, "sidecar.yaml").unwrap();
    let env = |name: &str| {
        matches!(name, "SCRIM_PSEUDONYM_KEY" | "SCRIM_ADMIN_TOKEN").then(|| TOKEN.into())
    };
    let policy = scrim::policy::compile(&config, "sidecar.yaml", &env).unwrap();
    assert!(policy.admin_token.is_some());
}
