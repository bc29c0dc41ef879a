//! The real program as a child process: spawned on a data directory, its output read line by
//! line, stopped by signal; and one-shot runs of its other commands.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Api, PROGRAM, Protocol, READ_WRITE, START_TIMEOUT, Tokens};

/// The real program, spawned on a data directory the caller owns (so that it can be restarted
/// on the same one). Its stdout and stderr are read into memory line by line.
#[derive(Debug)]
pub struct Process {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// The generated certificate, PEM.
    pub cert_pem: Vec<u8>,
    /// Mints tokens the process trusts.
    pub tokens: Tokens,
    /// The child.
    pub child: Child,
    /// Every line written to stdout so far.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Every line written to stderr so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Process {
    /// Spawns `strongroom-e2e serve` on `data_dir` with extra settings, and waits until it
    /// listens.
    pub fn spawn(data_dir: &Path, settings: &[(&str, &str)]) -> Process {
        let mut command = Command::new(PROGRAM);
        command
            .arg("serve")
            .env_remove("STRONGROOM_CONFIG")
            .env("STRONGROOM_DATA_DIR", data_dir)
            .env("STRONGROOM_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in settings {
            command.env(format!("STRONGROOM_{}", name.to_ascii_uppercase()), value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            read_lines(child.stdout.take().unwrap(), stdout.clone()),
            read_lines(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let addr = wait_listening(&mut child, &stderr);
        Process {
            url: format!("https://{addr}"),
            cert_pem: std::fs::read(data_dir.join("tls").join("cert.pem")).unwrap(),
            // The process created the dev issuer's key before it listened.
            tokens: Tokens::new(data_dir),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// A client with a read-write token of `tenant`, on its own connection.
    pub fn api(&self, tenant: &str) -> Api {
        Api::new(&self.url, &self.cert_pem, Protocol::Negotiated)
            .with_token(&self.tokens.mint(tenant, READ_WRITE))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (through `kill`, to stay free of `unsafe`).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Sends SIGKILL and reaps the child.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits up to `limit` for the process to exit; `None` if it did not.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After exit: waits for the readers to reach the end of both streams, returns everything
    /// written (stdout, stderr).
    pub fn output(&mut self) -> (Vec<String>, Vec<String>) {
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (
            self.stdout.lock().unwrap().clone(),
            self.stderr.lock().unwrap().clone(),
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A failed test must not leave a server behind. Ours, by its id.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for the banner line that says where the process listens. On failure the child is
/// killed (by its id) before the test fails, so that nothing is left behind.
fn wait_listening(child: &mut Child, stderr: &Mutex<Vec<String>>) -> SocketAddr {
    let started = Instant::now();
    loop {
        let found = stderr.lock().unwrap().iter().find_map(|line| {
            line.strip_prefix("listening on https://")
                .map(|a| a.trim().parse::<SocketAddr>().unwrap())
        });
        if let Some(addr) = found {
            return addr;
        }
        let exited = child.try_wait().unwrap();
        if exited.is_some() || started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "strongroom did not listen ({exited:?} after {:?}):\n{}",
                started.elapsed(),
                stderr.lock().unwrap().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_lines(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        // Bytes, not `lines()`: a line that is not UTF-8 is evidence too.
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&line).trim_end().to_owned();
            into.lock().unwrap().push(text);
            line.clear();
        }
    })
}

/// Runs the program to completion with arguments and settings (`("data_dir", ...)`), with a
/// time limit; returns what it did.
pub fn program(args: &[&str], settings: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(PROGRAM);
    command
        .args(args)
        .env_remove("STRONGROOM_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in settings {
        command.env(format!("STRONGROOM_{}", name.to_ascii_uppercase()), value);
    }
    let child = command.spawn().unwrap();
    let pid = child.id();
    // Read both pipes to the end on another thread, so that a large output cannot block it.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(START_TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            // Ours, by its id.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("strongroom {args:?} did not finish within {START_TIMEOUT:?}");
        }
    }
}

/// Runs the program with arguments (not `serve`) and returns its stdout; asserts success.
pub fn run_program(args: &[&str]) -> String {
    run_program_with(args, &[])
}

/// Runs the program with settings; asserts it succeeded; returns its standard output.
pub fn run_program_with(args: &[&str], settings: &[(&str, &str)]) -> String {
    let output = program(args, settings);
    assert!(
        output.status.success(),
        "strongroom {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
