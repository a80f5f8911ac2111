//! REST (RFC 3659 section 5, STREAM mode): the byte offset the next RETR, STOR
//! or APPE starts at. Kept until a transfer command uses it, because clients
//! often send PASV/EPSV between REST and RETR.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let offset: u64 = arg
        .trim()
        .parse()
        .map_err(|_| Reply::new(ReplyCode::ArgumentError, "Use REST <offset>"))?;
    session.set_rest(offset);
    Ok(Reply::new(
        ReplyCode::PendingFurtherInfo,
        format!("Restarting at {offset}. Send RETR or STOR"),
    ))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn rest() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("REST 100").await.code.number(), 350);
        assert_eq!(h.session.rest, 100);
        assert_eq!(h.cmd("REST -1").await.code.number(), 501);
        assert_eq!(h.cmd("REST abc").await.code.number(), 501);
        assert_eq!(h.session.rest, 100);
    }
}
