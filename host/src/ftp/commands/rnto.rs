//! RNTO (RFC 959 section 4.1.3): completes a rename started by RNFR; `503`
//! without one.

use crate::backend::{EventKind, Permissions};
use crate::ftp::events;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, OrReply, Session, permission_denied};
use crate::ops::transfer_log::Action;

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let Some(from) = session.user_mut()?.rename_from.take() else {
        return Err(Reply::new(ReplyCode::BadSequence, "RNFR required first"));
    };
    let target = session.target(arg, Permissions::RENAME)?;
    if target.client == "/" {
        return Err(permission_denied());
    }
    let result = target.fs.rename(&from, &target.storage).await;
    let ok = result.is_ok();
    shared::file_event(session, EventKind::Rename, &from, Some(&target.storage), ok);
    let home = &session.user()?.home;
    let from_client = crate::ftp::path::to_client(home, &from);
    events::file_op(
        session,
        Action::Rename,
        &from_client,
        Some(&target.client),
        result.is_ok(),
    );
    result.or_reply()?;
    Ok(Reply::new(ReplyCode::FileActionOk, "Rename successful"))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn rename_sequence() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"x");
        assert_eq!(h.cmd("RNTO g").await.code.number(), 503);
        h.cmd("RNFR f").await;
        assert_eq!(h.cmd("RNTO ../../g").await.code.number(), 250);
        assert_eq!(h.fs.file("/home/alice/g").unwrap(), b"x");
        assert_eq!(h.cmd("RNTO h").await.code.number(), 503);
    }

    #[tokio::test]
    async fn other_command_cancels() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"x");
        h.cmd("RNFR f").await;
        h.cmd("NOOP").await;
        assert_eq!(h.cmd("RNTO g").await.code.number(), 503);
        h.cmd("RNFR f").await;
        h.cmd("BOGUS").await;
        assert_eq!(h.cmd("RNTO g").await.code.number(), 503);
        assert!(h.fs.exists("/home/alice/f"));
    }
}
