//! The command line, run as a user would: `scrim check` and `scrim rewrite`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const KEY: &str = "a-test-key-that-is-long-enough-42";

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("scrim-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scrim(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(args)
        .env("SCRIM_TEST_KEY", KEY)
        .env_remove("SCRIM_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CONFIG: &str = "keys:
  pseudonym: ${SCRIM_TEST_KEY}
routes:
  - name: meta
    match: {path_prefix: /meta}
    upstream: https://graph.facebook.com
    rules:
      - select: $.data[*].user_data.em
        action: hash
        normalize: email
      - select: $.data[*].user_data.ph
        action: hmac
        normalize: phone
        default_region: US
      - select: $.data[*].user_data.ip
        action: truncate_ip
        on_invalid: reject
";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml")
}

#[test]
fn check_prints_a_summary_without_secrets() {
    let dir = TempDir::new("check");
    let config = dir.file("scrim.yaml", CONFIG);
    let out = scrim(&["check", "--config", config.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("route meta"), "{stdout}");
    assert!(stdout.contains("$.data[*].user_data.em"), "{stdout}");
    assert!(!stdout.contains(KEY), "{stdout}");
}

#[test]
fn check_reports_every_error_with_its_position() {
    let dir = TempDir::new("check-errors");
    let bad = CONFIG
        .replace("${SCRIM_TEST_KEY}", "${SCRIM_UNSET_KEY}")
        .replace("action: hash", "action: hashh")
        .replace("normalize: phone", "normalize: fone")
        .replace("$.data[*].user_data.ip", "$.data[*.ip");
    let config = dir.file("bad.yaml", &bad);
    let out = scrim(&["check", "--config", config.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let file = config.display().to_string();
    for expected in [
        format!("{file}:2:14: key `pseudonym`: environment variable SCRIM_UNSET_KEY is not set"),
        format!("{file}:9:17: unknown action `hashh`"),
        format!("{file}:13:20: unknown normalizer `fone`"),
        format!("{file}:15:17: bad selector"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    let unknown = dir.file(
        "unknown.yaml",
        &CONFIG.replace("    upstream:", "    upstrem:"),
    );
    let out = scrim(&["check", "--config", unknown.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{}:6:5:", unknown.display())),
        "{}",
        text(&out.stderr)
    );
}

/// The README's offline rewrite of a gtag.js batch through the example's
/// GA4 route: no identifier of the sample is left, and each line stays a
/// line.
#[test]
fn the_example_ga4_route_rewrites_a_gtag_batch_offline() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples/ga4-batch.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(["rewrite", "--config", example().to_str().unwrap()])
        .args([
            "--route",
            "ga4-web",
            "--content-type",
            "text/plain;charset=UTF-8",
        ])
        .arg(&sample)
        .env("SCRIM_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rewritten = text(&out.stdout);
    assert_eq!(rewritten.lines().count(), 2, "{rewritten}");
    for leaked in [
        "jane",
        "utm_",
        "mail.example.net",
        "1873456721",
        "cust-42",
        "203.0.113",
        "1512x982",
        "650%20555",
    ] {
        assert!(!rewritten.contains(leaked), "{leaked} in {rewritten}");
    }
    // The phone number in the note, found and tagged (a bare `650` could
    // be part of the random client id).
    assert!(
        rewritten.contains("&ep.note=call+%5Bphone%5D&"),
        "{rewritten}"
    );
    assert!(
        rewritten.contains("dl=https%3A%2F%2Fshop.example%2Fcheckout&"),
        "{rewritten}"
    );
    assert!(rewritten.contains("epn.value=19.99"), "{rewritten}");
}

#[test]
fn the_example_config_checks() {
    let out = Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(["check", "--config", example().to_str().unwrap()])
        .env("SCRIM_PSEUDONYM_KEY", KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(
        summary.contains("preset meta_capi (its rules first"),
        "{summary}"
    );
    assert!(
        summary.contains("consent: Sec-GPC = \"1\" -> strip_identifiers"),
        "{summary}"
    );
}

#[test]
fn presets_are_listed_and_printed_as_rules() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_scrim"))
            .args(args)
            .output()
            .unwrap()
    };
    let list = run(&["presets"]);
    assert!(list.status.success());
    let list = text(&list.stdout);
    for preset in scrim::presets::ALL {
        assert!(list.contains(preset.name), "{list}");
    }
    assert!(!list.contains("does not parse"), "{list}");

    let meta = run(&["presets", "meta_capi"]);
    assert!(meta.status.success());
    let meta = text(&meta.stdout);
    assert!(meta.contains(r#"{select: "$.data[*].user_data.em", action: hash, normalize: email}"#));
    // What it prints is a preset file that parses.
    let parsed: scrim::presets::PresetFile =
        scrim::config::Config::parse_document(&meta, "out").unwrap();
    assert_eq!(parsed.upstream, "https://graph.facebook.com");

    let unknown = run(&["presets", "facebook"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("unknown preset `facebook`; expected one of meta_capi"));
}

#[test]
fn rewrite_is_the_same_at_every_chunk_size() {
    let dir = TempDir::new("rewrite");
    let config = dir.file("scrim.yaml", CONFIG);
    let body = br#"{"data":[{"user_data":{"em":"A@B.C","ph":"(650) 555-1212","ip":"10.1.2.3"},"x":[1,2.5e3]}]}"#;
    let config = config.to_str().unwrap();
    let whole = scrim(&["rewrite", "--config", config, "--route", "meta"], body);
    assert!(whole.status.success(), "{}", text(&whole.stderr));
    let out = text(&whole.stdout);
    assert!(
        !out.contains("A@B.C") && !out.contains("555") && !out.contains("10.1.2.3"),
        "{out}"
    );
    assert!(out.contains("10.1.2.0") && out.contains("2.5e3"), "{out}");
    for size in ["1", "2", "7", "64"] {
        let chunked = scrim(
            &[
                "rewrite",
                "--config",
                config,
                "--route",
                "meta",
                "--chunk-size",
                size,
                "-",
            ],
            body,
        );
        assert_eq!(text(&chunked.stdout), out, "chunk size {size}");
    }
}

#[test]
fn rewrite_explains_without_values() {
    let dir = TempDir::new("explain");
    let config = dir.file("scrim.yaml", CONFIG);
    let body = br#"{"data":[{"user_data":{"em":"secret@example.com"}}]}"#;
    let out = scrim(
        &[
            "rewrite",
            "--config",
            config.to_str().unwrap(),
            "--route",
            "meta",
            "--explain",
        ],
        body,
    );
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(report["changes"][0]["path"], "$.data[0].user_data.em");
    assert_eq!(report["changes"][0]["action"], "hash");
    assert!(!text(&out.stderr).contains("secret@"));
}

#[test]
fn rewrite_prints_the_inventory_of_a_file_without_values() {
    let dir = TempDir::new("inventory");
    let config = dir.file("scrim.yaml", CONFIG);
    let body = br#"{"data":[{"event_name":"Lead","user_data":{"em":"secret@example.com"}},{"event_name":"Buy","user_data":{"em":"other@example.com"}}]}"#;
    let out = scrim(
        &[
            "rewrite",
            "--config",
            config.to_str().unwrap(),
            "--route",
            "meta",
            "--inventory",
        ],
        body,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inventory: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    let route = &inventory["routes"][0];
    assert_eq!(route["route"], "meta");
    let fields = route["fields"].as_array().unwrap();
    let field = |path: &str| fields.iter().find(|f| f["path"] == path).cloned();
    let em = field("$.data[*].user_data.em").expect("the email's path");
    assert_eq!(
        (em["hashed"].as_u64(), em["kept"].as_u64()),
        (Some(2), Some(0))
    );
    let name = field("$.data[*].event_name").expect("the event name's path");
    assert_eq!(name["kept"], 2);
    assert!(!text(&out.stderr).contains("@example.com"));
    assert!(!text(&out.stderr).contains("Lead"));
}

#[test]
fn rewrite_exits_2_on_a_body_the_route_rejects() {
    let dir = TempDir::new("reject");
    let config = dir.file("scrim.yaml", CONFIG);
    let config = config.to_str().unwrap();
    let cases: [(&[u8], &str); 4] = [
        (br#"{"data":[{"user_data":{"ip":"not-an-ip-secret"}}]}"#, "not an IP address at byte 28, path $.data[0].user_data.ip"),
        (br#"{"data": [1,]}"#, "expected a value at byte 12, path $.data"),
        (b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]", "nesting deeper than 128 at byte 128"),
        (b"{\"a\":\"secret\"} x", "unexpected data after the document at byte 15"),
    ];
    for (body, expected) in cases {
        let out = scrim(&["rewrite", "--config", config, "--route", "meta"], body);
        assert_eq!(out.status.code(), Some(2), "{}", text(body));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(expected),
            "expected {expected:?}, got {stderr}"
        );
        assert!(!stderr.contains("secret"), "{stderr}");
    }
    let out = scrim(
        &[
            "rewrite",
            "--config",
            config,
            "--route",
            "meta",
            "--content-type",
            "text/plain",
        ],
        b"x",
    );
    assert_eq!(out.status.code(), Some(2));
    let out = scrim(&["rewrite", "--config", config, "--route", "nope"], b"{}");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no route named `nope`"));
}

#[test]
fn value_too_large_names_the_path() {
    let dir = TempDir::new("large");
    let config = dir.file(
        "scrim.yaml",
        &CONFIG.replace("routes:", "limits:\n  max_value_bytes: 1024\nroutes:"),
    );
    let body = format!(
        r#"{{"data":[{{"user_data":{{"em":"{}"}}}}]}}"#,
        "x".repeat(5000)
    );
    let out = scrim(
        &[
            "rewrite",
            "--config",
            config.to_str().unwrap(),
            "--route",
            "meta",
            "--chunk-size",
            "100",
        ],
        body.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("value larger than 1024 bytes")
            && stderr.contains("$.data[0].user_data.em"),
        "{stderr}"
    );
    assert!(!stderr.contains("xxxx"));
}

/// Invariant 5: memory does not grow with body size. NDJSON goes through
/// `scrim rewrite` on stdin while the test reads stdout, once 256 KiB and
/// once 48 MiB; the child's peak resident set (VmHWM) is the same within a
/// few MiB (what the process itself takes, its code and tables, is not
/// what this is about: it changes with the build).
#[cfg(target_os = "linux")]
#[test]
fn memory_does_not_grow_with_body_size() {
    let small = peak_rss_kib_rewriting(256 * 1024);
    let large = peak_rss_kib_rewriting(48 * 1024 * 1024);
    assert!(
        large < small + 4 * 1024,
        "peak RSS {large} KiB for a 48 MiB body, {small} KiB for 256 KiB"
    );
    assert!(large < 40 * 1024, "peak RSS {large} KiB");
}

/// The peak resident set of `scrim rewrite` over about `bytes` of NDJSON.
#[cfg(target_os = "linux")]
fn peak_rss_kib_rewriting(bytes: usize) -> u64 {
    use std::io::Read;

    let dir = TempDir::new("memory");
    let config = dir.file("scrim.yaml", CONFIG);
    let mut child = Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args([
            "rewrite",
            "--config",
            config.to_str().unwrap(),
            "--route",
            "meta",
        ])
        .args(["--content-type", "application/x-ndjson"])
        .env("SCRIM_TEST_KEY", KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buffer = vec![0u8; 1 << 16];
        let (mut total, mut lines) = (0usize, 0usize);
        loop {
            let n = stdout.read(&mut buffer).unwrap();
            if n == 0 {
                return (total, lines);
            }
            total += n;
            lines += buffer[..n].iter().filter(|b| **b == b'\n').count();
        }
    });
    let line = format!(
        "{{\"data\":[{{\"user_data\":{{\"em\":\"someone@example.com\",\"ip\":\"10.0.0.1\"}},\"padding\":\"{}\"}}]}}\n",
        "p".repeat(4000)
    );
    let block = line.repeat(64);
    let mut stdin = child.stdin.take().unwrap();
    let blocks = bytes / block.len();
    for _ in 0..blocks {
        stdin.write_all(block.as_bytes()).unwrap();
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    drop(stdin);
    let (total, lines) = reader.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(lines, blocks * 64);
    assert!(total > bytes * 8 / 10);
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A reader that stops early (`scrim check | head -1`) ends the command
/// quietly: before, `println!` panicked on the closed pipe. The output is
/// larger than a pipe holds, so that scrim is still writing when it closes.
#[test]
fn a_closed_stdout_ends_the_command_without_a_panic() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("closed-stdout");
    let mut config = String::from("routes:\n");
    for i in 0..3000 {
        config.push_str(&format!(
            "  - name: route-{i}\n    match: {{path_prefix: /r{i}}}\n    upstream: https://example.com\n    rules:\n      - select: $.data[*].user_data.em\n        action: hash\n        normalize: email\n"
        ));
    }
    let path = dir.file("many.yaml", &config);
    let mut child = Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(["check", "--config", path.to_str().unwrap()])
        .env_remove("SCRIM_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.ends_with(": OK\n"), "{first}");
    // The reader is gone: scrim's next write meets a closed pipe.
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A key file that others may read is accepted with a warning that says
/// how to fix it; one larger than a key could be is refused.
#[test]
fn key_files_are_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("key-files");
    let key = dir.file("pseudonym.key", &format!("{KEY}\n"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = format!(
        "keys:\n  pseudonym: file:{}\nroutes:\n  - name: a\n    match: {{path_prefix: /a}}\n    upstream: https://example.com\n    rules:\n      - select: $.em\n        action: hmac\n",
        key.display()
    );
    let path = dir.file("scrim.yaml", &config);
    let output = scrim(&["check", "--config", path.to_str().unwrap()], b"");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("may be read by group or others (mode 644)")
            && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = scrim(&["check", "--config", path.to_str().unwrap()], b"");
    assert!(
        !text(&output.stderr).contains("warning"),
        "{}",
        text(&output.stderr)
    );

    let config = config.replace(&key.display().to_string(), "/dev/zero");
    let path = dir.file("zero.yaml", &config);
    let output = scrim(&["check", "--config", path.to_str().unwrap()], b"");
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("longer than 4096 bytes"),
        "{}",
        text(&output.stderr)
    );
}
