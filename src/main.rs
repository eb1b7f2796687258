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
    /// The token vault of a running scrim, through its admin listener
    /// (`admin.listen`, with the bearer token `keys.admin`, both read from
    /// the configuration file).
    Vault {
        /// The configuration file the running scrim uses.
        #[arg(long, short, env = "SCRIM_CONFIG", value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// The admin listener's `host:port`, when it is not reached at
        /// `admin.listen` (another machine, a container's mapped port).
        #[arg(long, value_name = "HOST:PORT", global = true)]
        admin: Option<String>,
        #[command(subcommand)]
        call: VaultCall,
    },
    /// The forward proxy's certificate authority: apps that go through
    /// `forward_proxy` trust its certificate, and scrim signs a certificate
    /// for each host it intercepts with its key.
    Ca {
        #[command(subcommand)]
        call: CaCall,
    },
}

#[derive(Subcommand)]
enum CaCall {
    /// Make a new CA: its certificate (`scrim-ca.pem`, what apps trust) and
    /// its key (`scrim-ca-key.pem`, readable by its owner only) in DIR.
    /// Existing files are never overwritten.
    Init {
        /// The directory to write them into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Print the CA certificate (PEM, to give apps), its subject, its
    /// expiry and its SHA-256 fingerprint (to check what an app trusts).
    Show {
        /// The configuration whose `forward_proxy.ca.cert` to read.
        #[arg(
            long,
            short,
            env = "SCRIM_CONFIG",
            value_name = "FILE",
            conflicts_with = "cert"
        )]
        config: Option<PathBuf>,
        /// The certificate file itself.
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum VaultCall {
    /// Print the value behind each token (`null` for one the vault does not
    /// know: unknown, erased or expired), as JSON.
    Reveal {
        /// The tokens; none: one per line on standard input.
        #[arg(value_name = "TOKEN")]
        tokens: Vec<String>,
    },
    /// Erase mappings for good: each token then reveals nothing, anywhere,
    /// and the value gets a new, unrelated token. Give values (as your app
    /// knows them: each is normalized as every `tokenize` rule would) or
    /// tokens. Values on the command line show in `ps` and in the shell's
    /// history: prefer standard input.
    Erase {
        /// The items are values (`jane@example.com`).
        #[arg(long, conflicts_with = "tokens", required_unless_present = "tokens")]
        values: bool,
        /// The items are tokens.
        #[arg(long)]
        tokens: bool,
        /// The values or tokens; none: one per line on standard input.
        #[arg(value_name = "ITEM")]
        items: Vec<String>,
    },
    /// Print the vault's counts (tokens stored, cached) and key id, as JSON.
    Stats,
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
        Command::Vault {
            config,
            admin,
            call,
        } => vault(config, admin.as_deref(), call),
        Command::Ca { call } => ca(call),
    }
}

/// `scrim ca init|show`.
fn ca(call: CaCall) -> ExitCode {
    match call {
        CaCall::Init { out } => match scrim::ca::init(&out) {
            Ok(cert) => {
                let key = out.join(scrim::ca::KEY_FILE);
                printed(writeln!(
                    io::stdout().lock(),
                    "wrote {} (trust it in each app) and {} (mode 600; keep it to scrim)\n\nforward_proxy:\n  ca:\n    cert: {}\n    key: {}",
                    cert.display(),
                    key.display(),
                    cert.display(),
                    key.display()
                ))
            }
            Err(message) => {
                eprintln!("{message}");
                ExitCode::from(1)
            }
        },
        CaCall::Show { config, cert } => {
            let path = match (config, cert) {
                (_, Some(cert)) => cert,
                (Some(config), None) => match scrim::config::Config::load(&config) {
                    Ok((loaded, _)) => match loaded.forward_proxy {
                        Some(forward) => PathBuf::from(forward.ca.cert.value),
                        None => {
                            eprintln!(
                                "{}: no `forward_proxy:` (give the certificate with --cert FILE)",
                                config.display()
                            );
                            return ExitCode::from(1);
                        }
                    },
                    Err(errors) => {
                        eprintln!("{errors}");
                        return ExitCode::from(1);
                    }
                },
                (None, None) => {
                    eprintln!("scrim ca show needs --config FILE (or SCRIM_CONFIG) or --cert FILE");
                    return ExitCode::from(1);
                }
            };
            match scrim::ca::show(&path) {
                Ok(shown) => printed(write!(
                    io::stdout().lock(),
                    "subject: {}\nexpires: {}\nsha256 fingerprint: {}\n{}",
                    shown.subject,
                    shown.not_after,
                    shown.fingerprint,
                    shown.pem
                )),
                Err(message) => {
                    eprintln!("{message}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `scrim vault`: one call of the admin vault API, its JSON answer on
/// stdout. Exit 1 when the call fails, with the reason on stderr.
fn vault(config: Option<PathBuf>, admin: Option<&str>, call: VaultCall) -> ExitCode {
    let Some(config) = config else {
        eprintln!("scrim vault needs the configuration file: --config FILE (or SCRIM_CONFIG)");
        return ExitCode::from(1);
    };
    let client = match scrim::admin::client::AdminClient::from_config(&config, admin) {
        Ok(client) => client,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(1);
        }
    };
    let items = |given: Vec<String>| -> io::Result<Vec<String>> {
        if !given.is_empty() {
            return Ok(given);
        }
        let mut text = String::new();
        io::stdin().read_to_string(&mut text)?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    };
    let request = match call {
        VaultCall::Stats => Ok((http::Method::GET, "/vault/stats", None)),
        VaultCall::Reveal { tokens } => items(tokens).map(|tokens| {
            let body = serde_json::json!({ "tokens": tokens });
            (http::Method::POST, "/vault/reveal", Some(body))
        }),
        VaultCall::Erase {
            values,
            items: given,
            ..
        } => items(given).map(|items| {
            let field = if values { "values" } else { "tokens" };
            let body = serde_json::json!({ field: items });
            (http::Method::POST, "/vault/erase", Some(body))
        }),
    };
    let (method, path, body) = match request {
        Ok(request) => request,
        Err(err) => {
            eprintln!("cannot read standard input: {err}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(client.call(method, path, body)) {
        Ok((200, answer)) => {
            printed(writeln!(io::stdout().lock(), "{answer}").and_then(|()| io::stdout().flush()))
        }
        Ok((status, answer)) => {
            let reason = answer["error"].as_str().unwrap_or("no reason given");
            eprintln!("the admin listener answered {status}: {reason}");
            ExitCode::from(1)
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
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
    if route.rules.uses_vault() {
        eprintln!(
            "route `{route_name}` tokenizes: its tokens come from the vault of a running scrim, and `scrim rewrite` makes none (try the rules with `encrypt`, or send the body through the proxy)"
        );
        return ExitCode::from(1);
    }
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
