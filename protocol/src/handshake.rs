//! The handshake by which a connection proves which node it is: `H` (a hello carrying a fresh
//! random nonce) and `P` (a proof: a signature with the node's key over both nonces, both ids,
//! the prover's advertised address, which side of the connection it is on, and a domain string).
//!
//! A node's id is its ed25519 public key (see [`crate::account`]), so a proof is checked against
//! the id it claims and nothing else is needed. Nobody can claim another node's id without its
//! key, and a proof is good for one connection only: it signs the other side's fresh nonce.
//!
//! The flow, for a node A dialing the address the tracker lists for node B:
//!
//! 1. A → B `H {"nonce": nA, "to": B, "from": A}`.
//! 2. B → A `P {"id": B, "addr": advB, "nonce": nB, "sig": sign_B(acceptor, B, A, advB, nA, nB)}`.
//!    A checks the id is B, the address is the one it dialed, and the signature.
//! 3. A → B `P {"id": A, "addr": advA, "nonce": nA, "sig": sign_A(dialer, A, B, advA, nB, nA)}`.
//!    B checks the id is the A the hello named, the nonce is nA, and the signature.
//!
//! The tracker checks a node's address the same way, without `from` and without step 3: it
//! has no id and proves nothing. Binding the side stops a relay that turns an acceptor's proof
//! into a dialer's; binding the prover's own advertised address stops a relay that makes a
//! node's proof pass at someone else's address (the dialer compares it with what it dialed).
//!
//! Everything here is pure: the caller draws the nonces and does the I/O.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::account::{AccountId, Keypair, Signature, hex_serde};
use crate::hash::{HexVisitor, with_hex};

/// The domain string every handshake signature starts with, so a proof can never be taken for
/// a record, a report or a leave.
const HANDSHAKE_DOMAIN: &[u8] = b"monkeychain/handshake/v1";

/// 32 random bytes, drawn fresh by each side for each connection (by the caller: this crate
/// has no source of randomness).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 32]);

hex_serde!(Nonce, 32);

/// The payload of `H`: a challenge, and for a node dialing another, the id it will prove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The sender's fresh nonce: the other side signs it.
    pub nonce: Nonce,
    /// The node the sender means to reach; a node that is not it refuses at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<AccountId>,
    /// The node the sender says it is (and will prove with `P`); absent for the tracker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<AccountId>,
}

/// The payload of `P`: who the sender is, proven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// The prover's id.
    pub id: AccountId,
    /// The address the prover advertises (the one the tracker lists).
    pub addr: String,
    /// The prover's own nonce (the dialer repeats the one of its hello).
    pub nonce: Nonce,
    /// The signature over [`signed_bytes`].
    pub sig: Signature,
}

/// Which side of the TCP connection a prover is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// It opened the connection.
    Dialer,
    /// It accepted the connection.
    Acceptor,
}

/// Why a handshake failed. The connection is closed with `E handshake`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The proof is for another id than the one expected.
    #[error("expected node {expected}, got a proof for {got}")]
    WrongId {
        /// The id expected.
        expected: String,
        /// The id proven.
        got: String,
    },
    /// The acceptor's proof names another address than the one dialed.
    #[error("dialed {dialed}, but the node there advertises {got}")]
    WrongAddress {
        /// The address dialed.
        dialed: String,
        /// The address in the proof.
        got: String,
    },
    /// The dialer's proof does not repeat the nonce of its hello.
    #[error("the proof's nonce is not the hello's")]
    WrongNonce,
    /// The signature does not verify.
    #[error("bad handshake signature")]
    BadSignature,
    /// The hello is for another node than this one.
    #[error("this is node {me}, not {to}")]
    NotMe {
        /// This node.
        me: String,
        /// The node the hello was for.
        to: String,
    },
    /// The hello says it comes from this very node.
    #[error("a hello from this node's own id")]
    FromMyself,
}

/// The bytes a prover signs: the domain, its side, its id, the verifier's id (zeros for the
/// tracker), its advertised address, the verifier's nonce, then its own.
fn signed_bytes(
    side: Side,
    prover: &AccountId,
    verifier: Option<&AccountId>,
    addr: &str,
    challenge: &Nonce,
    own: &Nonce,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HANDSHAKE_DOMAIN.len() + 1 + 64 + 4 + addr.len() + 64);
    out.extend_from_slice(HANDSHAKE_DOMAIN);
    out.push(match side {
        Side::Dialer => b'D',
        Side::Acceptor => b'A',
    });
    out.extend_from_slice(&prover.0);
    out.extend_from_slice(&verifier.map_or([0; 32], |v| v.0));
    out.extend_from_slice(&(addr.len() as u32).to_le_bytes());
    out.extend_from_slice(addr.as_bytes());
    out.extend_from_slice(&challenge.0);
    out.extend_from_slice(&own.0);
    out
}

