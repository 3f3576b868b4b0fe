//! The address check: before a node is listed, the tracker dials the address it advertises and
//! asks the node there to prove its id, with the handshake nodes use between themselves (see
//! [`protocol::handshake`]). Made-up ids advertising ports where nothing answers, or where
//! another node answers, are never listed, so nodes are never sent to dial them.
//!
//! A check runs as a task of its own, off the request path: a report is answered at once, and
//! the registry holds how many checks run at once (`registry::MAX_CONCURRENT_CHECKS`) and how
//! often a failing address is tried again.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use protocol::AccountId;
use protocol::codec::{LineCodec, WireError};
use protocol::handshake::{Dial, HandshakeError, Nonce};
use protocol::wire::Message;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::registry::{Check, Shared, lock};

/// How long a whole check may take: connecting, the hello, the proof. A node on the same LAN
/// answers in milliseconds; an address where nothing listens must not hold a permit for long.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest line read from the checked address: a proof is under 400 bytes.
const MAX_PROOF_LINE: usize = 2048;

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReachError {
    /// Nothing answered in time.
    #[error("no answer within {} ms", CHECK_TIMEOUT.as_millis())]
    Timeout,
    /// The connection failed or was closed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The answer was not a line of the node protocol.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The other end closed without a proof.
    #[error("closed without a proof")]
    Closed,
    /// The first answer was something else than a proof.
    #[error("answered {0} instead of a proof")]
    NotAProof(char),
    /// The proof does not hold.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

/// Dials `addr` and checks that the node `expect` proves its id there.
pub(crate) async fn check(expect: AccountId, addr: &str) -> Result<(), ReachError> {
    let attempt = async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut link = Framed::new(stream, LineCodec::<Message>::with_max_line(MAX_PROOF_LINE));
        let (dial, hello) = Dial::start(None, expect, addr, Nonce(rand::random()));
        link.send(Message::Hello(hello)).await?;
        match link.next().await {
            Some(Ok(Message::Proof(proof))) => {
                dial.on_proof(&proof)?;
                Ok(())
            }
            Some(Ok(other)) => {
                use protocol::codec::WireMessage;
                Err(ReachError::NotAProof(other.opcode() as char))
            }
            Some(Err(e)) => Err(e.into()),
            None => Err(ReachError::Closed),
        }
    };
    tokio::time::timeout(CHECK_TIMEOUT, attempt)
        .await
        .unwrap_or(Err(ReachError::Timeout))
}

/// Runs `check` in a task of its own and records its result in the registry.
pub(crate) fn spawn(check: Check, registry: Shared) {
    tokio::spawn(async move {
        let result = self::check(check.id, &check.addr).await;
        if let Err(error) = &result {
            // Every failure of a made-up id would be one line: debug only.
            tracing::debug!(node = check.id.short(), addr = %check.addr, %error, "address check failed");
        }
        lock(&registry).checked(&check.id, &check.addr, result.is_ok(), Instant::now());
        drop(check.permit);
    });
}
