//! Procedural macros for Remq. Use them through the `remq` crate (`remq-worker`);
//! this crate is an implementation detail.
//!
//! The `#[remq::handler]` attribute lands with the worker runtime; until then
//! this crate exports nothing.