fn prove(
    key: &Keypair,
    side: Side,
    verifier: Option<&AccountId>,
    addr: &str,
    challenge: &Nonce,
    own: Nonce,
) -> Proof {
    let id = key.account();
    let sig = key.sign(&signed_bytes(side, &id, verifier, addr, challenge, &own));
    Proof {
        id,
        addr: addr.to_string(),
        nonce: own,
        sig,
    }
}

fn check_id(expected: &AccountId, got: &AccountId) -> Result<(), HandshakeError> {
    if expected != got {
        return Err(HandshakeError::WrongId {
            expected: expected.short(),
            got: got.short(),
        });
    }
    Ok(())
}

/// Who this side is, when it has an id to prove: its key and the address it advertises.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The node's key; its public half is the node's id.
    pub key: Keypair,
    /// The address the node advertises to the tracker.
    pub addr: String,
}

/// The dialing side: it sent a [`Hello`] to the address it knows for `expect`, and waits for
/// that node's proof. A node dialing a peer also proves itself in return; the tracker does not.
#[derive(Debug, Clone)]
pub struct Dial {
    me: Option<Identity>,
    expect: AccountId,
    dialed: String,
    nonce: Nonce,
}

impl Dial {
    /// Starts a handshake with the node `expect`, dialed at `dialed`: the hello to send first.
    pub fn start(
        me: Option<Identity>,
        expect: AccountId,
        dialed: &str,
        nonce: Nonce,
    ) -> (Dial, Hello) {
        let hello = Hello {
            nonce,
            to: Some(expect),
            from: me.as_ref().map(|m| m.key.account()),
        };
        let dial = Dial {
            me,
            expect,
            dialed: dialed.to_string(),
            nonce,
        };
        (dial, hello)
    }

    /// The node it expects.
    pub fn expect(&self) -> AccountId {
        self.expect
    }

    /// Checks the acceptor's proof: the id expected, the address dialed, a signature over our
    /// nonce. Returns our own proof to send back, when we have an id.
    pub fn on_proof(self, proof: &Proof) -> Result<Option<Proof>, HandshakeError> {
        check_id(&self.expect, &proof.id)?;
        if proof.addr != self.dialed {
            return Err(HandshakeError::WrongAddress {
                dialed: self.dialed,
                got: proof.addr.chars().take(64).collect(),
            });
        }
        let me = self.me.as_ref().map(|m| m.key.account());
        let bytes = signed_bytes(
            Side::Acceptor,
            &proof.id,
            me.as_ref(),
            &proof.addr,
            &self.nonce,
            &proof.nonce,
        );
        if !proof.id.verify(&bytes, &proof.sig) {
            return Err(HandshakeError::BadSignature);
        }
        Ok(self.me.map(|me| {
            prove(
                &me.key,
                Side::Dialer,
                Some(&self.expect),
                &me.addr,
                &proof.nonce,
                self.nonce,
            )
        }))
    }
}

/// The accepting side, after answering a hello that claims an id: it waits for the proof.
#[derive(Debug, Clone)]
pub struct Accept {
    me: AccountId,
    claimed: AccountId,
    their_nonce: Nonce,
    our_nonce: Nonce,
}

impl Accept {
    /// Answers a hello with our proof. When the hello claims an id, also returns the state that
    /// waits for that id's proof; until it comes, the connection is nobody in particular.
    pub fn on_hello(
        me: &Identity,
        hello: &Hello,
        nonce: Nonce,
    ) -> Result<(Proof, Option<Accept>), HandshakeError> {
        let id = me.key.account();
        if let Some(to) = hello.to
            && to != id
        {
            return Err(HandshakeError::NotMe {
                me: id.short(),
                to: to.short(),
            });
        }
        if hello.from == Some(id) {
            return Err(HandshakeError::FromMyself);
        }
        let proof = prove(
            &me.key,
            Side::Acceptor,
            hello.from.as_ref(),
            &me.addr,
            &hello.nonce,
            nonce,
        );
        let waiting = hello.from.map(|claimed| Accept {
            me: id,
            claimed,
            their_nonce: hello.nonce,
            our_nonce: nonce,
        });
        Ok((proof, waiting))
    }

    /// The id the hello claimed, not proven yet.
    pub fn claimed(&self) -> AccountId {
        self.claimed
    }

