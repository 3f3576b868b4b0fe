//! The node's answers, tested on the sessions alone: no socket, no actor, no process, the
//! clock a parameter. Each test under "How a node answers" is named after a row of that table
//! in docs/PROTOCOL.md (`a_`/`b_`/`c_`/`d_`/`s_`/`h_`/`p_`/`i_`/`e_`/`z_` for the message the
//! row starts with); then the ordering of `K` and `B`, the timers and the limits.
//!
//! A test plays both the socket loop and the actor: it feeds the session a message, checks the
//! actions it returns (described as short strings: `"K pending"`, `"B"`, `"ask Import"`,
//! `"close"` ...) and feeds back the answers an actor would give.

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::block::solve;
use protocol::codec::WireError;
use protocol::handshake::{Accept, Dial, Hello, Identity, Nonce};
use protocol::params::MAX_BLOCKS_PER_MESSAGE;
use protocol::record::RecordFormatError;
use protocol::wire::{Blocks, GetBlocks, Update};
use protocol::{
    AccountId, Admitted, Block, BlockError, BlockHash, CheckedBlock, Keypair, LedgerError, Params,
    PoolError, Record,
};

use super::timers::SYNC_RETRY;
use super::*;
use crate::actor::{Announce, Event, Line, NewBlock, NewRecord, RecordOutcome};
use crate::guard::{GETBLOCKS_BURST, MESSAGE_BURST};
use crate::handshake::HANDSHAKE_TIMEOUT;

const IDLE: Duration = Duration::from_secs(60);
/// The conn id of the session under test.
const ME: ConnId = 1;
/// Another connection.
const OTHER: ConnId = 2;

fn me() -> Identity {
    Identity {
        key: Keypair::from_seed([7; 32]),
        addr: "127.0.0.1:7000".into(),
    }
}

fn them() -> Identity {
    Identity {
        key: Keypair::from_seed([8; 32]),
        addr: "127.0.0.1:7001".into(),
    }
}

/// A connection a shop opened.
fn client(now: Instant) -> Session {
    Session::accept(ME, me(), IDLE, now)
}

/// A record of a shopper; each `seq` makes another.
fn record(seq: u64) -> Record {
    let name = format!("shopper{seq}");
    Record::sign(
        &Keypair::from_seed([3; 32]),
        seq,
        protocol::Action::Join { name },
    )
}

/// A block on genesis holding `records`, at a tiny difficulty.
fn block_with(records: Vec<Record>) -> Arc<CheckedBlock> {
    let genesis = protocol::genesis();
    let timestamp = genesis.header.timestamp + 1000;
    let template = Block::template(&genesis.header, records, AccountId([9; 32]), 1, timestamp);
    let checked = solve(template).check_own(&Params::with_floor(1));
    Arc::new(checked.expect("a solved template checks"))
}

fn hash(n: u8) -> BlockHash {
    protocol::Hash256([n; 32])
}

/// The best tip moved to `block`.
fn tip_event(block: &Arc<CheckedBlock>) -> Event {
    Event::Tip {
        tip: Arc::clone(block),
        disconnected: Arc::new([]),
        connected: Arc::new([Arc::clone(block)]),
        announce: None,
    }
}

/// `blocks` entered the tree, sent by `from`.
fn blocks_event(blocks: &[Arc<CheckedBlock>], from: ConnId, relay: bool) -> Event {
    let blocks: Vec<NewBlock> = blocks
        .iter()
        .map(|b| NewBlock {
            block: Arc::clone(b),
            relay: Line::default(),
        })
        .collect();
    Event::Blocks {
        blocks: blocks.into(),
        from,
        relay,
        received_ms: 1,
    }
}

/// Each action in a few words.
fn describe(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|action| match action {
            Action::Send(message) => match message {
                Message::Record(_) => "A".into(),
                Message::Block(_) => "B".into(),
                Message::Blocks(c) => format!("C {} more={}", c.blocks.len(), c.more),
                Message::GetBlocks(_) => "D".into(),
                Message::Error(e) => format!("E {}", e.code),
                Message::Ack(k) => format!("K {}", k.status),
                Message::Identify(_) => "I".into(),
                Message::Hello(_) => "H".into(),
                Message::Proof(_) => "P".into(),
                Message::Subscribe => "S".into(),
                Message::Update(Update::Tip { .. }) => "U tip".into(),
                Message::Update(Update::Block { .. }) => "U block".into(),
                Message::Update(Update::Status { .. }) => "U status".into(),
                Message::Update(Update::Pool { .. }) => "U pool".into(),
                Message::KeepAlive => "Z".into(),
            },
            Action::RelayBlocks(blocks) => format!("relay {} blocks", blocks.len()),
            Action::RelayRecord(_) => "relay record".into(),
            Action::Pause(_) => "pause".into(),
            Action::Submit(_) => "submit".into(),
            Action::Ask(question) => match question {
                Question::Locator => "ask Locator".into(),
                Question::GetBlocks { .. } => "ask GetBlocks".into(),
                Question::Tip => "ask Tip".into(),
                Question::Pool => "ask Pool".into(),
                Question::Locate { .. } => "ask Locate".into(),
                Question::Import { .. } => "ask Import".into(),
                Question::Link { .. } => "ask Link".into(),
            },
            Action::Ban(_) => "ban".into(),
            Action::Close(_) => "close".into(),
        })
        .collect()
}

/// Why the actions close the connection, if they do.
fn closing(actions: &[Action]) -> Option<&Closing> {
    actions.iter().find_map(|a| match a {
        Action::Close(closing) => Some(closing),
        _ => None,
    })
}

