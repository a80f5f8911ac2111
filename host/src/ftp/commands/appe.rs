//! APPE (RFC 959 section 4.1.3): receive data and add it to the end of a file
//! (created if missing).

use crate::ftp::session::{HandlerResult, Session};

use super::shared::{Upload, upload};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    upload(session, arg, Upload::Append).await
}

#[cfg(test)]
mod tests {
    use crate::backend::Permissions;
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn appe_needs_append_permission() {
        let mut h = Harness::with_permissions(Permissions::WRITE);
        h.cmd("PASV").await;
        assert_eq!(h.cmd("APPE f").await.code.number(), 550);
        let mut h = Harness::with_permissions(Permissions::APPEND);
        h.cmd("PASV").await;
        assert_eq!(h.cmd("APPE f").await.code.number(), 150);
    }
}
