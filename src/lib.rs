//! scrim: a streaming pseudonymization reverse proxy.
//!
//! The library is layered so that the heart of it builds and tests without
//! any network code: [`transform`] changes one value, [`rewrite`] walks a body
//! and changes the values a [`policy`] selects, [`config`] reads the YAML the
//! policy is compiled from.

#![deny(clippy::unwrap_used)]

pub mod admin;
pub mod ca;
pub mod config;
pub mod detect;
pub mod forward_proxy;
pub mod inventory;
pub mod log;
pub mod metrics;
pub mod percent;
pub mod policy;
pub mod presets;
pub mod proxy;
pub mod reload;
pub mod rewrite;
pub mod service;
pub mod tls;
pub mod transform;
pub mod vault;
