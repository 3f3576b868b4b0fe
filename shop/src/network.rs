//! Talking to the network: who is there (the tracker), which node to use, reading the chain,
//! and sending a shopper's records until one is in a block.
//!
//! Records go to a random active node (or `--node` first). The shop sends the shopper's pending
//! records and the new one on one connection, in order, and follows the node's answers: one `K`
//! (`pending`, `waiting` or `mined`) or `E` per record, in the order sent, and later a `B` for
//! the block that holds one. While it waits for that `B` it sends the new record again every few
//! seconds: the node answers `K` again (or `K mined` and the `B`, should the `B` itself have been
//! missed), so a lost notification cannot leave the shop waiting forever. If the node does not
//! answer in time, or the connection drops, the same signed records go to the next node: a
//! record has one id and one sequence number, so no retry can apply it twice.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use protocol::AccountId;
use protocol::codec::LineCodec;
use protocol::hash::Hash256;
use protocol::tracker::{NodeInfo, NodeStatus, Topology};
use protocol::wire::{AckStatus, ErrorCode, Message};
use protocol::{Block, Params, Record, RecordId};
use rand::seq::SliceRandom;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::Framed;

use crate::chain::{self, ChainError, ChainState, OffBase};
use crate::error::{Attempt, ShopError};

/// Most remembered nodes read back (the file is the shop's own, but it is still input).
const MAX_REMEMBERED: usize = 1024;

/// Most chains one read fetches and checks whole to pick the best: each costs the whole chain
/// and every signature in it, and one honest node among them is enough to outweigh liars.
pub const MAX_CHAIN_READS: usize = 3;

/// While waiting for a block, the record is sent again after this long without news.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Chains read from several nodes, checked.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// The chains that passed, in the order read.
    pub chains: Vec<ChainState>,
    /// Nodes whose chain failed the checks, and why.
    pub liars: Vec<Attempt>,
    /// Nodes that could not be read.
    pub failed: Vec<Attempt>,
}

impl Reading {
    /// Files what reading the chain of the node at `addr` came to.
    fn take(&mut self, addr: &str, read: Result<ChainState, ChainError>) {
        match read {
            Ok(state) => self.chains.push(state),
            Err(e) => {
                let attempt = Attempt {
                    node: addr.to_string(),
                    error: e.to_string(),
                };
                if e.is_lie() {
                    tracing::warn!(node = %addr, error = %e, "the node lied");
                    self.liars.push(attempt);
                } else {
                    tracing::info!(node = %addr, error = %e, "cannot read the chain");
                    self.failed.push(attempt);
                }
            }
        }
    }
}

/// Where a record stands.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In the node's pool, to be mined.
    Pending,
    /// In the node's pool, waiting for the shopper's earlier records.
    Waiting,
    /// In a block of the best chain the shop checked, which a second node holds too (or the
    /// only active node).
    Mined,
    /// In a block of the best chain the shop checked, seen on the node that took it only.
    #[serde(rename = "mined_on_one_node")]
    OneNode,
}

impl Status {
    /// What a node's `K` says, before the shop checks a chain.
    fn of_ack(status: AckStatus) -> Status {
        match status {
            AckStatus::Mined => Status::Mined,
            AckStatus::Waiting => Status::Waiting,
            AckStatus::Pending => Status::Pending,
        }
    }
}

/// What happens while a record is sent, for a spinner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Asking the tracker who is there.
    Topology,
    /// Reading the chain from a node.
    Reading(String),
    /// Sending to a node.
    Sending(String),
    /// The node took the record; now it is being mined.
    Accepted(String, Status),
    /// A node failed; the next is tried.
    Retrying(String, String),
}

/// A record a node took.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The node that took it.
    pub node: String,
    /// Where it stands.
    pub status: Status,
    /// The block holding it, once mined.
    pub block: Option<Block>,
    /// From the first send to the last answer.
    pub elapsed: Duration,
    /// Nodes that failed first.
    pub tried: Vec<Attempt>,
}