/// The `D` the actions send: a node always asks for its blocks packed.
fn locator_sent(actions: &[Action]) -> Vec<BlockHash> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Send(Message::GetBlocks(GetBlocks {
                locator,
                packed: true,
            })) => Some(locator.clone()),
            _ => None,
        })
        .expect("a packed D")
}

/// The first message the actions send.
fn first_sent(actions: &[Action]) -> &Message {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Send(message) => Some(message),
            _ => None,
        })
        .expect("a message")
}

/// What the actor answers about imported blocks.
fn imported(orphan: Option<BlockHash>, invalid: Option<BlockError>) -> Answer {
    Answer::Imported(BlocksOutcome {
        accepted: 1,
        duplicates: 0,
        orphan,
        invalid,
    })
}

/// A record admitted to the pool, ready to mine.
fn ready() -> RecordOutcome {
    RecordOutcome::Pending(Admitted::Ready)
}

/// A record admitted to the pool, waiting for its account's earlier ones.
fn waiting() -> RecordOutcome {
    RecordOutcome::Pending(Admitted::Waiting)
}

/// What the session answers to `record` once the actor says `outcome`.
fn answers(s: &mut Session, record: &Record, outcome: RecordOutcome, now: Instant) -> Vec<String> {
    assert_eq!(
        describe(&s.on_message(Message::Record(record.clone()), now)),
        ["submit"]
    );
    describe(&s.on_outcome(record.id(), Some(outcome)))
}

/// The `H` that node `them()` sends when it dials us.
fn hello_from_them() -> (Dial, Hello) {
    Dial::start(Some(them()), me().key.account(), &me().addr, Nonce([1; 32]))
}

/// A link `them()` opened to us and proved, with `verdict` on keeping it: the session and
/// what it did with the verdict.
fn proven_inbound(verdict: LinkVerdict, now: Instant) -> (Session, Vec<Action>) {
    let mut s = client(now);
    let (dial, hello) = hello_from_them();
    let out = s.on_message(Message::Hello(hello), now);
    let Message::Proof(proof) = first_sent(&out) else {
        panic!("an H is answered with P: {:?}", describe(&out));
    };
    let theirs = dial
        .on_proof(proof)
        .expect("our proof checks")
        .expect("theirs");
    let out = s.on_message(Message::Proof(theirs), now);
    assert!(
        matches!(out.last(), Some(Action::Ask(Question::Link { peer, inbound: true })) if *peer == them().key.account()),
        "{:?}",
        describe(&out)
    );
    let out = s.on_answer(Answer::Link(verdict), now);
    (s, out)
}

/// A peer link, proven and kept.
fn peer(now: Instant) -> Session {
    let (s, out) = proven_inbound(LinkVerdict::Keep, now);
    assert!(out.is_empty(), "{:?}", describe(&out));
    assert_eq!(s.role(), Role::Peer);
    s
}

/// A `D` without a locator: the whole chain.
fn d_from_genesis() -> Message {
    Message::GetBlocks(GetBlocks::default())
}

/// The actor's answer to a `D` when there is nothing to send.
fn no_blocks() -> Answer {
    Answer::Blocks {
        blocks: Vec::new(),
        more: false,
    }
}

/// A connection that subscribed and got its first `U`.
fn subscriber(now: Instant) -> Session {
    let mut s = client(now);
    s.on_message(Message::Subscribe, now);
    s.on_answer(Answer::Tip(Arc::new(CheckedBlock::genesis())), now);
    s
}

// How a node answers: `A`.

#[test]
fn a_valid_new_record_gets_k_pending_then_later_the_b_of_its_block() {
    let now = Instant::now();
    let mut s = client(now);
    let r = record(0);
    let out = answers(&mut s, &r, ready(), now);
    assert_eq!(out, ["K pending"]);
    let block = block_with(vec![r]);
    assert_eq!(describe(&s.on_event(tip_event(&block), now)), ["B"]);
    // Once: the record is no longer awaited.
    assert!(s.on_event(tip_event(&block), now).is_empty());
}

#[test]
fn a_valid_record_that_cannot_be_mined_yet_gets_k_waiting() {
    let now = Instant::now();
    let mut s = client(now);
    let out = answers(&mut s, &record(3), waiting(), now);
    assert_eq!(out, ["K waiting"]);
}

#[test]
fn a_record_already_pending_gets_k_pending_then_the_b() {
    let now = Instant::now();
    let mut s = client(now);
    let r = record(0);
    assert_eq!(
        answers(&mut s, &r, RecordOutcome::AlreadyPending, now),
        ["K pending"]
    );
    let block = block_with(vec![r]);
    assert_eq!(describe(&s.on_event(tip_event(&block), now)), ["B"]);
}

#[test]
fn a_record_already_in_a_best_chain_block_gets_k_mined_then_that_block() {
    let now = Instant::now();
    let mut s = client(now);
    let r = record(0);
    let block = block_with(vec![r.clone()]);
    let out = answers(&mut s, &r, RecordOutcome::InBlock(Arc::clone(&block)), now);
    assert_eq!(out, ["K mined", "B"]);
    // Not awaited any more: the block moving the tip again sends nothing.
    assert!(s.on_event(tip_event(&block), now).is_empty());
}

#[test]
fn a_record_that_is_invalid_gets_e_invalid_record_and_the_connection_stays() {
    let now = Instant::now();
    let mut s = client(now);
    let refusal = PoolError::Ledger(LedgerError::BadSequence {
        expected: 0,
        got: 5,
    });
    let out = answers(&mut s, &record(5), RecordOutcome::Refused(refusal), now);
    assert_eq!(out, ["E invalid_record"]);
    // Still answered.
    let out = answers(&mut s, &record(0), RecordOutcome::AlreadyPending, now);
    assert_eq!(out, ["K pending"]);
}

