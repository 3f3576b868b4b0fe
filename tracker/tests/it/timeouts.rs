//! Clients that connect and say nothing, or stop talking: they hold up nobody, and are closed
//! with an `E timeout` after the first-message or the idle timeout.

use std::time::{Duration, Instant};

use protocol::wire::ErrorCode;
use tracker::Config;

use crate::support::{Conn, Tracker, assert_single_error, fast_config};

/// Reads until the tracker closes `conn`, which it must do with a single `E timeout`, and not
/// before `limit` (the `what`) has passed since `since`.
async fn closed_for_timeout(conn: &mut Conn, since: Instant, limit: Duration, what: &str) {
    assert_single_error(&conn.read_until_closed().await, ErrorCode::Timeout);
    assert!(since.elapsed() >= limit, "closed before the {what}");
}

#[tokio::test]
async fn a_silent_client_blocks_nobody_and_is_closed_after_the_first_message_timeout() {
    let config = Config {
        first_message_timeout: Duration::from_secs(1),
        ..fast_config()
    };
    let tracker = Tracker::start(config.clone()).await;
    let connected = Instant::now();
    let mut silent = tracker.connect().await;

    // Another client is answered while the silent one is still connected.
    tracker.connect().await.topology().await;
    assert!(
        silent.is_quiet_and_open().await,
        "the silent client was answered or closed before the query was served"
    );

    let limit = config.first_message_timeout;
    closed_for_timeout(&mut silent, connected, limit, "first-message timeout").await;
}

#[tokio::test]
async fn a_client_that_stops_talking_is_closed_after_the_idle_timeout() {
    let config = Config {
        idle_timeout: Duration::from_millis(700),
        ..fast_config()
    };
    let tracker = Tracker::start(config.clone()).await;
    let mut conn = tracker.connect().await;
    conn.topology().await;
    let answered = Instant::now();
    closed_for_timeout(&mut conn, answered, config.idle_timeout, "idle timeout").await;
}

#[tokio::test]
async fn a_client_that_dribbles_a_line_is_closed_too() {
    let config = Config {
        first_message_timeout: Duration::from_millis(500),
        ..fast_config()
    };
    let tracker = Tracker::start(config).await;
    let mut conn = tracker.connect().await;
    // Half a line, then nothing: the timeout is for a whole message, not for any byte.
    conn.send_raw(b"R {\"id\":").await;
    assert_single_error(&conn.read_until_closed().await, ErrorCode::Timeout);
}
