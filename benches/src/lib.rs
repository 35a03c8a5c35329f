//! The load driver of m365-emulator (`m365-load`) and what the one benchmark command needs.
//!
//! | module | what it holds |
//! |---|---|
//! | [`args`] | command line: scenario, connections, bounds (duration / request count) |
//! | [`target`] | where to send requests: base URL, CA roots, credentials (from a ready file) |
//! | [`client`] | one keep-alive HTTP/1.1 connection over TLS (rustls) or plain TCP |
//! | [`scenarios`] | the request each scenario sends and how it checks the answer |
//! | [`acs_hmac`] | ACS HMAC-SHA256 request signing |
//! | [`driver`] | N connections, bounded, latency per request, the run's report |
//! | [`stats`] | percentiles and the report document |
//! | [`procfs`] | the server process's CPU time and RSS from `/proc` |
//! | [`compare`] | the comparison table, the ratios and the PNG chart |

pub mod acs_hmac;
pub mod args;
pub mod client;
pub mod compare;
pub mod driver;
pub mod procfs;
pub mod scenarios;
pub mod stats;
pub mod target;