#[test]
fn a_record_that_is_forged_or_malformed_gets_e_invalid_record_then_a_ban_and_close() {
    let now = Instant::now();
    let mut s = client(now);
    let refusal = PoolError::Format(RecordFormatError::BadSignature);
    let out = answers(&mut s, &record(0), RecordOutcome::Refused(refusal), now);
    assert_eq!(out, ["E invalid_record", "ban", "close"]);
    let out = s.on_outcome(
        record(0).id(),
        Some(RecordOutcome::Refused(PoolError::Format(
            RecordFormatError::BadSignature,
        ))),
    );
    assert!(matches!(closing(&out), Some(Closing::InvalidRecord(_))));
}

#[test]
fn a_record_the_node_could_not_write_to_its_disk_gets_e_not_stored() {
    let now = Instant::now();
    let mut s = client(now);
    let r = record(0);
    let out = answers(
        &mut s,
        &r,
        RecordOutcome::NotStored("disk full".into()),
        now,
    );
    assert_eq!(out, ["E not_stored"]);
    // Not acknowledged, so not awaited: the shop sends it elsewhere.
    assert!(s.on_event(tip_event(&block_with(vec![r])), now).is_empty());
}

#[test]
fn a_record_from_a_peer_gets_no_k_and_a_stale_one_no_e() {
    let now = Instant::now();
    let mut s = peer(now);
    let out = answers(&mut s, &record(0), ready(), now);
    assert!(out.is_empty(), "{out:?}");
    let stale = PoolError::Ledger(LedgerError::BadSequence {
        expected: 4,
        got: 1,
    });
    assert!(answers(&mut s, &record(1), RecordOutcome::Refused(stale), now).is_empty());
    let ahead = PoolError::Ledger(LedgerError::BadSequence {
        expected: 0,
        got: 2,
    });
    let out = answers(&mut s, &record(2), RecordOutcome::Refused(ahead), now);
    assert_eq!(out, ["E invalid_record"]);
}

// How a node answers: `B`.

#[test]
fn b_new_and_valid_is_imported_and_gets_no_answer() {
    let now = Instant::now();
    let mut s = client(now);
    let block = block_with(Vec::new()).block().clone();
    let out = s.on_message(Message::Block(block), now);
    assert!(
        matches!(out[..], [Action::Ask(Question::Import { relay: true, .. })]),
        "{:?}",
        describe(&out)
    );
    assert!(s.on_answer(imported(None, None), now).is_empty());
}

#[test]
fn b_new_and_valid_is_relayed_to_peers_but_never_back_to_its_sender() {
    let now = Instant::now();
    let block = block_with(Vec::new());
    let mut s = peer(now);
    let relayed = s.on_event(blocks_event(&[Arc::clone(&block)], OTHER, true), now);
    assert_eq!(describe(&relayed), ["relay 1 blocks"]);
    assert!(
        s.on_event(blocks_event(&[Arc::clone(&block)], ME, true), now)
            .is_empty()
    );
    // Sync batches are not relayed; clients get no relays at all.
    assert!(
        s.on_event(blocks_event(&[Arc::clone(&block)], OTHER, false), now)
            .is_empty()
    );
    let mut shop = client(now);
    assert!(
        shop.on_event(blocks_event(&[block], OTHER, true), now)
            .is_empty()
    );
    // Records too.
    let new = Arc::new(NewRecord {
        record: record(0),
        relay: Line::default(),
    });
    let event = |from| Event::Record {
        record: Arc::clone(&new),
        from,
    };
    assert_eq!(describe(&s.on_event(event(OTHER), now)), ["relay record"]);
    assert!(s.on_event(event(ME), now).is_empty());
}

#[test]
fn the_tip_a_sync_batch_led_to_is_announced_to_every_peer_but_the_batch_s_sender() {
    let now = Instant::now();
    let block = block_with(Vec::new());
    let announced = |from| Event::Tip {
        tip: Arc::clone(&block),
        disconnected: Arc::new([]),
        connected: Arc::new([Arc::clone(&block)]),
        announce: Some(Announce {
            from,
            tip: Arc::new([NewBlock {
                block: Arc::clone(&block),
                relay: Line::default(),
            }]),
        }),
    };
    let mut s = peer(now);
    assert_eq!(
        describe(&s.on_event(announced(OTHER), now)),
        ["relay 1 blocks"]
    );
    assert!(
        s.on_event(announced(ME), now).is_empty(),
        "not to its sender"
    );
    assert!(
        s.on_event(tip_event(&block), now).is_empty(),
        "a relayed block's tip is not sent twice"
    );
    let mut shop = client(now);
    assert!(
        !describe(&shop.on_event(announced(OTHER), now))
            .iter()
            .any(|a| a.starts_with("relay")),
        "clients get no relays"
    );
}

#[test]
fn b_a_peer_sent_us_itself_is_not_relayed_back_to_it_even_if_another_sent_it_first() {
    let now = Instant::now();
    let (block, other) = (block_with(Vec::new()), block_with(vec![record(0)]));
    let mut s = peer(now);
    // Its copy crossed the one another peer sent first (the event names that one).
    s.on_message(Message::Block(block.block().clone()), now);
    assert!(
        s.on_event(blocks_event(&[Arc::clone(&block)], OTHER, true), now)
            .is_empty()
    );
    // A batch it lacks part of goes out whole.
    let both = [Arc::clone(&block), Arc::clone(&other)];
    assert_eq!(
        describe(&s.on_event(blocks_event(&both, OTHER, true), now)),
        ["relay 2 blocks"]
    );
    // It remembers the last few only, so that a peer's many blocks cost it a bounded list.
    for n in 0..peer::MAX_SENT_US {
        let mut filler = block.block().clone();
        filler.header.nonce = u64::MAX - n as u64;
        s.on_message(Message::Block(filler), now);
    }
    assert_eq!(
        describe(&s.on_event(blocks_event(&[block], OTHER, true), now)),
        ["relay 1 blocks"]
    );
}

