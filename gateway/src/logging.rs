//! Logs: JSON lines on standard output through `tracing`.
//!
//! Nothing on the request path logs headers or bodies: the access log line carries the request
//! id, method, path, tenant, status and latency. Tokens are never logged; auth failures log the
//! reason only.

use tracing_subscriber::EnvFilter;

/// Lines that may wait for the writer thread; beyond it, logging waits (never drops a line).
pub const LOG_QUEUE_LINES_MAX: usize = 64 * 1024;

/// Keeps the log writer thread; dropping it flushes what is queued.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the JSON subscriber with the given filter (`info`, `warn,ledger=debug`, ...).
/// Lines are written by a background thread through a bounded queue, so a request does not
/// wait for a `write` to standard output; a full queue makes callers wait rather than lose
/// lines (the access log is evidence). A second call does nothing (tests start several servers
/// in one process) and returns `None`.
pub fn init(filter: &str) -> Option<LogGuard> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES_MAX)
        .thread_name("strongroom-log")
        .finish(std::io::stdout());
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init()
        .ok()
        .map(|()| guard)
}
