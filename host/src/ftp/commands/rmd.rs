//! RMD and XRMD (RFC 959 section 4.1.3). The home itself cannot be removed.

use crate::backend::{EventKind, Permissions};
use crate::ftp::events;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, OrReply, Session, permission_denied};
use crate::ops::transfer_log::Action;

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let target = session.target(arg, Permissions::REMOVE_DIR)?;
    if target.client == "/" {
        return Err(permission_denied());
    }
    let result = target.fs.remove_dir(&target.storage).await;
    events::file_op(session, Action::Rmdir, &target.client, None, result.is_ok());
    shared::file_event(
        session,
        EventKind::Rmdir,
        &target.storage,
        None,
        result.is_ok(),
    );
    result.or_reply()?;
    Ok(Reply::new(ReplyCode::FileActionOk, "Directory removed"))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn rmd() {
        let mut h = Harness::logged_in();
        h.fs.mkdir_all("/home/alice/a/b");
        assert_eq!(h.cmd("RMD a").await.code.number(), 550);
        assert_eq!(h.cmd("RMD a/b").await.code.number(), 250);
        assert_eq!(h.cmd("XRMD /a").await.code.number(), 250);
        assert_eq!(h.cmd("RMD /").await.code.number(), 550);
        assert_eq!(h.cmd("RMD ..").await.code.number(), 550);
        assert!(h.fs.exists("/home/alice"));
    }
}