#[test]
fn b_whose_parent_is_unknown_gets_d_with_our_locator() {
    let now = Instant::now();
    let mut s = client(now);
    s.on_message(Message::Block(block_with(Vec::new()).block().clone()), now);
    let out = s.on_answer(imported(Some(hash(1)), None), now);
    assert_eq!(describe(&out), ["ask Locator"]);
    let out = s.on_answer(Answer::Locator(vec![hash(2), hash(3)]), now);
    assert_eq!(locator_sent(&out), [hash(2), hash(3)]);
}

#[test]
fn b_orphans_in_a_burst_ask_once_per_sync_retry() {
    let now = Instant::now();
    let mut s = client(now);
    s.on_message(Message::Block(block_with(Vec::new()).block().clone()), now);
    s.on_answer(imported(Some(hash(1)), None), now);
    s.on_answer(Answer::Locator(vec![hash(2)]), now);
    // The answer is on its way: a second orphan does not ask again.
    s.on_message(Message::Block(block_with(Vec::new()).block().clone()), now);
    assert!(s.on_answer(imported(Some(hash(1)), None), now).is_empty());
    let later = now + SYNC_RETRY;
    s.on_message(
        Message::Block(block_with(Vec::new()).block().clone()),
        later,
    );
    let out = s.on_answer(imported(Some(hash(1)), None), later);
    assert_eq!(describe(&out), ["ask Locator"]);
}

#[test]
fn b_or_c_with_a_provably_invalid_block_gets_e_invalid_block_then_a_ban_and_close() {
    let now = Instant::now();
    let invalid = || BlockError::InsufficientWork { bits: 20, zeros: 3 };
    let mut s = client(now);
    s.on_message(Message::Block(block_with(Vec::new()).block().clone()), now);
    let out = s.on_answer(imported(None, Some(invalid())), now);
    assert_eq!(describe(&out), ["E invalid_block", "ban", "close"]);
    assert!(matches!(closing(&out), Some(Closing::InvalidBlock(_))));
    let mut s = client(now);
    let c = Blocks {
        blocks: vec![block_with(Vec::new()).block().clone()],
        more: true,
        packed: false,
    };
    s.on_message(Message::Blocks(c), now);
    let out = s.on_answer(imported(None, Some(invalid())), now);
    assert_eq!(describe(&out), ["E invalid_block", "ban", "close"]);
}

#[test]
fn b_only_too_far_in_the_future_gets_e_invalid_block_and_the_connection_stays() {
    let now = Instant::now();
    let mut s = client(now);
    s.on_message(Message::Block(block_with(Vec::new()).block().clone()), now);
    let future = BlockError::FutureTimestamp {
        timestamp: 10_000_000,
        now: 1,
    };
    let out = s.on_answer(imported(None, Some(future)), now);
    assert_eq!(describe(&out), ["E invalid_block"]);
}

// How a node answers: `C`.

#[test]
fn c_with_more_gets_d_at_once_starting_at_the_last_block_received_then_our_own_locator() {
    let now = Instant::now();
    let mut s = client(now);
    // Our own locator, from a first `D`.
    assert_eq!(describe(&s.sync_due(now)), ["ask Locator"]);
    let out = s.on_answer(Answer::Locator(vec![hash(5), hash(0)]), now);
    assert_eq!(locator_sent(&out), [hash(5), hash(0)]);
    let (first, last) = (block_with(Vec::new()), block_with(vec![record(0)]));
    let c = Blocks {
        blocks: vec![first.block().clone(), last.block().clone()],
        more: true,
        packed: false,
    };
    // The next `D` goes out before the batch is imported, so the peer sends while we check.
    let out = s.on_message(Message::Blocks(c), now);
    assert_eq!(locator_sent(&out[..1]), [last.hash(), hash(5), hash(0)]);
    assert!(
        matches!(&out[1..], [Action::Ask(Question::Import { blocks, relay: false })] if blocks.len() == 2),
        "{:?}",
        describe(&out)
    );
    // Imported, even with an orphan among them: nothing more to ask, the `D` is out already.
    assert!(s.on_answer(imported(Some(hash(1)), None), now).is_empty());
    // The next batch's `D` names the batch ends before our own locator: a peer that reorged
    // away the last one finds the fork there, not at our tip from before the sync.
    let next = block_with(vec![record(1)]);
    let c = Blocks {
        blocks: vec![next.block().clone()],
        more: true,
        packed: false,
    };
    let out = s.on_message(Message::Blocks(c), now);
    assert_eq!(
        locator_sent(&out[..1]),
        [next.hash(), last.hash(), hash(5), hash(0)]
    );
    s.on_answer(imported(None, None), now);
    // The last batch: an orphan in it asks for our locator again.
    let c = Blocks {
        blocks: vec![block_with(Vec::new()).block().clone()],
        more: false,
        packed: false,
    };
    s.on_message(Message::Blocks(c), now);
    let out = s.on_answer(imported(Some(hash(1)), None), now);
    assert_eq!(describe(&out), ["ask Locator"]);
}

