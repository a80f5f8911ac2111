//! NLST (RFC 959 section 4.1.3): names only, one per line. A file path gives
//! that file's name. A wildcard in the last segment (`NLST dir/*.txt`, what a
//! classic client's `mget` sends) gives the matching names with the directory
//! part as written (`dir/a.txt`), ready for RETR.

use crate::ftp::dtp::{Job, Source};
use crate::ftp::session::{HandlerResult, Session};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    session.require_data_endpoint()?;
    let listed = shared::list_argument(session, arg).await?;
    let prefix = listed.glob_prefix.as_deref().unwrap_or("");
    let mut text = String::with_capacity(listed.entries.len() * (16 + prefix.len()));
    for entry in &listed.entries {
        // A name with a line break would read as two names.
        if !entry.name.chars().any(char::is_control) {
            text.push_str(prefix);
            text.push_str(&entry.name);
            text.push_str("\r\n");
        }
    }
    session.start_transfer(
        Job::Send {
            source: Source::Bytes(text.into_bytes()),
            ascii: false,
            skip: 0,
        },
        format!("NLST {}", listed.client),
        "Here comes the directory listing",
    )
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
