//! STOR (RFC 959 section 4.1.3): receive a file, replacing an existing one, or
//! continuing at the REST offset (which needs the APPEND permission too).

use crate::ftp::session::{HandlerResult, Session};

use super::shared::{Upload, upload};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    upload(session, arg, Upload::Store).await
}

#[cfg(test)]
mod tests {
    use crate::backend::Permissions;
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn stor_checks_before_truncating() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"keep");
        assert_eq!(h.cmd("STOR f").await.code.number(), 425);
        assert_eq!(h.fs.file("/home/alice/f").unwrap(), b"keep");
        h.cmd("PASV").await;
        assert_eq!(h.cmd("STOR missing/f").await.code.number(), 550);
        assert_eq!(h.cmd("STOR f").await.code.number(), 150);

        let mut h = Harness::with_permissions(Permissions::WRITE);
        h.cmd("PASV").await;
        h.cmd("REST 2").await;
        assert_eq!(
            h.cmd("STOR f").await.code.number(),
            550,
            "resuming needs APPEND"
        );
        let mut h = Harness::with_permissions(Permissions::READ);
        h.cmd("PASV").await;
        assert_eq!(h.cmd("STOR f").await.code.number(), 550);
    }
}
