//! `oxkit image`.

use anyhow::{Result, bail};
use clap::Args;

use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
pub struct ImageArgs {}

pub fn run(_global: &GlobalArgs, _printer: &Printer, _args: ImageArgs) -> Result<()> {
    bail!("oxkit image is not implemented yet")
}
