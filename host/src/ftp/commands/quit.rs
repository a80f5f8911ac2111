//! QUIT (RFC 959 section 4.1.1): `221` and close. The session loop waits for a
//! running transfer (and sends its reply) before this runs.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(_session: &mut Session, _arg: &str) -> HandlerResult {
    Ok(Reply::new(ReplyCode::Closing, "Goodbye").and_close())
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn quit_closes() {
        let reply = Harness::new().cmd("QUIT").await;
        assert_eq!(reply.code.number(), 221);
        assert!(reply.closes());
    }
}
