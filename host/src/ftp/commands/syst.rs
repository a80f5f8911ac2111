//! SYST (RFC 959 section 4.1.3): we present a Unix-like system, which tells
//! clients to expect `ls -l` listings.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(_session: &mut Session, _arg: &str) -> HandlerResult {
    Ok(Reply::new(ReplyCode::SystemType, "UNIX Type: L8"))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn syst() {
        assert_eq!(
            Harness::new().cmd("SYST").await.to_wire(),
            "215 UNIX Type: L8\r\n"
        );
    }
}
