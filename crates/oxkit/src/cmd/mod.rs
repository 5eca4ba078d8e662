//! One module per command group. Each turns its parsed arguments into library calls and hands
//! results to the [`crate::output::Printer`].

pub mod build;
pub mod cache;
pub mod cache_remote;
pub mod doctor;
pub mod image;
pub mod key;
pub mod login;
pub mod pkg;
pub mod run;
pub mod sign;
pub mod verify;
