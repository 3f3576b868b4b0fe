//! Integration tests of monkey-demo: the real binary in a pseudo-terminal, driven as a person
//! would (keys in, screen text out), its network checked from outside over the same protocols
//! the page and the tools use; and every binary's `--help` and `--version`.
//!
//! Helpers here: [`Demo`] (the demo in testkit's `Terminal`, with the addresses its banner
//! printed); testkit's [`Page`] is the websocket client of the visualizer, as the page is.

mod binaries;
mod demo;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub use testkit::Page;
use testkit::Terminal;
use tokio::net::TcpStream;

/// The demo binary under test.
pub const DEMO: &str = env!("CARGO_BIN_EXE_monkey-demo");
/// The floor the demo runs at in tests: a block takes a few hundred hashes.
pub const FLOOR: u32 = testkit::FLOOR;

/// The demo running in a pseudo-terminal, with what its banner said.
pub struct Demo {
    /// The terminal it runs in.
    pub terminal: Terminal,
    /// The tracker's address.
    pub tracker: String,
    /// Each node's address, in order.
    pub nodes: Vec<String>,
    /// Each node's short id, in order.
    pub ids: Vec<String>,
    /// The visualizer's `host:port`.
    pub visualizer: String,
    /// Whether the banner said the folder was resumed.
    pub resumed: bool,
}

impl Demo {
    /// Starts the demo on the folder `dir` with `nodes` nodes, on free ports and no browser,
    /// at [`FLOOR`] unless `floor` says otherwise, and reads the addresses off its banner.
    pub fn start(dir: &Path, nodes: usize, floor: Option<u32>) -> Demo {
        let mut cmd = Command::new(DEMO);
        cmd.args(["--no-browser", "--nodes", &nodes.to_string()])
            .args(["--tracker-listen", "127.0.0.1:0"])
            .args(["--visualizer-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir);
        if let Some(floor) = floor {
            cmd.args(["--difficulty-floor", &floor.to_string()]);
        }
        let mut terminal = Terminal::spawn(cmd, "the demo");
        // The banner ends with this line, before the shop draws anything.
        let banner = terminal.expect("to stop everything.");
        let field = |label: &str| -> Vec<String> {
            banner
                .lines()
                .filter_map(|line| line.trim().strip_prefix(label))
                .map(|rest| {
                    rest.split_whitespace()
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .map(|words| words.join(" "))
                .collect()
        };
        let one = |label: &str| -> String {
            field(label)
                .pop()
                .unwrap_or_else(|| panic!("no {label:?} line in the banner:\n{banner}"))
        };
        let (nodes, ids) = (1..=nodes)
            .map(|n| {
                // "node 1      127.0.0.1:PORT  id 1a2b3c4d  data DIR/node1"
                let line = one(&format!("node {n} "));
                let words: Vec<&str> = line.split(' ').collect();
                match words.as_slice() {
                    [addr, "id", id, ..] => (addr.to_string(), id.to_string()),
                    _ => panic!("a node line that does not parse: {line:?}"),
                }
            })
            .unzip();
        // The first word: a moved port adds "(7070 was taken)" after the address.
        let first = |line: String| line.split(' ').next().unwrap_or_default().to_string();
        let tracker = first(one("tracker "));
        let visualizer = first(one("visualizer "));
        let visualizer = visualizer
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the page's address: {visualizer:?}"))
            .to_string();
        let resumed = one("folder ").ends_with("(resumed)");
        Demo {
            terminal,
            tracker,
            nodes,
            ids,
            visualizer,
            resumed,
        }
    }
}

/// The ids of the processes whose parent is `pid`, from `/proc`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            // The parent is the 4th field, after "(name)", which may hold spaces.
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Whether a connection to `addr` is refused within a second: nothing listens there any more.
pub async fn refused(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await,
        Ok(Err(_))
    )
}
