//! STAT (RFC 959 section 4.1.3): without an argument, the session's status
//! (including a running transfer's progress); with a path, its `ls -l`
//! listing over the control connection (`213`). Runs during transfers.

use std::sync::atomic::Ordering;

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session, TransferType};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    if !arg.trim().is_empty() {
        let listed = shared::list_argument(session, arg).await?;
        let mut lines = vec![format!("Status of {}:", listed.client)];
        lines.extend(shared::long_listing(&listed.head));
        lines.push("End of status".to_string());
        return Ok(Reply::multi(ReplyCode::FileStatus, lines));
    }
    let mut lines = vec![
        "wasmftpd status:".to_string(),
        format!(" Connected from {}", session.peer.ip()),
    ];
    match session.logged_in() {
        Some(user) => lines.push(format!(" Logged in as {}", user.account.user)),
        None => lines.push(" Not logged in".to_string()),
    }
    let kind = match session.transfer_type {
        TransferType::Ascii => "ASCII",
        TransferType::Image => "BINARY",
    };
    lines.push(format!(" TYPE: {kind}, MODE: Stream, STRU: File"));
    match &session.transfer {
        Some(t) => lines.push(format!(
            " Transfer in progress: {}, {} bytes in {:.1} s",
            t.what,
            t.progress.load(Ordering::Relaxed),
            t.started.elapsed().as_secs_f64()
        )),
        None => lines.push(" No transfer in progress".to_string()),
    }
    lines.push("End of status".to_string());
    Ok(Reply::multi(ReplyCode::SystemStatus, lines))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn stat_status_and_path() {
        let mut h = Harness::logged_in();
        let wire = h.cmd("STAT").await.to_wire();
        assert!(wire.starts_with("211-wasmftpd status:\r\n"));
        assert!(wire.contains(" Logged in as alice\r\n"));
        assert!(wire.ends_with("211 End of status\r\n"));
        h.fs.put_file("/home/alice/d/f", b"abc");
        let wire = h.cmd("STAT -la d").await.to_wire();
        assert!(
            wire.starts_with("213-Status of /d:\r\n-rw-r--r-- 1 ftp ftp            3 "),
            "{wire}"
        );
        assert!(wire.ends_with(" f\r\n213 End of status\r\n"));
        assert_eq!(h.cmd("STAT nope").await.code.number(), 550);
    }
}
