//! NLST (RFC 959 section 4.1.3): names only, one per line. A file path gives
//! that file's name. A wildcard in the last segment (`NLST dir/*.txt`, what a
//! classic client's `mget` sends) gives the matching names with the directory
//! part as written (`dir/a.txt`), ready for RETR.

use crate::ftp::listing::LineFormat;
use crate::ftp::session::{HandlerResult, Session};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    session.require_data_endpoint()?;
    let listed = shared::list_argument(session, arg).await?;
    let format = LineFormat::Names {
        prefix: listed.glob_prefix.unwrap_or_default(),
    };
    let what = format!("NLST {}", listed.client);
    shared::send_listing(session, listed.head, format, what)
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn nlst_checks() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("NLST").await.code.number(), 425);
        h.cmd("PASV").await;
        assert_eq!(h.cmd("NLST nope").await.code.number(), 550);
        assert_eq!(h.cmd("NLST").await.code.number(), 150);
    }
}
