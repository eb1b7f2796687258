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

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{self, BufWriter, Stderr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        push_timestamp(&mut line, SystemTime::now());
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
        push_u64(self.line, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        if value < 0 {
            self.line.push('-');
        }
        push_u64(self.line, value.unsigned_abs());
    }

    /// Three decimals (durations in milliseconds), written without the
    /// float formatter, which cost more than the rest of the line.
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        let thousandths = (value.abs() * 1000.0).round();
        if !value.is_finite() || thousandths >= u64::MAX as f64 {
            self.line.push_str("null");
            return;
        }
        let thousandths = thousandths as u64;
        if value < 0.0 && thousandths > 0 {
            self.line.push('-');
        }
        push_u64(self.line, thousandths / 1000);
        let fraction = thousandths % 1000;
        self.line.push('.');
        for digit in [fraction / 100, fraction / 10 % 10, fraction % 10] {
            self.line.push(char::from(b'0' + digit as u8));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.line.push('"');
        let _ = write!(Escaping(self.line), "{value:?}");
        self.line.push('"');
    }
}

/// Escapes what is written through it into a JSON string's content.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        push_escaped(self.0, text);
        Ok(())
    }
}

thread_local! {
    /// The whole seconds of the last timestamp written on this thread, and
    /// their RFC 3339 text up to the decimal point: formatting a date took
    /// about as long as the rest of the line, and it changes once a second.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends `time` as RFC 3339 UTC with microseconds, like
/// `humantime::format_rfc3339_micros`.
fn push_timestamp(line: &mut String, time: SystemTime) {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != seconds {
            text.clear();
            let whole = UNIX_EPOCH + Duration::from_secs(seconds);
            let _ = write!(text, "{}", humantime::format_rfc3339_seconds(whole));
            // "…T09:58:46Z" → "…T09:58:46."
            text.pop();
            text.push('.');
            *cached = seconds;
        }
        line.push_str(text);
    });
    let micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    line.extend(digits.iter().map(|d| char::from(*d)));
    line.push('Z');
}

fn push_u64(line: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for &digit in &digits[at..] {
        line.push(char::from(digit));
    }
}

/// Appends `text` as a JSON string. Runs that need no escape (nearly all
/// of a log line) are copied whole.
fn push_string(line: &mut String, text: &str) {
    line.push('"');
    push_escaped(line, text);
    line.push('"');
}

/// The bytes a JSON string cannot hold as they are: `"`, `\` and controls.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

fn push_escaped(line: &mut String, text: &str) {
    let mut rest = text;
    // Every byte that needs an escape is ASCII, so a byte search finds
    // char boundaries without decoding UTF-8.
    while let Some(at) = rest.bytes().position(|b| NEEDS_ESCAPE[usize::from(b)]) {
        line.push_str(&rest[..at]);
        match rest.as_bytes()[at] {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            b'\n' => line.push_str("\\n"),
            b'\r' => line.push_str("\\r"),
            b'\t' => line.push_str("\\t"),
            control => {
                let _ = write!(line, "\\u{control:04x}");
            }
        }
        rest = &rest[at + 1..];
    }
    line.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `JsonLines` writes for the events `emit` sends.
    fn lines_of(emit: impl FnOnce()) -> String {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLines)
            .with_writer(move || WriteTo(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn timestamps_match_humantime() {
        let base = UNIX_EPOCH + Duration::from_secs(1_764_410_326);
        for offset in [0, 1, 999, 1_000, 123_456, 999_999] {
            for second in [0, 1, 59] {
                let time = base + Duration::from_secs(second) + Duration::from_micros(offset);
                let mut line = String::new();
                push_timestamp(&mut line, time);
                assert_eq!(line, humantime::format_rfc3339_micros(time).to_string());
            }
        }
    }

    #[test]
    fn lines_are_json_with_flattened_fields() {
        let text = lines_of(|| {
            tracing::info!(target: "scrim::access", route = "meta", status = 200u16, duration_ms = 1.5f64, ok = true, path = "/a\"b", "request");
        });
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

    #[test]
    fn numbers_are_written_as_json() {
        let mut line = String::new();
        for value in [0u64, 7, 10, 1234567890, u64::MAX] {
            line.clear();
            push_u64(&mut line, value);
            assert_eq!(line, value.to_string());
        }
        let text = lines_of(|| {
            tracing::info!(a = 0.0004f64, b = 1.9996f64, c = -2.5f64, d = f64::NAN, e = -3i64, f = ?"x\"y", "m");
        });
        assert!(
            text.contains(r#""a":0.000,"b":2.000,"c":-2.500,"d":null,"e":-3,"f":"\"x\\\"y\"""#),
            "{text}"
        );
        let _: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let text = "a\"b\\c\nd\te\u{1}é😀";
        let mut line = String::new();
        push_string(&mut line, text);
        assert_eq!(line, "\"a\\\"b\\\\c\\nd\\te\\u0001é😀\"");
        assert_eq!(serde_json::from_str::<String>(&line).unwrap(), text);
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
