//! The node's buffers ([`node::buffers`]): connections that send lines they never end hold at
//! most their address's share of the node's memory, the node in all at most its total; honest
//! purchases are mined meanwhile, and a big line from another address is still read whole.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::future::join_all;
use node::buffers::{MAX_BUFFERED, MAX_BUFFERED_PER_IP};
use protocol::codec::MAX_LINE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use testkit::*;

/// Room for what the node holds besides the budget (buffers being copied as they grow, the
/// tasks of a few hundred connections), in KiB.
const SLACK_KIB: u64 = 64 * 1024;

/// The most the node's peak memory may grow for `budget` counted bytes, in KiB: half as much
/// again, because the allocator keeps some of what the growing buffers gave back (measured
/// here: 88 to 111 MiB for the 64 MiB of one address, 582 to 586 MiB for the 512 MiB in all;
/// without the budget, the lines alone would take 512 MiB and 4.5 GiB), and the slack.
fn bound_kib(budget: usize) -> u64 {
    (budget / 1024 * 3 / 2) as u64 + SLACK_KIB
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A connection to `addr` from the local address `from`.
async fn raw_from(addr: &str, from: IpAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind((from, 0).into())
        .expect("bind the local address");
    socket
        .connect(addr.parse().expect("a socket address"))
        .await
        .expect("connect to node")
}

/// Opens `count` connections from `from`, each sending nearly [`MAX_LINE`] bytes of a line it
/// never ends; returns them once each has sent it all, been refused, or stalled for 10 s.
async fn unfinished_lines(addr: &str, from: IpAddr, count: usize) -> Vec<TcpStream> {
    let line: Vec<u8> = [b"A ".as_slice(), &vec![b'x'; MAX_LINE - 64]].concat();
    join_all((0..count).map(|_| {
        let line = &line;
        async move {
            let mut stream = raw_from(addr, from).await;
            // The node may stop reading, or close: both are what is tested.
            let _ = tokio::time::timeout(Duration::from_secs(10), stream.write_all(line)).await;
            stream
        }
    }))
    .await
}

/// What the node did to each of `streams`, read for at most 100 ms each once quiet: how many
/// it told `E buffer_full`, and how many it closed with nothing we could read (a close that
/// leaves our bytes unread resets the connection, and a reset can take the last line with it).
async fn refusals(streams: &mut [TcpStream]) -> (usize, usize) {
    let (mut told, mut closed) = (0, 0);
    for stream in streams {
        let mut said = vec![0; 4096];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut said)).await {
            Ok(Ok(n)) if String::from_utf8_lossy(&said[..n]).contains("buffer_full") => told += 1,
            Ok(Ok(0) | Err(_)) => closed += 1,
            _ => {}
        }
    }
    (told, closed)
}

/// The node's peak resident memory, in KiB.
fn peak_kib(node: &NodeProc) -> u64 {
    node.memory_kib().expect("the node's memory").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_lines_hold_only_their_share_and_purchases_are_mined() {
    let net = OneNode::start().await;
    let node = &net.node;
    let before = peak_kib(node);

    // One address: 64 connections (every slot it may hold) of 8 MiB lines, 512 MiB in all.
    let attacker = loopback(2);
    let mut held = unfinished_lines(&node.addr, attacker, 64).await;
    let (told, closed) = refusals(&mut held).await;
    let grown = peak_kib(node) - before;
    println!(
        "one address, 64 unfinished lines: {told} connections told buffer_full, {closed} more \
         closed; node's peak grew by {} MiB (its share is {} MiB)",
        grown / 1024,
        MAX_BUFFERED_PER_IP >> 20
    );
    assert!(told > 0, "nobody was told buffer_full");
    assert!(
        told + closed >= 64 - MAX_BUFFERED_PER_IP / MAX_LINE,
        "only {told} + {closed} refused"
    );
    assert!(
        grown < bound_kib(MAX_BUFFERED_PER_IP),
        "the node's peak grew by {grown} KiB"
    );

    // Meanwhile, a shopper from another address joins and buys, mined as usual.
    let shopper = key(1);
    let mut shop = Client::connect(&node.addr).await;
    let started = Instant::now();
    shop.submit_and_wait(join(&shopper, "alice")).await;
    shop.submit_and_wait(buy(&shopper, 1, "capuchin")).await;
    println!("a join and a purchase mined in {:?}", started.elapsed());

    // Next, eight more addresses do the same: the node's total is reached, and the biggest
    // connections of the address holding the most make room for the others.
    let mut more = Vec::new();
    for last in 3..11 {
        more.extend(unfinished_lines(&node.addr, loopback(last), 8).await);
    }
    let grown = peak_kib(node) - before;
    println!(
        "nine addresses: node's peak grew by {} MiB (its total is {} MiB)",
        grown / 1024,
        MAX_BUFFERED >> 20
    );
    assert!(
        grown < bound_kib(MAX_BUFFERED),
        "the node's peak grew by {grown} KiB"
    );

    // A big line from an address holding nothing is read whole (and refused for what it
    // says, not for its size), at the expense of the biggest holders.
    let mut big = raw_from(&node.addr, loopback(20)).await;
    let line = [b"A ".as_slice(), &vec![b'x'; 4 * 1024 * 1024], b"\n"].concat();
    big.write_all(&line).await.expect("the big line is taken");
    let mut said = String::new();
    tokio::time::timeout(DEADLINE, big.read_to_string(&mut said))
        .await
        .expect("an answer in time")
        .ok();
    assert!(
        said.contains("bad_payload"),
        "the big line was answered {said:?}"
    );
    // Those refused in the first round are closed already, so whoever is told now made room.
    let evicted = refusals(&mut held).await.0 + refusals(&mut more).await.0;
    assert!(evicted > 0, "nobody made room");
    // And the node serves on.
    shop.submit_and_wait(buy(&shopper, 2, "marmoset")).await;
}
