//! One connection's side of the handshake (see [`protocol::handshake`]): which step it is at,
//! and what each `H` or `P` it receives leads to. No I/O: the connection sends what this returns.
//!
//! A connection we open to a peer starts [`Shake::dial`]ing; one a peer opens to us is nobody
//! in particular (a client) until its `P` proves the id its `H` claimed. Only a proven id may
//! take a peer's place in [`crate::links::Links`]; a claim that fails its proof closes the
//! connection. A hello without a claimed id (the tracker checking our address, or anyone) is
//! answered with our proof and changes nothing.

use std::time::Duration;

use protocol::AccountId;
use protocol::handshake::{Accept, Dial, HandshakeError, Hello, Identity, Nonce, Proof};
use protocol::wire::Message;
use tokio::time::Instant;

/// How long a handshake may take from its first message to the last proof. Two round trips
/// on a LAN take milliseconds; this only bounds what an impostor can hold open by claiming an
/// id and never proving it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a connection's handshake stands.
#[derive(Debug, Default)]
pub enum Shake {
    /// No hello yet (every client stays here).
    #[default]
    Idle,
    /// We dialed a peer and wait for its proof.
    Dialing(Box<Dial>, Instant),
    /// A peer's hello claimed an id; we answered and wait for its proof.
    Awaiting(Accept, Instant),
    /// Over: proven, or a hello without a claim answered. Another `H` or `P` is refused.
    Done,
}

/// A message this step cannot take, or a proof that fails: the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ShakeError {
    /// The proof or the hello failed its checks.
    #[error(transparent)]
    Failed(#[from] HandshakeError),
    /// An `H` or `P` out of turn.
    #[error("{0} out of turn")]
    OutOfTurn(&'static str),
}

impl Shake {
    /// Starts a handshake on a link we opened to `expect` at `addr`: the `H` to send first.
    pub fn dial(me: &Identity, expect: AccountId, addr: &str) -> (Shake, Message) {
        let (dial, hello) = Dial::start(Some(me.clone()), expect, addr, Nonce(rand::random()));
        (
            Shake::Dialing(Box::new(dial), Instant::now() + HANDSHAKE_TIMEOUT),
            Message::Hello(hello),
        )
    }

    /// When the handshake under way must be over, if one is.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Shake::Dialing(_, at) | Shake::Awaiting(_, at) => Some(*at),
            Shake::Idle | Shake::Done => None,
        }
    }

    /// An `H`: our proof to send back. Only once per connection, and never on a link we dialed.
    pub fn on_hello(&mut self, me: &Identity, hello: &Hello) -> Result<Message, ShakeError> {
        if !matches!(self, Shake::Idle) {
            return Err(ShakeError::OutOfTurn("H"));
        }
        *self = Shake::Done;
        let (proof, waiting) = Accept::on_hello(me, hello, Nonce(rand::random()))?;
        if let Some(waiting) = waiting {
            *self = Shake::Awaiting(waiting, Instant::now() + HANDSHAKE_TIMEOUT);
        }
        Ok(Message::Proof(proof))
    }

    /// A `P`: the id it proves, and on a link we dialed, our own proof to send back.
    pub fn on_proof(&mut self, proof: &Proof) -> Result<(AccountId, Option<Message>), ShakeError> {
        match std::mem::replace(self, Shake::Done) {
            Shake::Dialing(dial, _) => {
                let ours = dial.on_proof(proof)?;
                Ok((proof.id, ours.map(Message::Proof)))
            }
            Shake::Awaiting(accept, _) => Ok((accept.on_proof(proof)?, None)),
            Shake::Idle | Shake::Done => Err(ShakeError::OutOfTurn("P")),
        }
    }
}
