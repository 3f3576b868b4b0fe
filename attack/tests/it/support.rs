//! A two-node network with some history, an attack on one node, and everything checked after.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use attack::{Attack, Outcome, Target};
use protocol::wire::{Blocks, ErrorCode, Message};
use protocol::{Block, BlockHash, Keypair, RecordId, genesis};
use testkit::*;

/// What the node should do under an attack.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// The attacking connection is closed.
    pub closed: bool,
    /// The attacker's address is refused afterwards.
    pub banned: bool,
    /// The attacking connection is still answered afterwards.
    pub served: bool,
}

/// Idle connections: the attack holds them while an honest purchase goes through.
pub const IDLE: Expect = Expect {
    closed: false,
    banned: false,
    served: false,
};

/// Peak resident memory the attacked node may reach, in KiB: far above its normal few tens of
/// MiB, far below what an unbounded buffer would take under these floods.
pub const MAX_PEAK_KIB: u64 = 256 * 1024;

/// How long a newcomer may wait for its answer while every slot is held: the issue asks for a
/// second; this leaves room for a loaded machine (the measured time is printed).
const MAX_NEWCOMER_WAIT: Duration = Duration::from_secs(2);

/// Each test attacks from its own loopback address, so no ban leaks into another test.
static NEXT_ADDR: AtomicU8 = AtomicU8::new(2);

/// `n` empty blocks on genesis at `bits`, a second apart: an honest history with more work than
/// any branch the attacks build at the floor.
fn heavy_history(n: usize, bits: u32) -> Vec<Block> {
    let miner = key(200).account();
    let mut out: Vec<Block> = Vec::new();
    for _ in 0..n {
        let parent = out.last().cloned().unwrap_or_else(genesis);
        let t = Block::template(
            &parent.header,
            vec![],
            miner,
            bits,
            parent.header.timestamp + 1000,
        );
        out.push(protocol::block::solve(t));
    }
    out
}

/// How long an honest purchase may take: tens of milliseconds at this floor; the bound only
/// allows for a loaded machine.
pub const PURCHASE_LIMIT: Duration = Duration::from_secs(5);

/// Purchases bought while an attack runs, at most (the shopper's coins last for 19).
const MAX_DURING: usize = 8;
/// Time between them, so that they spread over the attack rather than all come before it.
const BUY_EVERY: Duration = Duration::from_millis(300);

/// Runs `attack` (`count` of it) against node `a` from an address of its own, buying through
/// `a` every [`BUY_EVERY`] while it runs (at most [`MAX_DURING`] times); returns what the
/// attack saw, the longest purchase and how many purchases overlapped the attack.
pub async fn attack_while_buying(
    net: &mut Net,
    attack: Attack,
    count: usize,
) -> (Outcome, Duration, usize) {
    let target = Target {
        node: net.a.addr.clone(),
        from: attacker_addr(),
        floor: FLOOR,
        count,
        tracker: Some(net.tracker.addr.clone()),
    };
    let started = Instant::now();
    let running = tokio::spawn(async move { attack::run(attack, &target).await });
    let mut longest = Duration::ZERO;
    let mut bought = 0;
    while bought < MAX_DURING && !running.is_finished() {
        longest = longest.max(net.shopper.buy(&net.a, &net.b).await);
        bought += 1;
        tokio::time::sleep(BUY_EVERY).await;
    }
    assert!(bought > 0, "the attack ended before any purchase");
    let outcome = running.await.unwrap().unwrap();
    println!("{}: {outcome:?} in {:?}", attack.name(), started.elapsed());
    (outcome, longest, bought)
}

/// A fresh loopback address to attack from.
pub fn attacker_addr() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        NEXT_ADDR.fetch_add(1, Ordering::Relaxed),
    ))
}

/// A shopper buying through node `a` from 127.0.0.1, the way a shop does.
pub struct Shopper {
    key: Keypair,
    seq: u64,
    /// Every record of this shopper that landed.
    landed: Vec<RecordId>,
}

impl Shopper {
    /// Buys a marmoset and waits until both nodes hold the purchase once, on one tip; returns how
    /// long that took.
    pub async fn buy(&mut self, a: &NodeProc, b: &NodeProc) -> Duration {
        let started = Instant::now();
        let record = buy(&self.key, self.seq, "marmoset");
        self.seq += 1;
        let mut client = Client::connect(&a.addr).await;
        client.submit_and_wait(record.clone()).await;
        self.landed.push(record.id());
        wait_all_agree(&[a, b], &self.landed).await;
        started.elapsed()
    }
}

