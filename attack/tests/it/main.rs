//! Every attack of `monkey-attack` against a real two-node network: the attacked node stays up,
//! answers as it should (an error, a closed connection, a ban only for provably invalid data),
//! keeps its best chain, keeps its memory bounded, and goes on serving honest shops and peers.

mod liar;
mod links;
mod side_blocks;
mod soak;
mod support;
mod unminable;

use attack::Attack;
use protocol::wire::ErrorCode;
use support::{Expect, check};

/// Codes the node answers a line it cannot parse with.
const BAD_LINE: Expect = Expect {
    closed: true,
    banned: false,
    served: false,
};
/// Provably invalid data: `E invalid_block`, closed, and the address refused for a while.
const BANNED: Expect = Expect {
    closed: true,
    banned: true,
    served: false,
};
/// Not an offence: the connection is served on and nobody is punished.
const SERVED: Expect = Expect {
    closed: false,
    banned: false,
    served: true,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes() {
    check(Attack::Garbage, 1, &[ErrorCode::NotUtf8], BAD_LINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_line() {
    check(Attack::EndlessLine, 1, &[ErrorCode::LineTooLong], BAD_LINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_opcode() {
    check(
        Attack::UnknownOpcode,
        1,
        &[ErrorCode::UnknownOpcode],
        BAD_LINE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json() {
    check(Attack::BadJson, 1, &[ErrorCode::BadPayload], BAD_LINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_of_the_wrong_shape() {
    check(Attack::WrongShape, 1, &[ErrorCode::BadPayload], BAD_LINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_whose_hash_lies() {
    check(Attack::BadHash, 1, &[ErrorCode::BadPayload], BAD_LINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_misses_its_difficulty() {
    check(
        Attack::MissedDifficulty,
        1,
        &[ErrorCode::InvalidBlock],
        BANNED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_below_the_floor() {
    check(Attack::BelowFloor, 1, &[ErrorCode::InvalidBlock], BANNED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_at_the_wrong_height_for_its_parent() {
    check(Attack::WrongPrev, 1, &[ErrorCode::InvalidBlock], BANNED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_from_the_future_is_refused_but_not_punished() {
    check(
        Attack::FutureTimestamp,
        1,
        &[ErrorCode::InvalidBlock],
        SERVED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_signature() {
    check(Attack::BadSignature, 1, &[ErrorCode::InvalidBlock], BANNED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_record() {
    check(
        Attack::ReplayedSignature,
        1,
        &[ErrorCode::InvalidBlock],
        BANNED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overspending_block() {
    check(Attack::Overspend, 1, &[ErrorCode::InvalidBlock], BANNED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_branch_with_less_work_leaves_the_best_chain_alone() {
    check(Attack::EasierChain, 1200, &[], SERVED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_orphans_is_capped_and_not_punished() {
    check(Attack::OrphanFlood, 400, &[], SERVED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_silent_connections_block_nobody() {
    // Run by `check` alongside an honest purchase: see support::check.
    check(Attack::IdleConnections, 300, &[], support::IDLE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_subscribers_holding_every_slot_keep_no_newcomer_out() {
    // `check` also times the newcomers: see support::check.
    check(Attack::HoldSlots, 300, &[], SERVED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_stream_of_duplicates() {
    check(Attack::DuplicateFlood, 6000, &[], SERVED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locator_far_too_long() {
    check(Attack::HugeLocator, 1, &[ErrorCode::BadPayload], BAD_LINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locator_that_names_nothing_is_answered_from_genesis() {
    check(Attack::NonsenseLocator, 1, &[], SERVED).await;
}

/// The attack tool's binary runs every attack by name and prints a table.
#[test]
fn the_binary_knows_every_attack() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_monkey-attack"))
        .arg("--help")
        .output()
        .expect("run monkey-attack");
    let help = String::from_utf8_lossy(&out.stdout);
    for attack in Attack::ALL {
        assert!(
            help.contains(attack.name()),
            "--help lacks {}",
            attack.name()
        );
        assert_eq!(Attack::from_name(attack.name()), Some(attack));
    }
}
