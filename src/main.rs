//! The `scrim` command line. Argument parsing and output only: the work is
//! done by the library.

#![deny(clippy::unwrap_used)]

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use scrim::inventory::Inventory;
use scrim::policy::Policy;
use scrim::rewrite::{BodyKind, BodyRewriter, Sink};

/// scrim: a streaming pseudonymization reverse proxy for marketing and ad
/// platform APIs. It rewrites the personal data in each request (hashing,
/// keyed pseudonyms, IP truncation, removal) before it leaves.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: forward each request to its route's upstream, rewritten. Stops
    /// gracefully on SIGTERM or SIGINT; SIGHUP (or `POST /reload` on the
    /// admin listener) reloads the configuration.
    Run {
        /// The configuration file.
        #[arg(long, short, env = "SCRIM_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// `json`: one JSON object per line (default); `text`: for humans.
        #[arg(long, value_enum, default_value_t = LogFormat::Json)]
        log_format: LogFormat,
    },
    /// Validate a configuration file and print a summary of its routes and
    /// rules. Exit 1 with one `FILE:LINE:COL: message` line per error.
    Check {
        /// The configuration file.
        #[arg(long, short, env = "SCRIM_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
    /// Apply a route's rewriting to a body offline: rewritten body on stdout.
    /// Exit 2 if the route would reject the body (reason on stderr; discard
    /// whatever stdout received).
    Rewrite {
        /// The configuration file.
        #[arg(long, short, env = "SCRIM_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// The route whose rules apply.
        #[arg(long, short, value_name = "NAME")]
        route: String,
        /// Media type of the body: JSON (also `+json` types), NDJSON
        /// (`application/x-ndjson`) or a form
        /// (`application/x-www-form-urlencoded`).
        #[arg(long, default_value = "application/json", value_name = "TYPE")]
        content_type: String,
        /// Feed the engine N bytes at a time (to check chunk boundaries).
        #[arg(long, default_value_t = 64 * 1024, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
        chunk_size: u64,
        /// Write a JSON report of each change (path, rule, action; never a
        /// value) to stderr.
        #[arg(long)]
        explain: bool,
        /// Print the egress inventory of this body (JSON, to stderr): every
        /// field path, and how many of its values left kept clear, hashed,
        /// pseudonymized, truncated, redacted, found by a detector or
        /// dropped, as the admin listener's `GET /inventory` shows a running
        /// proxy's. Never a value.
        #[arg(long)]
        inventory: bool,
        /// The body to rewrite; `-` or nothing reads standard input.
        #[arg(value_name = "INPUT")]
        input: Option<PathBuf>,
    },
    /// List the built-in platform presets, or print one: its endpoints, the
    /// documents it follows, and its rules, in the configuration's own
    /// language (copy them into a route to change them). A route applies
    /// one with `preset: NAME`.
    Presets {
        /// The preset to print.
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

/// jemalloc rather than glibc's allocator: a proxied request allocates
/// about fifty times (hyper, the rewriter, the upstream client), and glibc's
/// malloc and free took a sixth of scrim's user-space CPU in
/// `benches/load.sh`. Measured side by side: 6% fewer instructions per
/// request (`benches/instructions.sh`) for 2 MiB more resident (a 1 GiB
/// body streamed through `scrim run` peaks at 12 MiB against 10 MiB).
/// mimalloc was as fast but kept 14 MiB more.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config, log_format } => run(config, log_format),
        Command::Check { config } => check(&config),
        Command::Rewrite {
            config,
            route,
            content_type,
            chunk_size,
            explain,
            inventory,
            input,
        } => rewrite(
            &config,
            &route,
            &content_type,
            chunk_size as usize,
            explain,
            inventory,
            input,
        ),
        Command::Presets { name } => presets(name.as_deref()),
    }
}

/// What a command printed to stdout became. A reader that closed the pipe
/// early (`scrim check | head -1`) took what it wanted: not an error, and
/// never a panic, as `println!` would make it.
fn printed(result: io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cannot write the output: {err}");
            ExitCode::from(1)
        }
    }
}

fn presets(name: Option<&str>) -> ExitCode {
    let mut out = io::stdout().lock();
    let Some(name) = name else {
        return printed(list_presets(&mut out));
    };
    match scrim::presets::Preset::find(name) {
        Some(preset) => printed(
            out.write_all(preset.source.as_bytes())
                .and_then(|()| out.flush()),
        ),
        None => {
            let names: Vec<&str> = scrim::presets::ALL.iter().map(|p| p.name).collect();
            eprintln!(
                "unknown preset `{name}`; expected one of {}",
                names.join(", ")
            );
            ExitCode::from(1)
        }
    }
}

