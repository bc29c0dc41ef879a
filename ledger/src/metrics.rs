//! Counters the ledger and its store keep, as plain values: the gateway renders them for a
//! scraper (Prometheus text) and nothing here knows how they are served.
//!
//! Every value is a monotonic counter since the process started, so that alarms are built on
//! rates (`rate(strongroom_dynamodb_retries_total[5m])`) and a restart shows as a reset, never as
//! a negative rate.

/// One counter and its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// The metric's name, `snake_case`, ending in `_total`.
    pub name: &'static str,
    /// One line saying what it counts.
    pub help: &'static str,
    /// Label pairs telling apart series of one name (e.g. `reason` of a retry).
    pub labels: &'static [(&'static str, &'static str)],
    /// The count so far.
    pub value: f64,
}

impl Metric {
    /// A counter without labels.
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Metric {
        Metric {
            name,
            help,
            labels: &[],
            // Counters stay far below 2^53, where f64 is exact.
            value: value as f64,
        }
    }

    /// A counter with labels.
    pub fn labelled(
        name: &'static str,
        help: &'static str,
        labels: &'static [(&'static str, &'static str)],
        value: u64,
    ) -> Metric {
        Metric {
            labels,
            ..Metric::counter(name, help, value)
        }
    }
}
