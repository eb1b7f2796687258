//! `scrim run` as a child process, on ephemeral ports, stopped by pid.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::KEY;

pub struct Running {
    pub child: Child,
    /// The proxy listener's address.
    pub listen: String,
    /// The admin listener's address.
    pub admin: String,
    /// The forward proxy's address, when it has one.
    pub forward_proxy: Option<String>,
    /// A scratch directory holding the configuration, removed on drop.
    pub dir: std::path::PathBuf,
    /// Every line scrim has logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Running {
    /// Peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .unwrap();
        let kib: u64 = line
            .trim_start_matches("VmHWM:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kib * 1024
    }
}

/// Starts `scrim run` on `yaml` (with `SCRIM_PSEUDONYM_KEY` set to [`KEY`])
/// and waits for its "serving" log line.
pub fn start(name: &str, yaml: &str) -> Running {
    start_with_env(name, yaml, &[])
}

/// The same, with more environment variables.
pub fn start_with_env(name: &str, yaml: &str, env: &[(&str, &str)]) -> Running {
    let dir = std::env::temp_dir().join(format!("scrim-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scrim.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scrim"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env("SCRIM_PSEUDONYM_KEY", KEY)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before = Vec::new();
    let (listen, admin, forward_proxy) = loop {
        let Some(line) = lines.next() else {
            panic!("scrim exited before serving:\n{}", before.join("\n"));
        };
        let line = line.unwrap();
        before.push(line.clone());
        let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if log["message"] == "scrim is serving" {
            break (
                log["listen"].as_str().unwrap().to_owned(),
                log["admin"].as_str().unwrap().to_owned(),
                log["forward_proxy"].as_str().map(str::to_owned),
            );
        }
    };
    // Keep reading the log, so that scrim never blocks on a full pipe.
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    Running {
        child,
        listen,
        admin,
        forward_proxy,
        dir,
        log,
    }
}
