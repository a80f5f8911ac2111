//! PBSZ (RFC 2228 section 3, RFC 4217 section 8): the protection buffer size.
//! TLS has no buffer to size, so any number is taken as 0 (`200 PBSZ=0`).
//! Only after AUTH TLS; PROT needs it first.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    if arg.trim().parse::<u64>().is_err() {
        return Err(Reply::new(ReplyCode::ArgumentError, "Use PBSZ 0"));
    }
    session.set_protection_buffer()?;
    Ok(Reply::new(ReplyCode::CommandOk, "PBSZ=0"))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn pbsz_needs_tls() {
        let mut h = Harness::with_tls(false);
        assert_eq!(h.cmd("PBSZ 0").await.code.number(), 503);
        assert_eq!(h.cmd("PBSZ x").await.code.number(), 501);
    }
}
