//! `monkey-shop`: where shoppers join, buy monkeys, send coins and vote, from prompt-driven
//! menus or from scriptable subcommands.
//!
//! The shop keeps shoppers' keys ([`wallet`]) and the records they sent that are not mined yet
//! ([`outbox`]); everything else (balances, cages, names, tallies) it reads from the chain
//! ([`chain`]) every time, asking the nodes only for what is new since the chain it verified
//! last ([`cache`]). A record goes to a random active node from the tracker, and to the
//! next one if that node fails ([`network`]). The actions ([`commands`]) return values
//! ([`outcome`]) that print as text or JSON; [`interactive`] puts menus and a spinner around the
//! same actions.

pub mod cache;
pub mod chain;
pub mod commands;
pub mod config;
pub mod error;
pub mod interactive;
pub mod listing;
pub mod network;
pub mod outbox;
pub mod outcome;
pub mod trust;
pub mod wallet;

pub use commands::{Shop, Snapshot};
pub use config::Config;
pub use error::ShopError;
