//! OPTS (RFC 2389): `OPTS UTF8 ON` (names are always UTF-8) and `OPTS MLST
//! facts` (RFC 3659 section 7.9).

use crate::ftp::listing::MlstFacts;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let (name, value) = arg.trim().split_once(' ').unwrap_or((arg.trim(), ""));
    match name.to_ascii_uppercase().as_str() {
        "UTF8" | "UTF-8" => match value.trim().to_ascii_uppercase().as_str() {
            "ON" | "" => Ok(Reply::new(ReplyCode::CommandOk, "Always in UTF8 mode")),
            "OFF" => Err(Reply::new(
                ReplyCode::ParameterNotImplemented,
                "UTF8 cannot be turned off",
            )),
            _ => Err(Reply::new(ReplyCode::ArgumentError, "Use OPTS UTF8 ON")),
        },
        "MLST" => {
            session.set_mlst_facts(MlstFacts::parse(value));
            Ok(Reply::new(
                ReplyCode::CommandOk,
                format!("MLST OPTS {}", session.mlst_facts.enabled()),
            ))
        }
        _ => Err(Reply::new(
            ReplyCode::ArgumentError,
            "Option not understood",
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn options() {
        let mut h = Harness::new();
        assert_eq!(h.cmd("OPTS UTF8 ON").await.code.number(), 200);
        assert_eq!(h.cmd("OPTS utf8 off").await.code.number(), 504);
        assert_eq!(
            h.cmd("OPTS MLST type;modify;").await.to_wire(),
            "200 MLST OPTS type;modify;\r\n"
        );
        assert_eq!(h.cmd("OPTS MLST").await.to_wire(), "200 MLST OPTS \r\n");
        assert_eq!(h.cmd("OPTS FOO").await.code.number(), 501);
        assert_eq!(h.cmd("OPTS").await.code.number(), 501);
    }
}