#[test]
fn an_empty_c_that_says_more_follow_gets_d_from_our_own_locator() {
    let now = Instant::now();
    let mut s = client(now);
    // Our `D` is out, and its answer is an empty page that says more follow.
    assert_eq!(describe(&s.sync_due(now)), ["ask Locator"]);
    s.on_answer(Answer::Locator(vec![hash(5)]), now);
    let c = Blocks {
        blocks: Vec::new(),
        more: true,
        packed: false,
    };
    assert_eq!(
        describe(&s.on_message(Message::Blocks(c.clone()), now)),
        ["ask Locator"]
    );
    let out = s.on_answer(Answer::Locator(vec![hash(5)]), now);
    assert_eq!(locator_sent(&out), [hash(5)]);
    // Another at once: no second locator until SYNC_RETRY has passed, even with a batch of
    // blocks in between (it clears the unanswered `D`, not the retry's clock).
    assert!(s.on_message(Message::Blocks(c.clone()), now).is_empty());
    let batch = Blocks {
        blocks: vec![block_with(Vec::new()).block().clone()],
        more: false,
        packed: false,
    };
    s.on_message(Message::Blocks(batch), now);
    s.on_answer(imported(None, None), now);
    assert!(s.on_message(Message::Blocks(c.clone()), now).is_empty());
    let later = now + SYNC_RETRY;
    assert_eq!(
        describe(&s.on_message(Message::Blocks(c), later)),
        ["ask Locator"]
    );
    s.on_answer(Answer::Locator(vec![hash(5)]), later);
    // An empty page that says nothing more follows (a peer level with us) ends the request:
    // an orphan right after it asks again at once.
    let c = Blocks {
        blocks: Vec::new(),
        more: false,
        packed: false,
    };
    assert!(s.on_message(Message::Blocks(c), later).is_empty());
    s.on_message(
        Message::Block(block_with(Vec::new()).block().clone()),
        later,
    );
    let out = s.on_answer(imported(Some(hash(1)), None), later);
    assert_eq!(describe(&out), ["ask Locator"]);
}

#[test]
fn c_without_more_gets_no_answer() {
    let now = Instant::now();
    let mut s = client(now);
    let c = Blocks {
        blocks: vec![block_with(Vec::new()).block().clone()],
        more: false,
        packed: false,
    };
    s.on_message(Message::Blocks(c), now);
    assert!(s.on_answer(imported(None, None), now).is_empty());
}

// How a node answers: `D`.

#[test]
fn d_gets_c_with_the_best_chain_blocks_after_the_fork_point_packed_if_it_asked() {
    for packed in [false, true] {
        let now = Instant::now();
        let mut s = client(now);
        let d = GetBlocks {
            locator: vec![hash(1)],
            packed,
        };
        let out = s.on_message(Message::GetBlocks(d), now);
        assert!(
            matches!(&out[..], [Action::Ask(Question::GetBlocks { locator, max })] if *locator == [hash(1)] && *max == MAX_BLOCKS_PER_MESSAGE),
            "{:?}",
            describe(&out)
        );
        let blocks = vec![block_with(Vec::new())];
        let out = s.on_answer(Answer::Blocks { blocks, more: true }, now);
        // A client's `D` is only answered.
        assert_eq!(describe(&out), ["C 1 more=true"]);
        assert!(matches!(first_sent(&out), Message::Blocks(c) if c.packed == packed));
    }
}

#[test]
fn d_on_a_new_peer_link_gets_c_then_our_own_d_the_first_time_only() {
    let now = Instant::now();
    let mut s = peer(now);
    s.on_message(d_from_genesis(), now);
    let out = s.on_answer(no_blocks(), now);
    assert_eq!(describe(&out), ["C 0 more=false", "ask Locator"]);
    s.on_answer(Answer::Locator(vec![hash(1)]), now);
    s.on_message(d_from_genesis(), now);
    let out = s.on_answer(no_blocks(), now);
    assert_eq!(describe(&out), ["C 0 more=false"]);
}

#[test]
fn d_gets_a_c_of_at_most_c_line_budget_bytes_of_blocks_as_json_or_packed() {
    let block = block_with(vec![record(0)]);
    let json = serde_json::to_vec(block.block())
        .map(|v| v.len() + 1)
        .unwrap();
    let packed = Blocks::packed_len(&block);
    for (size, packed) in [(json, false), (packed, true)] {
        let fit = C_LINE_BUDGET / size;
        let blocks = vec![Arc::clone(&block); fit + 1];
        let message = sync::blocks_message(&blocks, false, packed);
        let line = protocol::codec::encode_line(&message).unwrap();
        assert!(line.len() <= C_LINE_BUDGET + 64, "{} bytes", line.len());
        let Message::Blocks(c) = message else {
            panic!("a C");
        };
        assert_eq!((c.blocks.len(), c.packed), (fit, packed));
        assert!(c.more, "the blocks left out are asked for again");
        let Message::Blocks(c) = sync::blocks_message(&blocks[..fit], false, packed) else {
            panic!("a C");
        };
        assert!(!c.more);
    }
}

// How a node answers: `S`.

#[test]
fn s_gets_u_tip_then_u_block_for_every_new_block_and_u_tip_for_every_move() {
    let now = Instant::now();
    let mut s = client(now);
    let out = s.on_message(Message::Subscribe, now);
    assert_eq!(describe(&out), ["ask Tip"]);
    assert_eq!(s.role(), Role::Subscriber);
    let tip = Arc::new(CheckedBlock::genesis());
    let out = s.on_answer(Answer::Tip(Arc::clone(&tip)), now);
    assert!(
        matches!(first_sent(&out), Message::Update(Update::Tip { hash, height: 0, .. }) if *hash == tip.hash())
    );
    let (a, b) = (block_with(Vec::new()), block_with(vec![record(0)]));
    // Any branch, any sender, relayed or synced.
    let out = s.on_event(blocks_event(&[a, Arc::clone(&b)], OTHER, false), now);
    assert_eq!(describe(&out), ["U block", "U block"]);
    assert_eq!(describe(&s.on_event(tip_event(&b), now)), ["U tip"]);
    let new = Arc::new(NewRecord {
        record: record(0),
        relay: Line::default(),
    });
    let out = s.on_event(
        Event::Record {
            record: new,
            from: OTHER,
        },
        now,
    );
    assert!(out.is_empty());
}

