//! HOST (RFC 7151): picks the virtual site before login. `220` with the site's
//! banner, `504` for an unknown host, `503` after USER or login.

use crate::ftp::greeting;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session, State};

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    match session.state {
        State::NeedUser => {}
        State::NeedPass { .. } => {
            return Err(Reply::new(
                ReplyCode::BadSequence,
                "HOST must come before USER",
            ));
        }
        State::LoggedIn(_) => return Err(Reply::new(ReplyCode::BadSequence, "Already logged in")),
    }
    // RFC 7151 section 3: an IP literal may come in brackets.
    let name = arg.trim().trim_start_matches('[').trim_end_matches(']');
    match session.sites.by_host(name) {
        Some(site) => {
            let reply = greeting(Some(&site));
            session.select_site(site);
            Ok(reply)
        }
        None => Err(Reply::new(
            ReplyCode::ParameterNotImplemented,
            "Unknown host",
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn host_selects_site() {
        let mut h = Harness::without_site();
        assert_eq!(h.cmd("HOST nowhere.test").await.code.number(), 504);
        assert_eq!(h.cmd("HOST").await.code.number(), 501);
        let reply = h.cmd("HOST ftp.example.test").await;
        assert_eq!(reply.to_wire(), "220 Welcome to example\r\n");
        assert!(h.session.host_selected);
        // After HOST, `user@x` is a plain user name, not a site choice.
        h.cmd("USER alice").await;
        assert_eq!(h.cmd("HOST ftp.example.test").await.code.number(), 503);
        assert_eq!(h.cmd("PASS secret").await.code.number(), 230);
        assert_eq!(h.cmd("HOST ftp.example.test").await.code.number(), 503);
    }
}
