//! Logging: the JSON line format, and the buffered writer lines go to.
//!
//! JSON lines are one object per event, fields flattened,
//! `{"timestamp":…,"level":…,"target":…,"message":…,<fields>}`, written by
//! hand rather than with tracing-subscriber's JSON formatter: with one access
//! line per request, formatting is on every request's path, and the general
//! formatter (a serde map per event) cost about a sixth of a proxied
//! request's CPU in `benches/load.sh`.
//!
//! Lines are buffered and written to stderr when 64 KiB have gathered or
//! every 100 ms (by a flusher thread), and at exit: a write per line was
//! another system call per request.

use std::fmt::{self, Write as _};
use std::io::{self, BufWriter, Stderr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How often buffered lines are written out.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Stderr behind a 64 KiB buffer, shared by every thread that logs.
#[derive(Clone)]
pub struct BufferedStderr(Arc<Mutex<BufWriter<Stderr>>>);

impl BufferedStderr {
    pub fn new() -> Self {
        BufferedStderr(Arc::new(Mutex::new(BufWriter::with_capacity(
            64 * 1024,
            io::stderr(),
        ))))
    }

    /// Writes out what is buffered. A failed write to stderr has nowhere to
    /// be reported.
    pub fn flush(&self) {
        let _ = io::Write::flush(&mut *self.lock());
    }

    /// Flushes every `FLUSH_EVERY` from a background thread, for as long as
    /// the process runs.
    pub fn spawn_flusher(&self) -> io::Result<()> {
        let this = self.clone();
        std::thread::Builder::new()
            .name("scrim-log-flush".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    this.flush();
                }
            })?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, BufWriter<Stderr>> {
        // A panic while holding the lock leaves a buffer that is still fine.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for BufferedStderr {
    fn default() -> Self {
        BufferedStderr::new()
    }
}

/// The locked buffer, for one event.
pub struct BufferGuard<'a>(MutexGuard<'a, BufWriter<Stderr>>);

impl io::Write for BufferGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushed by the flusher thread and at exit, not per event.
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedStderr {
    type Writer = BufferGuard<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        BufferGuard(self.lock())
    }
}

/// The event formatter for `--log-format json`.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = String::with_capacity(256);
        line.push_str("{\"timestamp\":\"");
        let _ = write!(
            line,
            "{}",
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
        );
        line.push_str("\",\"level\":\"");
        line.push_str(metadata.level().as_str());
        line.push_str("\",\"target\":");
        push_string(&mut line, metadata.target());
        event.record(&mut Fields { line: &mut line });
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

struct Fields<'a> {
    line: &'a mut String,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(',');
        push_string(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_string(self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.line, "{value:.3}");
        } else {
            self.line.push_str("null");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        push_string(self.line, &format!("{value:?}"));
    }
}

/// Appends `text` as a JSON string.
fn push_string(line: &mut String, text: &str) {
    line.push('"');
    for c in text.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(line, "\\u{:04x}", u32::from(c));
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_flattened_fields() {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || WriteTo(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "scrim::access", route = "meta", status = 200u16, duration_ms = 1.5f64, ok = true, path = "/a\"b", "request");
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "request");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "scrim::access");
        assert_eq!(line["route"], "meta");
        assert_eq!(line["status"], 200);
        assert_eq!(line["duration_ms"], 1.5);
        assert_eq!(line["ok"], true);
        assert_eq!(line["path"], "/a\"b");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    struct WriteTo(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for WriteTo {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
