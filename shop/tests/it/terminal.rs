//! The menus, driven in a pseudo-terminal as a person would: keys in, screen text out.

use std::path::Path;
use std::process::Command;

use expectrl::process::unix::WaitStatus;
use testkit::Terminal;

use crate::{Net, ok, text};

/// Starts the shop's menus in a pseudo-terminal.
fn menus(tracker: &str, wallet: &Path) -> Terminal {
    let mut cmd = Command::new(crate::SHOP);
    cmd.arg("--tracker")
        .arg(tracker)
        .arg("--wallet-dir")
        .arg(wallet)
        .arg("--floor")
        .arg(testkit::FLOOR.to_string());
    Terminal::spawn(cmd, "the shop")
}

/// Each step waits for a prompt on the screen, then types keys in answer.
fn answer(s: &mut Terminal, steps: &[(&str, &str)]) {
    for (prompt, keys) in steps {
        s.expect(prompt);
        s.keys(keys);
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
        answer(
            &mut s,
            &[
                ("Who is shopping?", "Create\r"),
                ("Name of the new shopper", "alice\r"),
            ],
        );
        s.expect("alice joined: in block ");
        s.expect("alice has 1000 coins");
        answer(
            &mut s,
            &[
                ("alice: 1000 coins, 0 monkeys. What next?", "Buy\r"),
                ("Which monkey? (alice has 1000 coins)", "Capuchin\r"),
            ],
        );
        s.expect("alice bought a Capuchin for 200 coins: in block ");
        s.expect("taken by node 127.0.0.1:");
        s.expect("alice has 800 coins and 1 monkey");
        answer(
            &mut s,
            &[
                ("alice: 800 coins, 1 monkey. What next?", "Vote\r"),
                ("Monkey of the month: vote for", "Baboon\r"),
            ],
        );
        s.expect("alice voted for baboon in monkey-of-the-month: in block ");
        s.expect("tally: baboon 1");
        answer(&mut s, &[("What next?", "Quit\r")]);
        s.expect("Bye.");
        s.exit_status()
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
        // Each way out: the prompts met and the keys typed, the last key Esc or Ctrl-C.
        let ways_out: [&[(&str, &str)]; 3] = [
            // Esc at the first menu.
            &[("Who is shopping?", "\x1b")],
            // Ctrl-C in a shopper's menu.
            &[
                ("Who is shopping?", "bob\r"),
                ("bob: 1000 coins, 0 monkeys. What next?", "\x03"),
            ],
            // Esc half-way through buying.
            &[
                ("Who is shopping?", "bob\r"),
                ("What next?", "Buy\r"),
                ("Which monkey?", "\x1b"),
            ],
        ];
        let mut out = Vec::new();
        for steps in ways_out {
            let mut s = menus(&tracker, &wallet);
            answer(&mut s, steps);
            s.expect("Bye.");
            out.push(s.exit_status());
        }
        out
    })
    .await
    .unwrap();
    for status in statuses {
        assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    }
}
