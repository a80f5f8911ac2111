//! Replies: the reply codes we use, how a reply goes on the wire, and the one
//! table that turns backend errors into replies. Nothing else in the protocol
//! formats a reply line or picks a code for an error.

use std::fmt::Write as _;

use tracing::warn;

use crate::backend::{AuthError, ErrorKind, StorageError};

/// The reply codes this server sends (RFC 959 section 4.2 unless noted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyCode {
    /// 150: file status okay; about to open the data connection.
    FileStatusOk = 150,
    /// 200: command okay.
    CommandOk = 200,
    /// 202: command not needed here (ACCT, ALLO).
    Superfluous = 202,
    /// 211: system status or FEAT list (RFC 2389).
    SystemStatus = 211,
    /// 213: file status (SIZE, MDTM, MFMT, STAT path).
    FileStatus = 213,
    /// 214: help message.
    Help = 214,
    /// 215: system type.
    SystemType = 215,
    /// 220: service ready (greeting, REIN, HOST).
    ServiceReady = 220,
    /// 221: closing the control connection (QUIT).
    Closing = 221,
    /// 225: data connection open, no transfer in progress (ABOR with nothing to abort).
    DataOpenNoTransfer = 225,
    /// 226: transfer complete / data connection closed.
    ClosingDataConnection = 226,
    /// 227: entering passive mode.
    EnteringPassive = 227,
    /// 229: entering extended passive mode (RFC 2428).
    EnteringExtendedPassive = 229,
    /// 234: security data exchange complete: AUTH TLS accepted, the TLS
    /// handshake follows (RFC 2228, RFC 4217 section 4).
    SecurityExchangeOk = 234,
    /// 230: user logged in.
    LoggedIn = 230,
    /// 250: requested file action completed.
    FileActionOk = 250,
    /// 257: pathname (PWD, MKD).
    PathCreated = 257,
    /// 331: user name okay, need password.
    NeedPassword = 331,
    /// 350: pending further information (REST, RNFR).
    PendingFurtherInfo = 350,
    /// 421: service not available, closing the control connection.
    ServiceNotAvailable = 421,
    /// 425: can't open the data connection.
    CantOpenDataConnection = 425,
    /// 426: connection closed; transfer aborted.
    TransferAborted = 426,
    /// 450: file unavailable (busy); try again later.
    FileUnavailable = 450,
    /// 451: local error in processing.
    LocalError = 451,
    /// 452: insufficient storage space.
    InsufficientStorage = 452,
    /// 500: syntax error, command unrecognized (or line too long).
    SyntaxError = 500,
    /// 501: syntax error in parameters or arguments.
    ArgumentError = 501,
    /// 502: command not implemented.
    NotImplemented = 502,
    /// 503: bad sequence of commands.
    BadSequence = 503,
    /// 504: command not implemented for that parameter.
    ParameterNotImplemented = 504,
    /// 522: network protocol not supported (RFC 2428).
    UnsupportedNetworkProtocol = 522,
    /// 521: data connection cannot be opened with this PROT setting (RFC
    /// 4217 section 9: clear data where the site requires protection).
    DataProtectionRequired = 521,
    /// 530: not logged in.
    NotLoggedIn = 530,
    /// 534: request denied for policy reasons (RFC 2228: PROT C where TLS is
    /// required, CCC).
    PolicyDenied = 534,
    /// 536: requested PROT level not supported by mechanism (RFC 2228:
    /// PROT S, PROT E).
    ProtLevelNotSupported = 536,
    /// 550: file unavailable (not found, no access, wrong kind).
    FileNotAvailable = 550,
    /// 552: exceeded storage allocation (during a transfer).
    ExceededStorage = 552,
    /// 553: file name not allowed.
    FileNameNotAllowed = 553,
    /// 554: requested action not taken: invalid REST parameter (RFC 3659
    /// section 5.5), for a resumed upload the storage cannot continue there.
    InvalidRestParameter = 554,
}

