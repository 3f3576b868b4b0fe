//! The compact binary form of headers, records and blocks: what a node keeps in its store, and
//! what a packed `C` carries ([`pack_blocks`]).
//! It is made of the encodings the protocol already defines: a block is its 136-byte header,
//! a 4-byte little-endian record count, then each record as a 4-byte length and its canonical
//! encoding (signing bytes, then signature). Reading it back is a parse with a bounds check at
//! every step: a damaged store entry is an error, never a panic. A [`Ledger`] has a binary form
//! too (its accounts and votes, in a fixed order), so a party that verified a chain can keep
//! the state at its tip instead of replaying the chain again.

use crate::account::{AccountId, Signature};
use crate::block::Block;
use crate::hash::Hash256;
use crate::header::{HEADER_SIZE, Header};
use crate::ledger::{Account, Ledger};
use crate::params::{MAX_BLOCK_RECORDS, MAX_BLOCK_RECORDS_SIZE};
use crate::record::{Action, RECORD_DOMAIN, Record};

/// Why bytes are not a header, record or block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the value does.
    #[error("truncated: {0} needs more bytes")]
    Truncated(&'static str),
    /// Bytes are left after the value.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A record does not start with the record domain.
    #[error("not a record: wrong domain")]
    Domain,
    /// An unknown action tag.
    #[error("unknown action tag {0}")]
    Tag(u8),
    /// A string that is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// More records, or more record bytes, than a block may hold.
    #[error("more records than a block may hold")]
    TooLarge,
    /// More blocks than a message may carry.
    #[error("more than {0} blocks")]
    TooManyBlocks(usize),
    /// A ledger no chain can produce: an account or vote twice, a name held twice.
    #[error("inconsistent ledger: {0}")]
    Inconsistent(&'static str),
}

/// A cursor over bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let len = self.u32(what)? as usize;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8(what))
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

impl Header {
    /// Reads a header from its 136-byte encoding ([`Header::encode`]).
    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        let mut r = Reader { bytes };
        let header = read_header(&mut r)?;
        r.finish()?;
        Ok(header)
    }
}

fn read_header(r: &mut Reader<'_>) -> Result<Header, DecodeError> {
    let what = "header";
    if r.bytes.len() < HEADER_SIZE {
        return Err(DecodeError::Truncated(what));
    }
    Ok(Header {
        version: r.u32(what)?,
        bits: r.u32(what)?,
        height: r.u64(what)?,
        prev_hash: Hash256(r.array(what)?),
        records_root: Hash256(r.array(what)?),
        miner: AccountId(r.array(what)?),
        timestamp: r.u64(what)?,
        record_count: r.u32(what)?,
        records_size: r.u32(what)?,
        nonce: r.u64(what)?,
    })
}

impl Record {
    /// Reads a record from its canonical encoding ([`Record::encode`]).
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader { bytes };
        if r.take(RECORD_DOMAIN.len(), "record")? != RECORD_DOMAIN {
            return Err(DecodeError::Domain);
        }
        let account = AccountId(r.array("account")?);
        let seq = r.u64("seq")?;
        let action = match r.array::<1>("action")?[0] {
            1 => Action::Join {
                name: r.string("name")?,
            },
            2 => Action::Purchase {
                monkey: r.string("monkey")?,
            },
            3 => Action::Transfer {
                to: AccountId(r.array("to")?),
                amount: r.u64("amount")?,
            },
            4 => Action::Vote {
                poll: r.string("poll")?,
                choice: r.string("choice")?,
            },
            tag => return Err(DecodeError::Tag(tag)),
        };
        let sig = Signature(r.array("signature")?);
        r.finish()?;
        Ok(Record {
            account,
            seq,
            action,
            sig,
        })
    }
}

impl Block {
    /// The block's binary form: header, record count, then each record's length and encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.binary_len());
        self.write_bytes(&mut out);
        out
    }

    /// The length of [`Block::to_bytes`] for a block that passed its check (whose header
    /// declares its records' size truly); for any other block, an estimate that counts at most
    /// the largest records' size a block may have (the header's field is the sender's word
    /// until then).
    pub fn binary_len(&self) -> usize {
        let declared = self.header.records_size.min(MAX_BLOCK_RECORDS_SIZE);
        HEADER_SIZE + 4 + 4 * self.records.len() + declared as usize
    }

    /// Appends [`Block::to_bytes`] to `out`.
    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&(self.records.len() as u32).to_le_bytes());
        for record in &self.records {
            let bytes = record.encode();
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
    }

    /// Reads a block from [`Block::to_bytes`]. Nothing is checked but the form: that is
    /// [`Block::check`]'s work.
    pub fn from_bytes(bytes: &[u8]) -> Result<Block, DecodeError> {
        let mut r = Reader { bytes };
        let block = read_block(&mut r)?;
        r.finish()?;
        Ok(block)
    }
}

