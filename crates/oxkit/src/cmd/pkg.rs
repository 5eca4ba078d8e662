//! `oxkit pkg`.

use anyhow::{Result, bail};
use clap::Args;

use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
pub struct PkgArgs {}

pub fn run(_global: &GlobalArgs, _printer: &Printer, _args: PkgArgs) -> Result<()> {
    bail!("oxkit pkg is not implemented yet")
}