#[test]
fn s_then_falling_behind_on_events_gets_e_lagged_and_close() {
    let now = Instant::now();
    let mut s = subscriber(now);
    let out = s.on_lagged(4097, now);
    assert_eq!(describe(&out), ["E lagged", "close"]);
}

#[test]
fn s_then_d_gets_c_and_does_not_make_a_subscriber_a_peer() {
    let now = Instant::now();
    let mut s = subscriber(now);
    s.on_message(d_from_genesis(), now);
    let out = s.on_answer(no_blocks(), now);
    assert_eq!(describe(&out), ["C 0 more=false"]);
    assert_eq!(s.role(), Role::Subscriber);
}

// How a node answers: `H`.

#[test]
fn h_without_a_claim_gets_our_p_and_that_is_all() {
    let now = Instant::now();
    let mut s = client(now);
    // The tracker checking our address: no `from`.
    let (dial, hello) = Dial::start(None, me().key.account(), &me().addr, Nonce([4; 32]));
    let out = s.on_message(Message::Hello(hello), now);
    assert_eq!(describe(&out), ["P"]);
    let Message::Proof(proof) = first_sent(&out) else {
        unreachable!()
    };
    assert!(dial.on_proof(proof).expect("our proof checks").is_none());
    // No handshake under way: only the client's own idle limit.
    assert_eq!(s.next_deadline(), now + IDLE);
}

#[test]
fn h_with_a_claim_gets_our_p_and_waits_for_its_p_at_most_the_handshake_timeout() {
    let now = Instant::now();
    let mut s = client(now);
    let (_, hello) = hello_from_them();
    assert_eq!(describe(&s.on_message(Message::Hello(hello), now)), ["P"]);
    assert_eq!(s.next_deadline(), now + HANDSHAKE_TIMEOUT);
    // However chatty the connection, the handshake's deadline stands.
    let almost = now + HANDSHAKE_TIMEOUT - Duration::from_millis(1);
    s.on_message(Message::KeepAlive, almost);
    assert!(s.on_timer(almost).is_empty());
    let out = s.on_timer(now + HANDSHAKE_TIMEOUT);
    assert_eq!(describe(&out), ["E timeout", "close"]);
}

// How a node answers: `P`.

#[test]
fn p_a_valid_proof_of_the_claimed_id_makes_the_link_a_peer() {
    let now = Instant::now();
    let s = peer(now);
    assert_eq!(s.peer_id(), Some(them().key.account()));
    assert_eq!(s.inbound_peer(), Some(them().key.account()));
    // A peer's limits now: no handshake deadline, the peer's silence limit and its sync.
    assert_eq!(s.next_deadline(), now + SYNC_INTERVAL);
}

#[test]
fn p_from_a_node_this_node_refuses_closes_the_link() {
    let now = Instant::now();
    let (s, out) = proven_inbound(LinkVerdict::Refused, now);
    assert_eq!(describe(&out), ["close"]);
    assert!(matches!(closing(&out), Some(Closing::RefusedPeer)));
    assert_eq!(s.inbound_peer(), None);
}

#[test]
fn p_on_a_second_link_between_two_nodes_closes_it() {
    let now = Instant::now();
    let (s, out) = proven_inbound(LinkVerdict::SecondLink, now);
    assert!(matches!(closing(&out), Some(Closing::SecondLink)));
    assert_eq!(
        s.inbound_peer(),
        None,
        "the link that stays holds the place"
    );
}

#[test]
fn p_on_a_link_we_dialed_gets_our_p_then_our_d() {
    let now = Instant::now();
    let peer_id = them().key.account();
    let (mut s, out) = Session::dial(ME, me(), IDLE, peer_id, &them().addr, now);
    let Message::Hello(hello) = first_sent(&out) else {
        panic!("a dial starts with H");
    };
    assert_eq!(s.next_deadline(), now + HANDSHAKE_TIMEOUT);
    let (proof, accept) = Accept::on_hello(&them(), hello, Nonce([2; 32])).expect("a good H");
    let out = s.on_message(Message::Proof(proof), now);
    assert!(
        matches!(out[..], [Action::Ask(Question::Link { peer, inbound: false })] if peer == peer_id),
        "{:?}",
        describe(&out)
    );
    let out = s.on_answer(Answer::Link(LinkVerdict::Keep), now);
    assert_eq!(describe(&out), ["P", "ask Locator"]);
    let Message::Proof(ours) = first_sent(&out) else {
        unreachable!()
    };
    let accept = accept.expect("the dialer's H names it");
    assert_eq!(
        accept.on_proof(ours).expect("our proof checks"),
        me().key.account()
    );
    assert_eq!(s.role(), Role::Peer);
    assert_eq!(
        s.inbound_peer(),
        None,
        "only links peers open are counted in Links"
    );
}

// How a node answers: `H` or `P` out of turn, a bad proof, an `H` for another node.

/// The actions close with `E handshake` and never touch a link.
fn assert_handshake_refused(out: &[Action]) {
    assert_eq!(describe(out), ["E handshake", "close"]);
    assert!(matches!(closing(out), Some(Closing::Handshake(_))));
}

#[test]
fn h_twice_gets_e_handshake_and_close() {
    let now = Instant::now();
    let mut s = client(now);
    let (_, hello) = hello_from_them();
    s.on_message(Message::Hello(hello.clone()), now);
    assert_handshake_refused(&s.on_message(Message::Hello(hello), now));
}

