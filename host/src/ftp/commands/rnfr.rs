//! RNFR (RFC 959 section 4.1.3): remembers the source and enters RENAMING;
//! the next command must be RNTO (anything else cancels).

use crate::backend::Permissions;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, OrReply, Session, permission_denied};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let target = session.target(arg, Permissions::RENAME)?;
    if target.client == "/" {
        return Err(permission_denied());
    }
    target.fs.stat(&target.storage).await.or_reply()?;
    session.user_mut()?.rename_from = Some(target.storage);
    Ok(Reply::new(ReplyCode::PendingFurtherInfo, "Ready for RNTO"))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn rnfr_needs_existing_source() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("RNFR nope").await.code.number(), 550);
        assert_eq!(h.cmd("RNFR /").await.code.number(), 550);
        h.fs.put_file("/home/alice/f", b"x");
        assert_eq!(h.cmd("RNFR f").await.code.number(), 350);
        assert_eq!(
            h.session.logged_in().unwrap().rename_from.as_deref(),
            Some("/home/alice/f")
        );
    }
}
