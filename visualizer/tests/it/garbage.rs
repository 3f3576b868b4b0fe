//! The visualizer survives garbage: from browsers (HTTP and websocket) and from a "node" the
//! tracker lists that speaks nonsense. After each, the page is still served and a real node's
//! blocks still reach a browser.

use std::collections::HashSet;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::codec::{LineCodec, encode_line, parse_line};
use protocol::genesis;
use protocol::handshake::{Accept, Identity, Nonce};
use protocol::hash::Hash256;
use protocol::tracker::{Report, TrackerMessage};
use protocol::wire::{Blocks, Message, Update};
use testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::codec::Framed;
use visualizer::view::{Link, ToBrowser};

use crate::http::http_get;
use crate::*;

/// Writes `bytes` to the visualizer on a fresh connection and reads what comes back (at most
/// 64 KiB, for at most 5 s): the visualizer may answer, close, or say nothing.
async fn throw(addr: &str, bytes: &[u8]) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        panic!("the visualizer refused a connection");
    };
    let _ = stream.write_all(bytes).await;
    let mut sink = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut sink)).await;
}

/// The page and its stream still work.
async fn still_serves(addr: &str) {
    let page = http_get(addr, "/").await.expect("the page after garbage");
    assert_eq!(page.status, 200);
    let mut ws = Page::connect(addr).await;
    ws.snapshot().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_browsers_is_refused_and_the_page_serves_on() {
    let vis = Visualizer::start("127.0.0.1:1").await;
    let random: Vec<u8> = (0..4096).map(|i| (i * 7919 % 251) as u8).collect();
    throw(&vis.addr, &random).await;
    throw(
        &vis.addr,
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    throw(
        &vis.addr,
        b"GET /api/block/%00%ff HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    // A header line that never ends, far past any sane limit.
    let mut endless = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    endless.extend(std::iter::repeat_n(b'a', 1 << 20));
    throw(&vis.addr, &endless).await;
    // A body announced far too large for a GET.
    throw(
        &vis.addr,
        b"POST /api/block/00 HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nxx",
    )
    .await;
    let traversal = http_get(&vis.addr, "/../Cargo.toml")
        .await
        .expect("an answer");
    assert_ne!(traversal.status, 200, "a path outside the page was served");

    // Websocket browsers that send garbage, binary frames, a huge frame, or never read.
    for frame in [
        WsMessage::text("{not json"),
        WsMessage::binary(vec![0u8; 1024]),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", vis.addr))
            .await
            .expect("websocket handshake");
        let _ = ws.send(frame).await;
        // Whatever the visualizer does (ignore it, or close), it does not fall over.
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
    }
    // A frame past what a browser may send closes its websocket, before it is buffered.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", vis.addr))
        .await
        .expect("websocket handshake");
    let _ = ws
        .send(WsMessage::text(
            "x".repeat(visualizer::http::MAX_FROM_BROWSER + 1),
        ))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let closed = loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => break false,
            Ok(None | Some(Err(_)) | Some(Ok(WsMessage::Close(_)))) => break true,
            // The snapshot and updates sent before the visualizer read the frame.
            Ok(Some(Ok(_))) => {}
        }
    };
    assert!(
        closed,
        "a frame past MAX_FROM_BROWSER left the websocket open"
    );
    still_serves(&vis.addr).await;
    vis.stop().await;
}

/// Answers the tracker's address check (an `H` in the first read) with `me`'s proof: `None`;
/// otherwise the bytes the connection sent first.
async fn prove_if_asked(conn: &mut TcpStream, me: &Identity) -> Option<Vec<u8>> {
    let mut first = [0u8; 1024];
    let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut first)).await
    else {
        return Some(Vec::new());
    };
    let line = first[..n].strip_suffix(b"\n").unwrap_or(&first[..n]);
    let Ok(Message::Hello(hello)) = parse_line::<Message>(line) else {
        return Some(first[..n].to_vec());
    };
    let Ok((proof, _)) = Accept::on_hello(me, &hello, Nonce([7; 32])) else {
        return None;
    };
    if let Ok(line) = encode_line(&Message::Proof(proof)) {
        let _ = conn.write_all(line.as_bytes()).await;
    }
    None
}

