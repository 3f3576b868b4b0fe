//! Integration tests of monkey-node: real node processes on loopback, port 0 and temporary data
//! dirs, around a tracker process (all from `testkit`), at a low difficulty floor so blocks come fast.

mod bad_input;
mod buffers;
mod events;
mod failures;
mod network;
mod records;
mod restart;
mod slots;
mod store;
mod subscribe;
mod sync;
