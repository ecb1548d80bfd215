//! The `edgevision` command line.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edgevision::cmd;

#[derive(Debug, Parser)]
#[command(
    name = "edgevision",
    version,
    about = "Real-time object detection for edge devices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Detect objects in image files and print or draw the results.
    Detect(cmd::detect::DetectArgs),
    /// Run the daemon: capture, detect, annotate, stream.
    Run(cmd::run::RunArgs),
    /// Validate a config file without starting.
    CheckConfig(cmd::check_config::CheckConfigArgs),
    /// Run the daemon's pipeline headless on a file source and print JSON.
    Bench(cmd::bench::BenchArgs),
    /// Time inference through edgevision against the runtime alone (JSON).
    BenchModel(cmd::bench_model::BenchModelArgs),
    /// CPU time per frame of a source alone (and its ffmpeg or command), as JSON.
    BenchSource(cmd::bench_source::BenchSourceArgs),
    /// List V4L2 devices with their formats, frame sizes and rates.
    Devices(cmd::devices::DevicesArgs),
    /// Quantize a .tflite model (float16, dynamic, int8) or dequantize it (float32).
    Convert(cmd::convert::ConvertArgs),
}

/// Colour codes only for a person at a terminal: a file, a pipe or the
/// journal gets plain lines. `NO_COLOR` (no-color.org) turns them off anyway.
fn log_colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(edgevision::infer::log_writer())
        .with_ansi(log_colours())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGEVISION_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match cli.command {
        Command::Detect(args) => cmd::detect::run(args),
        Command::BenchModel(args) => cmd::bench_model::run(args),
        Command::BenchSource(args) => cmd::bench_source::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::CheckConfig(args) => cmd::check_config::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Devices(args) => cmd::devices::run(args),
        Command::Convert(args) => cmd::convert::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
