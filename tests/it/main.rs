//! Integration tests: the real `kiosk-agent` binary, in temp dirs, against the built-in sandbox
//! over loopback.

mod api;
mod architecture;
mod browser;
mod capture;
mod chaos;
mod cli;
mod corpus;
mod crash;
mod daemon;
mod enroll;
mod hostile;
mod protocol;
mod recovery;
mod security;
mod server;
mod signing;
mod sync;
mod units;
// Shared with tests/privileged: each binary uses part of it.
#[allow(dead_code)]
mod util;
mod walkthrough;
