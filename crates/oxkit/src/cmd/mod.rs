//! One module per command group. Each turns its parsed arguments into library calls and hands
//! results to the [`crate::output::Printer`].

pub mod cache;
pub mod image;
pub mod key;
pub mod pkg;
