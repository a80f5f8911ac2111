//! CWD and XCWD (RFC 959 section 4.1.1): change the working directory. The
//! target must exist and be a directory inside the home.

use crate::backend::Permissions;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, OrReply, Session};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let target = session.target(arg, Permissions::empty())?;
    let meta = target.fs.stat(&target.storage).await.or_reply()?;
    if !meta.is_dir() {
        return Err(Reply::new(ReplyCode::FileNotAvailable, "Not a directory"));
    }
    let reply = Reply::new(
        ReplyCode::FileActionOk,
        format!("Directory changed to {}", target.client),
    );
    session.user_mut()?.cwd = target.client;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn cwd() {
        let mut h = Harness::logged_in();
        h.fs.mkdir_all("/home/alice/a/b");
        h.fs.put_file("/home/alice/f", b"");
        assert_eq!(h.cmd("CWD a/b").await.code.number(), 250);
        assert_eq!(h.cwd(), "/a/b");
        assert_eq!(h.cmd("XCWD ../../..").await.code.number(), 250);
        assert_eq!(h.cwd(), "/");
        assert_eq!(h.cmd("CWD f").await.code.number(), 550);
        assert_eq!(h.cmd("CWD nope").await.code.number(), 550);
        assert_eq!(h.cmd("CWD a\u{1}").await.code.number(), 553);
        assert_eq!(h.cmd("CWD").await.code.number(), 501);
        assert_eq!(h.cwd(), "/");
    }
}
