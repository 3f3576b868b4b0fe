//! Connection slots: one address holding every slot with idle connections does not keep a
//! newcomer out, from another address or from its own: the longest-idle connection of the
//! biggest holder is closed (`E evicted`) to make room, and the newcomer is answered at once.
//! (A connection that says nothing is closed after the idle timeout: see `timeouts.rs`.)

use std::time::{Duration, Instant};

use protocol::tracker::TrackerMessage;
use protocol::wire::ErrorCode;
use tracker::Config;

use crate::support::{Conn, Tracker, fast_config};

/// What the issue asks: a newcomer is served within a second. Asserted with room for a loaded
/// machine; the measured time is printed.
const SERVED_WITHIN: Duration = Duration::from_secs(2);
/// The tracker's slots in this test, all of which one address may hold.
const SLOTS: usize = 32;

/// Connects from `from`, asks for the topology, and returns how long the answer took, and the
/// connection (kept open, it goes on holding its slot).
async fn time_a_newcomer(tracker: &Tracker, from: &str) -> (Duration, Conn) {
    let started = Instant::now();
    let mut conn = Conn::connect_from(&tracker.addr, from).await;
    conn.topology().await;
    (started.elapsed(), conn)
}

#[tokio::test]
async fn one_address_holding_every_slot_keeps_no_newcomer_out() {
    let tracker = Tracker::start(Config {
        max_connections: SLOTS,
        max_connections_per_address: SLOTS,
        ..fast_config()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..SLOTS {
        let mut conn = Conn::connect_from(&tracker.addr, "127.0.0.2").await;
        conn.topology().await;
        held.push(conn);
    }

    let (other, _kept) = time_a_newcomer(&tracker, "127.0.0.3").await;
    let (same, _kept_too) = time_a_newcomer(&tracker, "127.0.0.2").await;
    println!(
        "{SLOTS} idle connections from one address; a newcomer from another address was \
         answered in {other:?}, one from the same address in {same:?}"
    );
    assert!(other < SERVED_WITHIN, "another address waited {other:?}");
    assert!(same < SERVED_WITHIN, "the same address waited {same:?}");

    // The two longest idle made room, and were told why; the others are still served.
    for conn in &mut held[..2] {
        match conn.read_until_closed().await.as_slice() {
            [TrackerMessage::Error(e)] => assert_eq!(e.code, ErrorCode::Evicted),
            other => panic!("expected E evicted, got {other:?}"),
        }
    }
    for conn in &mut held[2..] {
        conn.topology().await;
    }
}

#[tokio::test]
async fn past_its_share_an_address_loses_only_its_own_connections() {
    let tracker = Tracker::start(Config {
        max_connections: SLOTS,
        max_connections_per_address: 4,
        ..fast_config()
    })
    .await;
    let mut honest = Conn::connect_from(&tracker.addr, "127.0.0.1").await;
    honest.topology().await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = Conn::connect_from(&tracker.addr, "127.0.0.2").await;
        conn.topology().await;
        held.push(conn);
    }
    // A fifth from the same address: its own oldest goes, nobody else's.
    time_a_newcomer(&tracker, "127.0.0.2").await;
    match held[0].read_until_closed().await.as_slice() {
        [TrackerMessage::Error(e)] => assert_eq!(e.code, ErrorCode::Evicted),
        other => panic!("expected E evicted, got {other:?}"),
    }
    honest.topology().await;
    for conn in &mut held[1..] {
        conn.topology().await;
    }
}
