//! One module per scenario; each returns its rows of the table.

pub mod hashrate;
pub mod memory;
pub mod propagation;
pub mod purchase;
pub mod restart;
pub mod shop;
pub mod sync;
pub mod throughput;
pub mod tracker;
pub mod visualizer;