impl ReplyCode {
    pub fn number(self) -> u16 {
        self as u16
    }
}

/// What the session does with the control connection once a reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Read the next command.
    Continue,
    /// Close the control connection.
    Close,
    /// Run a TLS handshake on the control connection, then go on over TLS
    /// (`234` to AUTH TLS, RFC 4217 section 4).
    StartTls,
}

/// One reply, possibly multi-line, possibly followed by another (ABOR sends
/// `426` then `226`), possibly closing or securing the control connection
/// afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: ReplyCode,
    /// The text lines; more than one makes a multi-line reply.
    pub lines: Vec<String>,
    /// What happens to the control connection once this reply is sent.
    pub after: After,
    /// A reply sent right after this one.
    pub then: Option<Box<Reply>>,
}

impl Reply {
    pub fn new(code: ReplyCode, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
            after: After::Continue,
            then: None,
        }
    }

    /// A multi-line reply: the first and last lines carry the code.
    pub fn multi(code: ReplyCode, lines: Vec<String>) -> Self {
        Reply {
            code,
            lines,
            after: After::Continue,
            then: None,
        }
    }

    pub fn and_close(mut self) -> Self {
        self.after = After::Close;
        self
    }

    /// Upgrade the control connection to TLS once this reply is sent.
    pub fn and_start_tls(mut self) -> Self {
        self.after = After::StartTls;
        self
    }

    /// Appends `next` to the end of the chain.
    pub fn followed_by(mut self, next: Reply) -> Self {
        match self.then {
            Some(then) => self.then = Some(Box::new(then.followed_by(next))),
            None => self.then = Some(Box::new(next)),
        }
        self
    }

    /// Whether any reply in the chain closes the connection.
    pub fn closes(&self) -> bool {
        self.after == After::Close || self.then.as_ref().is_some_and(|t| t.closes())
    }

    /// Whether the control connection turns to TLS after this reply (only a
    /// single reply asks for that).
    pub fn starts_tls(&self) -> bool {
        self.after == After::StartTls && self.then.is_none()
    }

    /// The wire form of the whole chain.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let mut next = Some(self);
        while let Some(reply) = next {
            reply.write_one(&mut out);
            next = reply.then.as_deref();
        }
        out
    }

    fn write_one(&self, out: &mut String) {
        let code = self.code.number();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let line = clean(line);
            if self.lines.len() == 1 {
                let _ = write!(out, "{code} {line}\r\n");
            } else if i == 0 {
                let _ = write!(out, "{code}-{line}\r\n");
            } else if i == last {
                let _ = write!(out, "{code} {line}\r\n");
            } else if line.starts_with(|c: char| c.is_ascii_digit()) {
                // A middle line starting with digits could be read as the end of
                // the reply (RFC 959 section 4.2); indent it.
                let _ = write!(out, " {line}\r\n");
            } else {
                let _ = write!(out, "{line}\r\n");
            }
        }
        if self.lines.is_empty() {
            let _ = write!(out, "{code} \r\n");
        }
    }
}

/// Reply text never contains a line break: it would end the reply early.
fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ").into()
    } else {
        text.into()
    }
}

/// Where an error happened: during a data transfer a full disk is `552`,
/// otherwise `452` (RFC 959); opening a file to continue an upload at the
/// REST offset, `unsupported` is `554` (RFC 3659: an object store can
/// continue a file only where it ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorContext {
    Command,
    Transfer,
    Resume,
}

