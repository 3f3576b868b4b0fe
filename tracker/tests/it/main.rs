//! The tracker's integration tests: each starts a real tracker on port 0 inside the test (or the
//! real binary) and talks to it over TCP the way nodes, shops and attackers would.

mod bad_input;
mod binary;
mod client;
mod lifecycle;
mod limits;
mod refusals;
mod restart;
mod slots;
mod support;
mod timeouts;
