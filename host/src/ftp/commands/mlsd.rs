//! MLSD (RFC 3659 section 7): machine-readable listing of a directory over the
//! data connection, with the facts chosen by OPTS MLST. A file is `501`
//! (section 7.2.1).

use crate::backend::Permissions;
use crate::ftp::listing::LineFormat;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    session.require_data_endpoint()?;
    let target = session.target(arg, Permissions::LIST)?;
    let (is_dir, head) = shared::listing(&target, None).await?;
    if !is_dir {
        return Err(Reply::new(ReplyCode::ArgumentError, "Not a directory"));
    }
    let format = LineFormat::Mlsd {
        perms: session.user()?.account.permissions,
        facts: session.mlst_facts,
    };
    let what = format!("MLSD {}", target.client);
    shared::send_listing(session, head, format, what)
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn mlsd_checks() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"x");
        assert_eq!(h.cmd("MLSD").await.code.number(), 425);
        h.cmd("PASV").await;
        assert_eq!(h.cmd("MLSD f").await.code.number(), 501);
        assert_eq!(h.cmd("MLSD nope").await.code.number(), 550);
        assert_eq!(h.cmd("MLSD").await.code.number(), 150);
    }
}