/// Why a record did not get where it was going.
#[derive(Debug, Clone)]
pub enum SubmitError {
    /// A node refused it, with its reason.
    Refused {
        /// The node.
        node: String,
        /// Its reason.
        reason: String,
        /// Every record the node refused: the target, and any pending record before it.
        refused: Vec<RecordId>,
    },
    /// No node acknowledged it.
    NotTaken {
        /// Every node tried.
        tried: Vec<Attempt>,
    },
    /// A node acknowledged it, but none confirmed a block in time.
    Unconfirmed {
        /// The last node that acknowledged it.
        node: String,
        /// What went wrong after.
        why: String,
        /// Every node tried.
        tried: Vec<Attempt>,
    },
}

/// How one node failed.
enum Failure {
    /// It refused the record (and maybe earlier ones: all their ids).
    Refused(String, Vec<RecordId>),
    /// It failed; another node may do better.
    Lost { acked: bool, reason: String },
    /// The time to wait for the block is over.
    Expired(String),
}

/// The tracker and the timeouts to use with it and the nodes.
#[derive(Debug, Clone)]
pub struct Network {
    /// The tracker's address.
    pub tracker: String,
    /// A node to use first, before the tracker's.
    pub preferred: Option<String>,
    /// The network's parameters (its difficulty floor): every block read is checked at them.
    pub params: Params,
    /// How long a connection, or an answer, may take.
    pub answer_timeout: Duration,
    /// How long to wait for a record to be mined.
    pub wait_timeout: Duration,
    /// Where the nodes the tracker last listed are remembered (`nodes.json` in the wallet),
    /// for when the tracker is down or just restarted and knows nobody yet.
    pub memory: Option<PathBuf>,
}

impl Network {
    /// Asks the tracker who is there.
    pub async fn topology(&self) -> Result<Topology, ShopError> {
        tracker::client::query(&self.tracker, self.answer_timeout)
            .await
            .map_err(|e| ShopError::Tracker(format!("{e:#}")))
    }

    /// The nodes to send to and read from: the tracker's active nodes, remembered for next time;
    /// when the tracker is down or lists no node (a tracker just restarted knows nobody for a
    /// second), the nodes it listed last time. Nodes keep working without the tracker, and so
    /// does the shop.
    pub async fn nodes(&self) -> Result<Topology, ShopError> {
        let asked = self.topology().await;
        if let Ok(topology) = &asked
            && topology.active().next().is_some()
        {
            self.remember(topology);
            return asked;
        }
        match self.remembered() {
            Some(remembered) => {
                tracing::warn!(
                    tracker = %self.tracker,
                    nodes = remembered.nodes.len(),
                    "the tracker cannot help; trying the nodes it listed last"
                );
                Ok(remembered)
            }
            None => asked,
        }
    }

