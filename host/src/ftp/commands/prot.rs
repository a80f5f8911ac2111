//! PROT (RFC 2228 section 3, RFC 4217 section 9): whether data connections
//! use TLS. `P` (private) does, `C` (clear) does not and is refused where the
//! site requires TLS and on implicit FTPS. `S` and `E` (integrity only,
//! confidential without integrity) have no TLS meaning: `536`.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let private = match arg.trim().to_ascii_uppercase().as_str() {
        "P" => true,
        "C" => false,
        "S" | "E" => {
            return Err(Reply::new(
                ReplyCode::ProtLevelNotSupported,
                "Only PROT P and PROT C are supported with TLS",
            ));
        }
        _ => {
            return Err(Reply::new(
                ReplyCode::ParameterNotImplemented,
                "Unknown protection level; use PROT P or PROT C",
            ));
        }
    };
    session.set_data_protection(private)?;
    Ok(Reply::new(
        ReplyCode::CommandOk,
        if private {
            "Data connections will be protected (TLS)"
        } else {
            "Data connections will be in clear text"
        },
    ))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn prot_levels_and_sequence() {
        let mut h = Harness::with_tls(false);
        assert_eq!(h.cmd("PROT P").await.code.number(), 503, "before AUTH TLS");
        assert_eq!(h.cmd("PROT S").await.code.number(), 536);
        assert_eq!(h.cmd("PROT E").await.code.number(), 536);
        assert_eq!(h.cmd("PROT X").await.code.number(), 504);
        assert!(!h.session.protects_data());
    }
}
