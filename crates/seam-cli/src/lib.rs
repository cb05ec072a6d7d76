//! The `seam` command line ([`cli`]) and `seam bench` ([`bench`]). The commands an operator
//! runs live in `seam-ops`; this crate parses arguments, dispatches, and measures, so editing it
//! rebuilds no service.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