#[test]
fn h_on_a_link_we_dialed_gets_e_handshake_and_close() {
    let now = Instant::now();
    let (mut s, _) = Session::dial(ME, me(), IDLE, them().key.account(), &them().addr, now);
    let (_, hello) = hello_from_them();
    assert_handshake_refused(&s.on_message(Message::Hello(hello), now));
}

#[test]
fn p_out_of_turn_gets_e_handshake_and_close() {
    let now = Instant::now();
    let mut s = client(now);
    // A proof `them()` made for a node that dialed it: nobody asked for it here.
    let (_, hello) = Dial::start(
        Some(me()),
        them().key.account(),
        &them().addr,
        Nonce([1; 32]),
    );
    let (proof, _) = Accept::on_hello(&them(), &hello, Nonce([2; 32])).expect("a good H");
    assert_handshake_refused(&s.on_message(Message::Proof(proof), now));
}

#[test]
fn p_that_does_not_prove_the_claimed_id_gets_e_handshake_and_close() {
    let now = Instant::now();
    let mut s = client(now);
    let (dial, hello) = hello_from_them();
    let out = s.on_message(Message::Hello(hello), now);
    let Message::Proof(proof) = first_sent(&out) else {
        unreachable!()
    };
    let mut theirs = dial.on_proof(proof).expect("ours checks").expect("theirs");
    theirs.sig.0[0] ^= 1;
    assert_handshake_refused(&s.on_message(Message::Proof(theirs), now));
    assert_eq!(s.peer_id(), None);
}

#[test]
fn h_for_another_node_gets_e_handshake_and_close() {
    let now = Instant::now();
    let mut s = client(now);
    let (_, hello) = Dial::start(Some(them()), AccountId([5; 32]), &me().addr, Nonce([1; 32]));
    assert_handshake_refused(&s.on_message(Message::Hello(hello), now));
}

// How a node answers: `I`, `E`, `Z`, a line that does not parse.

#[test]
fn i_an_unproven_claim_gets_e_unproven_and_close() {
    let now = Instant::now();
    let mut s = client(now);
    let claim = protocol::wire::Identify {
        id: them().key.account(),
        addr: them().addr,
    };
    let out = s.on_message(Message::Identify(claim), now);
    assert_eq!(describe(&out), ["E unproven", "close"]);
    assert_eq!(s.peer_id(), None);
}

#[test]
fn e_gets_no_answer() {
    let now = Instant::now();
    let mut s = client(now);
    let e = protocol::wire::ErrorMessage::new(ErrorCode::Timeout, "bye");
    assert!(s.on_message(Message::Error(e), now).is_empty());
}

#[test]
fn z_gets_no_answer_and_shows_the_connection_is_alive() {
    let now = Instant::now();
    let mut s = client(now);
    let later = now + Duration::from_secs(5);
    assert!(s.on_message(Message::KeepAlive, later).is_empty());
    // Heard: the first-message limit is over, the idle timeout counts from the `Z`.
    assert_eq!(s.next_deadline(), later + IDLE);
}

#[test]
fn a_line_that_does_not_parse_gets_e_with_the_codec_s_code_then_close() {
    let now = Instant::now();
    let mut s = client(now);
    let out = s.on_bad_line(&WireError::UnknownOpcode("Q".into()));
    assert_eq!(describe(&out), ["E unknown_opcode", "close"]);
    let out = s.on_bad_line(&WireError::LineTooLong { limit: 8 });
    assert_eq!(describe(&out), ["E line_too_long", "close"]);
    // A read that failed has no one to answer.
    let lost = WireError::Io(std::io::Error::other("reset"));
    assert_eq!(describe(&s.on_bad_line(&lost)), ["close"]);
}

#[test]
fn u_is_what_a_node_sends_not_takes() {
    let now = Instant::now();
    let mut s = client(now);
    let u = subscriber::tip(&CheckedBlock::genesis());
    assert_eq!(
        describe(&s.on_message(Message::Update(u), now)),
        ["E unexpected"]
    );
}

// A shop gets its `K` before its `B`.

#[test]
fn a_shop_gets_its_k_before_its_b_even_when_the_block_comes_first() {
    let now = Instant::now();
    let mut s = client(now);
    let r = record(0);
    s.on_message(Message::Record(r.clone()), now);
    let block = block_with(vec![r.clone()]);
    // The miner did not wait for the disk: the block is held.
    assert!(s.on_event(tip_event(&block), now).is_empty());
    let out = s.on_outcome(r.id(), Some(ready()));
    assert_eq!(describe(&out), ["K pending", "B"]);
    assert!(s.on_event(tip_event(&block), now).is_empty(), "the B once");
}

#[test]
fn a_shop_that_lags_on_events_gets_the_b_of_its_records_after_their_k() {
    let now = Instant::now();
    let mut s = client(now);
    let (acked, unacked) = (record(0), record(1));
    answers(&mut s, &acked, ready(), now);
    s.on_message(Message::Record(unacked.clone()), now);
    let out = s.on_lagged(10, now);
    assert!(
        matches!(&out[..], [Action::Ask(Question::Locate { ids })] if ids.len() == 2),
        "{:?}",
        describe(&out)
    );
    let block = block_with(vec![acked.clone(), unacked.clone()]);
    let found = vec![(acked.id(), Arc::clone(&block)), (unacked.id(), block)];
    assert_eq!(describe(&s.on_answer(Answer::Located(found), now)), ["B"]);
    let out = s.on_outcome(unacked.id(), Some(ready()));
    assert_eq!(describe(&out), ["K pending", "B"]);
    // A client that waits on nothing has nothing to catch up on.
    assert!(client(now).on_lagged(10, now).is_empty());
}

