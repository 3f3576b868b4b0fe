//! Nodes on separate hosts: the tracker, three nodes and a shop each in a network namespace of
//! their own, with their own address, joined by veth pairs to a bridge, as machines on one LAN
//! are. Nodes listen on `0.0.0.0` and advertise their host's address, as the README's "One node
//! per VM" says. A purchase from the shop's host lands on every node; then one node's cable is
//! pulled, each side makes a purchase of its own, the cable goes back, and every node ends on
//! one chain that holds both purchases exactly once.
//!
//! It needs root (and `ip`, from iproute2). Without them it says so loudly and passes, except
//! under CI (`CI` set), which must run it. Everything it makes lives in namespaces it creates,
//! the bridge included, so the host's own network is never touched; names and the subnet are
//! random per run, so runs at once never meet. A guard kills the processes it started (by
//! their handles) and deletes its namespaces, which takes their veths and bridge with them,
//! also when the test fails.
//!
//! The test looks at a node's chain from inside a namespace by entering it (`setns`) on a
//! thread made for that one look, which ends with it: a socket belongs to the namespace its
//! thread was in when it was made, so the look comes from that host, and no thread of the
//! test's runtime ever changes namespace. The shop runs through `ip netns exec`, as a shopper
//! on that host would run it.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use protocol::{Block, Keypair, RecordId};
use serde_json::{Value, json};
use testkit::{DEADLINE, FLOOR, agreed, binary, fetch_chain, record_counts, wait_for};

use crate::{SHOP, finish, json_of, num, text};

/// Where `ip netns` keeps the namespaces' names.
const NETNS_DIR: &str = "/run/netns";
/// The tracker's port on its host, as in the README.
const TRACKER_PORT: u16 = 7070;
/// Every node's port on its own host: one node per host, so they can all use the same.
const NODE_PORT: u16 = 7071;
/// How long one look at a node's chain may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the test can run here: as root with `ip`. Otherwise it says why, loudly, and is
/// skipped; under CI that is a failure.
fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let why = match (root, ip) {
        (true, true) => return true,
        (false, _) => "it needs root to make network namespaces",
        (true, false) => "`ip` (iproute2) is not installed",
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "the multi-host test must run under CI, but {why}"
    );
    // Written to stderr itself, not through `eprintln!`, which the test harness keeps to itself
    // for a test that passes: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED: the multi-host test did not run: {why}.\n\
         !!! Run `cargo test -p shop multihost` as root to run it (CI does).\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    false
}

/// A process the lab started, killed when the lab goes.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

/// A node on its host.
struct HostNode {
    /// Its host, e.g. `n2`.
    host: String,
    /// Where the other hosts reach it: its host's address and [`NODE_PORT`].
    addr: String,
    /// Its id (public key, hex).
    id: String,
}

/// The hosts: network namespaces named `PREFIX-HOST`, each with one veth (`eth0`) whose other
/// end, named HOST, is a port of the bridge `br0` in the namespace `PREFIX-br`.
struct Lab {
    /// This run's namespace name prefix, `mc` and six random hex digits.
    prefix: String,
    /// This run's subnet, `10.A.B` (a /24).
    net: String,
    /// The namespaces made, in order.
    namespaces: Vec<String>,
    /// The processes started, in order.
    procs: Vec<Proc>,
    /// Data dirs, wallets and logs.
    dir: tempfile::TempDir,
}

impl Lab {
    /// Makes the bridge's namespace and the bridge.
    fn new() -> Lab {
        let r: u64 = rand::random();
        let mut lab = Lab {
            prefix: format!("mc{:06x}", r & 0xff_ffff),
            net: format!("10.{}.{}", (r >> 24) & 0xff, (r >> 32) & 0xff),
            namespaces: Vec::new(),
            procs: Vec::new(),
            dir: tempfile::tempdir().expect("a temporary folder"),
        };
        let br = lab.add_namespace("br");
        ip(&["-n", &br, "link", "set", "lo", "up"]);
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
        lab
    }

    /// The namespace of `host`.
    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// The address `.last` of the lab's subnet.
    fn ip_of(&self, last: u8) -> String {
        format!("{}.{last}", self.net)
    }

    /// Makes the namespace of `host`; it is deleted with the lab.
    fn add_namespace(&mut self, host: &str) -> String {
        let ns = self.ns(host);
        // Fails if the name exists: another run's namespace is never taken over (or deleted).
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ns
    }

