//! Tracker and node processes, started on loopback port 0 and killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use protocol::Keypair;
use protocol::tracker::{NodeStatus, Topology};

use crate::{DEADLINE, FLOOR, binary, wait_for};

/// Starts `binary` with `args`, its stderr appended to `log`, and reads its first stdout line,
/// `listening on ADDR`; returns the child and ADDR.
fn spawn_listening(binary: &Path, args: &[String], log: &Path) -> (Child, String) {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open log {}: {e}", log.display()));
    let mut child = Command::new(binary)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the first line");
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!(
            "{} printed {line:?} instead of its address; log:\n{log}",
            binary.display()
        );
    };
    let addr = addr.trim_start_matches("http://").to_string();
    (child, addr)
}

/// The resident memory of process `pid` now and at its peak (`VmRSS`, `VmHWM`), in KiB, from
/// `/proc` (Linux); `None` when it cannot be read.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// How long a process may take to stop after SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// Sends SIGTERM and waits up to [`STOP_WITHIN`] for the exit status.
fn terminate(child: &mut Child) -> ExitStatus {
    terminate_within(child, STOP_WITHIN)
}

/// Sends SIGTERM and waits up to `limit` for the exit status.
fn terminate_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM failed");
    let step = Duration::from_millis(20);
    for _ in 0..=limit.as_millis() / step.as_millis() {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status;
        }
        std::thread::sleep(step);
    }
    panic!(
        "process {} did not stop within {limit:?} of SIGTERM",
        child.id()
    );
}

