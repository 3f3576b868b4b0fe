//! Ledger records: what a shopper signs (join, purchase, transfer, vote) and their canonical bytes.

use serde::{Deserialize, Serialize};

use crate::account::{AccountId, Keypair, Signature};
use crate::catalog;
use crate::hash::Hash256;
use crate::params::MAX_NAME_CHARS;

/// A record's id: SHA-256 of its signed canonical bytes.
pub type RecordId = Hash256;

/// Domain separation: a signature over a record can never be a signature over anything else.
pub(crate) const RECORD_DOMAIN: &[u8] = b"monkeychain/record/v1";

/// What a record does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Opens the account under a unique name and credits the join bonus.
    Join {
        /// The display name, unique across the chain (case-insensitively).
        name: String,
    },
    /// Buys a monkey from the catalog at its price.
    Purchase {
        /// The catalog id.
        monkey: String,
    },
    /// Moves coins to another joined account.
    Transfer {
        /// The receiving account.
        to: AccountId,
        /// Coins moved, more than zero.
        amount: u64,
    },
    /// One vote per account per poll.
    Vote {
        /// The poll's name.
        poll: String,
        /// The choice voted for.
        choice: String,
    },
}

/// A signed record, as it travels and as blocks hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The account that signed it.
    pub account: AccountId,
    /// The account's sequence number: 0 for its first record, then 1, 2, ...
    pub seq: u64,
    /// What it does.
    pub action: Action,
    /// ed25519 signature by `account` over [`Record::signing_bytes`].
    pub sig: Signature,
}

/// Why a record is invalid on its own, before any ledger state is consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordFormatError {
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// A name, poll or choice is empty.
    #[error("{field} is empty")]
    Empty {
        /// Which field.
        field: &'static str,
    },
    /// A name, poll or choice is too long.
    #[error("{field} is longer than {MAX_NAME_CHARS} characters")]
    TooLong {
        /// Which field.
        field: &'static str,
    },
    /// A name, poll or choice holds a control character.
    #[error("{field} contains a control character")]
    ControlCharacter {
        /// Which field.
        field: &'static str,
    },
    /// The monkey is not in the catalog.
    #[error("unknown monkey {0:?}")]
    UnknownMonkey(String),
    /// A transfer of zero coins.
    #[error("transfer of zero coins")]
    ZeroAmount,
    /// A transfer to the sender itself.
    #[error("transfer to oneself")]
    SelfTransfer,
}

impl Record {
    /// Makes and signs a record.
    pub fn sign(key: &Keypair, seq: u64, action: Action) -> Record {
        let account = key.account();
        let bytes = signing_bytes(&account, seq, &action);
        Record {
            account,
            seq,
            action,
            sig: key.sign(&bytes),
        }
    }

    /// A signed join under `name`: an account's first record (sequence 0).
    pub fn join(key: &Keypair, name: &str) -> Record {
        Record::sign(key, 0, Action::Join { name: name.into() })
    }

    /// A signed purchase of `monkey`, the account's record number `seq`.
    pub fn purchase(key: &Keypair, seq: u64, monkey: &str) -> Record {
        let monkey = monkey.into();
        Record::sign(key, seq, Action::Purchase { monkey })
    }

    /// The canonical bytes the signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        signing_bytes(&self.account, self.seq, &self.action)
    }

    /// The canonical bytes of the whole signed record: the signing bytes, then the signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.signing_bytes();
        out.extend_from_slice(&self.sig.0);
        out
    }

    /// The record's id: SHA-256 of [`Record::encode`].
    pub fn id(&self) -> RecordId {
        Record::id_of_encoding(&self.encode())
    }

    /// The id of the record whose [`Record::encode`] is `encoded`, for a caller that has it.
    pub fn id_of_encoding(encoded: &[u8]) -> RecordId {
        Hash256::digest(encoded)
    }

    /// Checks everything that needs no ledger: field formats, the catalog, the signature.
    pub fn check(&self) -> Result<(), RecordFormatError> {
        self.check_format()?;
        if !self.account.verify(&self.signing_bytes(), &self.sig) {
            return Err(RecordFormatError::BadSignature);
        }
        Ok(())
    }

    /// Checks the field formats and the catalog, not the signature.
    pub fn check_format(&self) -> Result<(), RecordFormatError> {
        match &self.action {
            Action::Join { name } => check_text("name", name)?,
            Action::Purchase { monkey } => {
                if catalog::monkey(monkey).is_none() {
                    return Err(RecordFormatError::UnknownMonkey(monkey.clone()));
                }
            }
            Action::Transfer { to, amount } => {
                if *amount == 0 {
                    return Err(RecordFormatError::ZeroAmount);
                }
                if *to == self.account {
                    return Err(RecordFormatError::SelfTransfer);
                }
            }
            Action::Vote { poll, choice } => {
                check_text("poll", poll)?;
                check_text("choice", choice)?;
            }
        }
        Ok(())
    }
}

