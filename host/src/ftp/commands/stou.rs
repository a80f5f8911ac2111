//! STOU (RFC 959 section 4.1.3, RFC 1123 section 4.1.2.9): store under a name
//! that does not exist yet, announced as `150 FILE: name`. The name is the
//! argument (or a random one) with `.1`, `.2`, ... added until it is free.
//! Another session could take the name between the check and the open; the
//! storage interface has no create-exclusive mode to close that gap.

use crate::backend::{ErrorKind, EventKind, Permissions, WriteMode};
use crate::ftp::dtp::Job;
use crate::ftp::path;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, OrReply, Session, TransferType};

use super::shared;

const ATTEMPTS: u32 = 100;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    session.require_data_endpoint()?;
    session.take_rest();
    let base = if arg.is_empty() {
        use rand_core::RngCore;
        format!("ftp{:08x}", rand_core::OsRng.next_u32())
    } else {
        arg.to_string()
    };
    for attempt in 0..ATTEMPTS {
        let candidate = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}.{attempt}")
        };
        let target = session.target(&candidate, Permissions::WRITE)?;
        match target.fs.stat(&target.storage).await {
            Ok(_) => continue,
            Err(err) if err.kind == ErrorKind::NotFound => {}
            Err(err) => return Err(session.storage_error(&err)),
        }
        let writer = target
            .fs
            .open_write(&target.storage, WriteMode::Truncate)
            .await
            .or_reply()?;
        let ascii = session.transfer_type == TransferType::Ascii;
        let name = path::file_name(&target.client).to_string();
        let report = shared::transfer_report(session, EventKind::Upload, &target.storage);
        return session.start_transfer(
            Job::Receive { writer, ascii },
            format!("STOU {}", target.client),
            &format!("FILE: {name}"),
            report,
        );
    }
    Err(Reply::new(
        ReplyCode::FileNameNotAllowed,
        "No unique file name available",
    ))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn stou_picks_a_free_name() {
        let mut h = Harness::logged_in();
        h.fs.put_file("/home/alice/f", b"x");
        h.fs.put_file("/home/alice/f.1", b"x");
        assert_eq!(h.cmd("STOU f").await.code.number(), 425);
        h.cmd("PASV").await;
        assert_eq!(h.cmd("STOU f").await.to_wire(), "150 FILE: f.2\r\n");
        assert_eq!(h.fs.file("/home/alice/f").unwrap(), b"x");
    }

    #[tokio::test]
    async fn stou_without_name() {
        let mut h = Harness::logged_in();
        h.cmd("PASV").await;
        let reply = h.cmd("STOU").await;
        assert!(reply.lines[0].starts_with("FILE: ftp"), "{reply:?}");
    }
}