// Timers.

#[test]
fn a_client_silent_after_connecting_is_closed_after_the_first_message_timeout() {
    let now = Instant::now();
    let mut s = client(now);
    assert_eq!(s.next_deadline(), now + FIRST_MESSAGE_TIMEOUT);
    assert!(
        s.on_timer(now + FIRST_MESSAGE_TIMEOUT - Duration::from_millis(1))
            .is_empty()
    );
    let out = s.on_timer(now + FIRST_MESSAGE_TIMEOUT);
    assert_eq!(describe(&out), ["E timeout", "close"]);
    assert!(matches!(closing(&out), Some(Closing::Idle)));
    // A shorter idle timeout (tests) wins.
    let short = Duration::from_secs(2);
    assert_eq!(
        Session::accept(ME, me(), short, now).next_deadline(),
        now + short
    );
}

#[test]
fn a_client_waiting_on_a_record_is_sent_z_halfway_and_closed_at_the_idle_timeout() {
    let now = Instant::now();
    let mut s = client(now);
    answers(&mut s, &record(0), ready(), now);
    assert_eq!(s.next_deadline(), now + IDLE / 2);
    assert_eq!(describe(&s.on_timer(now + IDLE / 2)), ["Z"]);
    // Pinged once, then only the idle timeout.
    assert_eq!(s.next_deadline(), now + IDLE);
    let out = s.on_timer(now + IDLE);
    assert_eq!(describe(&out), ["E timeout", "close"]);
}

#[test]
fn a_line_back_after_a_z_keeps_a_subscriber_open() {
    let now = Instant::now();
    let mut s = subscriber(now);
    assert_eq!(describe(&s.on_timer(now + IDLE / 2)), ["Z"]);
    let back = now + IDLE / 2 + Duration::from_secs(1);
    s.on_message(Message::KeepAlive, back);
    assert!(s.on_timer(now + IDLE).is_empty());
    assert_eq!(s.next_deadline(), back + IDLE / 2);
}

#[test]
fn a_quiet_peer_link_gets_our_d_every_sync_interval_and_a_silent_peer_is_closed() {
    let now = Instant::now();
    let mut s = peer(now);
    let out = s.on_timer(now + SYNC_INTERVAL);
    assert_eq!(describe(&out), ["ask Locator"]);
    s.on_answer(Answer::Locator(vec![hash(1)]), now + SYNC_INTERVAL);
    // Events count as activity, not as hearing from the peer.
    let block = block_with(Vec::new());
    s.on_event(blocks_event(&[block], OTHER, true), now + SYNC_INTERVAL * 2);
    assert_eq!(s.next_deadline(), now + SYNC_INTERVAL * 3);
    let mut at = now + SYNC_INTERVAL * 3;
    while at < now + PEER_IDLE_TIMEOUT {
        let out = s.on_timer(at);
        assert_eq!(describe(&out), ["ask Locator"], "at {:?}", at - now);
        s.on_answer(Answer::Locator(vec![hash(1)]), at);
        at = s.next_deadline();
    }
    assert_eq!(at, now + PEER_IDLE_TIMEOUT);
    assert_eq!(describe(&s.on_timer(at)), ["E timeout", "close"]);
}

#[test]
fn a_connection_whose_slot_is_taken_gets_e_evicted_and_close() {
    let mut s = client(Instant::now());
    let out = s.on_evicted();
    assert_eq!(describe(&out), ["E evicted", "close"]);
}

// Limits.

#[test]
fn no_line_is_read_while_max_records_in_flight_wait_for_their_outcome() {
    let now = Instant::now();
    let mut s = client(now);
    let r = record(0);
    for _ in 0..MAX_RECORDS_IN_FLIGHT {
        assert!(s.reading());
        s.on_message(Message::Record(r.clone()), now);
    }
    assert!(!s.reading());
    s.on_outcome(r.id(), Some(RecordOutcome::AlreadyPending));
    assert!(s.reading());
}

#[test]
fn a_client_waits_on_at_most_max_awaiting_records() {
    let now = Instant::now();
    let mut s = client(now);
    let records: Vec<Record> = (0..=MAX_AWAITING as u64).map(record).collect();
    for (n, r) in records.iter().enumerate() {
        // A millisecond apart, within the pace a connection may send at.
        let at = now + Duration::from_millis(n as u64);
        answers(&mut s, r, ready(), at);
    }
    let (first, past) = (&records[0], &records[MAX_AWAITING]);
    assert!(
        s.on_event(tip_event(&block_with(vec![past.clone()])), now)
            .is_empty()
    );
    let out = s.on_event(tip_event(&block_with(vec![first.clone()])), now);
    assert_eq!(describe(&out), ["B"]);
}

#[test]
fn a_flood_of_lines_is_paced_to_the_buckets() {
    let now = Instant::now();
    let mut s = client(now);
    for _ in 0..MESSAGE_BURST as usize {
        assert!(s.on_message(Message::KeepAlive, now).is_empty());
    }
    let out = s.on_message(Message::KeepAlive, now);
    assert_eq!(describe(&out), ["pause"]);
    // Chain requests have a smaller bucket of their own.
    let mut s = client(now);
    for _ in 0..GETBLOCKS_BURST as usize {
        assert_eq!(
            describe(&s.on_message(d_from_genesis(), now)),
            ["ask GetBlocks"]
        );
        s.on_answer(
            Answer::Blocks {
                blocks: Vec::new(),
                more: false,
            },
            now,
        );
    }
    assert_eq!(
        describe(&s.on_message(d_from_genesis(), now)),
        ["pause", "ask GetBlocks"]
    );
}
