//! MODE (RFC 959 section 3.4): only S(tream); B(lock), C(ompressed) and Z are
//! `504`.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(_session: &mut Session, arg: &str) -> HandlerResult {
    match arg.trim().to_ascii_uppercase().as_str() {
        "S" => Ok(Reply::new(ReplyCode::CommandOk, "Mode set to S")),
        "B" | "C" | "Z" => Err(Reply::new(
            ReplyCode::ParameterNotImplemented,
            "Only MODE S is supported",
        )),
        _ => Err(Reply::new(ReplyCode::ArgumentError, "Use MODE S")),
    }
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn modes() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("MODE s").await.code.number(), 200);
        assert_eq!(h.cmd("MODE B").await.code.number(), 504);
        assert_eq!(h.cmd("MODE Q").await.code.number(), 501);
    }
}
