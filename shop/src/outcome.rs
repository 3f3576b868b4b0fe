//! What each shop command returns: values that print as JSON for scripts (`--json`, one object
//! per command) and as short text for people. The JSON fields are listed in the README.

use std::collections::BTreeMap;
use std::fmt;

use protocol::catalog::{self, Monkey};
use protocol::{AccountId, Action, BlockHash, RecordId};
use serde::Serialize;

use crate::error::Attempt;
use crate::listing::listing;
use crate::network::Status;

/// A record a command signed and sent: `join`, `buy`, `send`, `vote`.
#[derive(Debug, Clone, Serialize)]
pub struct RecordOutcome {
    /// `join`, `buy`, `send` or `vote`.
    pub command: &'static str,
    /// The shopper's name.
    pub shopper: String,
    /// The shopper's account.
    pub account: AccountId,
    /// The record's id.
    pub record: RecordId,
    /// Its sequence number.
    pub seq: u64,
    /// What it does, as it travels.
    pub action: Action,
    /// `mined`, or `pending`/`waiting` with `--no-wait`.
    pub status: Status,
    /// The node that took the record.
    pub node: String,
    /// The block that holds it, once mined.
    pub block: Option<BlockInfo>,
    /// From sending to the last answer, in milliseconds.
    pub elapsed_ms: u64,
    /// Nodes tried first that failed.
    pub tried: Vec<Attempt>,
    /// Nodes caught lying (a block or chain that fails the checks, an answer that contradicts
    /// their own chain), skipped for the rest of the command.
    pub liars: Vec<Attempt>,
    /// The shopper's coins after this record: on the chain once mined, counting pending records
    /// otherwise.
    pub balance: u64,
    /// The shopper's monkeys after this record, by catalog id.
    pub cage: BTreeMap<String, u32>,
    /// The shopper's records still waiting for a block.
    pub pending: usize,
    /// `buy`: the monkey bought.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monkey: Option<Monkey>,
    /// `send`: the recipient's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `send`: the coins sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    /// `vote`: the poll's tally after the vote, most votes first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tally: Option<Vec<TallyEntry>>,
}

/// Where a record landed.
#[derive(Debug, Clone, Serialize)]
pub struct BlockInfo {
    /// The block's height.
    pub height: u64,
    /// Its hash.
    pub hash: BlockHash,
    /// The node that mined it (its id).
    pub miner: AccountId,
    /// That node's address, if the tracker knows it.
    pub miner_addr: Option<String>,
}

/// Votes for one choice.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TallyEntry {
    /// The choice.
    pub choice: String,
    /// Its votes.
    pub votes: u64,
}

/// Which chain a view was read from.
#[derive(Debug, Clone, Serialize)]
pub struct ChainInfo {
    /// The tip's height.
    pub height: u64,
    /// The tip's hash.
    pub tip: BlockHash,
    /// The node it was read from.
    pub node: String,
    /// How many blocks that node sent for this read: with the wallet's chain cache, only what
    /// is new since the last command (and the tip, re-sent to show where the node's chain ends).
    pub received: u64,
}

impl ChainInfo {
    /// Which chain `chain` is.
    pub fn of(chain: &crate::chain::ChainState) -> ChainInfo {
        ChainInfo {
            height: chain.height,
            tip: chain.tip,
            node: chain.source.clone(),
            received: chain.received,
        }
    }
}

/// A record of the shopper's that no block holds yet.
#[derive(Debug, Clone, Serialize)]
pub struct PendingRecord {
    /// Its id.
    pub record: RecordId,
    /// Its sequence number.
    pub seq: u64,
    /// What it does.
    pub action: Action,
}

/// One shopper: `show NAME`.
#[derive(Debug, Clone, Serialize)]
pub struct ShopperView {
    /// The name.
    pub name: String,
    /// The account.
    pub account: AccountId,
    /// Whether the join is in the chain.
    pub joined: bool,
    /// Coins on the chain.
    pub balance: u64,
    /// Monkeys on the chain, by catalog id.
    pub cage: BTreeMap<String, u32>,
    /// How many monkeys in all.
    pub monkeys: u32,
    /// Choices voted for, by poll.
    pub votes: BTreeMap<String, String>,
    /// The shopper's records not in a block yet (only for shoppers in this wallet).
    pub pending: Vec<PendingRecord>,
    /// Whether the shopper's key is in this wallet.
    pub in_wallet: bool,
    /// The chain read.
    pub chain: ChainInfo,
}

/// One row of the shoppers' table.
#[derive(Debug, Clone, Serialize)]
pub struct ShopperRow {
    /// The name.
    pub name: String,
    /// The account.
    pub account: AccountId,
    /// Coins.
    pub balance: u64,
    /// How many monkeys in all.
    pub monkeys: u32,
    /// Monkeys by catalog id.
    pub cage: BTreeMap<String, u32>,
}

