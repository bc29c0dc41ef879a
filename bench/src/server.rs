//! The `strongroom serve` child process: start it on a fresh data directory, learn its address
//! and certificate from its banner, get a dev token, watch its CPU and memory, stop it.
//!
//! The server runs with its defaults except the data directory (a new temporary one, removed
//! afterwards) and the listen address (`127.0.0.1:0`). Other `STRONGROOM_*` variables of this
//! process pass through, so a tuning experiment is `STRONGROOM_COMMIT_WAIT_US=200 ledger-load`.
//! Its JSON logs (stdout) go to /dev/null; its stderr is read line by line on a thread, which
//! keeps the last lines for error messages and keeps the pipe from filling up.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Longest wait for the `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the server to exit after SIGTERM (its own shutdown grace is 20 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(40);
/// Lines of the server's stderr kept for error messages.
pub const STDERR_TAIL_LEN_MAX: usize = 40;
/// Start-up lines the banner reader may queue before the starter reads them.
const BANNER_QUEUE_LEN_MAX: usize = 256;
/// The tenant the load acts for.
pub const TENANT: &str = "bench";

/// What the banner says.
#[derive(Debug, Clone)]
pub struct Banner {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate, to verify the TLS connections against.
    pub cert: PathBuf,
    /// Its metrics listener, when `STRONGROOM_METRICS_LISTEN` is set.
    pub metrics: Option<SocketAddr>,
}

/// A running `strongroom serve`; killed on drop if not stopped.
#[derive(Debug)]
pub struct Server {
    bin: PathBuf,
    child: Child,
    data_dir: tempfile::TempDir,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// The address and certificate it announced.
    pub banner: Banner,
}

impl Server {
    /// Starts the server and waits until it listens.
    pub fn start(bin: &Path) -> Result<Server> {
        if !bin.is_file() {
            bail!(
                "no strongroom executable at {} (build it with `cargo build --release -p gateway`, or set STRONGROOM_BIN)",
                bin.display()
            );
        }
        let data_dir = tempfile::Builder::new()
            .prefix("strongroom-bench.")
            .tempdir()
            .context("create a temporary data directory")?;
        let mut child = Command::new(bin)
            .arg("serve")
            .env("STRONGROOM_DATA_DIR", data_dir.path())
            .env("STRONGROOM_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(server_log()?)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {} serve", bin.display()))?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (lines_tx, lines_rx) = sync_channel(BANNER_QUEUE_LEN_MAX);
        let tail = stderr_tail.clone();
        std::thread::Builder::new()
            .name("server-stderr".into())
            .spawn(move || read_stderr(BufReader::new(stderr), &tail, lines_tx))
            .context("start the stderr reader")?;
        let mut server = Server {
            bin: bin.to_owned(),
            child,
            data_dir,
            stderr_tail,
            banner: Banner {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                cert: PathBuf::new(),
                metrics: None,
            },
        };
        server.banner = server
            .read_banner(&lines_rx)
            .with_context(|| server.stderr_context())?;
        Ok(server)
    }

    fn read_banner(&mut self, lines: &Receiver<String>) -> Result<Banner> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut cert = None;
        let mut metrics = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    bail!("the server did not listen within {START_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().context("wait for the server")?;
                    bail!("the server exited before listening ({status})");
                }
            };
            if let Some(path) = line.strip_prefix("tls certificate: ") {
                cert = Some(PathBuf::from(path.trim()));
            } else if let Some(addr) = line
                .strip_prefix("metrics on http://")
                .and_then(|rest| rest.strip_suffix("/metrics"))
            {
                metrics = Some(
                    addr.parse()
                        .with_context(|| format!("the metrics address in {line:?}"))?,
                );
            } else if let Some(addr) = line.strip_prefix("listening on https://") {
                let addr = addr
                    .trim()
                    .parse()
                    .with_context(|| format!("the listen address in {line:?}"))?;
                let cert = cert.context("the server printed no `tls certificate:` line")?;
                return Ok(Banner {
                    addr,
                    cert,
                    metrics,
                });
            }
        }
    }

    /// A dev token for [`TENANT`] with read and write scopes, from `strongroom dev-token`.
    pub fn dev_token(&self) -> Result<String> {
        self.dev_token_for(TENANT, &["ledger:read", "ledger:write"])
    }

    /// A dev token for `tenant` with `scopes`, from `strongroom dev-token`.
    pub fn dev_token_for(&self, tenant: &str, scopes: &[&str]) -> Result<String> {
        let mut command = Command::new(&self.bin);
        command.args(["dev-token", "--tenant", tenant]);
        for scope in scopes {
            command.args(["--scope", scope]);
        }
        let output = command
            .env("STRONGROOM_DATA_DIR", self.data_dir.path())
            .stdin(Stdio::null())
            .output()
            .context("run strongroom dev-token")?;
        if !output.status.success() {
            bail!(
                "strongroom dev-token failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let token = String::from_utf8(output.stdout).context("dev-token printed non-UTF-8")?;
        let token = token.trim();
        if token.is_empty() {
            bail!("strongroom dev-token printed nothing");
        }
        Ok(token.to_owned())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its peak resident set (`VmHWM`) in KiB, when /proc says.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> Result<()> {
        let pid = i32::try_from(self.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .context("the server's pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .context("send SIGTERM to the server")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().context("wait for the server")? {
                if !status.success() {
                    bail!(
                        "the server exited with {status} after SIGTERM; {}",
                        self.stderr_context()
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the server did not exit within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's last stderr lines, for an error message.
    pub fn stderr_context(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        if tail.is_empty() {
            return "the server wrote nothing to stderr".to_owned();
        }
        let lines: Vec<String> = tail.into_iter().collect();
        format!("the server's last stderr lines:\n  {}", lines.join("\n  "))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Stopped already: nothing to do. Otherwise a failure got here first; do not leave
        // the server running (or its data directory behind).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where the server's JSON log goes: the file `SERVER_LOG` names (created or truncated), else
/// nowhere.
fn server_log() -> Result<Stdio> {
    match std::env::var_os("SERVER_LOG") {
        Some(path) => {
            let file = std::fs::File::create(&path)
                .with_context(|| format!("create SERVER_LOG {}", Path::new(&path).display()))?;
            Ok(Stdio::from(file))
        }
        None => Ok(Stdio::null()),
    }
}

fn read_stderr(stderr: impl BufRead, tail: &Mutex<VecDeque<String>>, banner: SyncSender<String>) {
    let mut banner = Some(banner);
    for line in stderr.lines() {
        let Ok(line) = line else { break };
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_TAIL_LEN_MAX {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        // After the banner nobody listens; stop sending instead of blocking.
        let listening = line.starts_with("listening on ");
        if let Some(tx) = &banner
            && (tx.send(line).is_err() || listening)
        {
            banner = None;
        }
    }
}

/// CPU time (user + system) a process used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it follow its last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_s = rustix::param::clock_ticks_per_second();
    (per_s > 0).then(|| Duration::from_secs_f64(ticks as f64 / per_s as f64))
}
