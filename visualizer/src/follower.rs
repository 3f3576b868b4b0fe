//! Following one node: subscribe with `S`, page in with `D` whatever it holds that the
//! visualizer lacks, then pass on every `U` update the moment it arrives. When the connection
//! fails or the node says `E lagged`, it reconnects with backoff; the tracker watcher cancels it
//! when the tracker marks the node removed.
//!
//! Every block is checked before the hub sees it ([`crate::verify`]). A node that sends an
//! invalid block, or one the hub's chain refuses, is misbehaving: the follower hangs up, the
//! page says what the node sent, and the node is not followed again for [`MISBEHAVING_BACKOFF`]
//! (doubling with each offence up to [`MAX_MISBEHAVING_BACKOFF`]), so a liar costs the
//! visualizer one message's parse and one hash per block now and then.
//!
//! Catching up uses the hub's locator, so a node that comes back after a while sends only the
//! blocks the visualizer has not seen, and a node on another branch sends its branch from the
//! fork point. A `U tip` naming a block the hub does not hold (an update missed while paging, or
//! a block whose parent never came) starts another round of paging.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::wire::{GetBlocks, Message, Update};
use protocol::{AccountId, Block};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::hub::{Command, Hub};
use crate::verify::Offence;
use crate::view::Link;

/// How often the follower may page again from the hub after its first paging: for a tip it
/// lacks, or an empty page that says more follow. A node that alternates empty pages and
/// unknown tips would otherwise keep the hub computing locators.
const REPAGE_EVERY: Duration = Duration::from_secs(1);

/// Whether paging again is due ([`REPAGE_EVERY`] since `last`); notes it in `last` if so.
fn repage_due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    let due = last.is_none_or(|at| now.duration_since(at) >= REPAGE_EVERY);
    if due {
        *last = Some(now);
    }
    due
}

/// How long connecting to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between reconnections.
const MAX_BACKOFF: Duration = Duration::from_secs(3);
/// How long a node that sent an invalid block goes unfollowed, the first time: long enough that
/// its junk costs next to nothing, short enough that a node fixed by its owner comes back.
pub const MISBEHAVING_BACKOFF: Duration = Duration::from_secs(60);
/// The longest a misbehaving node goes unfollowed: each offence doubles the pause up to this.
pub const MAX_MISBEHAVING_BACKOFF: Duration = Duration::from_secs(30 * 60);