/// A tracker, node `a` (to attack) and `b` (its honest peer), a history with more work than
/// the attacks can build at the floor, and a shopper who joined and bought once.
pub struct Net {
    /// The tracker.
    pub tracker: Tracker,
    /// Where the nodes' data dirs are.
    pub dir: tempfile::TempDir,
    /// The node attacked.
    pub a: NodeProc,
    /// Its honest peer.
    pub b: NodeProc,
    /// The honest shopper.
    pub shopper: Shopper,
    /// The honest history's last block.
    pub honest: BlockHash,
}

/// Starts a [`Net`].
pub async fn network() -> Net {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_network(&tracker, dir.path(), 2).await;
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();

    let history = heavy_history(12, FLOOR + 8);
    let mut peer = Client::connect(&a.addr).await;
    peer.send(Message::Blocks(Blocks {
        blocks: history.clone(),
        more: false,
        packed: false,
    }))
    .await;
    let alice = key(1);
    let mut shop = Client::connect(&a.addr).await;
    let joined = join(&alice, "alice");
    shop.submit_and_wait(joined.clone()).await;
    let mut shopper = Shopper {
        key: alice,
        seq: 1,
        landed: vec![joined.id()],
    };
    shopper.buy(&a, &b).await;
    let honest = history[history.len() - 1].header.hash();
    Net {
        tracker,
        dir,
        a,
        b,
        shopper,
        honest,
    }
}

/// Starts a [`Net`], runs `attack` from an address of its own, and checks what the node did.
pub async fn check(attack: Attack, count: usize, codes: &[ErrorCode], expect: Expect) {
    let Net {
        tracker: _tracker,
        dir: _dir,
        mut a,
        mut b,
        mut shopper,
        honest,
    } = network().await;
    let from = attacker_addr();
    let target = Target {
        node: a.addr.clone(),
        from,
        floor: FLOOR,
        count,
        tracker: None,
    };
    let outcome = if attack == Attack::IdleConnections {
        // The attack holds its connections for a few seconds: buy meanwhile.
        let running = tokio::spawn(async move { attack::run(attack, &target).await });
        // Wait until the node has taken the idle connections, then buy.
        tokio::task::yield_now().await;
        let took = shopper.buy(&a, &b).await;
        assert!(
            took < Duration::from_secs(5),
            "purchase took {took:?} under idle flood"
        );
        running.await.unwrap().unwrap()
    } else {
        attack::run(attack, &target).await.unwrap()
    };
    println!("{}: {outcome:?}", attack.name());

    assert!(a.is_running(), "the attacked node died");
    assert!(b.is_running(), "its peer died");
    for code in codes {
        assert!(
            outcome.errors.iter().any(|e| e == code.as_str()),
            "no E {code}: {outcome:?}"
        );
    }
    assert_eq!(outcome.closed, expect.closed, "closed? {outcome:?}");
    assert_eq!(outcome.banned, expect.banned, "banned? {outcome:?}");
    if expect.served {
        assert!(outcome.still_served, "not served after: {outcome:?}");
    }
    if attack == Attack::IdleConnections {
        assert!(
            outcome.note.contains("64 idle connections held open"),
            "{}",
            outcome.note
        );
    }
    if attack == Attack::HoldSlots {
        let waited = outcome.newcomer_wait.expect("the newcomers were timed");
        assert!(
            waited < MAX_NEWCOMER_WAIT,
            "a newcomer waited {waited:?}: {}",
            outcome.note
        );
        assert!(outcome.note.contains("served: true"), "{}", outcome.note);
    }

    // The honest chain is still the best: its history and every honest purchase, once (the
    // last block may have changed since: two nodes that mined the same purchase end the tie).
    // And honest shopping goes on at normal speed: a purchase at this floor takes milliseconds;
    // the bound only allows for a loaded machine.
    let chain = fetch_chain(&a.addr).await.unwrap();
    assert!(
        chain.iter().any(|blk| blk.header.hash() == honest),
        "lost its best chain: now {} blocks, {:?}",
        chain.len(),
        chain
            .iter()
            .map(|b| (b.header.height, b.header.bits, b.records.len()))
            .take(20)
            .collect::<Vec<_>>()
    );
    let counts = record_counts(&chain);
    assert!(
        shopper.landed.iter().all(|id| counts.get(id) == Some(&1)),
        "an honest purchase went missing"
    );
    let took = shopper.buy(&a, &b).await;
    assert!(
        took < Duration::from_secs(5),
        "purchase took {took:?} after {}",
        attack.name()
    );
    let (_, peak) = a.memory_kib().expect("read /proc");
    assert!(peak < MAX_PEAK_KIB, "peak memory {peak} KiB");
    let _ = &mut b;
}