    /// Saves the active nodes' addresses; a failure only costs the fallback.
    fn remember(&self, topology: &Topology) {
        let Some(path) = &self.memory else { return };
        let addrs: Vec<&str> = topology.active().map(|n| n.addr.as_str()).collect();
        let Ok(json) = serde_json::to_vec(&addrs) else {
            return;
        };
        let tmp = path.with_extension("tmp");
        // The first command of a new wallet asks the tracker before the wallet exists.
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        if std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, path))
            .is_err()
        {
            tracing::debug!(file = %path.display(), "cannot remember the nodes");
        }
    }

    /// The remembered nodes as a topology of active nodes, if there are any.
    fn remembered(&self) -> Option<Topology> {
        let bytes = std::fs::read(self.memory.as_ref()?).ok()?;
        let addrs: Vec<String> = serde_json::from_slice(&bytes).ok()?;
        let nodes: Vec<NodeInfo> = addrs
            .into_iter()
            .take(MAX_REMEMBERED)
            .map(|addr| NodeInfo {
                id: AccountId([0; 32]),
                addr,
                status: NodeStatus::A,
                last_seen_ms: 0,
                tip_height: 0,
                tip_hash: Hash256::ZERO,
                load: 0.0,
                difficulty: 0,
            })
            .collect();
        (!nodes.is_empty()).then_some(Topology {
            nodes,
            ..Topology::default()
        })
    }

    /// The nodes to use, in order: the preferred one, then the active ones in random order.
    pub fn candidates(&self, topology: &Topology) -> Result<Vec<String>, ShopError> {
        let mut active: Vec<String> = topology.active().map(|n| n.addr.clone()).collect();
        active.sort();
        active.dedup();
        active.shuffle(&mut rand::rng());
        if let Some(first) = &self.preferred {
            active.retain(|a| a != first);
            active.insert(0, first.clone());
        }
        if active.is_empty() {
            return Err(ShopError::NoActiveNode(self.tracker.clone()));
        }
        Ok(active)
    }

    /// Reads and checks the chains of `candidates` in order on top of `base` (a chain the shop
    /// verified, see [`chain::read`]), until `max` of them passed. A node whose chain fails the
    /// checks is a liar; one that does not answer has only failed. A node whose chain does not hold `base`'s checkpoint is not checked from
    /// genesis (seconds on a long chain, at every action) while another node agrees with
    /// `base`: it is put in `off_base` (the caller keeps that set for its session, and such a
    /// node is not asked again), and its chain is checked whole only when no other node's
    /// passed, so a shop whose every node lost the checkpoint still reads a chain. No honest
    /// node of the network lacks the checkpoint with more work: nodes never reorganise below
    /// it (see [`chain::TAIL_BLOCKS`]).
    pub async fn read_chains(
        &self,
        candidates: &[String],
        max: usize,
        progress: &dyn Fn(Progress),
        base: &ChainState,
        off_base: &mut HashSet<String>,
    ) -> Reading {
        let mut reading = Reading::default();
        let mut set_aside = Vec::new();
        for addr in candidates {
            if reading.chains.len() >= max {
                break;
            }
            if off_base.contains(addr) {
                set_aside.push(addr);
                continue;
            }
            progress(Progress::Reading(addr.clone()));
            let read = chain::read(addr, self.answer_timeout, &self.params, base, OffBase::Stop);
            match read.await {
                Err(ChainError::LacksCheckpoint(height)) => {
                    tracing::info!(node = %addr, checkpoint = height, "the node's chain does not hold the checkpoint: set aside");
                    off_base.insert(addr.clone());
                    set_aside.push(addr);
                }
                read => reading.take(addr, read),
            }
        }
        if reading.chains.is_empty() {
            for addr in set_aside.into_iter().take(max) {
                progress(Progress::Reading(addr.clone()));
                let whole = OffBase::FromGenesis;
                let read = chain::read(addr, self.answer_timeout, &self.params, base, whole);
                reading.take(addr, read.await);
            }
        }
        reading
    }

    /// Sends `records` (the shopper's pending ones and `target`, by sequence number) to the
    /// first of `candidates` that takes them, and follows `target` until it is pending (`wait`
    /// false) or in a block.
    pub async fn submit(
        &self,
        candidates: &[String],
        records: &[Record],
        target: &Record,
        wait: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<Submitted, SubmitError> {
        let start = Instant::now();
        let deadline = start + self.wait_timeout;
        let mut tried = Vec::new();
        let mut acked_by: Option<String> = None;
        for addr in candidates {
            if Instant::now() >= deadline {
                break;
            }
            progress(Progress::Sending(addr.clone()));
            match self
                .attempt(addr, records, target, wait, deadline, progress)
                .await
            {
                Ok((status, block)) => {
                    return Ok(Submitted {
                        node: addr.clone(),
                        status,
                        block,
                        elapsed: start.elapsed(),
                        tried,
                    });
                }
                Err(Failure::Refused(reason, refused)) => {
                    return Err(SubmitError::Refused {
                        node: addr.clone(),
                        reason,
                        refused,
                    });
                }
                Err(Failure::Lost { acked, reason }) => {
                    tracing::info!(node = %addr, %reason, acked, "node failed; trying the next");
                    if acked {
                        acked_by = Some(addr.clone());
                    }
                    progress(Progress::Retrying(addr.clone(), reason.clone()));
                    tried.push(Attempt {
                        node: addr.clone(),
                        error: reason,
                    });
                }
                Err(Failure::Expired(reason)) => {
                    acked_by = Some(addr.clone());
                    tried.push(Attempt {
                        node: addr.clone(),
                        error: reason,
                    });
                    break;
                }
            }
        }
        match acked_by {
            Some(node) => Err(SubmitError::Unconfirmed {
                node,
                why: tried
                    .last()
                    .map_or_else(|| "no time left".into(), |a| a.error.clone()),
                tried,
            }),
            None => Err(SubmitError::NotTaken { tried }),
        }
    }

    /// One node: send everything, then follow the answers.
    async fn attempt(
        &self,
        addr: &str,
        records: &[Record],
        target: &Record,
        wait: bool,
        deadline: Instant,
        progress: &dyn Fn(Progress),
    ) -> Result<(Status, Option<Block>), Failure> {
        let lost = |acked: bool, reason: String| Failure::Lost { acked, reason };
        let target_id = target.id();
        let stream = tokio::time::timeout(self.answer_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| lost(false, "no connection in time".into()))?
            .map_err(|e| lost(false, format!("cannot connect: {e}")))?;
        stream.set_nodelay(true).ok();
        let mut link = Framed::new(stream, LineCodec::<Message>::new());
        for record in records {
            link.feed(Message::Record(record.clone()))
                .await
                .map_err(|e| lost(false, format!("cannot send: {e}")))?;
        }
        SinkExt::<Message>::flush(&mut link)
            .await
            .map_err(|e| lost(false, format!("cannot send: {e}")))?;

        // Each `A` gets one `K` or `E`, in order; `B`s come in between.
        let mut expected: VecDeque<RecordId> = records.iter().map(Record::id).collect();
        let mut answer_due = Some(Instant::now() + self.answer_timeout);
        let mut acked: Option<Status> = None;
        let mut next_poll: Option<Instant> = None;
        let mut earlier_refusal: Option<String> = None;
        let mut refused_ids: Vec<RecordId> = Vec::new();
        loop {
            let wake = [answer_due, next_poll]
                .into_iter()
                .flatten()
                .fold(deadline, Instant::min);
            let message = tokio::select! {
                message = link.next() => message,
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if answer_due.is_some_and(|due| now >= due) {
                        return Err(lost(
                            acked.is_some(),
                            format!("no answer within {} s", self.answer_timeout.as_secs_f32()),
                        ));
                    }
                    if now >= deadline {
                        return Err(match acked {
                            Some(_) => Failure::Expired(format!(
                                "not in a block within {} s",
                                self.wait_timeout.as_secs_f32()
                            )),
                            None => lost(false, "no time left".into()),
                        });
                    }
                    // No news for a while: ask again, which also brings a missed `B`.
                    link.send(Message::Record(target.clone()))
                        .await
                        .map_err(|e| lost(acked.is_some(), format!("connection lost: {e}")))?;
                    expected.push_back(target_id);
                    answer_due = Some(now + self.answer_timeout);
                    next_poll = None;
                    continue;
                }
            };
            let now = Instant::now();
            match message {
                None => return Err(lost(acked.is_some(), "it closed the connection".into())),
                Some(Err(e)) => return Err(lost(acked.is_some(), format!("connection lost: {e}"))),
                Some(Ok(Message::Ack(ack))) => {
                    match expected.iter().position(|id| *id == ack.id) {
                        Some(i) => {
                            expected.remove(i);
                        }
                        None => tracing::debug!(node = %addr, id = %ack.id.short(), "unexpected K"),
                    }
                    answer_due = (!expected.is_empty()).then(|| now + self.answer_timeout);
                    if ack.id != target_id {
                        continue;
                    }
                    let status = Status::of_ack(ack.status);
                    if acked.is_none() {
                        progress(Progress::Accepted(addr.to_string(), status));
                    }
                    acked = Some(status);
                    if status == Status::Mined {
                        // Its `B` follows at once.
                        answer_due = Some(now + self.answer_timeout);
                    } else if !wait {
                        return Ok((status, None));
                    } else {
                        next_poll = Some(now + POLL_INTERVAL);
                    }
                }
                Some(Ok(Message::Error(e))) if e.code == ErrorCode::InvalidRecord => {
                    let refused = expected.pop_front();
                    answer_due = (!expected.is_empty()).then(|| now + self.answer_timeout);
                    refused_ids.extend(refused);
                    if refused == Some(target_id) {
                        let reason = match earlier_refusal {
                            Some(earlier) => {
                                format!(
                                    "{} (an earlier pending record was refused: {earlier})",
                                    e.message
                                )
                            }
                            None => e.message,
                        };
                        return Err(Failure::Refused(reason, refused_ids));
                    }
                    earlier_refusal = Some(e.message);
                }
                Some(Ok(Message::Error(e))) => {
                    return Err(lost(
                        acked.is_some(),
                        format!("it answered {}: {}", e.code, e.message),
                    ));
                }
                Some(Ok(Message::Block(block))) => {
                    if block.records.iter().any(|r| r.id() == target_id) {
                        return Ok((Status::Mined, Some(block)));
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    }
}