fn read_block(r: &mut Reader<'_>) -> Result<Block, DecodeError> {
    let header = read_header(r)?;
    let count = r.u32("record count")?;
    if count > MAX_BLOCK_RECORDS {
        return Err(DecodeError::TooLarge);
    }
    let mut records = Vec::with_capacity(count as usize);
    let mut size = 0usize;
    for _ in 0..count {
        let len = r.u32("record length")? as usize;
        size += len;
        if size > MAX_BLOCK_RECORDS_SIZE as usize {
            return Err(DecodeError::TooLarge);
        }
        records.push(Record::decode(r.take(len, "record")?)?);
    }
    Ok(Block { header, records })
}

/// The packed form of consecutive blocks, as a `C` carries them when its `D` asked for it
/// (see [`crate::wire::Blocks`]): each block's binary form ([`Block::to_bytes`]), one after
/// another. A block's form says where it ends, so nothing separates them.
pub fn pack_blocks(blocks: &[Block]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blocks.iter().map(Block::binary_len).sum());
    for block in blocks {
        block.write_bytes(&mut out);
    }
    out
}

/// Reads [`pack_blocks`]'s form back; more than `max` blocks is an error, found before the
/// one past `max` is read.
pub fn unpack_blocks(bytes: &[u8], max: usize) -> Result<Vec<Block>, DecodeError> {
    let mut r = Reader { bytes };
    let mut blocks = Vec::new();
    while !r.bytes.is_empty() {
        if blocks.len() == max {
            return Err(DecodeError::TooManyBlocks(max));
        }
        blocks.push(read_block(&mut r)?);
    }
    Ok(blocks)
}

/// Appends a string as its 4-byte little-endian length, then its UTF-8 bytes.
fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