/// Every shopper on the chain: `show`.
#[derive(Debug, Clone, Serialize)]
pub struct ShoppersView {
    /// The chain read.
    pub chain: ChainInfo,
    /// Every joined account, by name.
    pub shoppers: Vec<ShopperRow>,
    /// Every poll's tally, most votes first.
    pub polls: BTreeMap<String, Vec<TallyEntry>>,
}

/// What `show` printed.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ShowOutcome {
    /// One shopper.
    One(ShopperView),
    /// Everyone.
    All(ShoppersView),
}

/// The catalog: `catalog`.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogOutcome {
    /// Every monkey, cheapest first.
    pub monkeys: Vec<Monkey>,
}

/// One node as the tracker reports it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// Its id.
    pub id: AccountId,
    /// Its address.
    pub addr: String,
    /// `active` or `removed`.
    pub status: &'static str,
    /// Its best tip's height at its last report.
    pub tip_height: u64,
    /// Its mining difficulty, in bits.
    pub difficulty: u32,
    /// Other processes' CPU load on its host, 0 to 1.
    pub load: f32,
    /// Milliseconds since its last report.
    pub last_seen_ms: u64,
}

/// The network: `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusOutcome {
    /// The tracker asked.
    pub tracker: String,
    /// Active nodes.
    pub active: usize,
    /// Every node the tracker knows.
    pub nodes: Vec<NodeRow>,
    /// The chain as one active node has it; `null` when none answered.
    pub chain: Option<ChainInfo>,
}

/// "a Capuchin", "an Howler monkey".
pub fn a_monkey(id: &str) -> String {
    let name = catalog::monkey(id).map_or(id, |m| m.name);
    let article = match name.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    };
    format!("{article} {name}")
}

/// "1 Capuchin, 2 Pygmy marmoset", or "no monkeys".
pub fn describe_cage(cage: &BTreeMap<String, u32>) -> String {
    let held = cage.iter().filter(|(_, n)| **n > 0).map(|(id, n)| {
        let name = catalog::monkey(id).map_or(id.as_str(), |m| m.name);
        format!("{n} {name}")
    });
    listing(held, ", ", "no monkeys")
}

/// "capuchin 2, baboon 1", or "no votes yet".
pub fn describe_tally(tally: &[TallyEntry]) -> String {
    let each = tally.iter().map(|t| format!("{} {}", t.choice, t.votes));
    listing(each, ", ", "no votes yet")
}

/// Who a transfer went to: the name the caller knows `account` by (`to`), else its short id.
fn recipient(account: &AccountId, to: Option<&str>) -> String {
    to.map_or_else(|| account.short(), str::to_string)
}

/// What a record does, in the past tense: "alice bought a Capuchin for 200 coins".
pub fn done(shopper: &str, action: &Action, to: Option<&str>) -> String {
    match action {
        Action::Join { .. } => format!("{shopper} joined"),
        Action::Purchase { monkey } => {
            let price = catalog::monkey(monkey).map_or(0, |m| m.price);
            format!("{shopper} bought {} for {price} coins", a_monkey(monkey))
        }
        Action::Transfer {
            amount,
            to: account,
        } => format!(
            "{shopper} sent {amount} coins to {}",
            recipient(account, to)
        ),
        Action::Vote { poll, choice } => format!("{shopper} voted for {choice} in {poll}"),
    }
}

/// What a record does, as a noun: "alice's purchase of a Capuchin".
pub fn doing(shopper: &str, action: &Action, to: Option<&str>) -> String {
    match action {
        Action::Join { .. } => format!("{shopper}'s join"),
        Action::Purchase { monkey } => format!("{shopper}'s purchase of {}", a_monkey(monkey)),
        Action::Transfer {
            amount,
            to: account,
        } => format!(
            "{shopper}'s transfer of {amount} coins to {}",
            recipient(account, to)
        ),
        Action::Vote { poll, choice } => format!("{shopper}'s vote for {choice} in {poll}"),
    }
}

/// `items` as a table, a row each (`row` gives its cells): columns padded to their widest
/// cell, numbers right-aligned.
pub fn table<T>(headers: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) -> String {
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let numeric: Vec<bool> = (0..headers.len())
        .map(|i| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r.get(i)
                        .is_some_and(|c| c.parse::<f64>().is_ok() || c == "-")
                })
        })
        .collect();
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if numeric[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out
    };
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// "7 ms", "1.2 s".
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// "1 monkey", "2 monkeys".
pub fn monkeys(n: u32) -> String {
    if n == 1 {
        "1 monkey".into()
    } else {
        format!("{n} monkeys")
    }
}

impl RecordOutcome {
    /// The first line people see: what happened, and in which block.
    pub fn headline(&self) -> String {
        let to = self.to.as_deref();
        match (&self.block, self.status) {
            (Some(b), Status::OneNode) => format!(
                "{} is in block {} ({}) on node {} only: no other node holds it yet",
                doing(&self.shopper, &self.action, to),
                b.height,
                b.hash.short(),
                self.node
            ),
            (Some(b), _) => format!(
                "{}: in block {} ({})",
                done(&self.shopper, &self.action, to),
                b.height,
                b.hash.short()
            ),
            (None, status) => format!(
                "{} is {} at node {} (record {})",
                doing(&self.shopper, &self.action, to),
                match status {
                    Status::Waiting => "waiting for earlier records",
                    _ => "pending",
                },
                self.node,
                self.record.short()
            ),
        }
    }
}

