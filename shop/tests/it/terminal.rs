//! The menus, driven in a pseudo-terminal as a person would: keys in, screen text out.

use std::path::Path;
use std::process::Command;

use expectrl::process::unix::WaitStatus;
use expectrl::session::OsSession as Session;
use expectrl::{Eof, Expect};
use testkit::DEADLINE;

use crate::{Net, ok, text};

/// Starts the shop's menus in a pseudo-terminal of 120 by 40.
fn menus(tracker: &str, wallet: &Path) -> Session {
    let mut cmd = Command::new(crate::SHOP);
    for (key, _) in std::env::vars() {
        if key.starts_with("MONKEY_SHOP_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("TERM", "xterm-256color")
        .arg("--tracker")
        .arg(tracker)
        .arg("--wallet-dir")
        .arg(wallet)
        .arg("--floor")
        .arg(testkit::FLOOR.to_string());
    let mut session = Session::spawn(cmd).expect("start the shop in a pseudo-terminal");
    session
        .get_process_mut()
        .set_window_size(120, 40)
        .expect("size the terminal");
    session.set_expect_timeout(Some(DEADLINE));
    session
}

/// Waits for `text` on the screen; fails the test with what was seen instead.
fn expect(session: &mut Session, text: &str) {
    if let Err(e) = session.expect(text) {
        panic!("waiting for {text:?} in the terminal: {e}");
    }
}

/// Types `keys` (letters filter a menu; `\r` is Enter). The prompt reads keys in order, so
/// they may arrive before it draws.
fn keys(session: &mut Session, keys: &str) {
    session.send(keys).expect("type into the terminal");
}

/// Waits for the end of the output and the exit status.
fn exit_status(mut session: Session) -> WaitStatus {
    expect_eof(&mut session);
    session.get_process().wait().expect("the exit status")
}

fn expect_eof(session: &mut Session) {
    if let Err(e) = session.expect(Eof) {
        panic!("waiting for the shop to end: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_create_a_shopper_buy_a_monkey_vote_and_quit() {
    let net = Net::start(2).await;
    let tracker = net.tracker.addr.clone();
    let wallet = net.wallet("w");
    let dir = wallet.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut s = menus(&tracker, &dir);
        expect(&mut s, "Who is shopping?");
        keys(&mut s, "Create");
        keys(&mut s, "\r");
        expect(&mut s, "Name of the new shopper");
        keys(&mut s, "alice");
        keys(&mut s, "\r");
        expect(&mut s, "alice joined: in block ");
        expect(&mut s, "alice has 1000 coins");
        expect(&mut s, "alice: 1000 coins, 0 monkeys. What next?");
        keys(&mut s, "Buy");
        keys(&mut s, "\r");
        expect(&mut s, "Which monkey? (alice has 1000 coins)");
        keys(&mut s, "Capuchin");
        keys(&mut s, "\r");
        expect(&mut s, "alice bought a Capuchin for 200 coins: in block ");
        expect(&mut s, "taken by node 127.0.0.1:");
        expect(&mut s, "alice has 800 coins and 1 monkey");
        expect(&mut s, "alice: 800 coins, 1 monkey. What next?");
        keys(&mut s, "Vote");
        keys(&mut s, "\r");
        expect(&mut s, "Monkey of the month: vote for");
        keys(&mut s, "Baboon");
        keys(&mut s, "\r");
        expect(
            &mut s,
            "alice voted for baboon in monkey-of-the-month: in block ",
        );
        expect(&mut s, "tally: baboon 1");
        expect(&mut s, "What next?");
        keys(&mut s, "Quit");
        keys(&mut s, "\r");
        expect(&mut s, "Bye.");
        exit_status(s)
    })
    .await
    .unwrap();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    // What the terminal showed is what the chain holds.
    let shown = ok(&net.tracker.addr, &wallet, &["show", "alice"]).await;
    assert_eq!(shown["cage"], serde_json::json!({"capuchin": 1}));
    assert_eq!(text(&shown, "balance"), "800");
    assert_eq!(
        shown["votes"],
        serde_json::json!({"monkey-of-the-month": "baboon"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esc_or_ctrl_c_at_any_prompt_leaves_cleanly() {
    let net = Net::start(1).await;
    let tracker = net.tracker.addr.clone();
    let wallet = net.wallet("w");
    ok(&tracker, &wallet, &["join", "bob"]).await;
    let statuses = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        // Esc at the first menu.
        let mut s = menus(&tracker, &wallet);
        expect(&mut s, "Who is shopping?");
        keys(&mut s, "\x1b");
        expect(&mut s, "Bye.");
        out.push(exit_status(s));
        // Ctrl-C in a shopper's menu.
        let mut s = menus(&tracker, &wallet);
        expect(&mut s, "Who is shopping?");
        keys(&mut s, "bob");
        keys(&mut s, "\r");
        expect(&mut s, "bob: 1000 coins, 0 monkeys. What next?");
        keys(&mut s, "\x03");
        expect(&mut s, "Bye.");
        out.push(exit_status(s));
        // Esc half-way through sending coins.
        let mut s = menus(&tracker, &wallet);
        expect(&mut s, "Who is shopping?");
        keys(&mut s, "bob\r");
        expect(&mut s, "What next?");
        keys(&mut s, "Buy\r");
        expect(&mut s, "Which monkey?");
        keys(&mut s, "\x1b");
        expect(&mut s, "Bye.");
        out.push(exit_status(s));
        out
    })
    .await
    .unwrap();
    for status in statuses {
        assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    }
}
