//! ACCT (RFC 959 section 4.1.1): accounts are not used; `202`.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(_session: &mut Session, _arg: &str) -> HandlerResult {
    Ok(Reply::new(ReplyCode::Superfluous, "ACCT not needed"))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn acct_is_superfluous() {
        assert_eq!(Harness::logged_in().cmd("ACCT x").await.code.number(), 202);
        assert_eq!(Harness::new().cmd("ACCT x").await.code.number(), 530);
    }
}
