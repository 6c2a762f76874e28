//! Real servers the integration tests start and stop themselves, on loopback ports.
//! Each test binary uses some of them, so unused items are expected.
#![allow(dead_code)]

pub mod caddy;
pub mod cli;
pub mod kea;
pub mod postgres;
