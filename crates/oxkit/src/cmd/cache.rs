//! `oxkit cache`.

use anyhow::{Result, bail};
use clap::Args;

use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
pub struct CacheArgs {}

pub fn run(_global: &GlobalArgs, _printer: &Printer, _args: CacheArgs) -> Result<()> {
    bail!("oxkit cache is not implemented yet")
}
