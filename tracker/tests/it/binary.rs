//! The real `monkey-tracker` binary: it prints one `listening on ADDR` line, serves, and exits 0
//! soon after SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::POLL;

/// The child process, killed on drop if a failed assertion left it running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
}

impl Running {
    /// Waits for the process to exit, at most `limit`.
    fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        for _ in 0..(limit.as_millis() / POLL.as_millis() + 1) {
            if let Some(status) = self.0.try_wait().expect("poll the child") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        None
    }
}

fn tracker_command(listen: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_monkey-tracker"));
    command
        .args(["--listen", listen])
        .env_remove("MONKEY_TRACKER_LISTEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[tokio::test]
async fn the_binary_prints_its_address_serves_and_exits_cleanly_on_sigterm() {
    let mut child = Running(
        tracker_command("127.0.0.1:0")
            .spawn()
            .expect("start monkey-tracker"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    // Readers run on threads of their own and end when the child closes its pipes.
    let (lines_tx, lines) = mpsc::channel();
    let stdout_reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).ok();
        text
    });

    let first = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("a `listening on` line within 10 s");
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    assert!(
        !addr.ends_with(":0"),
        "it prints the port it really bound: {addr}"
    );

    let topology = tracker::client::query(addr, Duration::from_secs(5))
        .await
        .expect("query the binary");
    assert!(topology.nodes.is_empty());

    let terminated = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(terminated.success(), "kill -TERM failed");
    let status = child
        .wait_for_exit(Duration::from_secs(2))
        .expect("monkey-tracker exits within 2 s of SIGTERM");
    assert!(status.success(), "monkey-tracker exited with {status}");

    // Exactly one line on stdout; the logs went to stderr.
    stdout_reader.join().expect("stdout reader");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        rest.is_empty(),
        "more stdout after the address line: {rest:?}"
    );
    let logs = logs.join().expect("stderr reader");
    assert!(logs.contains("shutting down"), "logs on stderr: {logs}");
}

#[tokio::test]
async fn the_binary_fails_clearly_when_it_cannot_listen() {
    let mut child = Running(
        tracker_command("not-an-address")
            .spawn()
            .expect("start monkey-tracker"),
    );
    let status = child
        .wait_for_exit(Duration::from_secs(10))
        .expect("monkey-tracker gives up within 10 s");
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(
        stderr.contains("cannot listen on not-an-address"),
        "stderr: {stderr}"
    );
}
