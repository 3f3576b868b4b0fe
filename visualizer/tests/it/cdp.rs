//! Driving headless Chromium over the Chrome DevTools Protocol: a websocket (tokio-tungstenite,
//! already here for the stream tests) speaking JSON commands. This is all the end-to-end test
//! needs (navigate, evaluate, screenshot, and hearing about dialogs, exceptions and policy
//! violations), without a WebDriver server in between.
//!
//! Chromium is started with `--remote-debugging-port=0` and prints the address it picked on
//! stderr; it is killed when the handle drops, and its profile lives in a temporary folder.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use testkit::DEADLINE;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where Chromium may be: `$CHROMIUM` first, then the usual names.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// What the visualizer's page shows, for a test that timed out.
const DIAGNOSIS: &str = "(() => { try { const v = window.monkeyVisualizer; return { \
    conn: document.getElementById('conn').textContent, \
    height: v && v.state.height, tip: v && v.state.tip, blocks: v && v.state.blocks.size, \
    tiles: [...document.querySelectorAll('.tile')].map(t => t.dataset.height + ':' + t.dataset.hash.slice(0, 8)), \
    events: [...document.querySelectorAll('#events li')].slice(0, 10).map(l => l.textContent) }; \
    } catch (e) { return String(e); } })()";

/// A running Chromium with one page attached.
pub struct Chrome {
    child: Child,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// Events received so far (method and params), kept for the checks at the end.
    pub events: Vec<(String, Value)>,
    stderr: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Chrome {
    /// Starts Chromium headless with a fresh profile and opens a blank page of `width` x
    /// `height` CSS pixels.
    pub async fn launch(binary: &Path, width: u32, height: u32) -> Chrome {
        let profile = tempfile::tempdir().expect("a profile folder");
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        // Chromium prints the DevTools address on stderr; keep reading it so it never blocks.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().expect("piped stderr");
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = found.send(url.trim().to_string());
                }
                let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
                if lines.len() < 400 {
                    lines.push(line);
                }
            }
        });
        let url = match address.recv_timeout(DEADLINE) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let log = stderr
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .join("\n");
                panic!("Chromium printed no DevTools address; its stderr:\n{log}");
            }
        };
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect to DevTools");
        let mut chrome = Chrome {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            stderr,
            _profile: profile,
        };
        let target = chrome
            .browser_call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = chrome
            .browser_call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        chrome.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            chrome.call(domain, json!({})).await;
        }
        chrome
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
        chrome
    }

    async fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if session {
            message["sessionId"] = json!(self.session);
        }
        self.ws
            .send(WsMessage::text(message.to_string()))
            .await
            .expect("send to DevTools");
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("DevTools did not answer {method} in time"))
                .expect("DevTools closed")
                .expect("a DevTools frame");
            let WsMessage::Text(text) = frame else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if value["id"] == json!(id) {
                if let Some(error) = value.get("error") {
                    panic!("{method} failed: {error}");
                }
                return value["result"].clone();
            }
            if let Some(event) = value["method"].as_str() {
                let params = value["params"].clone();
                if event == "Page.javascriptDialogOpening" {
                    // A dialog blocks the page: note it (the test fails on it) and dismiss it.
                    self.events.push((event.to_string(), params));
                    // Its answer carries an id no call waits for, so it is skipped.
                    let dismiss = json!({
                        "id": 1_000_000 + id,
                        "sessionId": self.session,
                        "method": "Page.handleJavaScriptDialog",
                        "params": {"accept": true},
                    });
                    let _ = self.ws.send(WsMessage::text(dismiss.to_string())).await;
                    continue;
                }
                self.events.push((event.to_string(), params));
            }
        }
    }

    async fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false).await
    }

    /// Calls `method` on the page.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true).await
    }

    /// Opens `url` in the page.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its JSON value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("evaluating {expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` every 50 ms until it is truthy; returns its value. While it
    /// throws (the page is still loading, an element is not there yet) it counts as false.
    pub async fn wait_until(&mut self, what: &str, expression: &str) -> Value {
        let guarded = format!(
            "(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
        );
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let value = self.eval(&guarded).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let state = self.eval(DIAGNOSIS).await;
                panic!("timed out waiting for the page: {what}; the page: {state}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG of the page to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let data = shot["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Events named `method` seen so far.
    pub fn events_named(&self, method: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, p)| p)
            .collect()
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failing test shows what the browser said.
            let lines = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
            eprintln!("--- Chromium's stderr:\n{}", lines.join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
