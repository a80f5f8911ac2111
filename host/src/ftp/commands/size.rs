//! SIZE (RFC 3659 section 4): the exact number of bytes a RETR would send in
//! the current TYPE. In TYPE A that means reading the file through the LF →
//! CRLF conversion; that read is bounded in size and time (see
//! `shared::ascii_size`), and past a bound the answer is `550` rather than a
//! wrong number.

use crate::backend::Permissions;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session, TransferType};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let target = session.target(arg, Permissions::READ)?;
    let meta = shared::file_metadata(&target).await?;
    let size = match session.transfer_type {
        TransferType::Image => meta.size,
        TransferType::Ascii => {
            shared::ascii_size(&target, meta.size, session.settings.data_timeout).await?
        }
    };
    Ok(Reply::new(ReplyCode::FileStatus, size.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn size_per_type() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"a\nb\r\nc\n");
        h.fs.mkdir_all("/home/alice/d");
        assert_eq!(h.cmd("TYPE I").await.code.number(), 200);
        assert_eq!(h.cmd("SIZE f").await.to_wire(), "213 7\r\n");
        h.cmd("TYPE A").await;
        assert_eq!(h.cmd("SIZE f").await.to_wire(), "213 9\r\n");
        assert_eq!(h.cmd("SIZE d").await.code.number(), 550);
        assert_eq!(h.cmd("SIZE nope").await.code.number(), 550);
    }

    #[tokio::test]
    async fn size_ascii_refuses_huge_files() {
        let mut h = Harness::logged_in();
        h.fs.put_file(
            "/home/alice/big",
            &vec![b'x'; (super::shared::ASCII_SIZE_LIMIT + 1) as usize],
        );
        assert_eq!(
            h.cmd("SIZE big").await.to_wire(),
            "550 SIZE not allowed in ASCII mode for files over 16 MiB; use TYPE I\r\n"
        );
        h.cmd("TYPE I").await;
        assert_eq!(h.cmd("SIZE big").await.code.number(), 213);
    }

    #[tokio::test]
    async fn size_ascii_is_bounded_in_time() {
        let mut h = Harness::logged_in_with(|s| s.data_timeout = Duration::from_millis(100));
        h.fs.put_file("/home/alice/slow", b"a\nb\n");
        h.fs.set_read_delay(Duration::from_secs(30));
        let started = std::time::Instant::now();
        let reply = h.cmd("SIZE slow").await;
        assert_eq!(reply.code.number(), 550, "{}", reply.to_wire());
        assert!(started.elapsed() < Duration::from_secs(5));
        h.cmd("TYPE I").await;
        assert_eq!(h.cmd("SIZE slow").await.to_wire(), "213 4\r\n");
    }
}
