//! `GET /metrics`: the ledger's and the store's counters in the Prometheus text format, on a
//! listener of its own (`metrics_listen`), off by default.
//!
//! The endpoint is plain HTTP without authentication, for a scraper beside the process: on
//! Fargate the CloudWatch agent or an OpenTelemetry collector in the same task reaches it on
//! 127.0.0.1 (tasks share one network namespace), and the partner-facing HTTPS listener never
//! serves it. It holds counts only: no tenant, account, key or amount.

use std::fmt::Write as _;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use ledger::Ledger;
use ledger::metrics::Metric;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders counters in the text exposition format: a `HELP` and `TYPE` line per name, then a
/// line per series, series of one name kept together in the order given.
pub fn render(metrics: &[Metric]) -> String {
    let mut out = String::with_capacity(metrics.len() * 120);
    let mut described: Vec<&str> = Vec::new();
    for (i, metric) in metrics.iter().enumerate() {
        if described.contains(&metric.name) {
            continue;
        }
        described.push(metric.name);
        let _ = writeln!(out, "# HELP {} {}", metric.name, escape_help(metric.help));
        let _ = writeln!(out, "# TYPE {} counter", metric.name);
        for series in metrics[i..].iter().filter(|m| m.name == metric.name) {
            out.push_str(series.name);
            if !series.labels.is_empty() {
                out.push('{');
                for (j, (name, value)) in series.labels.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape_label(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", series.value);
        }
    }
    out
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` until `stop` turns true.
pub fn serve(
    listener: TcpListener,
    ledger: Ledger,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let body = render(&ledger.metrics());
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], body) }
            }),
        )
        .fallback(|| async {
            (StatusCode::NOT_FOUND, "not found: try /metrics\n").into_response()
        });
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(%error, "metrics listener failed");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_one_name_share_one_description() {
        let metrics = [
            Metric::counter("a_total", "Counts a.", 3),
            Metric::labelled("b_total", "Counts b\\n.", &[("reason", "x")], 1),
            Metric::counter("c_total", "Counts c.", 0),
            Metric::labelled("b_total", "Counts b\\n.", &[("reason", "y\"z")], 2),
        ];
        assert_eq!(
            render(&metrics),
            "# HELP a_total Counts a.\n\
             # TYPE a_total counter\n\
             a_total 3\n\
             # HELP b_total Counts b\\\\n.\n\
             # TYPE b_total counter\n\
             b_total{reason=\"x\"} 1\n\
             b_total{reason=\"y\\\"z\"} 2\n\
             # HELP c_total Counts c.\n\
             # TYPE c_total counter\n\
             c_total 0\n"
        );
    }

    #[test]
    fn fractions_stay_fractions() {
        let metric = Metric {
            value: 2.5,
            ..Metric::counter("units_total", "Units.", 0)
        };
        assert!(render(&[metric]).ends_with("units_total 2.5\n"));
    }
}
