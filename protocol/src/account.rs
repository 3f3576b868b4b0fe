//! Accounts: an account is an ed25519 public key; records and tracker messages are signed with it.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::Signer;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{HexVisitor, hex_fmt, parse_hex_array, with_hex};

/// An account, a node's id and a miner's reward address: an ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AccountId(pub [u8; 32]);

impl AccountId {
    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

/// A secret key and its account. Kept by a shopper's wallet or a node's data dir.
#[derive(Clone)]
pub struct Keypair {
    key: ed25519_dalek::SigningKey,
}

impl Keypair {
    /// Makes the keypair for a 32-byte secret seed (the caller supplies the randomness).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// The secret seed, for storing the key.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The account this key signs for.
    pub fn account(&self) -> AccountId {
        AccountId(self.key.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.key.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({:?})", self.account())
    }
}

hex_fmt!(AccountId);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..4]))
    }
}

/// The text was not the right number of hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {0} hex digits")]
pub struct ParseKeyError(usize);

impl FromStr for AccountId {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_array(s).map(AccountId).ok_or(ParseKeyError(64))
    }
}

impl FromStr for Signature {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_array(s).map(Signature).ok_or(ParseKeyError(128))
    }
}

macro_rules! hex_serde {
    ($ty:ident, $n:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                with_hex(&self.0, |hex| s.serialize_str(hex))
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(HexVisitor::<$n>).map($ty)
            }
        }
    };
}

pub(crate) use hex_serde;

hex_serde!(AccountId, 32);
hex_serde!(Signature, 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_key_and_message() {
        let alice = Keypair::from_seed([1; 32]);
        let bob = Keypair::from_seed([2; 32]);
        let sig = alice.sign(b"buy a capuchin");
        assert!(alice.account().verify(b"buy a capuchin", &sig));
        assert!(!alice.account().verify(b"buy a gorilla", &sig));
        assert!(!bob.account().verify(b"buy a capuchin", &sig));
        // Not every 32-byte string is a curve point; that must be a plain `false`.
        assert!(!AccountId([0xff; 32]).verify(b"x", &sig));
    }

    #[test]
    fn keys_round_trip_through_text() {
        let alice = Keypair::from_seed([7; 32]);
        let text = serde_json::to_string(&alice.account()).unwrap();
        assert_eq!(
            serde_json::from_str::<AccountId>(&text).unwrap(),
            alice.account()
        );
        assert!(serde_json::from_str::<AccountId>("\"abc\"").is_err());
        assert_eq!(Keypair::from_seed(alice.seed()).account(), alice.account());
    }
}
