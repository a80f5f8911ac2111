//! MDTM (RFC 3659 section 3): modification time as `YYYYMMDDHHMMSS` UTC.
//! Files only: a directory answers `550`, as vsftpd, ProFTPD, Pure-FTPd and
//! pyftpdlib do, so clients can use MDTM to tell files from directories.

use crate::backend::Permissions;
use crate::ftp::listing::format_timestamp;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let target = session.target(arg, Permissions::READ)?;
    let meta = shared::file_metadata(&target).await?;
    match meta.modified {
        Some(time) => Ok(Reply::new(ReplyCode::FileStatus, format_timestamp(time))),
        None => Err(Reply::new(
            ReplyCode::FileNotAvailable,
            "Modification time unknown",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn mdtm() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"x");
        h.fs.set_modified_time(
            "/home/alice/f",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_609_556_645),
        );
        assert_eq!(h.cmd("MDTM f").await.to_wire(), "213 20210102030405\r\n");
        assert_eq!(h.cmd("MDTM nope").await.code.number(), 550);
        h.fs.mkdir_all("/home/alice/d");
        assert_eq!(
            h.cmd("MDTM d").await.to_wire(),
            "550 Not a regular file\r\n"
        );
    }
}
