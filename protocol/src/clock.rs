//! The one wall clock of the workspace, in milliseconds since the Unix epoch.
//!
//! Nothing else in this crate reads it: every rule takes `now` as a parameter, so tests pass
//! any time they like. The daemons, the shop, the bench and the tests call this function to get
//! the `now` they pass in, so all of them stamp and compare times the same way.

use std::time::{SystemTime, UNIX_EPOCH};

/// The milliseconds since the Unix epoch: 0 for a clock set before 1970, `u64::MAX` past the
/// year 584 million.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
