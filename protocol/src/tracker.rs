//! The tracker's messages: nodes report themselves every second and read the topology back;
//! anyone can ask for the topology.
//!
//! | op | from | payload | meaning |
//! |----|------|---------|---------|
//! | `R` | node | a signed [`Report`] | "I am alive at this address"; answered with `T` |
//! | `L` | node | a signed [`Leave`] | "I am leaving"; answered with `T` |
//! | `Q` | anyone | none | "who is there?"; answered with `T` |
//! | `T` | tracker | [`Topology`] | every known node and its status |
//! | `E` | tracker | `{"code", "message"}` | an error |
//!
//! Reports and leaves are signed by the node's key with a millisecond timestamp, so nobody can
//! announce or remove someone else's node, and an old message cannot be replayed.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::account::{AccountId, Keypair, Signature};
use crate::codec::{WireError, WireMessage};
use crate::hash::BlockHash;
use crate::wire::ErrorMessage;

const REPORT_DOMAIN: &[u8] = b"monkeychain/report/v1";
const LEAVE_DOMAIN: &[u8] = b"monkeychain/leave/v1";
pub use crate::params::MAX_ADDR_LEN;

/// A message to or from the tracker.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackerMessage {
    /// `R`: a node's heartbeat.
    Report(Report),
    /// `L`: a node leaving.
    Leave(Leave),
    /// `Q`: a topology request.
    Query,
    /// `T`: the topology.
    Topology(Topology),
    /// `E`: an error.
    Error(ErrorMessage),
}

/// A node's heartbeat: who it is, where to reach it, and how it is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The node's id (its public key).
    pub id: AccountId,
    /// Where peers and shops reach it, `host:port`.
    pub addr: String,
    /// The node's clock when it signed this, in milliseconds.
    pub timestamp: u64,
    /// Its best tip's height.
    pub tip_height: u64,
    /// Its best tip's hash.
    pub tip_hash: BlockHash,
    /// CPU load of other processes on its host, 0 to 1.
    pub load: f32,
    /// The difficulty it mines at now.
    pub difficulty: u32,
    /// Signature over the domain, id, address and timestamp.
    pub sig: Signature,
    /// The topology version the node already holds (from an earlier `T`), so the tracker can
    /// answer "unchanged" instead of the whole table. Not signed: a wrong one only costs the
    /// sender its own topology.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<u64>,
}

/// A node saying it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leave {
    /// The node's id.
    pub id: AccountId,
    /// The node's clock when it signed this, in milliseconds.
    pub timestamp: u64,
    /// Signature over the domain, id and timestamp.
    pub sig: Signature,
}

/// A node's status in the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeStatus {
    /// Active: reported within the last few seconds.
    A,
    /// Removed: left, or went silent.
    R,
}

/// One node as the tracker knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id.
    pub id: AccountId,
    /// Where to reach it.
    pub addr: String,
    /// Active or removed.
    pub status: NodeStatus,
    /// Milliseconds since its last report.
    pub last_seen_ms: u64,
    /// Its best tip's height at its last report.
    pub tip_height: u64,
    /// Its best tip's hash at its last report.
    pub tip_hash: BlockHash,
    /// CPU load of other processes on its host.
    pub load: f32,
    /// Its current mining difficulty.
    pub difficulty: u32,
}

/// The payload of `T`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Every known node, active and recently removed.
    pub nodes: Vec<NodeInfo>,
    /// The version of the table's membership: it changes when a node joins, moves, is removed,
    /// comes back or is forgotten, not when a node only reports its tip or load. Random at each
    /// tracker start, so a restarted tracker never repeats an old version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The answer to a report whose `known` is the current `version`: `nodes` is left empty and
    /// the node keeps the table it has. Only ever sent to a node that asked for it so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

impl Topology {
    /// The active nodes.
    pub fn active(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter().filter(|n| n.status == NodeStatus::A)
    }
}

fn report_bytes(id: &AccountId, addr: &str, timestamp: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(REPORT_DOMAIN.len() + 32 + addr.len() + 12);
    out.extend_from_slice(REPORT_DOMAIN);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&(addr.len() as u32).to_le_bytes());
    out.extend_from_slice(addr.as_bytes());
    out.extend_from_slice(&timestamp.to_le_bytes());
    out
}