/// A `monkey-tracker` process.
pub struct Tracker {
    /// Where it listens, `127.0.0.1:PORT`.
    pub addr: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tracker {
    /// Starts a tracker on a free loopback port.
    pub async fn start() -> Tracker {
        Tracker::start_with(&[]).await
    }

    /// Starts a tracker on a free loopback port with `extra` flags.
    pub async fn start_with(extra: &[&str]) -> Tracker {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let log = dir.path().join("tracker.log");
        let mut args: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let (child, addr) = spawn_listening(&binary("monkey-tracker"), &args, &log);
        Tracker {
            addr,
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it with SIGKILL: nodes see their connections drop, nothing says goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same address (after [`Tracker::kill`]).
    pub async fn restart(&mut self) {
        self.kill();
        let args = ["--listen".to_string(), self.addr.clone()];
        let (child, _) = spawn_listening(&binary("monkey-tracker"), &args, &self.log);
        self.child = Some(child);
    }

    /// The topology, or `None` if the tracker does not answer within 2 s.
    pub async fn topology(&self) -> Option<Topology> {
        tracker::client::query(&self.addr, Duration::from_secs(2))
            .await
            .ok()
    }

    /// Waits until exactly `ids` are active.
    pub async fn wait_active(&self, ids: &[String]) {
        let mut want = ids.to_vec();
        want.sort();
        wait_for("the topology", DEADLINE, || async {
            let t = self.topology().await?;
            let mut active: Vec<String> = t.active().map(|n| n.id.to_string()).collect();
            active.sort();
            (active == want).then_some(())
        })
        .await
    }

    /// A node's status in the topology.
    pub async fn status_of(&self, id: &str) -> Option<NodeStatus> {
        let t = self.topology().await?;
        t.nodes
            .iter()
            .find(|n| n.id.to_string() == id)
            .map(|n| n.status)
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `monkey-node` process.
pub struct NodeProc {
    /// Where it listens.
    pub addr: String,
    /// Its id (public key, hex).
    pub id: String,
    /// Its data dir; its log is the same path with `.log`.
    pub dir: PathBuf,
    child: Child,
}

impl NodeProc {
    /// Starts a node on `dir` reporting to `tracker`, at [`FLOOR`] with one mining thread.
    pub fn start(tracker: &str, dir: &Path) -> NodeProc {
        NodeProc::start_with(tracker, dir, &[])
    }

    /// Starts a node with `extra` flags; `--threads` and `--difficulty-floor` there replace
    /// the test defaults.
    pub fn start_with(tracker: &str, dir: &Path, extra: &[&str]) -> NodeProc {
        let mut args: Vec<String> = ["--tracker", tracker, "--listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        args.push("--data-dir".into());
        args.push(dir.display().to_string());
        if !extra.contains(&"--threads") {
            args.extend(["--threads".into(), "1".into()]);
        }
        if !extra.contains(&"--difficulty-floor") {
            args.extend(["--difficulty-floor".into(), FLOOR.to_string()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let (child, addr) =
            spawn_listening(&binary("monkey-node"), &args, &dir.with_extension("log"));
        let seed = std::fs::read_to_string(dir.join("node.key")).expect("the node's key file");
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(seed.trim(), &mut bytes).expect("a hex key");
        let id = Keypair::from_seed(bytes).account().to_string();
        NodeProc {
            addr,
            id,
            dir: dir.to_path_buf(),
            child,
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it has not exited or crashed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its resident memory now and at its peak, in KiB, from `/proc` (Linux).
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        memory_kib(self.pid())
    }

    /// Kills it with SIGKILL.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        terminate(&mut self.child)
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit status: for a node that may
    /// have a long queue of writes to finish first (the bench's million-block chains).
    pub fn terminate_within(mut self, limit: Duration) -> ExitStatus {
        terminate_within(&mut self.child, limit)
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failing test shows what each of its nodes was doing.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of node {} ({}):", self.id, self.addr);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `n` nodes in folders of `dir` and waits until the tracker lists them all as active.
pub async fn start_network(tracker: &Tracker, dir: &Path, n: usize) -> Vec<NodeProc> {
    start_network_with(tracker, dir, n, &[]).await
}

/// [`start_network`], every node with `extra` flags ([`NodeProc::start_with`]).
pub async fn start_network_with(
    tracker: &Tracker,
    dir: &Path,
    n: usize,
    extra: &[&str],
) -> Vec<NodeProc> {
    let nodes: Vec<NodeProc> = (0..n)
        .map(|i| NodeProc::start_with(&tracker.addr, &dir.join(format!("n{i}")), extra))
        .collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    tracker.wait_active(&ids).await;
    nodes
}

/// A tracker and `n` nodes it lists as active, in a temporary folder of their own: the setup
/// of every test about a network. Dropping it stops the nodes, then the tracker, then removes
/// the folder.
pub struct Network {
    /// The nodes, in folders `n0`, `n1`... of [`Network::dir`].
    pub nodes: Vec<NodeProc>,
    /// The tracker they report to.
    pub tracker: Tracker,
    /// The temporary folder; a test may keep more there (wallets, another node).
    pub dir: tempfile::TempDir,
}

impl Network {
    /// Starts a tracker and `n` nodes with the test defaults, and waits until it lists them.
    pub async fn start(n: usize) -> Network {
        Network::start_with(n, &[]).await
    }

    /// [`Network::start`], every node with `extra` flags ([`NodeProc::start_with`]).
    pub async fn start_with(n: usize, extra: &[&str]) -> Network {
        let tracker = Tracker::start().await;
        let dir = tempfile::tempdir().expect("a temporary folder");
        let nodes = start_network_with(&tracker, dir.path(), n, extra).await;
        Network {
            nodes,
            tracker,
            dir,
        }
    }

    /// The nodes' addresses.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }
}

/// Starts two nodes, in folders `a` and `b` of `dir`, and waits until the tracker lists both
/// as active.
pub async fn start_pair(tracker: &Tracker, dir: &Path) -> (NodeProc, NodeProc) {
    let a = NodeProc::start(&tracker.addr, &dir.join("a"));
    let b = NodeProc::start(&tracker.addr, &dir.join("b"));
    tracker.wait_active(&[a.id.clone(), b.id.clone()]).await;
    (a, b)
}

/// A tracker and one node reporting to it, in a temporary folder of their own: the setup of
/// every test about a single node. Dropping it stops the node, then the tracker, then removes
/// the folder.
pub struct OneNode {
    /// The node (its folder is `a` in [`OneNode::dir`]).
    pub node: NodeProc,
    /// The tracker it reports to.
    pub tracker: Tracker,
    /// The temporary folder; a test may start more nodes in it.
    pub dir: tempfile::TempDir,
}

impl OneNode {
    /// Starts a tracker and a node with the test defaults ([`NodeProc::start`]).
    pub async fn start() -> OneNode {
        OneNode::start_with(&[]).await
    }

    /// Starts a tracker and a node with `extra` flags ([`NodeProc::start_with`]).
    pub async fn start_with(extra: &[&str]) -> OneNode {
        let tracker = Tracker::start().await;
        let dir = tempfile::tempdir().expect("a temporary folder");
        let node = NodeProc::start_with(&tracker.addr, &dir.path().join("a"), extra);
        OneNode { node, tracker, dir }
    }
}
