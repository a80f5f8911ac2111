//! The command table: every verb we know, who may use it, whether it needs an
//! argument, whether it runs while a transfer is in progress, its FEAT line and
//! its HELP syntax. Each verb's handler lives in its own file, headed by the
//! RFC it implements. Adding a command is one file and one row.

use std::future::Future;
use std::pin::Pin;

use super::session::{HandlerResult, Session};

mod abor;
mod acct;
mod allo;
mod appe;
mod auth;
mod ccc;
mod cdup;
mod cwd;
mod dele;
mod eprt;
mod epsv;
mod feat;
mod help;
mod host;
mod list;
mod mdtm;
mod mfmt;
mod mkd;
mod mlsd;
mod mlst;
mod mode;
mod nlst;
mod noop;
mod opts;
mod pass;
mod pasv;
mod pbsz;
mod port;
mod prot;
mod pwd;
mod quit;
mod rein;
mod rest;
mod retr;
mod rmd;
mod rnfr;
mod rnto;
mod size;
mod stat;
mod stor;
mod stou;
mod stru;
mod syst;
#[path = "type.rs"]
mod type_;
mod unimplemented;
mod user;

pub(crate) mod shared;

pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'a>>;
pub type Handler = for<'a> fn(&'a mut Session, &'a str) -> HandlerFuture<'a>;

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Also before login (RFC 959 login sequence, FEAT, HELP, ...).
    Any,
    /// Only after login; `530` before.
    LoggedIn,
}

pub struct Command {
    pub verb: &'static str,
    pub access: Access,
    /// `501` when the argument is empty.
    pub needs_arg: bool,
    /// Runs while a transfer is in progress (NOOP, STAT, ABOR); every other
    /// command first waits for the transfer to end.
    pub during_transfer: bool,
    /// The FEAT line this command contributes (RFC 2389).
    pub feat: Option<&'static str>,
    /// The FEAT line is shown only where TLS is offered.
    pub feat_needs_tls: bool,
    /// Argument syntax shown by `HELP verb`.
    pub help: &'static str,
    pub handler: Handler,
    /// The verb as a number ([`verb_key`]): looking a verb up compares
    /// integers, not strings (it happens several times per command).
    key: u64,
}

/// A verb of up to four bytes packed into a number with its length (so a
/// leading NUL byte makes another key); longer ones are no verb.
const fn verb_key(verb: &[u8]) -> Option<u64> {
    if verb.is_empty() || verb.len() > 4 {
        return None;
    }
    let mut key = verb.len() as u64;
    let mut i = 0;
    while i < verb.len() {
        key = (key << 8) | verb[i] as u64;
        i += 1;
    }
    Some(key)
}

impl Command {
    const fn new(verb: &'static str, access: Access, help: &'static str, handler: Handler) -> Self {
        Command {
            verb,
            access,
            needs_arg: false,
            during_transfer: false,
            feat: None,
            feat_needs_tls: false,
            help,
            handler,
            key: match verb_key(verb.as_bytes()) {
                Some(key) => key,
                None => panic!("verbs have one to four letters"),
            },
        }
    }

    const fn arg(mut self) -> Self {
        self.needs_arg = true;
        self
    }

    const fn concurrent(mut self) -> Self {
        self.during_transfer = true;
        self
    }

    const fn feat(mut self, feat: &'static str) -> Self {
        self.feat = Some(feat);
        self
    }

    /// A FEAT line shown only where TLS is offered (RFC 4217 section 6).
    const fn tls_feat(mut self, feat: &'static str) -> Self {
        self.feat = Some(feat);
        self.feat_needs_tls = true;
        self
    }
}

/// Wraps a command module's `async fn run(&mut Session, &str)` as a [`Handler`].
macro_rules! handler {
    ($module:ident) => {{
        fn handle<'a>(session: &'a mut Session, arg: &'a str) -> HandlerFuture<'a> {
            Box::pin($module::run(session, arg))
        }
        handle as Handler
    }};
}

