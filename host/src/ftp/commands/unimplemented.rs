//! Verbs we recognise but do not implement (SMNT, SITE): `502`, so clients
//! fall back instead of retrying.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(_session: &mut Session, _arg: &str) -> HandlerResult {
    Err(Reply::new(
        ReplyCode::NotImplemented,
        "Command not implemented",
    ))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn not_implemented() {
        assert_eq!(
            Harness::new().cmd("SITE CHMOD 600 f").await.code.number(),
            530
        );
        assert_eq!(
            Harness::logged_in()
                .cmd("SITE CHMOD 600 f")
                .await
                .code
                .number(),
            502
        );
    }
}
