//! When a quiet connection is pinged, asked for its chain or closed. Every connection holds a
//! slot, so none may stay silent for ever: a client has [`FIRST_MESSAGE_TIMEOUT`] to say
//! something, then the idle timeout; a subscriber or a client waiting on a record may have
//! nothing to say for longer, so it is sent a keep-alive `Z` halfway and any line back counts;
//! a peer link gets our `D` after [`SYNC_INTERVAL`] of quiet either way and is closed after
//! [`PEER_IDLE_TIMEOUT`] of silence; a handshake must end within its own deadline however
//! chatty the connection. The clock is a parameter: the loop sleeps until
//! [`Session::next_deadline`] and then calls [`Session::on_timer`].

use std::time::{Duration, Instant};

use protocol::wire::{ErrorCode, Message};

use super::{Action, Closing, Role, Session, error};

/// A client must say something this soon after connecting (or within the idle timeout, if
/// that is shorter).
pub const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client or subscriber that says nothing this long is closed (the node's default; tests
/// lower it with `--idle-timeout-ms`). A subscriber or a client waiting on a record may have
/// nothing to say for longer, so halfway through the node sends it a keep-alive `Z`, and any
/// line back keeps it open: a connection that holds a slot must show it is alive.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A peer link with no message either way for this long gets a `D`: it keeps the link alive
/// and catches up on anything a lost relay missed.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// A peer that has said nothing for this long is closed: an honest one asks every
/// [`SYNC_INTERVAL`].
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an unanswered `D` holds back another: orphans arriving in a burst ask once.
pub const SYNC_RETRY: Duration = Duration::from_secs(5);

/// What the timers go by.
#[derive(Debug)]
pub struct Timers {
    /// How long a client or subscriber may stay silent.
    idle_timeout: Duration,
    /// When the connection last sent a line (or opened).
    last_heard: Instant,
    /// When a line last went either way (or an event came): a peer link quiet since gets a `D`.
    last_activity: Instant,
    /// Whether it ever sent a line.
    heard_anything: bool,
    /// Whether a keep-alive `Z` went out since we last heard from it.
    pinged: bool,
}

impl Timers {
    /// The timers of a connection opened at `now`.
    pub fn new(idle_timeout: Duration, now: Instant) -> Timers {
        Timers {
            idle_timeout,
            last_heard: now,
            last_activity: now,
            heard_anything: false,
            pinged: false,
        }
    }

    /// A line came from the connection.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.last_activity = now;
        self.heard_anything = true;
        self.pinged = false;
    }

    /// Something was forwarded to the connection, or it had an event to look at.
    pub fn active(&mut self, now: Instant) {
        self.last_activity = now;
    }
}

impl Session {
    /// How long the connection may stay silent now, and whether it is pinged halfway.
    fn silence(&self) -> (Duration, bool) {
        let idle = self.timers.idle_timeout;
        match (self.role, self.awaiting(), self.timers.heard_anything) {
            (Role::Peer, _, _) => (PEER_IDLE_TIMEOUT, false),
            // Subscribers and clients waiting on a record may be quiet for long: they are asked.
            (Role::Subscriber, _, _) | (Role::Client, true, _) => (idle, true),
            (Role::Client, false, false) => (FIRST_MESSAGE_TIMEOUT.min(idle), false),
            (Role::Client, false, true) => (idle, false),
        }
    }

    /// When the connection is closed unless it says something: its silence limit, or the
    /// handshake's deadline if one is under way and sooner.
    fn idle_deadline(&self) -> Instant {
        let (limit, _) = self.silence();
        let at = self.timers.last_heard + limit;
        self.handshake_deadline().map_or(at, |shake| shake.min(at))
    }

    /// When a keep-alive `Z` is due, if one is.
    fn ping_at(&self) -> Option<Instant> {
        let (limit, keep_alive) = self.silence();
        (keep_alive && !self.timers.pinged).then(|| self.timers.last_heard + limit / 2)
    }

    /// When a peer link's periodic `D` is due.
    fn sync_at(&self) -> Option<Instant> {
        (self.role == Role::Peer).then(|| self.timers.last_activity + SYNC_INTERVAL)
    }

    /// The next time [`Session::on_timer`] has something to do.
    pub fn next_deadline(&self) -> Instant {
        [self.ping_at(), self.sync_at()]
            .into_iter()
            .flatten()
            .fold(self.idle_deadline(), Instant::min)
    }

    /// Whatever is due at `now`: close an idle connection, ping a quiet one, ask a quiet peer
    /// for its chain.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        if now >= self.idle_deadline() {
            return vec![
                error(ErrorCode::Timeout, "idle for too long"),
                Action::Close(Closing::Idle),
            ];
        }
        let mut actions = Vec::new();
        if self.ping_at().is_some_and(|at| now >= at) {
            self.timers.pinged = true;
            actions.push(Action::Send(Message::KeepAlive));
        }
        if self.sync_at().is_some_and(|at| now >= at) {
            self.timers.active(now);
            actions.extend(self.sync_due(now));
        }
        actions
    }
}