use Access::{Any, LoggedIn};

pub static COMMANDS: &[Command] = &[
    // Login and session (RFC 959 section 4.1.1, RFC 7151).
    Command::new("USER", Any, "USER <name>", handler!(user)).arg(),
    Command::new("PASS", Any, "PASS <password>", handler!(pass)),
    Command::new("ACCT", LoggedIn, "ACCT <account>", handler!(acct)),
    Command::new("REIN", LoggedIn, "REIN", handler!(rein)),
    Command::new("QUIT", Any, "QUIT", handler!(quit)),
    Command::new("HOST", Any, "HOST <host name>", handler!(host))
        .arg()
        .feat("HOST"),
    // Security (RFC 2228, RFC 4217).
    Command::new("AUTH", Any, "AUTH TLS", handler!(auth))
        .arg()
        .tls_feat("AUTH TLS"),
    Command::new("PBSZ", Any, "PBSZ 0", handler!(pbsz))
        .arg()
        .tls_feat("PBSZ"),
    Command::new("PROT", Any, "PROT P|C", handler!(prot))
        .arg()
        .tls_feat("PROT"),
    Command::new("CCC", Any, "CCC", handler!(ccc)),
    // Informational (RFC 959 section 4.1.3, RFC 2389).
    Command::new("NOOP", Any, "NOOP", handler!(noop)).concurrent(),
    Command::new("SYST", Any, "SYST", handler!(syst)),
    Command::new("FEAT", Any, "FEAT", handler!(feat)),
    Command::new("OPTS", Any, "OPTS <option> [<value>]", handler!(opts))
        .arg()
        .feat("UTF8"),
    Command::new("HELP", Any, "HELP [<command>]", handler!(help)),
    Command::new("STAT", LoggedIn, "STAT [<path>]", handler!(stat)).concurrent(),
    // Navigation and files.
    Command::new("PWD", LoggedIn, "PWD", handler!(pwd)),
    Command::new("XPWD", LoggedIn, "XPWD", handler!(pwd)),
    Command::new("CWD", LoggedIn, "CWD <path>", handler!(cwd))
        .arg()
        .feat("TVFS"),
    Command::new("XCWD", LoggedIn, "XCWD <path>", handler!(cwd)).arg(),
    Command::new("CDUP", LoggedIn, "CDUP", handler!(cdup)),
    Command::new("XCUP", LoggedIn, "XCUP", handler!(cdup)),
    Command::new("MKD", LoggedIn, "MKD <path>", handler!(mkd)).arg(),
    Command::new("XMKD", LoggedIn, "XMKD <path>", handler!(mkd)).arg(),
    Command::new("RMD", LoggedIn, "RMD <path>", handler!(rmd)).arg(),
    Command::new("XRMD", LoggedIn, "XRMD <path>", handler!(rmd)).arg(),
    Command::new("DELE", LoggedIn, "DELE <path>", handler!(dele)).arg(),
    Command::new("RNFR", LoggedIn, "RNFR <path>", handler!(rnfr)).arg(),
    Command::new("RNTO", LoggedIn, "RNTO <path>", handler!(rnto)).arg(),
    Command::new("SIZE", LoggedIn, "SIZE <path>", handler!(size))
        .arg()
        .feat("SIZE"),
    Command::new("MDTM", LoggedIn, "MDTM <path>", handler!(mdtm))
        .arg()
        .feat("MDTM"),
    Command::new(
        "MFMT",
        LoggedIn,
        "MFMT <YYYYMMDDHHMMSS> <path>",
        handler!(mfmt),
    )
    .arg()
    .feat("MFMT"),
    // Data connection setup (RFC 959, RFC 2428).
    Command::new("PASV", LoggedIn, "PASV", handler!(pasv)),
    Command::new("EPSV", LoggedIn, "EPSV [1|2|ALL]", handler!(epsv)).feat("EPSV"),
    Command::new("PORT", LoggedIn, "PORT <h1,h2,h3,h4,p1,p2>", handler!(port)).arg(),
    Command::new(
        "EPRT",
        LoggedIn,
        "EPRT |<proto>|<address>|<port>|",
        handler!(eprt),
    )
    .arg()
    .feat("EPRT"),
    // Transfer parameters.
    Command::new("TYPE", LoggedIn, "TYPE A|I", handler!(type_)).arg(),
    Command::new("MODE", LoggedIn, "MODE S", handler!(mode)).arg(),
    Command::new("STRU", LoggedIn, "STRU F", handler!(stru)).arg(),
    Command::new("ALLO", LoggedIn, "ALLO <size>", handler!(allo)),
    Command::new("REST", LoggedIn, "REST <offset>", handler!(rest))
        .arg()
        .feat("REST STREAM"),
    // Transfers and listings (RFC 959, RFC 1123, RFC 3659).
    Command::new("RETR", LoggedIn, "RETR <path>", handler!(retr)).arg(),
    Command::new("STOR", LoggedIn, "STOR <path>", handler!(stor)).arg(),
    Command::new("APPE", LoggedIn, "APPE <path>", handler!(appe)).arg(),
    Command::new("STOU", LoggedIn, "STOU [<name>]", handler!(stou)),
    Command::new("ABOR", LoggedIn, "ABOR", handler!(abor)).concurrent(),
    Command::new("LIST", LoggedIn, "LIST [-al] [<path>]", handler!(list)),
    Command::new("NLST", LoggedIn, "NLST [<path>]", handler!(nlst)),
    Command::new("MLSD", LoggedIn, "MLSD [<path>]", handler!(mlsd)),
    Command::new("MLST", LoggedIn, "MLST [<path>]", handler!(mlst)).feat("MLST"),
    // Known but not implemented (yet): `502`, so clients fall back cleanly.
    Command::new("SMNT", LoggedIn, "SMNT <path>", handler!(unimplemented)),
    Command::new("SITE", LoggedIn, "SITE <command>", handler!(unimplemented)),
];

