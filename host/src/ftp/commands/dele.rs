//! DELE (RFC 959 section 4.1.3).

use crate::backend::{EventKind, Permissions};
use crate::ftp::events;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, OrReply, Session};
use crate::ops::transfer_log::Action;

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let target = session.target(arg, Permissions::DELETE)?;
    let result = target.fs.delete(&target.storage).await;
    events::file_op(
        session,
        Action::Delete,
        &target.client,
        None,
        result.is_ok(),
    );
    shared::file_event(
        session,
        EventKind::Delete,
        &target.storage,
        None,
        result.is_ok(),
    );
    result.or_reply()?;
    Ok(Reply::new(ReplyCode::FileActionOk, "File deleted"))
}

#[cfg(test)]
mod tests {
    use crate::backend::{ErrorKind, Permissions};
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn dele() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"x");
        h.fs.mkdir_all("/home/alice/d");
        assert_eq!(h.cmd("DELE d").await.code.number(), 550);
        assert_eq!(h.cmd("DELE f").await.code.number(), 250);
        assert!(!h.fs.exists("/home/alice/f"));
        assert_eq!(h.cmd("DELE f").await.code.number(), 550);
        h.fs.fail("/home/alice/busy", ErrorKind::Unavailable);
        assert_eq!(h.cmd("DELE busy").await.code.number(), 450);
        let mut h = Harness::with_permissions(Permissions::READ);
        h.fs.put_file("/home/alice/f", b"x");
        assert_eq!(h.cmd("DELE f").await.code.number(), 550);
        assert!(h.fs.exists("/home/alice/f"));
    }
}