fn leave_bytes(id: &AccountId, timestamp: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEAVE_DOMAIN.len() + 40);
    out.extend_from_slice(LEAVE_DOMAIN);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&timestamp.to_le_bytes());
    out
}

/// Why the tracker refuses a report or leave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The address is empty, too long or not `host:port`.
    #[error("bad address {0:?}: expected host:port")]
    BadAddress(String),
    /// The address is well formed but no peer could ever be sent there.
    #[error("address {addr:?} cannot be listed: {why}")]
    Unlistable {
        /// The address.
        addr: String,
        /// Why not.
        why: &'static str,
    },
}

/// Checks that `addr` is somewhere peers may be sent: not an unspecified (`0.0.0.0`, `::`),
/// broadcast or multicast address, and not `tracker`, the tracker's own listening address (nor
/// its port on loopback when it listens on every interface). Loopback itself is allowed: tests
/// and the demo run every node on one machine. A host name passes here; the tracker's
/// reachability check is what stands behind it.
pub fn check_listable(addr: &str, tracker: Option<SocketAddr>) -> Result<(), TrackerError> {
    let Ok(socket) = addr.parse::<SocketAddr>() else {
        return Ok(());
    };
    let ip = socket.ip().to_canonical();
    let why = if ip.is_unspecified() {
        Some("it is unspecified")
    } else if ip.is_multicast() {
        Some("it is multicast")
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("it is broadcast")
    } else if socket.port() == 0 {
        Some("port 0")
    } else if tracker.is_some_and(|t| {
        let own = t.ip().to_canonical();
        t.port() == socket.port() && (own == ip || (own.is_unspecified() && ip.is_loopback()))
    }) {
        Some("it is the tracker's own address")
    } else {
        None
    };
    match why {
        Some(why) => Err(TrackerError::Unlistable {
            addr: addr.chars().take(64).collect(),
            why,
        }),
        None => Ok(()),
    }
}

impl Report {
    /// Makes and signs a report. `tip_height`, `tip_hash`, `load` and `difficulty` are for display.
    pub fn sign(
        key: &Keypair,
        addr: String,
        timestamp: u64,
        tip: (u64, BlockHash),
        load: f32,
        difficulty: u32,
    ) -> Report {
        let id = key.account();
        let sig = key.sign(&report_bytes(&id, &addr, timestamp));
        Report {
            id,
            addr,
            timestamp,
            tip_height: tip.0,
            tip_hash: tip.1,
            load,
            difficulty,
            sig,
            known: None,
        }
    }

    /// Checks the address format and the signature.
    pub fn check(&self) -> Result<(), TrackerError> {
        self.check_addr()?;
        self.check_signature()
    }

    /// Checks the address format only: `host:port`, short, no control characters or spaces.
    pub fn check_addr(&self) -> Result<(), TrackerError> {
        let valid_addr = !self.addr.is_empty()
            && self.addr.len() <= MAX_ADDR_LEN
            && self.addr.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            })
            && !self
                .addr
                .chars()
                .any(|c| c.is_control() || c.is_whitespace());
        if !valid_addr {
            return Err(TrackerError::BadAddress(
                self.addr.chars().take(64).collect(),
            ));
        }
        Ok(())
    }

    /// Checks the signature over the domain, id, address and timestamp.
    pub fn check_signature(&self) -> Result<(), TrackerError> {
        if !self.id.verify(
            &report_bytes(&self.id, &self.addr, self.timestamp),
            &self.sig,
        ) {
            return Err(TrackerError::BadSignature);
        }
        Ok(())
    }
}

impl Leave {
    /// Makes and signs a leave.
    pub fn sign(key: &Keypair, timestamp: u64) -> Leave {
        let id = key.account();
        Leave {
            id,
            timestamp,
            sig: key.sign(&leave_bytes(&id, timestamp)),
        }
    }

    /// Checks the signature.
    pub fn check(&self) -> Result<(), TrackerError> {
        if self
            .id
            .verify(&leave_bytes(&self.id, self.timestamp), &self.sig)
        {
            Ok(())
        } else {
            Err(TrackerError::BadSignature)
        }
    }
}