fn list_presets(out: &mut impl Write) -> io::Result<()> {
    for preset in scrim::presets::ALL {
        match preset.parse() {
            Ok(file) => writeln!(out, "{:<16} {}", preset.name, file.title)?,
            Err(errors) => writeln!(out, "{:<16} (does not parse: {errors})", preset.name)?,
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "`scrim presets NAME` prints one; `preset: NAME` on a route applies it."
    )?;
    out.flush()
}

fn run(config: PathBuf, log_format: LogFormat) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCRIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let buffer = scrim::log::BufferedStderr::new();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(buffer.clone());
    match log_format {
        LogFormat::Json => subscriber.event_format(scrim::log::JsonLines).init(),
        LogFormat::Text => subscriber.init(),
    }
    if let Err(err) = buffer.spawn_flusher() {
        eprintln!("cannot start the log flusher: {err}");
        return ExitCode::from(1);
    }
    let result = scrim::service::run(config);
    buffer.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}

fn load(config: &std::path::Path) -> Result<Policy, ExitCode> {
    Policy::load(config).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(1)
    })
}

fn check(config: &std::path::Path) -> ExitCode {
    let policy = match load(config) {
        Ok(policy) => policy,
        Err(code) => return code,
    };
    // Written like the output: a closed stderr is no reason to panic.
    let mut stderr = io::stderr().lock();
    for warning in &policy.warnings {
        let _ = writeln!(stderr, "warning: {warning}");
    }
    drop(stderr);
    printed(scrim::policy::describe::write_policy(
        &mut io::stdout().lock(),
        config,
        &policy,
    ))
}

/// Writes to an `io::Write`, keeping the first error for the end.
struct WriteSink<W: Write> {
    out: W,
    error: Option<io::Error>,
}

impl<W: Write> Sink for WriteSink<W> {
    fn write(&mut self, bytes: Bytes) {
        if self.error.is_none()
            && let Err(err) = self.out.write_all(&bytes)
        {
            self.error = Some(err);
        }
    }
}

fn rewrite(
    config: &std::path::Path,
    route_name: &str,
    content_type: &str,
    chunk_size: usize,
    explain: bool,
    inventory: bool,
    input: Option<PathBuf>,
) -> ExitCode {
    let policy = match load(config) {
        Ok(policy) => policy,
        Err(code) => return code,
    };
    let Some(route) = policy.route(route_name) else {
        let names: Vec<&str> = policy.routes.iter().map(|r| r.name.as_str()).collect();
        eprintln!(
            "no route named `{route_name}`; routes: {}",
            names.join(", ")
        );
        return ExitCode::from(1);
    };
    let Some(kind) = BodyKind::for_route(content_type, &route.rules) else {
        eprintln!(
            "unsupported media type `{content_type}`: scrim rewrites JSON, NDJSON and form bodies (and text/plain lines on a route with `text_plain: query_lines`)"
        );
        return ExitCode::from(2);
    };
    let mut reader: Box<dyn Read> = match input.as_deref() {
        None => Box::new(io::stdin().lock()),
        Some(path) if path.as_os_str() == "-" => Box::new(io::stdin().lock()),
        Some(path) => match std::fs::File::open(path) {
            Ok(file) => Box::new(file),
            Err(err) => {
                eprintln!("cannot read {}: {err}", path.display());
                return ExitCode::from(1);
            }
        },
    };
    let sink = WriteSink {
        out: io::BufWriter::with_capacity(256 * 1024, io::stdout().lock()),
        error: None,
    };
    let mut rewriter = BodyRewriter::new(kind, &route.rules, sink, explain).inventory(inventory);
    let mut buffer = vec![0u8; chunk_size];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                eprintln!("cannot read the input: {err}");
                return ExitCode::from(1);
            }
        };
        if let Err(err) = rewriter.write(Bytes::copy_from_slice(&buffer[..n])) {
            eprintln!("rejected: {err}");
            return ExitCode::from(2);
        }
        if let Some(err) = rewriter.sink_mut().error.take() {
            eprintln!("cannot write the output: {err}");
            return ExitCode::from(1);
        }
    }
    let (mut sink, report) = match rewriter.finish() {
        Ok(done) => done,
        Err(err) => {
            eprintln!("rejected: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(err) = sink.error.take().or_else(|| sink.out.flush().err()) {
        eprintln!("cannot write the output: {err}");
        return ExitCode::from(1);
    }
    if explain {
        eprintln!("{}", report.explain(&route.name, &route.rules));
    }
    if inventory {
        let offline = Inventory::new();
        offline
            .shard()
            .forwarded(&route.name, &report, None, std::time::SystemTime::now());
        eprintln!("{}", offline.snapshot().to_json());
    }
    ExitCode::SUCCESS
}
