//! MKD and XMKD (RFC 959 section 4.1.3): `257 "path" created`.

use crate::backend::{EventKind, Permissions};
use crate::ftp::events;
use crate::ftp::reply::{Reply, ReplyCode, quote_path};
use crate::ftp::session::{HandlerResult, OrReply, Session};
use crate::ops::transfer_log::Action;

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let target = session.target(arg, Permissions::MAKE_DIR)?;
    let result = target.fs.make_dir(&target.storage).await;
    events::file_op(session, Action::Mkdir, &target.client, None, result.is_ok());
    shared::file_event(
        session,
        EventKind::Mkdir,
        &target.storage,
        None,
        result.is_ok(),
    );
    result.or_reply()?;
    Ok(Reply::new(
        ReplyCode::PathCreated,
        format!("{} created", quote_path(&target.client)),
    ))
}

#[cfg(test)]
mod tests {
    use crate::backend::Permissions;
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn mkd() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("MKD new").await.to_wire(), "257 \"/new\" created\r\n");
        assert!(h.fs.exists("/home/alice/new"));
        assert_eq!(h.cmd("XMKD new").await.code.number(), 550);
        assert_eq!(h.cmd("MKD missing/child").await.code.number(), 550);
        let mut h = Harness::with_permissions(Permissions::READ);
        assert_eq!(h.cmd("MKD x").await.code.number(), 550);
        assert!(!h.fs.exists("/home/alice/x"));
    }
}
