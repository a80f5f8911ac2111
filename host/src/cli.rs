//! The command line: `serve`, `check`, `hash-password` and `plugin` (see [`crate::kit`]).

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wasmftpd",
    version,
    about = "An FTP server whose authentication and storage are WebAssembly components"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Listen here instead of the config's `server.listen` (repeatable; port 0 picks a free port).
        #[arg(long)]
        listen: Vec<SocketAddr>,
    },
    /// Validate a configuration and compile its plugins, without serving.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read a password from standard input and print its argon2id hash for auth-static.
    HashPassword,
    /// Tools for plugin authors: the conformance kit, inspection, benchmarks.
    Plugin {
        #[command(subcommand)]
        command: crate::kit::PluginCommand,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve { config, listen } => serve(config, listen),
        Command::Check { config } => check(config),
        Command::HashPassword => hash_password(),
        // The kit prints its own report and decides its exit code.
        Command::Plugin { command } => return crate::kit::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(config: PathBuf, listen_override: Vec<SocketAddr>) -> anyhow::Result<()> {
    runtime()?.block_on(crate::server::serve(crate::server::ServeOptions {
        config_path: config,
        listen_override,
    }))
}

fn check(path: PathBuf) -> anyhow::Result<()> {
    let config = crate::config::load(&path)?;
    let sites = runtime()?.block_on(crate::server::check(&config))?;
    println!("{}: OK ({sites} site(s))", path.display());
    Ok(())
}

fn hash_password() -> anyhow::Result<()> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use rand_core::OsRng;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Password (input is shown; pipe it in to avoid that):");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash: {e}"))?;
    println!("{hash}");
    Ok(())
}