/// The one mapping from storage errors to replies.
pub fn storage_error(err: &StorageError, context: ErrorContext) -> Reply {
    let (code, default) = match err.kind {
        ErrorKind::NotFound => (ReplyCode::FileNotAvailable, "No such file or directory"),
        ErrorKind::PermissionDenied => (ReplyCode::FileNotAvailable, "Permission denied"),
        ErrorKind::AlreadyExists => (ReplyCode::FileNotAvailable, "File exists"),
        ErrorKind::NotADirectory => (ReplyCode::FileNotAvailable, "Not a directory"),
        ErrorKind::IsADirectory => (ReplyCode::FileNotAvailable, "Is a directory"),
        ErrorKind::NotEmpty => (ReplyCode::FileNotAvailable, "Directory not empty"),
        ErrorKind::InvalidName => (ReplyCode::FileNameNotAllowed, "File name not allowed"),
        ErrorKind::NoSpace => match context {
            ErrorContext::Transfer => (ReplyCode::ExceededStorage, "No space left"),
            ErrorContext::Command | ErrorContext::Resume => {
                (ReplyCode::InsufficientStorage, "No space left")
            }
        },
        ErrorKind::Unsupported => match context {
            ErrorContext::Resume => (
                ReplyCode::InvalidRestParameter,
                "Cannot continue the file at that REST offset",
            ),
            _ => (ReplyCode::NotImplemented, "Not supported by this storage"),
        },
        ErrorKind::Unavailable => (
            ReplyCode::FileUnavailable,
            "Storage unavailable, try again later",
        ),
        ErrorKind::Io => (ReplyCode::LocalError, "Local error in processing"),
        ErrorKind::PluginFailed => (ReplyCode::LocalError, "Local error in processing"),
    };
    let text = match &err.message {
        // A local error's message is the host's or the plugin's internals (a
        // wasmtime trap, an OS error): the log gets it, under the session's
        // id; the client gets the short text.
        Some(message) if code == ReplyCode::LocalError => {
            warn!("{default}: {message}");
            default.to_string()
        }
        Some(message) if !message.is_empty() => format!("{default}: {message}"),
        _ => default.to_string(),
    };
    Reply::new(code, text)
}

/// The one mapping from login failures to replies. Whether the connection is
/// closed is decided here too.
/// A refusal's own message (the auth plugin's words) replaces the default text.
pub fn auth_error(err: &AuthError) -> Reply {
    let (code, default, plugin_text) = match err {
        AuthError::BadCredentials(text) => (ReplyCode::NotLoggedIn, "Login incorrect", text),
        AuthError::Disabled(text) => (ReplyCode::NotLoggedIn, "Login incorrect", text),
        AuthError::Unavailable(text) => (
            ReplyCode::ServiceNotAvailable,
            "Authentication service unavailable",
            text,
        ),
        AuthError::PluginFailed(cause) => {
            warn!("authentication plugin failed: {cause}");
            (ReplyCode::LocalError, "Local error in processing", &None)
        }
    };
    let text = plugin_text
        .as_deref()
        .and_then(plugin_message)
        .unwrap_or_else(|| default.to_string());
    let reply = Reply::new(code, text);
    if code == ReplyCode::ServiceNotAvailable {
        reply.and_close()
    } else {
        reply
    }
}

/// Longest plugin-provided text shown in a reply.
const MAX_PLUGIN_MESSAGE: usize = 200;

