//! ALLO (RFC 959 section 4.1.3): storage needs no preallocation; `202`.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(_session: &mut Session, _arg: &str) -> HandlerResult {
    Ok(Reply::new(ReplyCode::Superfluous, "ALLO not needed"))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn allo() {
        assert_eq!(
            Harness::logged_in().cmd("ALLO 100").await.code.number(),
            202
        );
    }
}
