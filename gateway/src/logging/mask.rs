//! Card numbers masked in everything the process logs, on the way out.
//!
//! Call sites log the request path, the method, reasons quoted from tokens and from storage,
//! and whatever a dependency logs at `trace`; any of them can carry a card number that a client
//! put there. Masking each field where it is logged would miss the next one, so the masking
//! sits where every formatted line passes: [`Masked`] wraps the subscriber's `MakeWriter`, and
//! its writer passes each line through [`audit::mask_pans`] before the line goes on. That
//! covers the message, the event's fields, the span's fields, in any format (JSON escapes
//! included: `audit::mask` reads `\t` and `\u{a0}` as separators).
//!
//! The subscriber writes each event with one `write_all` on a writer of its own (made for that
//! event), which in turn may call `write` several times. So the writer keeps what it was given
//! until a line ends (`\n` is never part of a card number, so lines are masked one by one
//! without splitting one), and masks what is left when it is dropped. A line longer than
//! [`LINE_BYTES_MAX`] goes out before its end with every digit masked: a card number may
//! straddle the cut, and the bound matters more than the digits of a line that long.
//!
//! The default panic hook prints the panic's message (which may quote a value) to standard
//! error; [`mask_panics`] replaces it with one that masks it first.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Most bytes of an unfinished line kept; beyond, it goes out with every digit masked.
pub const LINE_BYTES_MAX: usize = 1 << 20;

/// A `MakeWriter` whose writers mask card numbers in every line (see the module documentation).
#[derive(Clone, Debug)]
pub struct Masked<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Masked<M> {
    type Writer = MaskingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskingWriter::new(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        MaskingWriter::new(self.0.make_writer_for(meta))
    }
}

/// Writes whole lines, card numbers masked, to `W`; what is left of a line when dropped goes
/// out masked too.
#[derive(Debug)]
pub struct MaskingWriter<W: Write> {
    inner: W,
    /// The unfinished line (never holds a `\n`).
    pending: Vec<u8>,
}

impl<W: Write> MaskingWriter<W> {
    /// A writer in front of `inner`.
    pub fn new(inner: W) -> MaskingWriter<W> {
        MaskingWriter {
            inner,
            pending: Vec::new(),
        }
    }

    /// Writes `bytes`, whole lines, masked.
    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(bytes);
        match audit::mask_pans(&text) {
            // Unchanged and valid UTF-8: the bytes as given, without a copy.
            Cow::Borrowed(_) if matches!(text, Cow::Borrowed(_)) => self.inner.write_all(bytes),
            masked => self.inner.write_all(masked.as_bytes()),
        }
    }

    /// Writes out the unfinished line, masked.
    fn emit_pending(&mut self) -> io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        self.emit(&pending)
    }
}

impl<W: Write> Write for MaskingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match bytes.iter().rposition(|&b| b == b'\n') {
            // The usual case: a whole event, ending its line, and nothing kept before it.
            Some(last) if last + 1 == bytes.len() && self.pending.is_empty() => self.emit(bytes)?,
            Some(last) => {
                self.pending.extend_from_slice(&bytes[..=last]);
                self.emit_pending()?;
                self.pending.extend_from_slice(&bytes[last + 1..]);
            }
            None => self.pending.extend_from_slice(bytes),
        }
        if self.pending.len() > LINE_BYTES_MAX {
            // Fail closed: the rest of the line may hold the rest of a card number.
            let mut line = std::mem::take(&mut self.pending);
            line.iter_mut()
                .filter(|b| b.is_ascii_digit())
                .for_each(|b| *b = b'*');
            self.inner.write_all(&line)?;
        }
        Ok(bytes.len())
    }

    /// Flushes what went out; an unfinished line stays, so that a card number is not split.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for MaskingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failure to: the subscriber dropped its writer.
        let _ = self.emit_pending().and_then(|()| self.inner.flush());
    }
}