/// A plugin's message made fit for a reply line: its first line, control
/// characters replaced, bounded in length; `None` when nothing printable is left.
fn plugin_message(text: &str) -> Option<String> {
    let first = text.lines().next().unwrap_or("");
    let mut out: String = first
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string();
    if out.len() > MAX_PLUGIN_MESSAGE {
        let mut end = MAX_PLUGIN_MESSAGE;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    (!out.is_empty()).then_some(out)
}

/// Formats a path for a `257` reply: quoted, with embedded quotes doubled
/// (RFC 959 appendix II).
pub fn quote_path(path: &str) -> String {
    format!("\"{}\"", path.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(
            Reply::new(ReplyCode::CommandOk, "ok").to_wire(),
            "200 ok\r\n"
        );
    }

    #[test]
    fn multi_line_indents_digit_lines() {
        let reply = Reply::multi(
            ReplyCode::SystemStatus,
            vec!["a".into(), "211 x".into(), "end".into()],
        );
        assert_eq!(reply.to_wire(), "211-a\r\n 211 x\r\n211 end\r\n");
    }

    #[test]
    fn chained_and_cleaned() {
        let reply = Reply::new(ReplyCode::TransferAborted, "cut\r\nhere")
            .followed_by(Reply::new(ReplyCode::ClosingDataConnection, "done"));
        assert_eq!(reply.to_wire(), "426 cut  here\r\n226 done\r\n");
        assert!(!reply.closes());
        assert!(reply.and_close().closes());
    }

    #[test]
    fn error_table() {
        let code = |kind, ctx| storage_error(&StorageError::new(kind), ctx).code.number();
        assert_eq!(code(ErrorKind::NotFound, ErrorContext::Command), 550);
        assert_eq!(code(ErrorKind::NotEmpty, ErrorContext::Command), 550);
        assert_eq!(code(ErrorKind::InvalidName, ErrorContext::Command), 553);
        assert_eq!(code(ErrorKind::NoSpace, ErrorContext::Command), 452);
        assert_eq!(code(ErrorKind::NoSpace, ErrorContext::Transfer), 552);
        assert_eq!(code(ErrorKind::Unsupported, ErrorContext::Command), 502);
        assert_eq!(code(ErrorKind::Unsupported, ErrorContext::Resume), 554);
        assert_eq!(code(ErrorKind::NotFound, ErrorContext::Resume), 550);
        assert_eq!(code(ErrorKind::Unavailable, ErrorContext::Command), 450);
        assert_eq!(code(ErrorKind::Io, ErrorContext::Transfer), 451);
        assert_eq!(code(ErrorKind::PluginFailed, ErrorContext::Command), 451);
        let with_msg = storage_error(
            &StorageError::with_message(ErrorKind::NotFound, "gone"),
            ErrorContext::Command,
        );
        assert_eq!(
            with_msg.lines,
            vec!["No such file or directory: gone".to_string()]
        );
        assert!(auth_error(&AuthError::Unavailable(None)).closes());
        assert_eq!(
            auth_error(&AuthError::PluginFailed("x".into()))
                .code
                .number(),
            451
        );
    }

    #[test]
    fn local_errors_keep_their_cause_from_the_client() {
        for kind in [ErrorKind::Io, ErrorKind::PluginFailed] {
            let reply = storage_error(
                &StorageError::with_message(kind, "wasm trap: out of bounds at 0x1234 in /srv/x"),
                ErrorContext::Transfer,
            );
            assert_eq!(reply.to_wire(), "451 Local error in processing\r\n");
        }
        let reply = auth_error(&AuthError::PluginFailed("wasm trap: unreachable".into()));
        assert_eq!(reply.to_wire(), "451 Local error in processing\r\n");
    }

    #[test]
    fn auth_refusal_message_is_shown_sanitized() {
        let refused =
            |text: &str| auth_error(&AuthError::BadCredentials(Some(text.to_string()))).to_wire();
        assert_eq!(
            refused("Account locked, call the help desk"),
            "530 Account locked, call the help desk\r\n"
        );
        assert_eq!(refused("first\r\n230 fake"), "530 first\r\n");
        assert_eq!(refused("tab\there\x07"), "530 tab here\r\n");
        assert_eq!(refused(" \x1b "), "530 Login incorrect\r\n");
        let long = refused(&"é".repeat(300));
        assert!(
            long.len() <= "530 \r\n".len() + MAX_PLUGIN_MESSAGE,
            "{long}"
        );
        assert_eq!(
            auth_error(&AuthError::Disabled(None)).to_wire(),
            "530 Login incorrect\r\n"
        );
        let unavailable = auth_error(&AuthError::Unavailable(Some("LDAP down".into())));
        assert_eq!(unavailable.to_wire(), "421 LDAP down\r\n");
        assert!(unavailable.closes());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_path("/a\"b"), "\"/a\"\"b\"");
    }
}
