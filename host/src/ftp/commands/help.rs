//! HELP (RFC 959 section 4.1.3): the verbs from the command table, or one
//! verb's syntax.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

use super::{COMMANDS, lookup};

pub async fn run(_session: &mut Session, arg: &str) -> HandlerResult {
    let topic = arg.trim().to_ascii_uppercase();
    if !topic.is_empty() {
        return match lookup(&topic) {
            Some(command) => Ok(Reply::new(
                ReplyCode::Help,
                format!("Syntax: {}", command.help),
            )),
            None => Err(Reply::new(
                ReplyCode::NotImplemented,
                format!("Unknown command {topic}"),
            )),
        };
    }
    let mut lines = vec!["The following commands are recognized:".to_string()];
    for row in COMMANDS.chunks(8) {
        lines.push(
            row.iter()
                .map(|c| format!(" {:<5}", c.verb))
                .collect::<String>(),
        );
    }
    lines.push("Help OK".to_string());
    Ok(Reply::multi(ReplyCode::Help, lines))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn help() {
        let mut h = Harness::new();
        let wire = h.cmd("HELP").await.to_wire();
        assert!(
            wire.starts_with("214-") && wire.ends_with("214 Help OK\r\n") && wire.contains("MLSD")
        );
        assert_eq!(
            h.cmd("HELP mfmt").await.to_wire(),
            "214 Syntax: MFMT <YYYYMMDDHHMMSS> <path>\r\n"
        );
        assert_eq!(h.cmd("HELP BOGUS").await.code.number(), 502);
    }
}
