//! Integration tests of monkey-demo: the real binary in a pseudo-terminal, driven as a person
//! would (keys in, screen text out), its network checked from outside over the same protocols
//! the page and the tools use; and every binary's `--help` and `--version`.
//!
//! Helpers here: [`Demo`] (the demo in a pty, with the addresses its banner printed), and
//! [`Page`] (a websocket client of the visualizer, as the page is).

mod binaries;
mod demo;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession as Session;
use expectrl::{Eof, Expect};
use futures::StreamExt;
use testkit::DEADLINE;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use visualizer::view::ToBrowser;

/// The demo binary under test.
pub const DEMO: &str = env!("CARGO_BIN_EXE_monkey-demo");
/// The floor the demo runs at in tests: a block takes a few hundred hashes.
pub const FLOOR: u32 = testkit::FLOOR;

/// The demo running in a pseudo-terminal, with what its banner said.
pub struct Demo {
    /// The terminal.
    pub session: Session,
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
        for (key, _) in std::env::vars() {
            if key.starts_with("MONKEY_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.env("TERM", "xterm-256color")
            .args(["--no-browser", "--nodes", &nodes.to_string()])
            .args(["--tracker-listen", "127.0.0.1:0"])
            .args(["--visualizer-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir);
        if let Some(floor) = floor {
            cmd.args(["--difficulty-floor", &floor.to_string()]);
        }
        let mut session = Session::spawn(cmd).expect("start the demo in a pseudo-terminal");
        session
            .get_process_mut()
            .set_window_size(120, 40)
            .expect("size the terminal");
        session.set_expect_timeout(Some(DEADLINE));
        // The banner ends with this line, before the shop draws anything.
        let banner = match session.expect("to stop everything.") {
            Ok(found) => String::from_utf8_lossy(found.before()).into_owned(),
            Err(e) => panic!("waiting for the demo's banner: {e}"),
        };
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
            session,
            tracker,
            nodes,
            ids,
            visualizer,
            resumed,
        }
    }

    /// Waits for `text` on the screen; fails the test with what was seen instead.
    pub fn expect(&mut self, text: &str) {
        if let Err(e) = self.session.expect(text) {
            panic!("waiting for {text:?} in the terminal: {e}");
        }
    }

    /// Types `keys` (letters filter a menu; `\r` is Enter). The prompt reads keys in order,
    /// so they may arrive before it draws.
    pub fn keys(&mut self, keys: &str) {
        self.session.send(keys).expect("type into the terminal");
    }

    /// The demo's process id.
    pub fn pid(&self) -> i32 {
        self.session.get_process().pid().as_raw()
    }

    /// Waits for the end of the output (every process holding the terminal has closed it) and
    /// the exit status.
    pub fn exit_status(mut self) -> WaitStatus {
        if let Err(e) = self.session.expect(Eof) {
            panic!("waiting for the demo to end: {e}");
        }
        self.session.get_process().wait().expect("the exit status")
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

/// A websocket client of the visualizer, reading what the page reads.
pub struct Page {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Page {
    /// Connects to the visualizer at `addr`.
    pub async fn connect(addr: &str) -> Page {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("websocket handshake");
        Page { ws }
    }

    /// Reads messages until `check` returns `Some`, within [`DEADLINE`].
    pub async fn wait<T>(
        &mut self,
        what: &str,
        mut check: impl FnMut(&ToBrowser) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap_or_else(|| panic!("the socket closed while waiting for {what}"));
            let text = match frame {
                Ok(WsMessage::Text(text)) => text,
                Ok(WsMessage::Close(_)) | Err(_) => {
                    panic!("the socket closed while waiting for {what}")
                }
                Ok(_) => continue,
            };
            let message: ToBrowser = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("a message that does not parse: {e}: {text}"));
            if let Some(value) = check(&message) {
                return value;
            }
        }
    }
}

/// Whether a connection to `addr` is refused within a second: nothing listens there any more.
pub async fn refused(addr: &str) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await,
        Ok(Err(_))
    )
}
