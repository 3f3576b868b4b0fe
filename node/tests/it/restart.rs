//! Crashes and restarts: the chain survives SIGKILL, and one data dir serves one node.

use std::process::Command;

use testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_comes_back_with_its_chain_and_catches_up() {
    let tracker = Tracker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = start_pair(&tracker, dir.path()).await;
    let mut client = Client::connect(&a.addr).await;
    let alice = key(1);
    let mut ids = vec![join(&alice, "alice").id()];
    client.submit_and_wait(join(&alice, "alice")).await;
    for seq in 1..4 {
        let r = buy(&alice, seq, "tamarin");
        ids.push(r.id());
        client.submit_and_wait(r).await;
    }
    wait_all_agree(&[&a, &b], &ids).await;

    let b_dir = b.dir.clone();
    b.kill();
    // The network moves on while b is down.
    for seq in 4..6 {
        let r = buy(&alice, seq, "tamarin");
        ids.push(r.id());
        client.submit_and_wait(r).await;
    }
    let b = NodeProc::start(&tracker.addr, &b_dir);
    let loaded = b.log();
    assert!(loaded.contains("loaded the store"), "{loaded}");
    assert!(
        super::store::loaded(&loaded, "height") > 0,
        "b restarted without its chain: {loaded}"
    );
    wait_all_agree(&[&a, &b], &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_a_data_dir_in_use_is_refused() {
    let net = OneNode::start().await;
    let a = &net.node;
    let out = Command::new(env!("CARGO_BIN_EXE_monkey-node"))
        .args([
            "--tracker",
            &net.tracker.addr,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&a.dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another node"), "{stderr}");
}

#[test]
fn listening_on_every_interface_without_an_advertised_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_monkey-node"))
        // No tracker is needed: the node refuses before it reports.
        .args([
            "--tracker",
            "127.0.0.1:1",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--advertise"), "{stderr}");
}
