//! The operator commands behind `seam deploy`, `register`, `replay`, `snapshot`, `status`,
//! `dlq`, `doctor`, `check` and `reconcile`: their arguments and what they do. A library, so the demo and tests run
//! exactly what an operator runs; the `seam` binary (`seam-cli`) only dispatches to them.

pub mod check;
pub mod console;
pub mod deploy;
pub mod dlq;
pub mod doctor;
pub mod output;
pub mod reach;
pub mod reconcile;
pub mod register;
pub mod replay;
pub mod snapshot;
pub mod status;
