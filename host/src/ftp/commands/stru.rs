//! STRU (RFC 959 section 3.1.2): only F(ile); R(ecord) and P(age) are `504`.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(_session: &mut Session, arg: &str) -> HandlerResult {
    match arg.trim().to_ascii_uppercase().as_str() {
        "F" => Ok(Reply::new(ReplyCode::CommandOk, "Structure set to F")),
        "R" | "P" => Err(Reply::new(
            ReplyCode::ParameterNotImplemented,
            "Only STRU F is supported",
        )),
        _ => Err(Reply::new(ReplyCode::ArgumentError, "Use STRU F")),
    }
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn structures() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("STRU F").await.code.number(), 200);
        assert_eq!(h.cmd("STRU R").await.code.number(), 504);
        assert_eq!(h.cmd("STRU X").await.code.number(), 501);
    }
}
