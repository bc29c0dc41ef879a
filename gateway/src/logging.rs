//! Logs: JSON lines on standard output through `tracing`.
//!
//! Nothing on the request path logs headers or bodies: the access log line carries the request
//! id, method, path, tenant, status and latency. Tokens are never logged; auth failures log the
//! reason only. Every line has its card numbers masked on the way out, whatever logged it
//! ([`mask`]), and so has a panic's message.
//!
//! A request does not wait for a `write` to standard output: lines go into a shared buffer that
//! a background thread writes out every [`LOG_FLUSH_INTERVAL`], one system call for all of
//! them. Nothing is dropped: a line that finds the buffer at [`LOG_BUFFER_BYTES_MAX`] writes the
//! buffer out itself, in order, before returning (the access log is evidence).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use self::mask::Masked;

pub mod mask;

/// How long a line may wait in the buffer.
pub const LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// Buffered bytes at which the line that crosses it writes the buffer out itself.
pub const LOG_BUFFER_BYTES_MAX: usize = 1 << 20;

/// Where log lines gather before they are written.
#[derive(Debug)]
struct Buffer {
    /// Where the lines go: standard output (tests collect them instead).
    sink: fn(&[u8]),
    lines: Mutex<Vec<u8>>,
    /// Held while a buffer is taken and written, so buffers go out in the order they filled.
    output: Mutex<()>,
    stop: Mutex<bool>,
    wake: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes lines to standard output. Standard output gone (a closed pipe): nothing better to
/// do with a log line.
fn to_stdout(lines: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(lines).and_then(|()| out.flush());
}

impl Buffer {
    fn new(sink: fn(&[u8])) -> Buffer {
        Buffer {
            sink,
            lines: Mutex::default(),
            output: Mutex::default(),
            stop: Mutex::default(),
            wake: Condvar::new(),
        }
    }

    /// Writes out everything buffered so far.
    fn flush(&self) {
        let _order = lock(&self.output);
        let lines = std::mem::take(&mut *lock(&self.lines));
        if !lines.is_empty() {
            (self.sink)(&lines);
        }
    }
}

/// The `MakeWriter` the subscriber formats into.
#[derive(Clone, Debug)]
struct BufferWriter(Arc<Buffer>);

impl Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut lines = lock(&self.0.lines);
            lines.extend_from_slice(bytes);
            lines.len() >= LOG_BUFFER_BYTES_MAX
        };
        if full {
            self.0.flush();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferWriter {
    type Writer = BufferWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Keeps the log writer thread; dropping it writes out what is buffered and stops the thread.
#[derive(Debug)]
pub struct LogGuard {
    buffer: Arc<Buffer>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        *lock(&self.buffer.stop) = true;
        self.buffer.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.buffer.flush();
    }
}

fn writer_thread(buffer: &Buffer) {
    let mut stop = lock(&buffer.stop);
    while !*stop {
        stop = buffer
            .wake
            .wait_timeout(stop, LOG_FLUSH_INTERVAL)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        drop(stop);
        buffer.flush();
        stop = lock(&buffer.stop);
    }
}

/// Installs the JSON subscriber with the given filter (`info`, `warn,ledger=debug`, ...). A
/// second call does nothing (tests start several servers in one process) and returns `None`.
pub fn init(filter: &str) -> Option<LogGuard> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter);
    let buffer = Arc::new(Buffer::new(to_stdout));
    let thread = {
        let buffer = buffer.clone();
        std::thread::Builder::new()
            .name("strongroom-log".into())
            .spawn(move || writer_thread(&buffer))
    };
    match thread {
        Ok(thread) => {
            let guard = LogGuard {
                buffer: buffer.clone(),
                thread: Some(thread),
            };
            // On a second call the guard goes at once, and its thread with it.
            let installed = subscriber
                .with_writer(Masked(BufferWriter(buffer)))
                .try_init()
                .ok()
                .map(|()| guard);
            if installed.is_some() {
                mask::mask_panics();
            }
            installed
        }
        Err(error) => {
            eprintln!("strongroom: no log writer thread ({error}); every line is written at once");
            if subscriber
                .with_writer(Masked(std::io::stdout))
                .try_init()
                .is_ok()
            {
                mask::mask_panics();
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the test buffers wrote, per test (each test uses its own sink).
    static ORDER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    static FULL: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    #[test]
    fn lines_go_out_whole_and_in_order() {
        let buffer = Arc::new(Buffer::new(|b| lock(&ORDER).extend_from_slice(b)));
        let mut writer = BufferWriter(buffer.clone());
        writer.write_all(b"{\"n\":1}\n").unwrap();
        writer.write_all(b"{\"n\":2}\n").unwrap();
        assert!(lock(&ORDER).is_empty(), "written before a flush");
        buffer.flush();
        assert_eq!(*lock(&ORDER), b"{\"n\":1}\n{\"n\":2}\n");
        buffer.flush();
        assert_eq!(lock(&ORDER).len(), 16, "a line went out twice");
    }

    #[test]
    fn the_line_that_fills_the_buffer_writes_it_out() {
        let buffer = Arc::new(Buffer::new(|b| lock(&FULL).extend_from_slice(b)));
        let mut writer = BufferWriter(buffer.clone());
        let line = vec![b'x'; 1023];
        let lines = (LOG_BUFFER_BYTES_MAX - 1) / 1024;
        for _ in 0..lines {
            writer.write_all(&line).unwrap();
            writer.write_all(b"\n").unwrap();
        }
        let short = LOG_BUFFER_BYTES_MAX - 1 - lines * 1024;
        writer.write_all(&vec![b'y'; short]).unwrap();
        assert!(
            lock(&FULL).is_empty(),
            "one byte below the limit stays buffered"
        );
        writer.write_all(b"\n").unwrap();
        assert_eq!(
            lock(&FULL).len(),
            LOG_BUFFER_BYTES_MAX,
            "at the limit it is written out"
        );
        assert!(lock(&buffer.lines).is_empty());
    }
}
