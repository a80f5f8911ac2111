//! TYPE (RFC 959 section 3.1.1, 4.1.2): A (ASCII, non-print format) and I
//! (image; `L 8` is the same thing). EBCDIC and other formats are `504`.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session, TransferType};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let upper = arg.trim().to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    let (kind, name) = match words[..] {
        ["A"] | ["A", "N"] => (TransferType::Ascii, "A"),
        ["I"] | ["L", "8"] => (TransferType::Image, "I"),
        ["A", "T" | "C"] | ["E"] | ["E", "N" | "T" | "C"] | ["L", _] => {
            return Err(Reply::new(
                ReplyCode::ParameterNotImplemented,
                "Only TYPE A and I are supported",
            ));
        }
        _ => return Err(Reply::new(ReplyCode::ArgumentError, "Use TYPE A or TYPE I")),
    };
    session.set_transfer_type(kind);
    Ok(Reply::new(
        ReplyCode::CommandOk,
        format!("Type set to {name}"),
    ))
}

#[cfg(test)]
mod tests {
    use crate::ftp::session::TransferType;
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn types() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("TYPE i").await.to_wire(), "200 Type set to I\r\n");
        assert_eq!(h.session.transfer_type, TransferType::Image);
        assert_eq!(h.cmd("TYPE A N").await.code.number(), 200);
        assert_eq!(h.session.transfer_type, TransferType::Ascii);
        assert_eq!(h.cmd("TYPE L 8").await.code.number(), 200);
        assert_eq!(h.cmd("TYPE E").await.code.number(), 504);
        assert_eq!(h.cmd("TYPE L 7").await.code.number(), 504);
        assert_eq!(h.cmd("TYPE X").await.code.number(), 501);
        assert_eq!(h.session.transfer_type, TransferType::Image);
    }
}
