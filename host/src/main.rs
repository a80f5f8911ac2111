use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Sessions only format their log lines into a buffer that a background
    // thread writes out (see log_writer: no system call or wake-up per line,
    // nothing dropped). The guard writes what is left when main returns.
    let (writer, _flush_on_exit) = wasmftpd::log_writer::BatchedWriter::new(std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(writer)
        // Colour codes only on a terminal, never in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    wasmftpd::cli::run(wasmftpd::cli::Cli::parse())
}
