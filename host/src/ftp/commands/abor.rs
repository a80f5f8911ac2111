//! ABOR (RFC 959 section 4.1.3): cuts a running transfer (`426`, then `226`
//! for the ABOR itself); with nothing running, `225`. Runs while a transfer is
//! in progress; also drops a prepared data connection.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(session: &mut Session, _arg: &str) -> HandlerResult {
    session.clear_data_endpoint();
    let ok = Reply::new(ReplyCode::ClosingDataConnection, "ABOR successful");
    match session.abort_transfer().await {
        None => Ok(Reply::new(
            ReplyCode::DataOpenNoTransfer,
            "No transfer to abort",
        )),
        // It ended just before the ABOR: its own reply, then the ABOR's.
        Some(Ok(finished)) => Ok(finished.followed_by(ok)),
        Some(Err(())) => Ok(Reply::new(
            ReplyCode::TransferAborted,
            "Connection closed; transfer aborted",
        )
        .followed_by(ok)),
    }
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn abor_without_transfer() {
        let mut h = Harness::logged_in();
        h.cmd("PASV").await;
        assert_eq!(
            h.cmd("ABOR").await.to_wire(),
            "225 No transfer to abort\r\n"
        );
        assert!(h.session.data.is_none());
    }

    #[tokio::test]
    async fn abor_cuts_transfer() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"x");
        h.cmd("PASV").await;
        // Nobody connects to the data port, so the transfer is still waiting.
        assert_eq!(h.cmd("RETR f").await.code.number(), 150);
        assert_eq!(
            h.cmd("ABOR").await.to_wire(),
            "426 Connection closed; transfer aborted\r\n226 ABOR successful\r\n"
        );
        assert!(h.session.transfer.is_none());
    }
}