/// Names, polls and choices: 1 to 32 characters, none of them control characters.
pub fn check_text(field: &'static str, text: &str) -> Result<(), RecordFormatError> {
    if text.trim().is_empty() {
        return Err(RecordFormatError::Empty { field });
    }
    if text.chars().count() > MAX_NAME_CHARS {
        return Err(RecordFormatError::TooLong { field });
    }
    if text.chars().any(char::is_control) {
        return Err(RecordFormatError::ControlCharacter { field });
    }
    Ok(())
}

/// Domain, account, sequence, then a tag byte and the action's fields. Strings are a 4-byte
/// little-endian length and their UTF-8 bytes, so no two records share an encoding.
fn signing_bytes(account: &AccountId, seq: u64, action: &Action) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(RECORD_DOMAIN);
    out.extend_from_slice(&account.0);
    out.extend_from_slice(&seq.to_le_bytes());
    let put_str = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    match action {
        Action::Join { name } => {
            out.push(1);
            put_str(&mut out, name);
        }
        Action::Purchase { monkey } => {
            out.push(2);
            put_str(&mut out, monkey);
        }
        Action::Transfer { to, amount } => {
            out.push(3);
            out.extend_from_slice(&to.0);
            out.extend_from_slice(&amount.to_le_bytes());
        }
        Action::Vote { poll, choice } => {
            out.push(4);
            put_str(&mut out, poll);
            put_str(&mut out, choice);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Keypair {
        Keypair::from_seed([1; 32])
    }

    #[test]
    fn a_signed_record_checks_and_a_tampered_one_does_not() {
        let r = Record::sign(
            &alice(),
            0,
            Action::Join {
                name: "alice".into(),
            },
        );
        assert_eq!(r.check(), Ok(()));
        let mut forged = r.clone();
        forged.action = Action::Join {
            name: "mallory".into(),
        };
        assert_eq!(forged.check(), Err(RecordFormatError::BadSignature));
        let mut reseq = r.clone();
        reseq.seq = 1;
        assert_eq!(reseq.check(), Err(RecordFormatError::BadSignature));
        let mut other = r.clone();
        other.account = Keypair::from_seed([2; 32]).account();
        assert_eq!(other.check(), Err(RecordFormatError::BadSignature));
    }

    #[test]
    fn formats_are_checked_before_the_ledger() {
        let k = alice();
        let check = |action| Record::sign(&k, 0, action).check();
        assert_eq!(
            check(Action::Join { name: "".into() }),
            Err(RecordFormatError::Empty { field: "name" })
        );
        assert_eq!(
            check(Action::Join {
                name: "x".repeat(33)
            }),
            Err(RecordFormatError::TooLong { field: "name" })
        );
        assert_eq!(
            check(Action::Join {
                name: "é".repeat(32)
            }),
            Ok(())
        );
        assert_eq!(
            check(Action::Join {
                name: "a\nb".into()
            }),
            Err(RecordFormatError::ControlCharacter { field: "name" })
        );
        assert_eq!(
            check(Action::Purchase {
                monkey: "unicorn".into()
            }),
            Err(RecordFormatError::UnknownMonkey("unicorn".into()))
        );
        let bob = Keypair::from_seed([2; 32]).account();
        assert_eq!(
            check(Action::Transfer { to: bob, amount: 0 }),
            Err(RecordFormatError::ZeroAmount)
        );
        assert_eq!(
            check(Action::Transfer {
                to: k.account(),
                amount: 5
            }),
            Err(RecordFormatError::SelfTransfer)
        );
        assert_eq!(
            check(Action::Vote {
                poll: "p".into(),
                choice: " ".into()
            }),
            Err(RecordFormatError::Empty { field: "choice" })
        );
    }

    #[test]
    fn encodings_are_distinct_and_ids_follow_them() {
        let k = alice();
        let a = Record::sign(
            &k,
            0,
            Action::Vote {
                poll: "ab".into(),
                choice: "c".into(),
            },
        );
        let b = Record::sign(
            &k,
            0,
            Action::Vote {
                poll: "a".into(),
                choice: "bc".into(),
            },
        );
        assert_ne!(a.signing_bytes(), b.signing_bytes());
        assert_ne!(a.id(), b.id());
        let json = serde_json::to_string(&a).unwrap();
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back.id(), a.id());
    }
}