/// The table row for an (upper-case) verb.
pub fn lookup(verb: &str) -> Option<&'static Command> {
    index(verb).map(|i| &COMMANDS[i])
}

/// The row number of an (upper-case) verb in [`COMMANDS`].
pub fn index(verb: &str) -> Option<usize> {
    let key = verb_key(verb.as_bytes())?;
    COMMANDS.iter().position(|c| c.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_is_found_and_nothing_else() {
        for (i, c) in COMMANDS.iter().enumerate() {
            assert_eq!(index(c.verb), Some(i));
            assert_eq!(lookup(c.verb).map(|f| f.verb), Some(c.verb));
        }
        for other in [
            "",
            "US",
            "USERS",
            "user",
            "USER ",
            "XYZZY",
            "US\0R",
            "\0CWD",
            "\u{e9}\u{e9}",
        ] {
            assert_eq!(index(other), None, "{other:?}");
        }
    }

    #[test]
    fn verbs_are_unique_and_upper_case() {
        for (i, c) in COMMANDS.iter().enumerate() {
            assert_eq!(c.verb, c.verb.to_ascii_uppercase());
            assert!(
                COMMANDS[i + 1..].iter().all(|d| d.verb != c.verb),
                "{} twice",
                c.verb
            );
            assert!(c.help.starts_with(c.verb));
        }
    }

    #[test]
    fn only_login_commands_before_login() {
        let mut before: Vec<&str> = COMMANDS
            .iter()
            .filter(|c| c.access == Access::Any)
            .map(|c| c.verb)
            .collect();
        before.sort_unstable();
        assert_eq!(
            before,
            [
                "AUTH", "CCC", "FEAT", "HELP", "HOST", "NOOP", "OPTS", "PASS", "PBSZ", "PROT",
                "QUIT", "SYST", "USER"
            ]
        );
    }
}