impl Ledger {
    /// The ledger's binary form: the account count, each account (id, a name flag and the
    /// name, balance, next sequence number, the cage's entries), then the vote count and each
    /// vote (poll, voter, choice). Accounts sort by id and votes by poll and voter, so equal
    /// ledgers give equal bytes and a checksum of them means something. Names and tallies are
    /// not written: [`Ledger::from_bytes`] derives them, so they cannot disagree.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut accounts: Vec<_> = self.accounts().collect();
        accounts.sort_unstable_by_key(|(id, _)| **id);
        out.extend_from_slice(&(accounts.len() as u32).to_le_bytes());
        for (id, account) in accounts {
            out.extend_from_slice(&id.0);
            match &account.name {
                Some(name) => {
                    out.push(1);
                    put_string(&mut out, name);
                }
                None => out.push(0),
            }
            out.extend_from_slice(&account.balance.to_le_bytes());
            out.extend_from_slice(&account.next_seq.to_le_bytes());
            out.extend_from_slice(&(account.cage.len() as u32).to_le_bytes());
            for (monkey, count) in &account.cage {
                put_string(&mut out, monkey);
                out.extend_from_slice(&count.to_le_bytes());
            }
        }
        let mut votes: Vec<_> = self.votes().collect();
        votes.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.extend_from_slice(&(votes.len() as u32).to_le_bytes());
        for ((poll, voter), choice) in votes {
            put_string(&mut out, poll);
            out.extend_from_slice(&voter.0);
            put_string(&mut out, choice);
        }
        out
    }

    /// Reads a ledger from [`Ledger::to_bytes`]. Every count is only trusted as far as the
    /// bytes that follow bear it out (nothing is allocated ahead of them); an account or vote
    /// given twice, or a name held by two accounts, is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Ledger, DecodeError> {
        let mut r = Reader { bytes };
        let mut accounts = std::collections::HashMap::new();
        for _ in 0..r.u32("account count")? {
            let id = AccountId(r.array("account id")?);
            let name = match r.array::<1>("name flag")?[0] {
                0 => None,
                1 => Some(r.string("name")?),
                tag => return Err(DecodeError::Tag(tag)),
            };
            let balance = r.u64("balance")?;
            let next_seq = r.u64("next sequence number")?;
            let mut cage = std::collections::BTreeMap::new();
            for _ in 0..r.u32("cage size")? {
                let monkey = r.string("monkey")?;
                if cage.insert(monkey, r.u32("monkey count")?).is_some() {
                    return Err(DecodeError::Inconsistent("a monkey twice in a cage"));
                }
            }
            let account = Account {
                name,
                balance,
                next_seq,
                cage,
            };
            if accounts.insert(id, account).is_some() {
                return Err(DecodeError::Inconsistent("an account twice"));
            }
        }
        let mut votes = std::collections::HashMap::new();
        for _ in 0..r.u32("vote count")? {
            let poll = r.string("poll")?;
            let voter = AccountId(r.array("voter")?);
            let choice = r.string("choice")?;
            if votes.insert((poll, voter), choice).is_some() {
                return Err(DecodeError::Inconsistent("a vote twice"));
            }
        }
        r.finish()?;
        Ledger::from_parts(accounts, votes).ok_or(DecodeError::Inconsistent("a name held twice"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Keypair;
    use crate::block::genesis;

    #[test]
    fn blocks_and_records_round_trip_and_damage_is_an_error() {
        let k = Keypair::from_seed([1; 32]);
        let to = Keypair::from_seed([2; 32]).account();
        let records = vec![
            Record::sign(
                &k,
                0,
                Action::Join {
                    name: "zoé".into()
                },
            ),
            Record::sign(
                &k,
                1,
                Action::Purchase {
                    monkey: "baboon".into(),
                },
            ),
            Record::sign(&k, 2, Action::Transfer { to, amount: 7 }),
            Record::sign(
                &k,
                3,
                Action::Vote {
                    poll: "p".into(),
                    choice: "c".into(),
                },
            ),
        ];
        let block = Block::template(&genesis().header, records, k.account(), 9, 5);
        let bytes = block.to_bytes();
        assert_eq!(Block::from_bytes(&bytes), Ok(block.clone()));
        assert_eq!(
            Header::decode(&block.header.encode()),
            Ok(block.header.clone())
        );
        for cut in [0, 10, HEADER_SIZE, HEADER_SIZE + 3, bytes.len() - 1] {
            assert!(Block::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Block::from_bytes(&longer), Err(DecodeError::Trailing(1)));
        let mut bad_tag = block.records[0].encode();
        bad_tag[RECORD_DOMAIN.len() + 40] = 9;
        assert_eq!(Record::decode(&bad_tag), Err(DecodeError::Tag(9)));
    }

    #[test]
    fn packed_blocks_round_trip_and_a_cut_or_one_too_many_is_an_error() {
        let k = Keypair::from_seed([1; 32]);
        let b1 = Block::template(
            &genesis().header,
            vec![Record::join(&k, "al")],
            k.account(),
            9,
            5,
        );
        let b2 = Block::template(&b1.header, Vec::new(), k.account(), 9, 6);
        let blocks = vec![b1.clone(), b2.clone(), b1];
        for block in &blocks {
            assert_eq!(block.binary_len(), block.to_bytes().len());
        }
        let packed = pack_blocks(&blocks);
        assert_eq!(
            packed.len(),
            blocks.iter().map(Block::binary_len).sum::<usize>()
        );
        assert_eq!(unpack_blocks(&packed, 3), Ok(blocks.clone()));
        assert_eq!(unpack_blocks(&[], 3), Ok(Vec::new()));
        assert_eq!(
            unpack_blocks(&packed, 2),
            Err(DecodeError::TooManyBlocks(2))
        );
        assert!(unpack_blocks(&packed[..packed.len() - 1], 3).is_err());
        let mut longer = packed.clone();
        longer.push(0);
        assert!(
            unpack_blocks(&longer, 4).is_err(),
            "a stray byte is a cut block"
        );
    }

    #[test]
    fn ledgers_round_trip_in_one_form_and_damage_is_an_error() {
        let alice = Keypair::from_seed([1; 32]);
        let bob = Keypair::from_seed([2; 32]);
        let records = vec![
            Record::sign(
                &alice,
                0,
                Action::Join {
                    name: "Zoé".into()
                },
            ),
            Record::sign(&bob, 0, Action::Join { name: "bob".into() }),
            Record::sign(
                &alice,
                1,
                Action::Purchase {
                    monkey: "baboon".into(),
                },
            ),
            Record::sign(
                &alice,
                2,
                Action::Transfer {
                    to: bob.account(),
                    amount: 7,
                },
            ),
            Record::sign(
                &alice,
                3,
                Action::Vote {
                    poll: "p".into(),
                    choice: "c".into(),
                },
            ),
            Record::sign(
                &bob,
                1,
                Action::Vote {
                    poll: "p".into(),
                    choice: "c".into(),
                },
            ),
        ];
        let block = Block::template(&genesis().header, records, alice.account(), 9, 5);
        let mut ledger = Ledger::new();
        ledger.apply_block(&block).unwrap();
        let bytes = ledger.to_bytes();
        let back = Ledger::from_bytes(&bytes).unwrap();
        // Names and tallies are derived, and come back equal to what the rules built.
        assert_eq!(back, ledger);
        assert_eq!(back.account_by_name("zoe\u{301}"), Some(alice.account()));
        assert_eq!(back.account_by_name("ZOÉ"), Some(alice.account()));
        assert_eq!(back.tally("p"), vec![("c".to_string(), 2)]);
        // One form: the same ledger built again gives the same bytes.
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(
            Ledger::from_bytes(&Ledger::new().to_bytes()),
            Ok(Ledger::new())
        );
        for cut in [0, 3, 4, 40, bytes.len() - 1] {
            assert!(Ledger::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Ledger::from_bytes(&longer), Err(DecodeError::Trailing(1)));
        // A count far beyond the bytes is an error, not an allocation.
        assert!(Ledger::from_bytes(&u32::MAX.to_le_bytes()).is_err());
        // The same account twice.
        let one = {
            let mut l = Ledger::new();
            l.apply_block(&Block::template(
                &genesis().header,
                vec![],
                bob.account(),
                9,
                5,
            ))
            .unwrap();
            l.to_bytes()
        };
        let mut twice = 2u32.to_le_bytes().to_vec();
        twice.extend_from_slice(&one[4..one.len() - 4]);
        twice.extend_from_slice(&one[4..]);
        assert_eq!(
            Ledger::from_bytes(&twice),
            Err(DecodeError::Inconsistent("an account twice"))
        );
    }
}
