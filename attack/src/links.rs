//! Attacks on who links to whom: claiming other nodes' ids on connections to a node
//! (`impostor`), and making up node ids at the tracker (`fake-registrations`). Both need the
//! tracker's address: the first to learn the ids to claim, the second to register with.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use protocol::codec::LineCodec;
use protocol::handshake::{Hello, Nonce, Proof};
use protocol::tracker::{Report, Topology, TrackerMessage};
use protocol::wire::{Identify, Message};
use protocol::{AccountId, BlockHash, Keypair};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

use crate::{ANSWER_TIMEOUT, Outcome, RawConn, Target};

/// How long the impostor holds the connections the node leaves open: a link an unproven claim
/// cut stays cut as long as the claim is held.
pub const IMPOSTOR_HOLD: Duration = Duration::from_secs(20);
/// How long `fake-registrations` keeps its ids reporting (the tracker drops silent ones after a
/// few seconds) before it counts how many the tracker lists.
pub const FAKES_HOLD: Duration = Duration::from_secs(10);
/// The first port the made-up ids advertise (one each, upwards), on the attacker's address,
/// where nothing listens.
const FAKE_PORT: u16 = 40_000;

/// Asks the tracker at `tracker` for the topology.
pub async fn topology(tracker: &str) -> anyhow::Result<Topology> {
    let stream = tokio::time::timeout(ANSWER_TIMEOUT, TcpStream::connect(tracker)).await??;
    let mut link = Framed::new(stream, LineCodec::<TrackerMessage>::with_max_line(16 << 20));
    link.send(TrackerMessage::Query).await?;
    match tokio::time::timeout(ANSWER_TIMEOUT, link.next()).await? {
        Some(Ok(TrackerMessage::Topology(t))) => Ok(t),
        other => anyhow::bail!("the tracker answered {other:?}"),
    }
}

fn tracker_of(target: &Target) -> anyhow::Result<&str> {
    target
        .tracker
        .as_deref()
        .context("this attack needs the tracker's address (--tracker)")
}

/// For every other active node, two connections to the target that claim its id: one with a
/// bare `I`, one with a hello whose proof is signed by the wrong key. Reports the answers and
/// whether the node closed every one; holds the ones left open for [`IMPOSTOR_HOLD`].
pub async fn impostor(target: &Target) -> anyhow::Result<Outcome> {
    let topology = topology(tracker_of(target)?).await?;
    let victims: Vec<(AccountId, String)> = topology
        .active()
        .filter(|n| n.addr != target.node)
        .map(|n| (n.id, n.addr.clone()))
        .collect();
    anyhow::ensure!(!victims.is_empty(), "no other node to claim to be");
    let mut outcome = Outcome::default();
    let mut open = Vec::new();
    let throwaway = Keypair::from_seed(rand::random());
    for (id, addr) in &victims {
        let mut bare = RawConn::open(target).await?;
        bare.send(&Message::Identify(Identify {
            id: *id,
            addr: addr.clone(),
        }))
        .await;
        let mut forged = RawConn::open(target).await?;
        let nonce = Nonce(rand::random());
        forged
            .send(&Message::Hello(Hello {
                nonce,
                to: None,
                from: Some(*id),
            }))
            .await;
        // The node proves itself first; our "proof" is the victim's id over our own signature.
        if let Some(Message::Proof(theirs)) = forged.next().await {
            let sig = throwaway.sign(theirs.nonce.0.as_slice());
            forged
                .send(&Message::Proof(Proof {
                    id: *id,
                    addr: addr.clone(),
                    nonce,
                    sig,
                }))
                .await;
        }
        outcome.sent += 2;
        for mut conn in [bare, forged] {
            match answer(&mut conn).await {
                Answer::Closed(codes) => outcome.errors.extend(codes),
                Answer::Open => open.push(conn),
            }
        }
    }
    outcome.closed = open.is_empty();
    outcome.note = format!(
        "{} of {} claims closed by the node",
        outcome.sent - open.len(),
        outcome.sent
    );
    if !open.is_empty() {
        tokio::time::sleep(IMPOSTOR_HOLD).await;
    }
    Ok(outcome)
}

/// What a claiming connection got.
enum Answer {
    /// `E` codes, then the close.
    Closed(Vec<String>),
    /// Still open after a second of quiet.
    Open,
}

async fn answer(conn: &mut RawConn) -> Answer {
    let mut codes = Vec::new();
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_secs(1), conn.next_raw()).await {
            Ok(Some(Message::Error(e))) => codes.push(e.code.to_string()),
            Ok(Some(_)) => {}
            Ok(None) => return Answer::Closed(codes),
            Err(_) => return Answer::Open,
        }
    }
    Answer::Open
}

