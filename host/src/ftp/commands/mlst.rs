//! MLST (RFC 3659 section 7): the facts of one entry over the control
//! connection: `250-`, one line starting with a space, `250 End`.

use crate::backend::Permissions;
use crate::ftp::listing;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, OrReply, Session};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let target = session.target(arg, Permissions::LIST)?;
    let meta = target.fs.stat(&target.storage).await.or_reply()?;
    let perms = session.user()?.account.permissions;
    let mut line = String::from(" ");
    listing::mlsx_facts(&mut line, &meta, perms, session.mlst_facts);
    line.push(' ');
    line.push_str(&target.client);
    Ok(Reply::multi(
        ReplyCode::FileActionOk,
        vec![
            format!("Listing {}", target.client),
            line,
            "End".to_string(),
        ],
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn mlst() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/ü.txt", b"abc");
        h.fs.set_modified_time(
            "/home/alice/ü.txt",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_609_556_645),
        );
        assert_eq!(
            h.cmd("MLST ü.txt").await.to_wire(),
            "250-Listing /ü.txt\r\n type=file;size=3;modify=20210102030405;perm=rwadf; /ü.txt\r\n250 End\r\n"
        );
        let wire = h.cmd("MLST").await.to_wire();
        assert!(wire.contains(" type=dir;"), "{wire}");
        assert_eq!(h.cmd("MLST nope").await.code.number(), 550);
    }
}