/// A "node" that reports to the tracker like a real one, proves its id to the tracker's check,
/// then answers every other connection with `garbage`.
async fn liar(tracker: &str, seed: u8, garbage: &'static [u8]) -> tokio::task::JoinHandle<()> {
    fake_node(tracker, seed, move |mut conn, _| async move {
        let _ = conn.write_all(garbage).await;
        let mut sink = [0u8; 4096];
        // Read until the visualizer gives up on us.
        for _ in 0..1000 {
            match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    })
    .await
}

/// A "node" that reports to the tracker like a real one, proves its id to the tracker's check,
/// and hands every other connection, with the bytes it sent first, to `serve`.
async fn fake_node<F, Fut>(tracker: &str, seed: u8, serve: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(TcpStream, Vec<u8>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let key = key(seed);
    let me = Identity {
        key: key.clone(),
        addr: addr.clone(),
    };
    let stream = TcpStream::connect(tracker).await.expect("the tracker");
    let mut link = Framed::new(stream, LineCodec::<TrackerMessage>::new());
    tokio::spawn(async move {
        let serve = async {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                let serve = serve.clone();
                tokio::spawn(async move {
                    if let Some(first) = prove_if_asked(&mut conn, &me).await {
                        serve(conn, first).await;
                    }
                });
            }
        };
        let report = async {
            for height in 1..600u64 {
                let report = Report::sign(
                    &key,
                    addr.clone(),
                    now_ms(),
                    (height, Hash256::ZERO),
                    0.0,
                    8,
                );
                if link.send(TrackerMessage::Report(report)).await.is_err() {
                    return;
                }
                let _ = link.next().await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::join!(serve, report);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_speak_garbage_are_dropped_and_the_real_one_is_followed() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tracker.addr, &dir.path().join("a"));
    let liars = [
        liar(&tracker.addr, 91, b"\x00\xff\x13garbage\n\n\nZ {}\n").await,
        liar(
            &tracker.addr,
            92,
            b"U {\"kind\":\"tip\",\"hash\":\"nope\"}\nC {\"blocks\":7}\n",
        )
        .await,
        // A line that never ends: the follower's line limit, not its memory, must stop it.
        liar(&tracker.addr, 93, &[b'C'; 9 << 20]).await,
    ];
    let vis = Visualizer::start(&tracker.addr).await;
    let mut page = Page::connect(&vis.addr).await;
    page.snapshot().await;
    let real = node.id.clone();
    page.wait_nodes("the real node followed beside the liars", |nodes| {
        nodes.len() == 4
            && nodes
                .iter()
                .any(|n| n.id.to_string() == real && n.link == Link::Following)
    })
    .await;

    // The liars' nonsense moves nothing: the real node's block reaches the page.
    let block = &mine_chain(&genesis(), 1, FLOOR, 1000)[0];
    Client::connect(&node.addr)
        .await
        .send(Message::Block(block.clone()))
        .await;
    let hash = block.header.hash();
    page.wait("the real node's block on the page", |m| match m {
        ToBrowser::Tip(t) if t.connected.contains(&hash) => Some(()),
        _ => None,
    })
    .await;
    // Each liar is dropped as it speaks (shown down, retried later with backoff), and none is
    // ever shown as followed.
    let mut down = HashSet::new();
    page.wait("every liar shown down", |m| {
        if let ToBrowser::Nodes { nodes, .. } = m {
            for n in nodes.iter().filter(|n| n.id.to_string() != real) {
                assert_ne!(n.link, Link::Following, "a liar followed: {n:?}");
                if n.link == Link::Down {
                    down.insert(n.id.to_string());
                }
            }
        }
        (down.len() == 3).then_some(())
    })
    .await;
    still_serves(&vis.addr).await;
    for liar in liars {
        liar.abort();
    }
    vis.stop().await;
}

/// A node whose first answer to the visualizer's `D` is an empty `C` that says more follow, and
/// whose next answers hold its chain: the follower must ask again, not take the empty page for
/// the end (it used to, and then showed the node's chain only once a new tip came).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_that_says_more_follow_is_asked_again_and_the_chain_arrives() {
    let tracker = Tracker::start().await;
    let chain = mine_chain(&genesis(), 3, FLOOR, 1000);
    let tip = chain[2].header.hash();
    let stutterer = fake_node(&tracker.addr, 94, move |mut conn, first| {
        let chain = chain.clone();
        async move {
            let mut pending = first;
            let mut asked = 0;
            let mut read = [0u8; 4096];
            for _ in 0..1000 {
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if !line.starts_with(b"D") {
                        continue;
                    }
                    asked += 1;
                    let answer = if asked == 1 {
                        "C {\"blocks\":[],\"more\":true}\n".to_string()
                    } else {
                        let blocks = Blocks {
                            blocks: chain.clone(),
                            more: false,
                            packed: false,
                        };
                        encode_line(&Message::Blocks(blocks)).expect("a C line")
                    };
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
                match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut read)).await {
                    Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&read[..n]),
                    _ => return,
                }
            }
        }
    })
    .await;
    let vis = Visualizer::start(&tracker.addr).await;
    let mut page = Page::connect(&vis.addr).await;
    page.snapshot().await;
    page.wait("the node's chain on the page", |m| match m {
        ToBrowser::Tip(t) if t.connected.contains(&tip) => Some(()),
        _ => None,
    })
    .await;
    stutterer.abort();
    vis.stop().await;
}

