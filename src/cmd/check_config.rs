//! `edgevision check-config`: load and validate a config file, and check
//! that the files it names exist, without starting anything.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The config file (TOML).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Prints `FILE: ok (...)`, or returns the first problem (file, line, key).
pub fn run(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load_checked(&args.file)?;
    println!("{}: ok ({})", args.file.display(), cfg.summary());
    Ok(ExitCode::SUCCESS)
}
