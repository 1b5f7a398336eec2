//! The `mcp-remote` and `mcp-remote-client` binaries' shared parts: the command
//! line, settings, logging and the wiring of the actors. No protocol logic lives
//! here: it is in the `machines` crate, performed by the `actors` crate.

pub mod cli;
pub mod client_config;
pub mod doctor;
pub mod jsonc;
pub mod logging;
pub mod manuals;
pub mod run;
pub mod servers;
pub mod settings;
pub mod wiring;
pub mod x509;