/// Why a session with a node ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Connecting failed or took too long.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The node closed the connection.
    #[error("the node closed the connection")]
    Closed,
    /// The node sent something that does not parse, or the socket failed.
    #[error("{0}")]
    Wire(#[from] protocol::codec::WireError),
    /// The node sent an error.
    #[error("the node sent {code}: {message}")]
    Refused {
        /// Its code, e.g. `lagged`.
        code: protocol::wire::ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The hub has stopped (the visualizer is shutting down).
    #[error("the hub has stopped")]
    HubGone,
    /// The node sent an invalid block.
    #[error("the node sent {}: {}", .0.sent, .0.why)]
    Misbehaved(Offence),
}

/// How a session ended without an error.
enum Ended {
    /// Cancelled: stop following.
    Cancelled,
}

/// One node being followed.
struct Follower {
    node: AccountId,
    addr: String,
    session: u64,
    hub: Hub,
}

/// Follows `node` at `addr` until `cancel` fires. `session` numbers this follower so the hub can
/// ignore a replaced follower's last words.
pub async fn follow(
    node: AccountId,
    addr: String,
    session: u64,
    hub: Hub,
    cancel: CancellationToken,
) {
    let follower = Follower {
        node,
        addr,
        session,
        hub,
    };
    let mut backoff = FIRST_BACKOFF;
    let mut misbehaving_backoff = MISBEHAVING_BACKOFF;
    loop {
        follower.report(Link::Connecting).await;
        let mut followed = false;
        match follower.session(&cancel, &mut followed).await {
            Ok(Ended::Cancelled) | Err(SessionError::HubGone) => break,
            Err(SessionError::Misbehaved(offence)) => {
                tracing::warn!(node = %node.short(), addr = %follower.addr, sent = %offence.sent, why = %offence.why, pause = ?misbehaving_backoff, "dropping a misbehaving node");
                follower.report(Link::Dropped).await;
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(misbehaving_backoff) => {}
                }
                misbehaving_backoff = (misbehaving_backoff * 2).min(MAX_MISBEHAVING_BACKOFF);
                continue;
            }
            Err(error) => {
                tracing::info!(node = %node.short(), addr = %follower.addr, %error, "lost the node; reconnecting");
                follower.report(Link::Down).await;
            }
        }
        if followed {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    follower.report(Link::None).await;
}

impl Follower {
    async fn report(&self, link: Link) {
        self.hub
            .send(Command::Link {
                node: self.node,
                addr: self.addr.clone(),
                session: self.session,
                link,
            })
            .await;
    }

    /// Checks blocks the node sent and hands them to the hub; the node's offence if one of them
    /// is invalid (the hub has then been told, and shows it).
    async fn deliver(
        &self,
        blocks: Vec<Block>,
        received_ms: Option<u64>,
    ) -> Result<(), SessionError> {
        let blocks = match self.hub.checker().check(blocks).await {
            Ok(blocks) => blocks,
            Err(offence) => return Err(self.misbehaved(offence).await),
        };
        let (verdict, refused) = tokio::sync::oneshot::channel();
        let command = Command::Blocks {
            node: self.node,
            blocks,
            received_ms,
            verdict,
        };
        self.tell(command).await?;
        match refused.await {
            Ok(None) => Ok(()),
            Ok(Some(offence)) => Err(SessionError::Misbehaved(offence)),
            Err(_) => Err(SessionError::HubGone),
        }
    }

    /// Tells the hub that the node sent `offence`; the error that ends the session.
    async fn misbehaved(&self, offence: Offence) -> SessionError {
        let command = Command::Misbehaved {
            node: self.node,
            offence: offence.clone(),
        };
        match self.tell(command).await {
            Ok(()) => SessionError::Misbehaved(offence),
            Err(gone) => gone,
        }
    }

    /// Gives the hub `command`; an error when the hub is gone (the visualizer is stopping).
    async fn tell(&self, command: Command) -> Result<(), SessionError> {
        if self.hub.send(command).await {
            Ok(())
        } else {
            Err(SessionError::HubGone)
        }
    }

    /// Asks the node for the blocks after the hub's best chain.
    async fn page_from_hub(
        &self,
        link: &mut Framed<TcpStream, LineCodec<Message>>,
    ) -> Result<(), SessionError> {
        let locator = self.hub.locator().await.ok_or(SessionError::HubGone)?;
        link.send(Message::GetBlocks(GetBlocks::json_after(locator)))
            .await?;
        Ok(())
    }

    /// One connection: subscribe, catch up, follow. `followed` is set once it is up to date.
    async fn session(
        &self,
        cancel: &CancellationToken,
        followed: &mut bool,
    ) -> Result<Ended, SessionError> {
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr));
        let stream = tokio::select! {
            () = cancel.cancelled() => return Ok(Ended::Cancelled),
            stream = connect => stream
                .map_err(|_| SessionError::Connect("timed out".into()))?
                .map_err(|e| SessionError::Connect(e.to_string()))?,
        };
        // Updates are small lines that must not wait to be coalesced.
        stream.set_nodelay(true).ok();
        let mut link = Framed::new(stream, LineCodec::<Message>::new());
        link.send(Message::Subscribe).await?;
        self.report(Link::Syncing).await;
        self.page_from_hub(&mut link).await?;
        let mut paging = true;
        // When we last paged again from the hub after the first time.
        let mut repaged: Option<Instant> = None;
        loop {
            let message = tokio::select! {
                () = cancel.cancelled() => return Ok(Ended::Cancelled),
                message = link.next() => message.ok_or(SessionError::Closed)??,
            };
            match message {
                Message::Update(Update::Block { block, received_ms }) => {
                    self.deliver(vec![block], Some(received_ms)).await?;
                }
                Message::Update(Update::Tip { hash, height, .. }) => {
                    let command = Command::Tip {
                        node: self.node,
                        hash,
                        height,
                    };
                    self.tell(command).await?;
                    let known = self.hub.contains(hash).await.ok_or(SessionError::HubGone)?;
                    if !known && !paging && repage_due(&mut repaged) {
                        tracing::debug!(node = %self.node.short(), tip = %hash.short(), "missing the node's tip; paging");
                        paging = true;
                        self.report(Link::Syncing).await;
                        self.page_from_hub(&mut link).await?;
                    }
                }
                Message::Update(Update::Status {
                    load_permille,
                    difficulty,
                    peers,
                    ..
                }) => {
                    let command = Command::Status {
                        node: self.node,
                        load_permille,
                        difficulty,
                        peers,
                    };
                    self.tell(command).await?;
                }
                Message::Update(Update::Pool {
                    full,
                    added,
                    removed,
                    ready,
                    waiting,
                }) => {
                    let added = match self.hub.checker().check_pending(added).await {
                        Ok(added) => added,
                        Err(offence) => return Err(self.misbehaved(offence).await),
                    };
                    let command = Command::Pool {
                        node: self.node,
                        full,
                        added,
                        removed,
                        counts: (ready, waiting),
                    };
                    self.tell(command).await?;
                }
                Message::Blocks(segment) => {
                    // The next page is asked for before this one is checked, so the node reads
                    // and sends it meanwhile (a million blocks are 2,000 pages). An empty page
                    // that says more follow asks again from the hub's own chain, at most once
                    // per REPAGE_EVERY (a node flooding empty pages would otherwise keep the
                    // hub computing locators); past that it ends the paging, and the next tip
                    // the hub lacks starts it again.
                    let last = segment.blocks.last().map(|b| b.header.hash());
                    let mut done = !segment.more;
                    match (segment.more, last) {
                        (true, Some(last)) => {
                            let next = GetBlocks::json_after(vec![last]);
                            link.send(Message::GetBlocks(next)).await?;
                        }
                        (true, None) if repage_due(&mut repaged) => {
                            self.page_from_hub(&mut link).await?;
                        }
                        (true, None) => done = true,
                        (false, _) => {}
                    }
                    self.deliver(segment.blocks, None).await?;
                    if done {
                        paging = false;
                        if !*followed {
                            tracing::info!(node = %self.node.short(), addr = %self.addr, "following");
                        }
                        *followed = true;
                        self.report(Link::Following).await;
                    }
                }
                Message::Error(e) => {
                    return Err(SessionError::Refused {
                        code: e.code,
                        message: e.message,
                    });
                }
                // The node checks that a quiet subscriber is still there.
                Message::KeepAlive => link.send(Message::KeepAlive).await?,
                // Nothing else is meant for a subscriber.
                _ => {}
            }
        }
    }
}
