//! RETR (RFC 959 section 4.1.3): send a file. REST sets the start; in TYPE A
//! the offset counts converted bytes, so the file is read from the start and
//! the converted output skipped.

use crate::backend::{EventKind, Permissions};
use crate::ftp::dtp::{Job, Source};
use crate::ftp::session::{HandlerResult, OrReply, Session, TransferType};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    session.require_data_endpoint()?;
    let offset = session.take_rest();
    let target = session.target(arg, Permissions::READ)?;
    let ascii = session.transfer_type == TransferType::Ascii;
    let (open_at, skip) = if ascii { (0, offset) } else { (offset, 0) };
    let reader = target
        .fs
        .open_read(&target.storage, open_at)
        .await
        .or_reply()?;
    let mode = if ascii { "ASCII" } else { "BINARY" };
    let preliminary = format!("Opening {mode} mode data connection for {}", target.client);
    let report = shared::transfer_report(session, EventKind::Download, &target.storage);
    session.start_transfer(
        Job::Send {
            source: Source::File(reader),
            ascii,
            skip,
        },
        format!("RETR {}", target.client),
        &preliminary,
        report,
    )
}

#[cfg(test)]
mod tests {
    use crate::backend::Permissions;
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn retr_checks_before_transfer() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"x");
        h.fs.mkdir_all("/home/alice/d");
        assert_eq!(h.cmd("RETR f").await.code.number(), 425);
        h.cmd("PASV").await;
        h.cmd("REST 5").await;
        assert_eq!(h.cmd("RETR nope").await.code.number(), 550);
        assert_eq!(h.session.rest, 0, "REST is used up by the failed RETR");
        assert_eq!(h.cmd("RETR d").await.code.number(), 550);
        assert!(
            h.session.data.is_some(),
            "a refused RETR keeps the data connection setup"
        );
        let reply = h.cmd("RETR f").await;
        assert_eq!(
            reply.to_wire(),
            "150 Opening ASCII mode data connection for /f\r\n"
        );
        assert!(h.session.transfer.is_some());
        assert!(h.session.data.is_none());
        let mut h = Harness::with_permissions(Permissions::LIST);
        h.fs.put_file("/home/alice/f", b"x");
        h.cmd("PASV").await;
        assert_eq!(h.cmd("RETR f").await.code.number(), 550);
    }
}
