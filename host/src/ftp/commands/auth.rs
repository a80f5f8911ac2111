//! AUTH (RFC 2228 section 3, RFC 4217 section 4): `AUTH TLS` (and `AUTH SSL`,
//! an old name for the same) answers `234`, then the control connection runs
//! a TLS handshake and goes on encrypted. Whatever the client sent behind the
//! command in clear text is dropped, never run ([`Control::upgrade`]).
//!
//! [`Control::upgrade`]: crate::ftp::control::Control::upgrade

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let mechanism = arg.trim().to_ascii_uppercase();
    if !matches!(mechanism.as_str(), "TLS" | "TLS-C" | "SSL") {
        return Err(Reply::new(
            ReplyCode::ParameterNotImplemented,
            "Unknown security mechanism; use AUTH TLS",
        ));
    }
    if session.is_secure() {
        return Err(Reply::new(
            ReplyCode::BadSequence,
            "The connection already uses TLS",
        ));
    }
    if session.tls_offered().is_none() {
        return Err(Reply::new(
            ReplyCode::NotImplemented,
            "TLS is not configured here",
        ));
    }
    Ok(Reply::new(
        ReplyCode::SecurityExchangeOk,
        format!("AUTH {mechanism} ok, start the TLS handshake"),
    )
    .and_start_tls())
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn auth_tls_asks_for_the_handshake() {
        let mut h = Harness::with_tls(false);
        for arg in ["TLS", "tls", "SSL", "TLS-C"] {
            let reply = h.cmd(&format!("AUTH {arg}")).await;
            assert_eq!(reply.code.number(), 234, "AUTH {arg}");
            assert!(reply.starts_tls());
        }
        let reply = h.cmd("AUTH KERBEROS_V4").await;
        assert_eq!(reply.code.number(), 504);
        assert!(!reply.starts_tls());
        assert_eq!(h.cmd("AUTH").await.code.number(), 501);
    }

    #[tokio::test]
    async fn auth_without_tls_configured() {
        let reply = Harness::new().cmd("AUTH TLS").await;
        assert_eq!(reply.code.number(), 502);
        assert!(!reply.starts_tls());
    }
}
