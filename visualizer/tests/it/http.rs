//! The HTTP side: the embedded page with its content types and security headers, nothing loaded
//! from elsewhere, block details, and the binary's `listening on` line and clean exit.

use std::process::Command;
use std::time::Duration;

use protocol::genesis;
use testkit::{DEADLINE, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use visualizer::assets::ASSETS;
use visualizer::view::BlockDetails;

use crate::{Page, VisProc, Visualizer};

/// An HTTP answer: status, headers (names lowercased), body.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over a fresh connection, HTTP/1.1 with `Connection: close`.
pub async fn http_get(addr: &str, path: &str) -> Option<Answer> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.lines();
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        Some(Answer {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()?
}

/// A block's details, or `None` while the visualizer does not hold it.
pub async fn get_details(addr: &str, hash: &str) -> Option<BlockDetails> {
    let answer = http_get(addr, &format!("/api/block/{hash}")).await?;
    if answer.status != 200 {
        return None;
    }
    let body = if answer.header("transfer-encoding") == Some("chunked") {
        dechunk(&answer.body)
    } else {
        answer.body
    };
    Some(serde_json::from_slice(&body).expect("details parse"))
}

/// Joins a chunked body's chunks.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

#[tokio::test]
async fn the_page_is_served_with_its_types_and_a_strict_policy() {
    let vis = Visualizer::start("127.0.0.1:1").await;
    let index = http_get(&vis.addr, "/").await.expect("an answer");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = index.header("content-security-policy").expect("a policy");
    for rule in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        &format!("connect-src 'self' ws://{0} wss://{0}", vis.addr),
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{rule} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    let body = String::from_utf8_lossy(&index.body);
    assert!(body.contains("<script type=\"module\" src=\"/app.js\"></script>"));

    for (path, content_type) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/model.js", "text/javascript; charset=utf-8"),
        (
            "/vendor/uplot/uPlot.esm.js",
            "text/javascript; charset=utf-8",
        ),
        ("/vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
        ("/chain.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let answer = http_get(&vis.addr, path).await.expect("an answer");
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.header("content-type"), Some(content_type), "{path}");
        assert!(answer.header("content-security-policy").is_some());
    }
    let missing = http_get(&vis.addr, "/secret.txt").await.expect("an answer");
    assert_eq!(missing.status, 404);
    let outside = http_get(&vis.addr, "/../Cargo.toml")
        .await
        .expect("an answer");
    assert_ne!(outside.status, 200);
    vis.stop().await;
}

#[test]
fn nothing_in_the_page_comes_from_elsewhere() {
    for asset in ASSETS {
        let text = String::from_utf8_lossy(asset.body);
        // The SVG namespace is a name, not a download; and a link in a comment (the vendored
        // uPlot cites its sources) loads nothing.
        let text: String = text
            .replace("http://www.w3.org/2000/svg", "")
            .lines()
            .filter(|line| {
                let line = line.trim_start();
                !(line.starts_with("//") || line.starts_with('*'))
            })
            .collect::<Vec<_>>()
            .join("\n");
        for needle in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(
                !text.contains(needle),
                "{} mentions {needle}: the page must load nothing from elsewhere",
                asset.path
            );
        }
        // Data only ever enters the page as text.
        for needle in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!text.contains(needle), "{} uses {needle}", asset.path);
        }
    }
}

/// Every module a page module imports (`from './NAME'`) is compiled into the binary, so the page
/// needs no file that is not served.
#[test]
fn every_module_the_page_imports_is_served() {
    let mut imports = 0;
    for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
        let text = String::from_utf8_lossy(asset.body);
        let dir = asset.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        for (_, rest) in text
            .match_indices("from './")
            .map(|(i, _)| text.split_at(i + 8))
        {
            let Some(name) = rest.split('\'').next() else {
                continue;
            };
            let path = format!("{dir}/{name}");
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "{} imports {path}, which is not served",
                asset.path
            );
            imports += 1;
        }
    }
    assert!(
        imports >= 6,
        "the page's modules import each other: {imports}"
    );
}

#[tokio::test]
async fn block_details_are_served_and_bad_requests_refused() {
    let vis = Visualizer::start("127.0.0.1:1").await;
    let genesis_hash = genesis().header.hash();
    let details = get_details(&vis.addr, &genesis_hash.to_string())
        .await
        .expect("genesis's details");
    assert_eq!(details.hash, genesis_hash);
    assert!(details.best);
    assert_eq!(details.header.height, 0);
    assert_eq!(details.header.nonce, "0");
    let bad = http_get(&vis.addr, "/api/block/zz")
        .await
        .expect("an answer");
    assert_eq!(bad.status, 400);
    let unknown = http_get(&vis.addr, &format!("/api/block/{}", "00".repeat(32)))
        .await
        .expect("an answer");
    assert_eq!(unknown.status, 404);
    vis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_its_address_serves_and_stops_on_sigterm() {
    // Nothing listens on port 1: the tracker is down, and the page says so.
    let mut vis = VisProc::start("127.0.0.1:1", "127.0.0.1:0");
    let addr = vis.addr.clone();
    let index = http_get(&addr, "/").await.expect("an answer");
    assert_eq!(index.status, 200);
    let mut page = Page::connect(&addr).await;
    let snapshot = page.snapshot().await;
    assert_eq!(snapshot.tracker.addr, "127.0.0.1:1");
    assert!(!snapshot.tracker.up, "nothing listens on port 1");

    let status = Command::new("kill")
        .args(["-TERM", &vis.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exited = wait_for("the visualizer to exit", DEADLINE, || {
        let status = vis.try_wait();
        async move { status }
    })
    .await;
    assert!(exited.success(), "exit status {exited}");
}