/// Made-up node ids reporting to the tracker from one address, each on its own connection and
/// with its own throwaway key, advertising ports where nothing listens; they go on reporting
/// every second until stopped.
pub struct Fakes {
    /// The ids the tracker took a report from.
    pub accepted: Vec<AccountId>,
    /// The codes of the reports the tracker refused.
    pub refused: Vec<String>,
    reporting: Vec<JoinHandle<()>>,
}

impl Fakes {
    /// Registers `target.count` made-up ids with the tracker, from `target.from`.
    pub async fn register(target: &Target) -> anyhow::Result<Fakes> {
        let tracker = tracker_of(target)?;
        let mut fakes = Fakes {
            accepted: Vec::new(),
            refused: Vec::new(),
            reporting: Vec::new(),
        };
        for i in 0..target.count {
            let key = Keypair::from_seed(rand::random());
            let port = FAKE_PORT.saturating_add(u16::try_from(i).unwrap_or(u16::MAX));
            let advertise = std::net::SocketAddr::new(target.from, port).to_string();
            let mut link = TrackerConn::open(tracker, target.from).await?;
            match link.report(&key, &advertise).await {
                Ok(()) => {
                    fakes.accepted.push(key.account());
                    fakes.reporting.push(tokio::spawn(async move {
                        // Bounded: the attack stops it long before.
                        for _ in 0..3600 {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if link.report(&key, &advertise).await.is_err() {
                                return;
                            }
                        }
                    }));
                }
                Err(code) => fakes.refused.push(code),
            }
        }
        Ok(fakes)
    }

    /// How many of the accepted ids the tracker lists as active.
    pub async fn listed(&self, tracker: &str) -> anyhow::Result<usize> {
        let ours: HashSet<&AccountId> = self.accepted.iter().collect();
        let topology = topology(tracker).await?;
        Ok(topology.active().filter(|n| ours.contains(&n.id)).count())
    }
}

impl Drop for Fakes {
    fn drop(&mut self) {
        for task in &self.reporting {
            task.abort();
        }
    }
}

/// A connection to the tracker from a chosen local address, reporting for made-up nodes.
pub struct TrackerConn {
    link: Framed<TcpStream, LineCodec<TrackerMessage>>,
}

impl TrackerConn {
    /// Connects to `tracker` from `from`.
    pub async fn open(tracker: &str, from: IpAddr) -> anyhow::Result<TrackerConn> {
        let addr = tokio::net::lookup_host(tracker)
            .await?
            .next()
            .context("the tracker's address resolves to nothing")?;
        let socket = if from.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind((from, 0).into())?;
        let stream = tokio::time::timeout(ANSWER_TIMEOUT, socket.connect(addr)).await??;
        let link = Framed::new(stream, LineCodec::<TrackerMessage>::with_max_line(16 << 20));
        Ok(TrackerConn { link })
    }

    /// One report signed by `key`, advertising `advertise`; the tracker's `E` code when it
    /// refuses it.
    pub async fn report(&mut self, key: &Keypair, advertise: &str) -> Result<(), String> {
        let now = protocol::clock::now_ms();
        let report = Report::sign(key, advertise.into(), now, (0, BlockHash::ZERO), 0.0, 20);
        self.link
            .send(TrackerMessage::Report(report))
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(ANSWER_TIMEOUT, self.link.next()).await {
            Ok(Some(Ok(TrackerMessage::Topology(_)))) => Ok(()),
            Ok(Some(Ok(TrackerMessage::Error(e)))) => Err(e.code.to_string()),
            other => Err(format!("{other:?}")),
        }
    }
}

/// `target.count` made-up ids registered, held for [`FAKES_HOLD`], then counted in the
/// tracker's list.
pub async fn fake_registrations(target: &Target) -> anyhow::Result<Outcome> {
    let fakes = Fakes::register(target).await?;
    tokio::time::sleep(FAKES_HOLD).await;
    let listed = fakes.listed(tracker_of(target)?).await?;
    let mut errors = fakes.refused.clone();
    errors.sort();
    errors.dedup();
    Ok(Outcome {
        sent: target.count,
        errors,
        note: format!(
            "{} ids taken, {} refused, {listed} listed after {} s",
            fakes.accepted.len(),
            fakes.refused.len(),
            FAKES_HOLD.as_secs()
        ),
        ..Outcome::default()
    })
}