    /// Makes host `host` with address `.last`, plugged into the bridge.
    fn add_host(&mut self, host: &str, last: u8) {
        let ns = self.add_namespace(host);
        let br = self.ns("br");
        let cidr = format!("{}/24", self.ip_of(last));
        ip(&[
            "-n", &br, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", &br, "link", "set", host, "master", "br0", "up"]);
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
    }

    /// Pulls (`false`) or plugs back (`true`) the cable of `host`: its port on the bridge goes
    /// down or up. The host keeps its address and its processes; nothing reaches it or leaves it.
    fn plug(&self, host: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.ns("br"), "link", "set", host, state]);
    }

    /// Starts `program` with `args` on `host`, its stderr in a log, and returns the address
    /// from its first line, `listening on ADDR`.
    fn spawn(&mut self, host: &str, name: &str, program: &Path, args: &[String]) -> String {
        let log = self.dir.path().join(format!("{name}.log"));
        let log_file = File::create(&log).expect("create a log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)])
            .arg(program)
            .args(args);
        clear_env(&mut cmd);
        // `ip netns exec` execs the program in its own place: the child's pid is the program's.
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log: log.clone(),
        });
        // A thread reads the line so the wait for it has a deadline.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("{name} printed nothing within {DEADLINE:?}"));
        match line.trim().strip_prefix("listening on ") {
            Some(addr) => addr.to_string(),
            None => panic!(
                "{name} printed {line:?} instead of its address; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }

    /// Starts the tracker on host `tr`, on every interface; returns the address the other
    /// hosts reach it at.
    fn start_tracker(&mut self) -> String {
        let args = vec!["--listen".into(), format!("0.0.0.0:{TRACKER_PORT}")];
        let listening = self.spawn("tr", "tracker", &binary("monkey-tracker"), &args);
        assert_eq!(listening, format!("0.0.0.0:{TRACKER_PORT}"));
        format!("{}:{TRACKER_PORT}", self.ip_of(1))
    }

    /// Starts a node on `host` (address `.last`): listening on every interface, advertising
    /// its host's address, as on a VM.
    fn start_node(&mut self, host: &str, last: u8, tracker: &str) -> HostNode {
        let addr = format!("{}:{NODE_PORT}", self.ip_of(last));
        let data = self.dir.path().join(host);
        let args: Vec<String> = [
            "--tracker",
            tracker,
            "--listen",
            &format!("0.0.0.0:{NODE_PORT}"),
            "--advertise",
            &addr,
            "--data-dir",
            &data.display().to_string(),
            "--threads",
            "1",
            "--difficulty-floor",
            &FLOOR.to_string(),
        ]
        .map(String::from)
        .to_vec();
        self.spawn(host, host, &binary("monkey-node"), &args);
        let seed = std::fs::read_to_string(data.join("node.key")).expect("the node's key file");
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(seed.trim(), &mut bytes).expect("a hex key");
        HostNode {
            host: host.to_string(),
            addr,
            id: Keypair::from_seed(bytes).account().to_string(),
        }
    }

    /// A wallet folder (the shop makes it).
    fn wallet(&self, name: &str) -> PathBuf {
        self.dir.path().join("wallets").join(name)
    }

    /// Kills the processes, then deletes the namespaces (the bridge's last: the veths go with
    /// the hosts' namespaces). Never fails, so it can run while a failing test unwinds.
    fn clean_up(&mut self) {
        let panicking = std::thread::panicking();
        for proc in self.procs.iter_mut().rev() {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
            if panicking {
                // A failing test shows what each of its daemons was doing.
                let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- last lines of {}:", proc.name);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        self.procs.clear();
        for ns in self.namespaces.drain(..).rev() {
            let deleted = Command::new("ip")
                .args(["netns", "delete", &ns])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !deleted {
                eprintln!("multihost: could not delete network namespace {ns}");
            }
        }
    }

    /// Cleans up and checks that no namespace of this run is left.
    fn close(mut self) {
        let made: Vec<String> = self.namespaces.clone();
        self.clean_up();
        for ns in made {
            assert!(
                !Path::new(NETNS_DIR).join(&ns).exists(),
                "network namespace {ns} is still there"
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// Runs `ip ARGS`; fails the test with ip's message if it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Removes the caller's settings for our binaries, which would override the test's flags.
fn clear_env(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("MONKEY_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
}

/// Runs the shop on host namespace `ns` with `--json`; it must succeed. Returns its object.
async fn shop(ns: &str, tracker: &str, wallet: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, SHOP])
        .arg("--tracker")
        .arg(tracker)
        .arg("--wallet-dir")
        .arg(wallet)
        .arg("--floor")
        .arg(FLOOR.to_string())
        .args(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    clear_env(&mut cmd);
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("start the shop");
    let out = finish(child, &all).await;
    json_of(&out, &all)
}

/// Runs a record command on host namespace `ns` (as [`shop`]); the record must be mined.
async fn mined(ns: &str, tracker: &str, wallet: &Path, args: &[&str]) -> Value {
    let out = shop(ns, tracker, wallet, args).await;
    assert_eq!(out["status"], "mined", "{out}");
    out
}

/// The record id a record command printed.
fn record(out: &Value) -> RecordId {
    text(out, "record").parse().expect("a record id")
}

/// `addr`'s best chain as seen from namespace `ns`, or `None` if it cannot be reached or does
/// not answer in [`LOOK_TIMEOUT`]. See the top of the file for why a thread of its own.
async fn look(ns: &str, addr: &str) -> Option<Vec<Block>> {
    let path = Path::new(NETNS_DIR).join(ns);
    let addr = addr.to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("look from {ns}"))
        .spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            nix::sched::setns(file.as_raw_fd(), CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("enter {}: {e}", path.display()));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the look");
            let chain = runtime.block_on(async {
                tokio::time::timeout(LOOK_TIMEOUT, fetch_chain(&addr))
                    .await
                    .ok()
                    .flatten()
            });
            let _ = tx.send(chain);
        })
        .expect("start a thread");
    rx.await.expect("the look failed (its panic is above)")
}

/// Waits until every node of `addrs`, seen from namespace `ns`, holds each of `ids` exactly
/// once and all are on one tip; fails at once if a record appears twice. Returns that chain.
async fn wait_agree(what: &str, ns: &str, addrs: &[&str], ids: &[RecordId]) -> Vec<Block> {
    wait_for(what, DEADLINE, || async {
        let mut chains = Vec::with_capacity(addrs.len());
        for addr in addrs {
            chains.push(look(ns, addr).await?);
        }
        agreed(chains, ids)
    })
    .await
}

/// Waits until the tracker, asked by the shop on `ns`, lists exactly `active` as active and
/// `removed` as removed (by id). Returns the shop's `status` object.
async fn wait_status(
    ns: &str,
    tracker: &str,
    wallet: &Path,
    active: &[&HostNode],
    removed: &[&HostNode],
) -> Value {
    let ids = |nodes: &[&HostNode]| {
        let mut ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        ids.sort();
        ids
    };
    let (want_active, want_removed) = (ids(active), ids(removed));
    wait_for("the tracker's table", DEADLINE, || async {
        // `status` also reads the chain from an active node: a node just cut off, still
        // listed, would hold each look for the whole default answer timeout.
        let status = shop(ns, tracker, wallet, &["--answer-timeout", "2", "status"]).await;
        let listed = |state: &str| {
            let mut ids: Vec<String> = status["nodes"]
                .as_array()
                .expect("a list of nodes")
                .iter()
                .filter(|n| n["status"] == state)
                .map(|n| text(n, "id"))
                .collect();
            ids.sort();
            ids
        };
        (listed("active") == want_active && listed("removed") == want_removed).then_some(status)
    })
    .await
}

/// The cage of `name` in a `show` object.
fn cage<'a>(shown: &'a Value, name: &str) -> &'a Value {
    let shoppers = shown["shoppers"].as_array().expect("a list of shoppers");
    let shopper = shoppers
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {shown}"));
    &shopper["cage"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_three_hosts_trade_then_converge_after_one_is_cut_off_and_plugged_back() {
    if !can_run() {
        return;
    }
    let started = Instant::now();
    let phase = |name: &str| eprintln!("multihost: {name} at {:?}", started.elapsed());
    let mut lab = Lab::new();
    lab.add_host("tr", 1);
    let hosts = [("n0", 11), ("n1", 12), ("n2", 13)];
    for (host, last) in hosts {
        lab.add_host(host, last);
    }
    lab.add_host("shop", 20);
    let shop_ns = lab.ns("shop");
    let n2_ns = lab.ns("n2");
    phase("hosts made");
    let tracker = lab.start_tracker();
    let nodes: Vec<HostNode> = hosts
        .iter()
        .map(|(host, last)| lab.start_node(host, *last, &tracker))
        .collect();
    phase("daemons started");
    let all: Vec<&HostNode> = nodes.iter().collect();
    let addrs: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
    let cut = &nodes[2];
    assert_eq!(cut.host, "n2");
    // Alice shops from the shop's host, bob from the host of the node that will be cut off,
    // through that node (`--node`), as a shopper next to it would.
    let (alice_wallet, bob_wallet) = (lab.wallet("alice"), lab.wallet("bob"));
    let bob = |args: &[&'static str]| {
        let mut all = vec!["--node", cut.addr.as_str(), "--answer-timeout", "3"];
        all.extend_from_slice(args);
        all
    };

    // Every node is known by the address it advertised, as the shop's host sees it.
    let status = wait_status(&shop_ns, &tracker, &alice_wallet, &all, &[]).await;
    for node in &nodes {
        let row = status["nodes"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["id"] == node.id.as_str()))
            .unwrap_or_else(|| panic!("{} is not listed: {status}", node.host));
        assert_eq!(row["addr"], node.addr.as_str(), "{status}");
    }
    assert_eq!(num(&status, "active"), 3, "{status}");
    phase("three nodes active");

    // A purchase from the shop's host lands on every node.
    let alice_join = record(&shop(&shop_ns, &tracker, &alice_wallet, &["join", "alice"]).await);
    let capuchin = mined(
        &shop_ns,
        &tracker,
        &alice_wallet,
        &["buy", "alice", "capuchin"],
    )
    .await;
    assert!(addrs.contains(&text(&capuchin, "node").as_str()));
    let capuchin = record(&capuchin);
    let bob_join = record(&shop(&n2_ns, &tracker, &bob_wallet, &bob(&["join", "bob"])).await);
    let before = [alice_join, capuchin, bob_join];
    wait_agree(
        "every node to hold the first purchase",
        &shop_ns,
        &addrs,
        &before,
    )
    .await;
    phase("first purchase on every node");

    // Pull n2's cable. The tracker stops hearing from it and marks it removed.
    lab.plug(&cut.host, false);
    wait_status(
        &shop_ns,
        &tracker,
        &alice_wallet,
        &[&nodes[0], &nodes[1]],
        &[cut],
    )
    .await;
    phase("n2 cut off and marked removed");

    // A purchase on each side: alice's through the tracker's active nodes, bob's through n2
    // alone (its shop cannot reach the tracker and falls back on the nodes it last saw, n2
    // first).
    let tamarin = mined(
        &shop_ns,
        &tracker,
        &alice_wallet,
        &["buy", "alice", "tamarin"],
    )
    .await;
    assert_ne!(tamarin["node"], cut.addr.as_str(), "{tamarin}");
    let tamarin = record(&tamarin);
    let marmoset = mined(
        &n2_ns,
        &tracker,
        &bob_wallet,
        &bob(&["buy", "bob", "marmoset"]),
    )
    .await;
    assert_eq!(marmoset["node"], cut.addr.as_str(), "{marmoset}");
    assert_eq!(marmoset["block"]["miner"], cut.id.as_str(), "{marmoset}");
    let marmoset = record(&marmoset);
    let mut side_a = before.to_vec();
    side_a.push(tamarin);
    let mut side_b = before.to_vec();
    side_b.push(marmoset);
    let a = wait_agree(
        "n0 and n1 to hold alice's second purchase",
        &shop_ns,
        &addrs[..2],
        &side_a,
    )
    .await;
    let b = wait_agree("n2 to hold bob's purchase", &n2_ns, &addrs[2..], &side_b).await;
    assert!(
        !record_counts(&a).contains_key(&marmoset),
        "bob's purchase crossed the cut"
    );
    assert!(
        !record_counts(&b).contains_key(&tamarin),
        "alice's purchase crossed the cut"
    );
    phase("one purchase on each side");

    // Plug n2 back: it reports again, and every node ends on one chain with both purchases,
    // each once.
    lab.plug(&cut.host, true);
    let every = [alice_join, capuchin, bob_join, tamarin, marmoset];
    let healed = wait_agree(
        "every node to hold both sides' purchases, on one tip",
        &shop_ns,
        &addrs,
        &every,
    )
    .await;
    let records: usize = healed.iter().map(|b| b.records.len()).sum();
    assert_eq!(records, every.len(), "only the five records, once each");
    wait_status(&shop_ns, &tracker, &alice_wallet, &all, &[]).await;
    phase("healed: one chain on every node");

    // The shop reads the same from the shop's host and from n2's.
    for (ns, wallet) in [(&shop_ns, &alice_wallet), (&n2_ns, &bob_wallet)] {
        let shown = shop(ns, &tracker, wallet, &["show"]).await;
        assert_eq!(
            cage(&shown, "alice"),
            &json!({"capuchin": 1, "tamarin": 1}),
            "{shown}"
        );
        assert_eq!(cage(&shown, "bob"), &json!({"marmoset": 1}), "{shown}");
    }
    lab.close();
    phase("cleaned up");
}