impl WireMessage for TrackerMessage {
    fn opcode(&self) -> u8 {
        match self {
            TrackerMessage::Report(_) => b'R',
            TrackerMessage::Leave(_) => b'L',
            TrackerMessage::Query => b'Q',
            TrackerMessage::Topology(_) => b'T',
            TrackerMessage::Error(_) => b'E',
        }
    }

    fn payload(&self) -> Result<Option<String>, serde_json::Error> {
        Ok(Some(match self {
            TrackerMessage::Report(r) => serde_json::to_string(r)?,
            TrackerMessage::Leave(l) => serde_json::to_string(l)?,
            TrackerMessage::Query => return Ok(None),
            TrackerMessage::Topology(t) => serde_json::to_string(t)?,
            TrackerMessage::Error(e) => serde_json::to_string(e)?,
        }))
    }

    fn parse(opcode: u8, payload: Option<&str>) -> Result<TrackerMessage, WireError> {
        Ok(match opcode {
            b'R' => TrackerMessage::Report(WireError::json(opcode, payload)?),
            b'L' => TrackerMessage::Leave(WireError::json(opcode, payload)?),
            b'Q' => TrackerMessage::Query,
            b'T' => TrackerMessage::Topology(WireError::json(opcode, payload)?),
            b'E' => TrackerMessage::Error(WireError::json(opcode, payload)?),
            other => return Err(WireError::UnknownOpcode((other as char).to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_line, parse_line};

    #[test]
    fn reports_and_leaves_are_signed_and_round_trip() {
        let key = Keypair::from_seed([3; 32]);
        let report = Report::sign(
            &key,
            "127.0.0.1:9000".into(),
            5,
            (1, BlockHash::ZERO),
            0.5,
            20,
        );
        assert_eq!(report.check(), Ok(()));
        let line = encode_line(&TrackerMessage::Report(report.clone())).unwrap();
        let back: TrackerMessage = parse_line(line.trim_end().as_bytes()).unwrap();
        assert_eq!(back, TrackerMessage::Report(report.clone()));

        let mut moved = report.clone();
        moved.addr = "127.0.0.1:9001".into();
        assert_eq!(moved.check(), Err(TrackerError::BadSignature));
        let mut bad = Report::sign(&key, "nonsense".into(), 5, (1, BlockHash::ZERO), 0.0, 20);
        assert!(matches!(bad.check(), Err(TrackerError::BadAddress(_))));
        bad.addr = "host:0".into();
        assert!(matches!(bad.check(), Err(TrackerError::BadAddress(_))));

        let leave = Leave::sign(&key, 6);
        assert_eq!(leave.check(), Ok(()));
        let forged = Leave {
            id: Keypair::from_seed([4; 32]).account(),
            ..leave
        };
        assert_eq!(forged.check(), Err(TrackerError::BadSignature));
        assert_eq!(
            parse_line::<TrackerMessage>(b"Q").unwrap(),
            TrackerMessage::Query
        );
    }

    #[test]
    fn addresses_no_peer_can_use_are_not_listable() {
        let tracker: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        for bad in [
            "0.0.0.0:22",
            "[::]:9000",
            "255.255.255.255:9000",
            "224.0.0.1:9000",
            "[ff02::1]:9000",
            "[::ffff:0.0.0.0]:9000",
            "127.0.0.1:7070",
        ] {
            assert!(
                matches!(
                    check_listable(bad, Some(tracker)),
                    Err(TrackerError::Unlistable { .. })
                ),
                "{bad}"
            );
        }
        for good in [
            "127.0.0.1:9000",
            "127.0.0.2:7070",
            "10.0.0.5:7000",
            "node1.lan:7000",
        ] {
            assert_eq!(check_listable(good, Some(tracker)), Ok(()), "{good}");
        }
        let everywhere: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        assert!(check_listable("127.0.0.1:7070", Some(everywhere)).is_err());
        assert_eq!(check_listable("10.0.0.5:7071", Some(everywhere)), Ok(()));
    }
}
