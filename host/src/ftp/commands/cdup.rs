//! CDUP and XCUP (RFC 959 section 4.1.1): to the parent directory; the home's
//! parent is the home.

use crate::ftp::path;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(session: &mut Session, _arg: &str) -> HandlerResult {
    let user = session.user_mut()?;
    user.cwd = path::parent(&user.cwd).to_string();
    Ok(Reply::new(
        ReplyCode::FileActionOk,
        format!("Directory changed to {}", user.cwd),
    ))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn cdup() {
        let mut h = Harness::logged_in();
        h.fs.mkdir_all("/home/alice/a/b");
        h.cmd("CWD /a/b").await;
        assert_eq!(h.cmd("CDUP").await.code.number(), 250);
        assert_eq!(h.cwd(), "/a");
        h.cmd("XCUP").await;
        h.cmd("XCUP").await;
        assert_eq!(h.cwd(), "/");
    }
}