/// Replaces the panic hook with one that prints what the default one does (the thread, the
/// location, the message; the backtrace when `RUST_BACKTRACE` asks for it), card numbers masked.
pub fn mask_panics() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let mut text = format!("\nthread '{name}' {info}\n");
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            text.push_str(&format!("stack backtrace:\n{backtrace}\n"));
        }
        // One write: lines of panicking threads do not interleave.
        let _ = io::stderr()
            .lock()
            .write_all(audit::mask_pans(&text).as_bytes());
    }));
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::format::FmtSpan;

    use super::*;

    /// Test card numbers in the shapes clients write them.
    const PANS: &[&str] = &[
        "4111111111111111",
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        "378282246310005",
        "2223000048400011",
        "6011111111111117",
    ];

    /// Where a test's writers put what they got.
    #[derive(Clone, Debug, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Sink {
        type Writer = Sink;

        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    /// Bytes written in these pieces come out as `expected`.
    fn check(pieces: &[&str], expected: &str) {
        let sink = Sink::default();
        let mut writer = MaskingWriter::new(sink.clone());
        for piece in pieces {
            writer.write_all(piece.as_bytes()).unwrap();
        }
        drop(writer);
        assert_eq!(sink.text(), expected, "{pieces:?}");
    }

    #[test]
    fn lines_come_out_masked_however_they_are_written() {
        check(&["no card here\n"], "no card here\n");
        check(&["card 4111111111111111\n"], "card 411111******1111\n");
        // Split across writes, in the middle of the number and of a separator.
        check(
            &["card 4111 11", "11 1111 1111 and more\n"],
            "card 4111 11** **** 1111 and more\n",
        );
        check(
            &["a 5555-5555-", "5555-4444\nb 4111", "111111111111\n"],
            "a 5555-55**-****-4444\nb 411111******1111\n",
        );
        check(
            &["x 4111%2", "01111%20", "1111%201111\n"],
            "x 4111%2011**%20****%201111\n",
        );
        // No line end: the rest goes out, masked, when the writer is dropped.
        check(&["tail 3782822", "46310005"], "tail 378282*****0005");
        check(&["", "\n", "\n\n"], "\n\n\n");
    }

    #[test]
    fn text_that_is_not_utf8_is_read_lossily_and_masked() {
        let sink = Sink::default();
        let mut writer = MaskingWriter::new(sink.clone());
        writer.write_all(b"\xff4111111111111111\n").unwrap();
        drop(writer);
        assert_eq!(sink.text(), "\u{fffd}411111******1111\n");
    }

    #[test]
    fn a_line_over_the_limit_goes_out_with_every_digit_masked() {
        let sink = Sink::default();
        let mut writer = MaskingWriter::new(sink.clone());
        let long = "7".repeat(LINE_BYTES_MAX);
        writer.write_all(long.as_bytes()).unwrap();
        assert!(sink.text().is_empty(), "at the limit it is kept");
        writer.write_all(b"41111").unwrap();
        let out = sink.text();
        assert_eq!(out.len(), LINE_BYTES_MAX + 5);
        assert!(out.bytes().all(|b| b == b'*'));
        writer.write_all(b"11111111111\n").unwrap();
        drop(writer);
        assert!(sink.text().ends_with("11111111111\n"));
    }

    /// Logs through a JSON or plain subscriber writing to a masked sink; returns the output.
    fn logged(json: bool, log: impl FnOnce()) -> String {
        let sink = Sink::default();
        let builder = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::CLOSE)
            .with_writer(Masked(sink.clone()));
        if json {
            let subscriber = builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .finish();
            tracing::subscriber::with_default(subscriber, log);
        } else {
            tracing::subscriber::with_default(builder.finish(), log);
        }
        sink.text()
    }

    /// Logs `pan` in a message, an event field (displayed and debugged), and a span field.
    fn log_everywhere(pan: &str) {
        let span = tracing::info_span!("request", path = %format!("/v1/accounts/{pan}"));
        let _entered = span.enter();
        tracing::info!("refund to {pan}");
        tracing::warn!(reason = %pan, debugged = ?pan, "refused");
        tracing::error!(nested = ?vec![pan, pan], "twice");
    }

    #[test]
    fn messages_fields_and_spans_are_masked_in_every_format() {
        for json in [true, false] {
            for pan in PANS.iter().copied().chain(["4111\t1111\u{a0}1111 1111"]) {
                let out = logged(json, || log_everywhere(pan));
                assert!(out.lines().count() >= 4, "{out}");
                assert!(!audit::contains_pan(&out), "{out}");
                // Masked, not dropped: the message is there with the BIN and the last four.
                let message = audit::mask_pans(&format!("refund to {pan}")).into_owned();
                assert_ne!(message, format!("refund to {pan}"));
                let found = if json {
                    out.lines()
                        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect(line))
                        .any(|line| line["message"] == message.as_str())
                } else {
                    out.contains(&message)
                };
                assert!(found, "{message:?} not in {out}");
            }
        }
    }

    #[test]
    fn the_request_access_line_is_masked() {
        let out = logged(true, || {
            let span = tracing::info_span!(
                "request",
                request_id = "01J0",
                method = "GET",
                path = "/v1/accounts/4111-1111-1111-1111",
            );
            span.in_scope(|| tracing::info!(status = 404, latency_us = 12, "request"));
        });
        assert!(
            out.contains(r#""path":"/v1/accounts/4111-11**-****-1111""#),
            "{out}"
        );
        assert!(!audit::contains_pan(&out), "{out}");
    }
}
