//! USER (RFC 959 section 4.1.1): first half of login. `USER name@site` picks
//! the site when none was chosen by HOST and that site allows it.

use std::sync::Arc;

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};
use crate::site::Site;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    if session.logged_in().is_some() {
        return Err(Reply::new(
            ReplyCode::BadSequence,
            "Already logged in; use REIN to change user",
        ));
    }
    let (user, site) = choose_site(session, arg)?;
    session.check_login_security(&site)?;
    let reply = Reply::new(
        ReplyCode::NeedPassword,
        format!("Password required for {user}"),
    );
    session.expect_password(user, site);
    Ok(reply)
}

/// Splits `name@site` when that names a site that allows it; otherwise the
/// whole argument is the user name on the already chosen site.
fn choose_site(session: &Session, name: &str) -> Result<(String, Arc<Site>), Reply> {
    if !session.host_selected
        && let Some((user, suffix)) = name.rsplit_once('@')
        && !user.is_empty()
        && let Some(site) = session.sites.by_user_suffix(suffix)
        && site.allow_user_at_site
    {
        return Ok((user.to_string(), site));
    }
    match &session.site {
        Some(site) => Ok((name.to_string(), site.clone())),
        None => Err(Reply::new(
            ReplyCode::NotLoggedIn,
            "No site selected: use HOST or USER name@site",
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::ftp::session::State;
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn user_moves_to_need_pass() {
        let mut h = Harness::new();
        assert_eq!(
            h.cmd("USER alice").await.to_wire(),
            "331 Password required for alice\r\n"
        );
        assert!(matches!(&h.session.state, State::NeedPass { user, .. } if user == "alice"));
        assert_eq!(h.cmd("USER").await.code.number(), 501);
    }

    #[tokio::test]
    async fn user_at_site_selects_site() {
        let mut h = Harness::without_site();
        assert_eq!(h.cmd("USER alice").await.code.number(), 530);
        assert_eq!(h.cmd("USER alice@other").await.code.number(), 530);
        assert_eq!(h.cmd("USER alice@example").await.code.number(), 331);
        assert!(
            matches!(&h.session.state, State::NeedPass { user, site } if user == "alice" && site.name == "example")
        );
        assert_eq!(h.cmd("PASS secret").await.code.number(), 230);
        assert_eq!(
            h.session.site.as_ref().map(|s| s.name.as_str()),
            Some("example")
        );
    }

    #[tokio::test]
    async fn user_after_login_is_refused() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("USER bob").await.code.number(), 503);
    }
}