impl fmt::Display for RecordOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        if let Some(b) = &self.block {
            let by = match &b.miner_addr {
                Some(addr) if *addr == self.node => "who mined it".to_string(),
                Some(addr) => format!("mined by node {} ({addr})", b.miner.short()),
                None => format!("mined by node {}", b.miner.short()),
            };
            writeln!(
                f,
                "  taken by node {}, {by}, in {}",
                self.node,
                duration(self.elapsed_ms)
            )?;
        }
        if !self.tried.is_empty() {
            writeln!(f, "  first tried {}", Attempt::list(&self.tried))?;
        }
        for liar in &self.liars {
            writeln!(
                f,
                "  node {} lied and was skipped: {}",
                liar.node, liar.error
            )?;
        }
        let will = if self.block.is_some() {
            "has"
        } else {
            "will have"
        };
        write!(
            f,
            "  {} {will} {} coins and {}",
            self.shopper,
            self.balance,
            monkeys(self.cage.values().sum())
        )?;
        if let Some(tally) = &self.tally {
            write!(f, "\n  tally: {}", describe_tally(tally))?;
        }
        Ok(())
    }
}

impl fmt::Display for ShopperView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = if self.joined { "" } else { " (not joined yet)" };
        writeln!(f, "{}{joined}, account {}", self.name, self.account.short())?;
        writeln!(f, "  balance  {} coins", self.balance)?;
        write!(f, "  cage     {}", describe_cage(&self.cage))?;
        for (poll, choice) in &self.votes {
            write!(f, "\n  voted    {choice} in {poll}")?;
        }
        for p in &self.pending {
            write!(
                f,
                "\n  pending  {} (seq {}, record {})",
                doing(&self.name, &p.action, None),
                p.seq,
                p.record.short()
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for ShoppersView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "chain height {} (tip {}), read from node {}",
            self.chain.height,
            self.chain.tip.short(),
            self.chain.node
        )?;
        if self.shoppers.is_empty() {
            write!(f, "no shopper has joined yet")?;
        } else {
            let headers = ["NAME", "BALANCE", "MONKEYS"];
            let shoppers = table(&headers, &self.shoppers, |s| {
                let cage = if s.monkeys == 0 {
                    "-".into()
                } else {
                    describe_cage(&s.cage)
                };
                vec![s.name.clone(), s.balance.to_string(), cage]
            });
            write!(f, "{shoppers}")?;
        }
        for (poll, tally) in &self.polls {
            write!(f, "\n{poll}: {}", describe_tally(tally))?;
        }
        Ok(())
    }
}

impl fmt::Display for ShowOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShowOutcome::One(v) => v.fmt(f),
            ShowOutcome::All(v) => v.fmt(f),
        }
    }
}

impl fmt::Display for CatalogOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let monkeys = table(&["MONKEY", "NAME", "PRICE"], &self.monkeys, |m| {
            vec![m.id.to_string(), m.name.to_string(), m.price.to_string()]
        });
        write!(f, "{monkeys}")
    }
}

impl fmt::Display for StatusOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "tracker {}: {} active node{}",
            self.tracker,
            self.active,
            if self.active == 1 { "" } else { "s" }
        )?;
        if !self.nodes.is_empty() {
            let headers = ["NODE", "ADDRESS", "STATUS", "TIP", "BITS", "LOAD"];
            let nodes = table(&headers, &self.nodes, |n| {
                vec![
                    n.id.short(),
                    n.addr.clone(),
                    n.status.to_string(),
                    n.tip_height.to_string(),
                    n.difficulty.to_string(),
                    format!("{:.2}", n.load),
                ]
            });
            writeln!(f, "{nodes}")?;
        }
        match &self.chain {
            Some(c) => write!(
                f,
                "chain: height {} ({} blocks with genesis), tip {}, read from node {}",
                c.height,
                c.height + 1,
                c.tip.short(),
                c.node
            ),
            None => write!(f, "chain: no active node answered"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_and_right_align_numbers() {
        let rows = vec![
            vec!["alice".to_string(), "800".to_string()],
            vec!["bo".to_string(), "1000".to_string()],
        ];
        assert_eq!(
            table(&["NAME", "BALANCE"], &rows, Vec::clone),
            "NAME   BALANCE\nalice      800\nbo        1000"
        );
    }

    #[test]
    fn monkeys_read_as_english() {
        assert_eq!(a_monkey("capuchin"), "a Capuchin");
        assert_eq!(a_monkey("howler"), "a Howler monkey");
        let mut cage = BTreeMap::new();
        assert_eq!(describe_cage(&cage), "no monkeys");
        cage.insert("marmoset".to_string(), 2);
        cage.insert("baboon".to_string(), 1);
        assert_eq!(describe_cage(&cage), "1 Baboon, 2 Pygmy marmoset");
    }
}
