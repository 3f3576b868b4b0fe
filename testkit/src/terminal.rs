//! A program in a pseudo-terminal, driven as a person would: keys in, screen text out (the
//! shop's menus, the demo). Every wait is bounded by [`DEADLINE`].

use std::process::Command;

use expectrl::process::unix::{Signal, WaitStatus};
use expectrl::session::OsSession;
use expectrl::{Eof, Expect};

use crate::DEADLINE;

/// A program running in a pseudo-terminal of 120 by 40 columns.
pub struct Terminal {
    session: OsSession,
}

impl Terminal {
    /// Starts `cmd` (named `what` in failures) in a pseudo-terminal as an `xterm-256color`,
    /// without the caller's `MONKEY_*` and `RUST_LOG` settings.
    pub fn spawn(mut cmd: Command, what: &str) -> Terminal {
        for (key, _) in std::env::vars() {
            if key.starts_with("MONKEY_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.env("TERM", "xterm-256color");
        let mut session = OsSession::spawn(cmd)
            .unwrap_or_else(|e| panic!("start {what} in a pseudo-terminal: {e}"));
        session
            .get_process_mut()
            .set_window_size(120, 40)
            .expect("size the terminal");
        session.set_expect_timeout(Some(DEADLINE));
        Terminal { session }
    }

    /// Waits for `text` on the screen and returns what came before it; fails the test with
    /// what was seen instead.
    pub fn expect(&mut self, text: &str) -> String {
        match self.session.expect(text) {
            Ok(found) => String::from_utf8_lossy(found.before()).into_owned(),
            Err(e) => panic!("waiting for {text:?} in the terminal: {e}"),
        }
    }

    /// Types `keys` (letters filter a menu; `\r` is Enter). A prompt reads keys in order, so
    /// they may arrive before it draws.
    pub fn keys(&mut self, keys: &str) {
        self.session.send(keys).expect("type into the terminal");
    }

    /// Sends the program SIGINT, as Ctrl-C does outside a prompt's raw mode.
    pub fn interrupt(&mut self) {
        self.session
            .get_process_mut()
            .kill(Signal::SIGINT)
            .expect("send Ctrl-C");
    }

    /// The program's process id.
    pub fn pid(&self) -> i32 {
        self.session.get_process().pid().as_raw()
    }

    /// Waits for the end of the output (every process holding the terminal has closed it) and
    /// the exit status.
    pub fn exit_status(mut self) -> WaitStatus {
        if let Err(e) = self.session.expect(Eof) {
            panic!("waiting for the program to end: {e}");
        }
        self.session.get_process().wait().expect("the exit status")
    }
}