/// A node that floods empty pages that say more follow, each followed by a tip the visualizer
/// lacks: each of those used to make the follower page again from the hub (a locator computed
/// on the hub, a `D` to the node), hundreds a second. It pages again at most once a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_pages_and_unknown_tips_do_not_make_the_follower_page_at_their_pace() {
    const ROUNDS: u64 = 300;
    let tracker = Tracker::start().await;
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (flooded, flood_done) = tokio::sync::mpsc::channel::<()>(1);
    let counter = std::sync::Arc::clone(&asked);
    let flooder = fake_node(&tracker.addr, 95, move |conn, first| {
        let asked = std::sync::Arc::clone(&counter);
        let flooded = flooded.clone();
        async move {
            let count = |bytes: &[u8]| {
                bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| l.starts_with(b"D"))
                    .count()
            };
            asked.fetch_add(count(&first), std::sync::atomic::Ordering::SeqCst);
            let (mut read, mut write) = conn.into_split();
            let reading = {
                let asked = std::sync::Arc::clone(&asked);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    for _ in 0..100_000 {
                        match read.read(&mut buf).await {
                            Ok(n) if n > 0 => {
                                asked.fetch_add(
                                    count(&buf[..n]),
                                    std::sync::atomic::Ordering::SeqCst,
                                );
                            }
                            _ => return,
                        }
                    }
                })
            };
            for round in 0..ROUNDS {
                let mut hash = [0xee; 32];
                hash[..8].copy_from_slice(&round.to_le_bytes());
                let tip = Update::Tip {
                    hash: Hash256(hash),
                    height: 1_000 + round,
                    disconnected: Vec::new(),
                    connected: Vec::new(),
                };
                let lines = format!(
                    "C {{\"blocks\":[],\"more\":true}}\n{}",
                    encode_line(&Message::Update(tip)).expect("a U line")
                );
                if write.write_all(lines.as_bytes()).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            reading.abort();
            let _ = flooded.send(()).await;
        }
    })
    .await;
    let vis = Visualizer::start(&tracker.addr).await;
    let mut flood_done = flood_done;
    tokio::time::timeout(Duration::from_secs(60), flood_done.recv())
        .await
        .expect("the flood ends");
    let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
    // The first page, then at most one more a second over the flood's 3 s or so (sleeps run
    // long on a busy host: counted generously).
    assert!(asked >= 2, "the follower paged the node ({asked})");
    assert!(
        asked <= 12,
        "{asked} pages asked in {ROUNDS} rounds of empty pages and unknown tips"
    );
    flooder.abort();
    vis.stop().await;
}
