//! The soak: five nodes, three shops buying concurrently through `monkey-shop` at random nodes,
//! while nodes and the tracker are killed (SIGKILL) and restarted at random and a hostile peer
//! attacks random nodes. At the end every node must be on the same tip within 5 seconds, the
//! chain must be valid from genesis (so no balance ever went negative: the ledger refuses any
//! record that would), and every purchase a shop saw acknowledged must be in it exactly once.
//!
//! The short form runs in CI (150 purchases, a few seconds of chaos). The long form, by hand:
//! `MONKEY_SOAK_PURCHASES=500 cargo test -p attack soak -- --nocapture`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use attack::{Attack, Target};
use protocol::{Chain, Params, RecordId};
use rand::RngExt;
use testkit::*;
use tokio::process::Command;

/// Shops buying at once.
const SHOPS: usize = 3;
/// Nodes in the network.
const NODES: usize = 5;
/// Purchases one shopper can afford: 19 marmosets at 50 from 1000 coins.
const PER_SHOPPER: usize = 19;

/// Runs `monkey-shop` with `args`; its JSON answer on success, `None` on an error (at most a
/// minute: the shop's own timeouts are shorter).
async fn shop(tracker: &str, wallet: &Path, args: &[&str]) -> Option<serde_json::Value> {
    let run = Command::new(binary("monkey-shop"))
        .args(["--tracker", tracker, "--json", "--answer-timeout", "3"])
        .args(["--floor", &FLOOR.to_string()])
        .arg("--wallet-dir")
        .arg(wallet)
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .ok()?
        .ok()?;
    if !out.status.success() {
        eprintln!("soak: {}", String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// What the chaos did, for the figures.
#[derive(Default)]
struct Chaos {
    node_kills: AtomicUsize,
    tracker_kills: AtomicUsize,
    attacks: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_survive_crashes_restarts_and_a_hostile_peer() {
    let purchases: usize = std::env::var("MONKEY_SOAK_PURCHASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let mut tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node_dirs: Vec<PathBuf> = (0..NODES)
        .map(|i| dir.path().join(format!("n{i}")))
        .collect();
    let mut nodes: Vec<Option<NodeProc>> = node_dirs
        .iter()
        .map(|d| Some(NodeProc::start(&tracker.addr, d)))
        .collect();
    let ids: Vec<String> = nodes.iter().flatten().map(|n| n.id.clone()).collect();
    tracker.wait_active(&ids).await;

    // Every shop's shoppers join first, before the chaos.
    let per_shop = purchases.div_ceil(SHOPS);
    let shoppers_per_shop = per_shop.div_ceil(PER_SHOPPER);
    let wallets: Vec<PathBuf> = (0..SHOPS)
        .map(|s| dir.path().join(format!("wallet{s}")))
        .collect();
    for (s, wallet) in wallets.iter().enumerate() {
        for i in 0..shoppers_per_shop {
            let name = format!("shop{s}-{i}");
            assert!(
                shop(&tracker.addr, wallet, &["join", &name])
                    .await
                    .is_some(),
                "{name} could not join"
            );
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let chaos = Arc::new(Chaos::default());
    let started = Instant::now();

    // The shops: each buys its share, round-robin over its shoppers, recording what was
    // acknowledged.
    let buying: Vec<_> = wallets
        .iter()
        .enumerate()
        .map(|(s, wallet)| {
            let (tracker, wallet) = (tracker.addr.clone(), wallet.clone());
            tokio::spawn(async move {
                let mut acked: Vec<RecordId> = Vec::new();
                let mut failed = 0;
                for p in 0..per_shop {
                    // A shopper thinks a moment between purchases, so the chaos has time to act.
                    let think = rand::rng().random_range(20..80);
                    tokio::time::sleep(Duration::from_millis(think)).await;
                    let name = format!("shop{s}-{}", p % shoppers_per_shop);
                    let answer =
                        shop(&tracker, &wallet, &["buy", &name, "marmoset", "--no-wait"]).await;
                    match answer.and_then(|a| a["record"].as_str().and_then(|r| r.parse().ok())) {
                        Some(id) => acked.push(id),
                        None => failed += 1,
                    }
                }
                (acked, failed)
            })
        })
        .collect();

    // The hostile peer: attacks random live nodes from its own addresses.
    let hostile = {
        let (stop, chaos, tracker) = (Arc::clone(&stop), Arc::clone(&chaos), tracker.addr.clone());
        tokio::spawn(async move {
            let attacks = [
                Attack::Garbage,
                Attack::OrphanFlood,
                Attack::DuplicateFlood,
                Attack::BadSignature,
                Attack::NonsenseLocator,
                Attack::HoldSlots,
                Attack::UnminableFlood,
                Attack::BigSideBlocks,
                Attack::Impostor,
                Attack::FakeRegistrations,
            ];
            for round in 0..10_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(topology) = tracker::client::query(&tracker, Duration::from_secs(1)).await
                else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let active: Vec<String> = topology.active().map(|n| n.addr.clone()).collect();
                if active.is_empty() {
                    continue;
                }
                let (node, attack) = {
                    let mut rng = rand::rng();
                    (
                        active[rng.random_range(0..active.len())].clone(),
                        attacks[rng.random_range(0..attacks.len())],
                    )
                };
                let target = Target {
                    node,
                    from: IpAddr::V4(Ipv4Addr::new(127, 0, 1, (round % 250) as u8 + 2)),
                    floor: FLOOR,
                    // Enough subscribers to hold every slot of the node.
                    count: if attack == Attack::HoldSlots { 300 } else { 50 },
                    tracker: Some(tracker.clone()),
                };
                // A node killed mid-attack is an error for the attacker, not the test.
                let _ = tokio::time::timeout(Duration::from_secs(20), attack::run(attack, &target))
                    .await;
                chaos.attacks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // The chaos: a node or the tracker killed at a random moment, restarted a moment later.
    for event in 0..100_000 {
        if buying.iter().all(|b| b.is_finished()) {
            break;
        }
        let (pause, victim, down) = {
            let mut rng = rand::rng();
            // The first two: a node, then the tracker; after that, anyone.
            let victim = match event {
                0 => rng.random_range(0..NODES),
                1 => NODES,
                _ => rng.random_range(0..=NODES),
            };
            (
                rng.random_range(100..500),
                victim,
                rng.random_range(50..600),
            )
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if victim == NODES {
            tracker.kill();
            chaos.tracker_kills.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(down)).await;
            tracker.restart().await;
        } else {
            if let Some(node) = nodes[victim].take() {
                node.kill();
            }
            tokio::time::sleep(Duration::from_millis(down)).await;
            nodes[victim] = Some(NodeProc::start(&tracker.addr, &node_dirs[victim]));
            chaos.node_kills.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut acked = Vec::new();
    let mut failed = 0;
    for b in buying {
        let (a, f) = b.await.unwrap();
        acked.extend(a);
        failed += f;
    }
    stop.store(true, Ordering::Relaxed);
    hostile.await.unwrap();

    // Everyone up: the nodes agree on one tip holding every acknowledged purchase once.
    let settled = Instant::now();
    let refs: Vec<&NodeProc> = nodes.iter().flatten().collect();
    let chain = wait_all_agree(&refs, &acked).await;
    let converged = settled.elapsed();

    // Valid from genesis, signatures and ledger included.
    let mut check = Chain::new(Params::with_floor(FLOOR));
    for block in &chain {
        check
            .insert(block.clone(), u64::MAX / 2)
            .expect("every block is valid");
    }
    let ledger = check
        .replay_ledger()
        .expect("the ledger replays from genesis");
    let shoppers = ledger.accounts().count();
    println!(
        "soak: {} purchases acknowledged, {failed} refused or failed, {} blocks, {shoppers} \
         accounts, {} node kills, {} tracker kills, {} attacks, {:.1} s of chaos; all {NODES} \
         nodes on one tip {} ms after it stopped, every acknowledged purchase once",
        acked.len(),
        chain.len(),
        chaos.node_kills.load(Ordering::Relaxed),
        chaos.tracker_kills.load(Ordering::Relaxed),
        chaos.attacks.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        converged.as_millis(),
    );
    assert!(!acked.is_empty(), "no purchase was acknowledged");
    assert!(
        converged < Duration::from_secs(5),
        "converged in {converged:?}"
    );
}
