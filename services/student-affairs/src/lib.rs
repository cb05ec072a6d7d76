//! The Student Affairs example's runner: `serve` runs one of the five services (each its own
//! process), `demo` drives the whole scenario of seed 000 and reports whether every flow is in
//! sync. The services and translators are separate crates; this one only links them.

pub mod demo;
pub mod serve;
