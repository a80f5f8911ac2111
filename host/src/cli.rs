//! The command line: `serve`, `check`, `hash-password`, `tls` and `plugin` (see [`crate::kit`]).

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
    /// TLS helpers.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
    /// Tools for plugin authors: the conformance kit, inspection, benchmarks.
    Plugin {
        #[command(subcommand)]
        command: crate::kit::PluginCommand,
    },
}

#[derive(Subcommand)]
pub enum TlsCommand {
    /// Write a self-signed certificate (`cert.pem`) and its key (`key.pem`)
    /// into a directory, to try FTPS; clients must accept it (`curl -k`).
    SelfSigned {
        /// Host name (or IP address) the certificate is for (repeatable).
        #[arg(long, required = true)]
        name: Vec<String>,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve { config, listen } => serve(config, listen),
        Command::Check { config } => check(config),
        Command::HashPassword => hash_password(),
        Command::Tls {
            command: TlsCommand::SelfSigned { name, out },
        } => self_signed(&name, &out),
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

fn self_signed(names: &[String], out: &std::path::Path) -> anyhow::Result<()> {
    let (cert, key) = crate::tls::self_signed(names)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let cert_path = out.join("cert.pem");
    let key_path = out.join("key.pem");
    std::fs::write(&cert_path, cert)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    write_private(&key_path, key.as_bytes())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    println!("wrote {} and {}", cert_path.display(), key_path.display());
    println!("add to the config:\n\n[server.tls]");
    println!(
        "certificate = {:?}\nkey = {:?}",
        cert_path.display().to_string(),
        key_path.display().to_string()
    );
    Ok(())
}

/// Writes a file only its owner can read (a private key).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
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
