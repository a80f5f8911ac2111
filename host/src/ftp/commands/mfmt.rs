//! MFMT (draft-somers-ftp-mfxx): set a file's modification time.
//! `MFMT YYYYMMDDHHMMSS path` → `213 Modify=YYYYMMDDHHMMSS; path`.

use crate::backend::Permissions;
use crate::ftp::listing::{format_timestamp, parse_timestamp};
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, OrReply, Session};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let bad = || Reply::new(ReplyCode::ArgumentError, "Use MFMT YYYYMMDDHHMMSS path");
    let (time, path) = arg.split_once(' ').ok_or_else(bad)?;
    let time = parse_timestamp(time).ok_or_else(bad)?;
    if path.is_empty() {
        return Err(bad());
    }
    let target = session.target(path, Permissions::SET_TIME)?;
    target
        .fs
        .set_modified(&target.storage, time)
        .await
        .or_reply()?;
    Ok(Reply::new(
        ReplyCode::FileStatus,
        format!("Modify={}; {}", format_timestamp(time), target.client),
    ))
}

#[cfg(test)]
mod tests {
    use crate::backend::Permissions;
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn mfmt() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"x");
        assert_eq!(
            h.cmd("MFMT 20200101000000 f").await.to_wire(),
            "213 Modify=20200101000000; /f\r\n"
        );
        assert_eq!(h.cmd("MDTM f").await.to_wire(), "213 20200101000000\r\n");
        assert_eq!(h.cmd("MFMT 2020 f").await.code.number(), 501);
        assert_eq!(h.cmd("MFMT 20200101000000").await.code.number(), 501);
        assert_eq!(h.cmd("MFMT 20200101000000 nope").await.code.number(), 550);
        let mut h = Harness::with_permissions(Permissions::READ);
        h.fs.put_file("/home/alice/f", b"x");
        assert_eq!(h.cmd("MFMT 20200101000000 f").await.code.number(), 550);
    }
}
