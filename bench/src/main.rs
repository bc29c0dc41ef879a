//! `ledger-load`: durable transfers per second through Strongroom's real HTTPS API.
//!
//! It starts `strongroom serve` on a fresh data directory, creates `ACCOUNTS` USD accounts,
//! runs `CLIENTS` clients for `DURATION_S` seconds (each on its own keep-alive TLS connection,
//! posting single transfers or, with `BATCH=N`, atomic batches of N), then checks the books:
//! balanced, and holding exactly the transfers acknowledged. It stops the server with SIGTERM
//! and prints a report whose last line is `transfers/s: N`, the form
//! `../shared/bench/ledger-vs-postgres.sh` reads.
//!
//! Exit status: 0 on success; 64 for an invalid setting; 1 for a failed setup, any error
//! answer, or books that do not check out (the report is printed, without the rate line).

mod ledger;
mod load;
mod settings;

use bench::{http, server};

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::ledger::Books;
use crate::load::Outcome;
use crate::server::Server;
use crate::settings::Settings;

/// Exit status for an invalid setting (`EX_USAGE`).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let settings = match Settings::load(|name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("ledger-load: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // One thread for every client: the server needs the cores more than the load does, and a
    // single thread keeps the client's share small and easy to see in the report.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ledger-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ledger-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the report shows besides the settings.
#[derive(Debug)]
struct Measured {
    outcome: Outcome,
    books: Option<Books>,
    peak_rss_kib: Option<u64>,
    server_cpu: Option<Duration>,
    client_cpu: Option<Duration>,
}

async fn run(settings: &Settings) -> Result<()> {
    eprintln!(
        "ledger-load: starting {} serve",
        settings.strongroom_bin.display()
    );
    let server = Server::start(&settings.strongroom_bin)?;
    let pid = server.pid().to_string();
    let target = http::Target::new(
        server.banner.addr,
        &server.banner.cert,
        &server.dev_token()?,
    )?;
    eprintln!(
        "ledger-load: server {pid} on https://{}; creating {} accounts",
        server.banner.addr, settings.accounts
    );
    let ids = ledger::create_accounts(&target, settings.accounts)
        .await
        .with_context(|| server.stderr_context())?;
    let pool = Arc::new(load::Pool::new(&ids, settings.batch_len));
    eprintln!(
        "ledger-load: {} clients for {} s",
        settings.clients,
        settings.duration.as_secs()
    );
    let cpu_before = (server::cpu_time(&pid), server::cpu_time("self"));
    let outcome = load::run(&target, pool, settings.clients, settings.duration).await?;
    let cpu_after = (server::cpu_time(&pid), server::cpu_time("self"));
    let books = ledger::read_books(&target).await;
    let measured = Measured {
        peak_rss_kib: server.peak_rss_kib(),
        server_cpu: cpu_after.0.zip(cpu_before.0).map(|(a, b)| a - b),
        client_cpu: cpu_after.1.zip(cpu_before.1).map(|(a, b)| a - b),
        books: books.as_ref().ok().cloned(),
        outcome,
    };
    server.stop()?;
    print!("{}", report(settings, &measured));
    let books = books?;
    check(&measured.outcome, &books, settings.accounts)?;
    println!("transfers/s: {}", rate(&measured.outcome).round());
    Ok(())
}

/// Fails on any error answer or any difference between what was acknowledged and what is held.
fn check(outcome: &Outcome, books: &Books, accounts: usize) -> Result<()> {
    for sample in &outcome.error_samples {
        eprintln!("ledger-load: error answer: {sample}");
    }
    for lost in &outcome.transport_errors {
        eprintln!("ledger-load: {lost}");
    }
    if outcome.error_count() > 0 {
        bail!("{} requests failed", outcome.error_count());
    }
    if outcome.acknowledged == 0 {
        bail!("no transfer was acknowledged");
    }
    if books.accounts != accounts as u64 {
        bail!(
            "the server holds {} accounts, {accounts} were created",
            books.accounts
        );
    }
    if books.transfers != outcome.acknowledged {
        bail!(
            "the server holds {} transfers, {} were acknowledged",
            books.transfers,
            outcome.acknowledged
        );
    }
    if books.debits_posted != outcome.acknowledged_amount_minor {
        bail!(
            "the server's posted debits are {} USD minor units, the acknowledged transfers add up to {}",
            books.debits_posted,
            outcome.acknowledged_amount_minor
        );
    }
    Ok(())
}

/// Acknowledged transfers per second of load.
fn rate(outcome: &Outcome) -> f64 {
    outcome.acknowledged as f64 / outcome.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn report(settings: &Settings, m: &Measured) -> String {
    let o = &m.outcome;
    let ms = |q: f64| o.latency_us.value_at_quantile(q) as f64 / 1000.0;
    let cores = |cpu: Option<Duration>| match cpu {
        Some(cpu) => format!(
            "{:.2} cores ({:.1} s CPU)",
            cpu.as_secs_f64() / o.elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
            cpu.as_secs_f64()
        ),
        None => "unknown".to_owned(),
    };
    let errors = if o.error_count() == 0 {
        "0".to_owned()
    } else {
        let mut parts: Vec<String> = o
            .errors_by_status
            .iter()
            .map(|(status, n)| format!("{n} x {status}"))
            .collect();
        if !o.transport_errors.is_empty() {
            parts.push(format!("{} lost connections", o.transport_errors.len()));
        }
        format!("{} ({})", o.error_count(), parts.join(", "))
    };
    let mode = match settings.batch_len {
        0 => "single transfers (POST /v1/transfers)".to_owned(),
        n => format!("atomic batches of {n} (POST /v1/transfers/batch)"),
    };
    let books = match &m.books {
        Some(b) => format!(
            "balanced; {} transfers held, {} acknowledged",
            b.transfers, o.acknowledged
        ),
        None => "NOT CHECKED (see the error)".to_owned(),
    };
    let rss = m.peak_rss_kib.map_or("unknown".to_owned(), |kib| {
        format!("{:.1} MiB", kib as f64 / 1024.0)
    });
    let mut out = String::new();
    let mut line = |name: &str, value: String| out.push_str(&format!("{name:<18}{value}\n"));
    line("clients:", settings.clients.to_string());
    line("accounts:", settings.accounts.to_string());
    line("requests of:", mode);
    line("duration:", format!("{:.2} s", o.elapsed.as_secs_f64()));
    line("requests:", o.requests.to_string());
    line("acknowledged:", format!("{} transfers", o.acknowledged));
    line("errors:", errors);
    line(
        "latency:",
        format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            o.latency_us.max() as f64 / 1000.0
        ),
    );
    line("server peak RSS:", rss);
    line("server CPU:", cores(m.server_cpu));
    line("client CPU:", cores(m.client_cpu));
    line("books:", books);
    out
}
