//! The visualizer's settings, checked before it starts.

use std::time::Duration;

/// How the visualizer behaves. `monkey-visualizer` fills it from its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The tracker's address, `host:port`.
    pub tracker: String,
    /// How often the tracker is asked who is there.
    pub tracker_interval: Duration,
    /// Most browsers connected at once. One more closes the longest-idle websocket of the
    /// address holding the most ([`daemon::slots`]).
    pub max_browsers: usize,
    /// Most websockets from one address; one more closes that address's longest-idle one.
    pub max_browsers_per_address: usize,
    /// A websocket that sends nothing (not even the pong to our ping, sent halfway) for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// The network's difficulty floor: a block from a node that declares less, or whose hash
    /// misses what it declares, is refused and the node is dropped as misbehaving. Given, not
    /// learned from the nodes: any node can report whatever difficulty it likes.
    pub difficulty_floor: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            tracker: "127.0.0.1:7070".into(),
            tracker_interval: Duration::from_secs(1),
            max_browsers: 256,
            // A classroom behind one NAT address still fits; one host alone holds a sixteenth.
            max_browsers_per_address: 16,
            idle_timeout: Duration::from_secs(60),
            difficulty_floor: protocol::params::DEFAULT_DIFFICULTY_FLOOR,
        }
    }
}

/// A setting the visualizer cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The tracker's address is empty.
    #[error("the tracker's address is empty")]
    NoTracker,
    /// A duration or a limit is zero.
    #[error("{0} must be more than zero")]
    Zero(&'static str),
    /// `max_browsers` is more than a semaphore can count.
    #[error("max_browsers {0} is too large")]
    TooManyBrowsers(usize),
    /// The floor is above the hardest difficulty a block may declare.
    #[error("difficulty_floor {0} is above the maximum {max}", max = protocol::params::MAX_BITS)]
    FloorTooHigh(u32),
}

impl Config {
    /// Checks that every setting is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tracker.trim().is_empty() {
            return Err(ConfigError::NoTracker);
        }
        if self.tracker_interval.is_zero() {
            return Err(ConfigError::Zero("tracker_interval"));
        }
        if self.max_browsers == 0 {
            return Err(ConfigError::Zero("max_browsers"));
        }
        if self.max_browsers_per_address == 0 {
            return Err(ConfigError::Zero("max_browsers_per_address"));
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::Zero("idle_timeout"));
        }
        if self.max_browsers > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(ConfigError::TooManyBrowsers(self.max_browsers));
        }
        if self.difficulty_floor > protocol::params::MAX_BITS {
            return Err(ConfigError::FloorTooHigh(self.difficulty_floor));
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
            tracker_interval: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(zero.validate(), Err(ConfigError::Zero("tracker_interval")));
        let none = Config {
            max_browsers: 0,
            ..Config::default()
        };
        assert_eq!(none.validate(), Err(ConfigError::Zero("max_browsers")));
        let nowhere = Config {
            tracker: " ".into(),
            ..Config::default()
        };
        assert_eq!(nowhere.validate(), Err(ConfigError::NoTracker));
        let impossible = Config {
            difficulty_floor: 97,
            ..Config::default()
        };
        assert_eq!(impossible.validate(), Err(ConfigError::FloorTooHigh(97)));
    }
}
