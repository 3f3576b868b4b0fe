//! The tracker's settings: how long a node may stay silent, how long a removed node stays on the
//! list, and the limits that keep one misbehaving client from hurting everyone else.

use std::time::Duration;

/// The largest `max_nodes` accepted. A node's entry in a `T` line takes under 1 KiB (its address
/// is at most [`protocol::tracker::MAX_ADDR_LEN`] bytes), so this many entries still fit in one
/// line of [`protocol::codec::MAX_LINE`], which is what every client reads with.
pub const MAX_NODES_LIMIT: usize = 8192;

/// How the tracker behaves. [`Config::default`] is what `monkey-tracker` uses without flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A node that has not reported for longer than this is marked removed (`R`).
    pub silent_after: Duration,
    /// A removed node is dropped from the list this long after it was marked removed.
    pub forget_after: Duration,
    /// The most connections served at once. One more closes the longest-idle connection of the
    /// address holding the most ([`daemon::slots`]).
    pub max_connections: usize,
    /// The most connections from one source address, so one host cannot hold every slot; one
    /// more closes that address's own longest-idle connection.
    pub max_connections_per_address: usize,
    /// A new connection that sends no complete message within this is closed.
    pub first_message_timeout: Duration,
    /// A connection that sends no complete message for this long is closed. Nodes report every
    /// second, so this only ever closes clients that went away without saying so.
    pub idle_timeout: Duration,
    /// The most nodes (active or removed) the tracker remembers. A report from a new id beyond
    /// this is refused rather than evicting a node that is really there.
    pub max_nodes: usize,
    /// A report or leave whose timestamp is further than this from the tracker's clock is refused.
    pub max_clock_skew: Duration,
    /// How many new node ids one source address may bring in a minute (and at once). Known
    /// nodes report as often as they like; this only slows a flood of fake registrations.
    pub max_new_ids_per_minute: u32,
    /// The most ids reporting from one source address at once (active, listed or waiting for
    /// their address check). A class's demo of 16 nodes on one machine fits; a host making up
    /// ids by the hundred does not.
    pub max_active_per_address: usize,
    /// Whether a node is listed only once the tracker reached it at its advertised address and
    /// it proved its id there (see `reach`). Always on in `monkey-tracker`; off only for tests
    /// of the table's other rules, whose simulated nodes listen nowhere.
    pub check_reachability: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            silent_after: Duration::from_secs(5),
            forget_after: Duration::from_secs(60),
            max_connections: 1024,
            // A quarter of the slots: a whole class's nodes, shops and visualizers on one machine
            // stay under it, and one host alone cannot hold the tracker.
            max_connections_per_address: 256,
            first_message_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            max_nodes: 4096,
            max_clock_skew: Duration::from_secs(5 * 60),
            max_new_ids_per_minute: 256,
            max_active_per_address: 32,
            check_reachability: true,
        }
    }
}

/// A setting that the tracker cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A duration or a limit is zero.
    #[error("{0} must be more than zero")]
    Zero(&'static str),
    /// `max_nodes` is over [`MAX_NODES_LIMIT`].
    #[error("max_nodes {0} is over {MAX_NODES_LIMIT}: the topology would not fit in one line")]
    TooManyNodes(usize),
    /// `max_connections` is more than a semaphore can count.
    #[error("max_connections {0} is too large")]
    TooManyConnections(usize),
}

impl Config {
    /// Checks that every setting is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let durations = [
            ("silent_after", self.silent_after),
            ("forget_after", self.forget_after),
            ("first_message_timeout", self.first_message_timeout),
            ("idle_timeout", self.idle_timeout),
            ("max_clock_skew", self.max_clock_skew),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::Zero(name));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Zero("max_connections"));
        }
        if self.max_connections_per_address == 0 {
            return Err(ConfigError::Zero("max_connections_per_address"));
        }
        if self.max_connections > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::TooManyConnections(self.max_connections));
        }
        if self.max_new_ids_per_minute == 0 {
            return Err(ConfigError::Zero("max_new_ids_per_minute"));
        }
        if self.max_active_per_address == 0 {
            return Err(ConfigError::Zero("max_active_per_address"));
        }
        if self.max_nodes == 0 {
            return Err(ConfigError::Zero("max_nodes"));
        }
        if self.max_nodes > MAX_NODES_LIMIT {
            return Err(ConfigError::TooManyNodes(self.max_nodes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_nonsense_is_not() {
        assert_eq!(Config::default().validate(), Ok(()));
        let zero = Config {
            idle_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(zero.validate(), Err(ConfigError::Zero("idle_timeout")));
        let huge = Config {
            max_nodes: MAX_NODES_LIMIT + 1,
            ..Config::default()
        };
        assert_eq!(
            huge.validate(),
            Err(ConfigError::TooManyNodes(MAX_NODES_LIMIT + 1))
        );
        let none = Config {
            max_connections: 0,
            ..Config::default()
        };
        assert_eq!(none.validate(), Err(ConfigError::Zero("max_connections")));
    }
}
