//! The shop's settings, validated once by `main` from flags and environment variables.

use std::path::PathBuf;
use std::time::Duration;

/// Everything a shop needs to know to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The tracker's address, `host:port`.
    pub tracker: String,
    /// The folder holding the shoppers' keys.
    pub wallet_dir: PathBuf,
    /// A node to send to (and read from) first, before the tracker's active nodes.
    pub node: Option<String>,
    /// How long a connection, or a node's answer, may take before the next node is tried.
    pub answer_timeout: Duration,
    /// How long to wait for a record to be mined.
    pub wait_timeout: Duration,
    /// The network's difficulty floor: a block with less proof of work is a node's lie. A
    /// setting, not something asked of the network, since any node could report a lower one.
    pub floor: u32,
}

impl Config {
    /// The wallet folder used when none is given: `monkeychain/wallet` in the platform's data
    /// directory (`~/.local/share` on Linux).
    pub fn default_wallet_dir() -> Option<PathBuf> {
        dirs::data_dir().map(|d| d.join("monkeychain").join("wallet"))
    }
}
