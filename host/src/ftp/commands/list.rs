//! LIST (RFC 959 section 4.1.3): `ls -l` lines over the data connection for a
//! directory, or one line for a file, or the entries matching a wildcard in
//! the last segment (`LIST *.txt`). `ls` flags (`-a`, `-l`, `-la`) are
//! accepted and ignored: every entry is always shown.

use crate::ftp::listing::LineFormat;
use crate::ftp::session::{HandlerResult, Session};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    session.require_data_endpoint()?;
    let listed = shared::list_argument(session, arg).await?;
    let format = LineFormat::Long {
        now: chrono::Utc::now(),
    };
    let what = format!("LIST {}", listed.client);
    shared::send_listing(session, listed.head, format, what)
}

#[cfg(test)]
mod tests {
    use crate::backend::Permissions;
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn list_checks() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("LIST").await.code.number(), 425);
        h.cmd("PASV").await;
        assert_eq!(h.cmd("LIST -la nope").await.code.number(), 550);
        assert_eq!(h.cmd("LIST -la").await.code.number(), 150);
        let mut h = Harness::with_permissions(Permissions::READ);
        h.cmd("PASV").await;
        assert_eq!(h.cmd("LIST").await.code.number(), 550);
    }
}
