//! The Monkeychain tracker: nodes report themselves to it every second and read back who else is
//! there; shops and the visualizer ask it for that same list.
//!
//! The tracker keeps everything in memory. A restarted tracker needs no storage: it rebuilds its
//! table from the nodes' next reports, a second later.
//!
//! Every connection is a task of its own and speaks the line protocol of
//! [`protocol::tracker`]. What the tracker answers:
//!
//! | client sends | tracker answers | connection |
//! |--------------|-----------------|------------|
//! | a valid `R` or `L` | `T`, the whole topology | kept |
//! | `Q` | `T` | kept |
//! | a refused `R` or `L` | `E` with code `bad_signature`, `bad_address`, `bad_report`, `replayed`, `clock_skew`, `tracker_full`, `too_many_new`, `too_many_active` or `wrong_connection` | kept |
//! | `T` or `E` | `E` with code `unexpected` | kept |
//! | a line that does not parse | `E` with the codec's code (`not_utf8`, `unknown_opcode`, `malformed`, `missing_payload`, `bad_payload`, `line_too_long`) | closed |
//! | nothing for a while | `E` with code `timeout` | closed |
//! | nothing for longest, when a new connection needs its slot (the tracker is full, or this address holds its share) | `E` with code `evicted` | closed |
//!
//! [`run`] serves a bound listener until its token is cancelled; [`client::query`] asks a
//! tracker for the topology.

pub mod client;
mod config;
mod connection;
mod reach;
mod registry;
mod server;

pub use config::{Config, ConfigError, MAX_NODES_LIMIT};
pub use connection::MAX_REQUEST_LINE;
pub use server::run;
