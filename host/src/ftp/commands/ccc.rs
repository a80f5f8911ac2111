//! CCC (RFC 4217 section 6, "clear command channel"): refused. Going back
//! to clear text would let anyone on the path read and change the commands
//! that follow (an old NAT workaround; passive ports and EPSV do not need it).

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(_session: &mut Session, _arg: &str) -> HandlerResult {
    Err(Reply::new(
        ReplyCode::PolicyDenied,
        "CCC refused: the control connection stays encrypted",
    ))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn ccc_is_refused() {
        assert_eq!(Harness::new().cmd("CCC").await.code.number(), 534);
    }
}