    /// Checks the dialer's proof: the id its hello claimed, the nonce of its hello, a signature
    /// over our nonce. Returns the proven id.
    pub fn on_proof(self, proof: &Proof) -> Result<AccountId, HandshakeError> {
        check_id(&self.claimed, &proof.id)?;
        if proof.nonce != self.their_nonce {
            return Err(HandshakeError::WrongNonce);
        }
        let bytes = signed_bytes(
            Side::Dialer,
            &proof.id,
            Some(&self.me),
            &proof.addr,
            &self.our_nonce,
            &proof.nonce,
        );
        if !proof.id.verify(&bytes, &proof.sig) {
            return Err(HandshakeError::BadSignature);
        }
        Ok(proof.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Nonce {
        /// A different nonce at each call, as random ones would be.
        fn random() -> Nonce {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&n.to_le_bytes());
            Nonce(bytes)
        }
    }

    fn node(seed: u8, port: u16) -> Identity {
        Identity {
            key: Keypair::from_seed([seed; 32]),
            addr: format!("127.0.0.1:{port}"),
        }
    }

    /// Runs a whole handshake between `a` (dialing `dialed`, expecting `b_id`) and `b`.
    fn run(
        a: &Identity,
        b: &Identity,
        b_id: AccountId,
        dialed: &str,
    ) -> Result<AccountId, HandshakeError> {
        let (dial, hello) = Dial::start(Some(a.clone()), b_id, dialed, Nonce::random());
        let (proof_b, waiting) = Accept::on_hello(b, &hello, Nonce::random())?;
        let proof_a = dial.on_proof(&proof_b)?.expect("a node proves itself back");
        waiting.expect("the hello claimed an id").on_proof(&proof_a)
    }

    #[test]
    fn two_nodes_prove_themselves_to_each_other() {
        let (a, b) = (node(1, 9001), node(2, 9002));
        assert_eq!(run(&a, &b, b.key.account(), &b.addr), Ok(a.key.account()));
    }

    #[test]
    fn the_wrong_node_or_the_wrong_address_fails() {
        let (a, b, c) = (node(1, 9001), node(2, 9002), node(3, 9003));
        // C answers where A expects B: C refuses the hello itself.
        assert!(matches!(
            run(&a, &c, b.key.account(), &c.addr),
            Err(HandshakeError::NotMe { .. })
        ));
        // B's real proof, relayed from another address than B advertises.
        assert!(matches!(
            run(&a, &b, b.key.account(), "127.0.0.1:6666"),
            Err(HandshakeError::WrongAddress { .. })
        ));
        // A hello with no `to` still gets a proof, which fails on the id.
        let (dial, _) = Dial::start(None, b.key.account(), &c.addr, Nonce::random());
        let hello = Hello {
            nonce: dial.nonce,
            to: None,
            from: None,
        };
        let (proof, waiting) = Accept::on_hello(&c, &hello, Nonce::random()).unwrap();
        assert!(waiting.is_none());
        assert!(matches!(
            dial.on_proof(&proof),
            Err(HandshakeError::WrongId { .. })
        ));
    }

    #[test]
    fn an_impostor_cannot_prove_another_nodes_id() {
        let (a, b, mallory) = (node(1, 9001), node(2, 9002), node(9, 9009));
        // Mallory says she is A, and signs with her own key.
        let hello = Hello {
            nonce: Nonce::random(),
            to: None,
            from: Some(a.key.account()),
        };
        let (_, waiting) = Accept::on_hello(&b, &hello, Nonce::random()).unwrap();
        let waiting = waiting.unwrap();
        let mut forged = prove(
            &mallory.key,
            Side::Dialer,
            Some(&b.key.account()),
            &a.addr,
            &waiting.our_nonce,
            hello.nonce,
        );
        assert!(matches!(
            waiting.clone().on_proof(&forged),
            Err(HandshakeError::WrongId { .. })
        ));
        forged.id = a.key.account();
        assert_eq!(
            waiting.clone().on_proof(&forged),
            Err(HandshakeError::BadSignature)
        );
        // A's proof from another connection (another nonce of B's) does not replay here.
        let old = prove(
            &a.key,
            Side::Dialer,
            Some(&b.key.account()),
            &a.addr,
            &Nonce::random(),
            hello.nonce,
        );
        assert_eq!(
            waiting.clone().on_proof(&old),
            Err(HandshakeError::BadSignature)
        );
        // A's proof as an acceptor (say, to a tracker check Mallory relayed) is no dialer proof.
        let as_acceptor = prove(
            &a.key,
            Side::Acceptor,
            Some(&b.key.account()),
            &a.addr,
            &waiting.our_nonce,
            hello.nonce,
        );
        assert_eq!(
            waiting.on_proof(&as_acceptor),
            Err(HandshakeError::BadSignature)
        );
        // And nobody can claim to be the node it talks to.
        let me = Hello {
            nonce: Nonce::random(),
            to: None,
            from: Some(b.key.account()),
        };
        assert_eq!(
            Accept::on_hello(&b, &me, Nonce::random()).unwrap_err(),
            HandshakeError::FromMyself
        );
    }

    #[test]
    fn the_tracker_checks_an_address_without_an_id_of_its_own() {
        let b = node(2, 9002);
        let (dial, hello) = Dial::start(None, b.key.account(), &b.addr, Nonce::random());
        assert_eq!(hello.from, None);
        let (proof, waiting) = Accept::on_hello(&b, &hello, Nonce::random()).unwrap();
        assert!(waiting.is_none());
        assert_eq!(dial.clone().on_proof(&proof), Ok(None));
        // A node's proof to a peer is no proof to the tracker (the verifier id differs).
        let to_peer = prove(
            &b.key,
            Side::Acceptor,
            Some(&Keypair::from_seed([1; 32]).account()),
            &b.addr,
            &hello.nonce,
            Nonce::random(),
        );
        assert_eq!(dial.on_proof(&to_peer), Err(HandshakeError::BadSignature));
    }
}
