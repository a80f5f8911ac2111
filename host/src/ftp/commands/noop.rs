//! NOOP (RFC 959 section 4.1.3). Answered even while a transfer runs.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(_session: &mut Session, _arg: &str) -> HandlerResult {
    Ok(Reply::new(ReplyCode::CommandOk, "NOOP ok"))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn noop_before_login() {
        assert_eq!(
            Harness::new().cmd("noop").await.to_wire(),
            "200 NOOP ok\r\n"
        );
    }
}
