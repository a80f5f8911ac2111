//! PASS (RFC 959 section 4.1.1): second half of login. Failed logins are
//! delayed and counted; too many close the connection.

use std::time::SystemTime;

use tracing::info;

use crate::backend::{AuthError, Credentials, Event, EventKind, SessionFacts};
use crate::ftp::reply::{Reply, ReplyCode, auth_error};
use crate::ftp::session::{HandlerResult, LoggedIn, Session, State};
use crate::ftp::{events, path};
use crate::ops::ban::Offence;
use crate::ops::metrics::LoginResult;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let (user, site) = match std::mem::replace(&mut session.state, State::NeedUser) {
        State::NeedPass { user, site } => (user, site),
        other => {
            let already = matches!(other, State::LoggedIn(_));
            session.state = other;
            return Err(if already {
                Reply::new(ReplyCode::BadSequence, "Already logged in")
            } else {
                Reply::new(ReplyCode::BadSequence, "Login with USER first")
            });
        }
    };
    session.login_tried = true;
    let client = session.client_ip();
    if session.ops.defender.user_locked(&site.name, &user) {
        // The plugin is not asked: a locked account cannot be guessed.
        site.ops.metrics.login(LoginResult::banned);
        info!(peer = %session.peer, %user, site = %site.name, "login refused: account locked");
        if let Some(ban) = session.ops.defender.record(client, Offence::FailedLogin) {
            session.ops.metrics.bans.inc();
            return Err(events::banned_reply(ban));
        }
        tokio::time::sleep(session.settings.login_failure_delay).await;
        return Err(Reply::new(
            ReplyCode::NotLoggedIn,
            "Account temporarily locked after too many failed logins",
        ));
    }
    // USER checked this too; the site cannot have changed since.
    session.check_login_security(&site)?;
    let Some(mut ticket) = site.enter() else {
        info!(peer = %session.peer, site = %site.name, "refused: site at its session limit");
        return Err(Reply::new(
            ReplyCode::ServiceNotAvailable,
            "Too many users on this site, try again later",
        )
        .and_close());
    };
    let credentials = Credentials {
        user: user.clone(),
        password: arg.to_string(),
        client_ip: client,
        tls: session.is_secure(),
        site: site.name.clone(),
    };
    let login_event = |kind: EventKind, user: &str| {
        let (site_name, client_ip) = (site.name.clone(), credentials.client_ip);
        let user = user.to_string();
        move || Event {
            kind,
            site: site_name,
            user,
            client_ip,
            path: None,
            target: None,
            size: None,
            duration: None,
            ok: kind == EventKind::Login,
            time: SystemTime::now(),
        }
    };
    match site.auth.login(&credentials).await {
        Ok(account) => {
            let client_ip = credentials.client_ip;
            if !ticket.claim_user(&account.user, client_ip, account.limits.max_sessions) {
                info!(peer = %session.peer, user = %account.user, site = %site.name,
                    "refused: account at its max_sessions");
                site.events
                    .emit(login_event(EventKind::LoginFailed, &account.user));
                return Err(Reply::new(
                    ReplyCode::ServiceNotAvailable,
                    "Too many sessions for this account, try again later",
                )
                .and_close());
            }
            info!(peer = %session.peer, user = %account.user, site = %site.name, "logged in");
            site.ops.metrics.login(LoginResult::ok);
            ticket.logged_in();
            site.events
                .emit(login_event(EventKind::Login, &account.user));
            let home = path::normalize_home(&account.home);
            let facts = SessionFacts::new(&site.name, &account, &home, client_ip, credentials.tls);
            let storage = site.storage.open_session(&facts);
            session.log_in(
                site,
                LoggedIn {
                    account,
                    home,
                    storage,
                    cwd: "/".to_string(),
                    rename_from: None,
                    ticket,
                },
            );
            Ok(Reply::new(ReplyCode::LoggedIn, "Login successful"))
        }
        Err(err) => {
            info!(peer = %session.peer, %user, site = %site.name, error = %err, "login failed");
            site.ops.metrics.login(match err {
                AuthError::BadCredentials(_) => LoginResult::bad_credentials,
                AuthError::Disabled(_) => LoginResult::disabled,
                AuthError::Unavailable(_) | AuthError::PluginFailed(_) => LoginResult::unavailable,
            });
            site.events.emit(login_event(EventKind::LoginFailed, &user));
            if matches!(err, AuthError::Unavailable(_)) {
                // An outage must not become a fast retry loop for the client.
                tokio::time::sleep(session.settings.login_failure_delay).await;
            }
            if matches!(err, AuthError::BadCredentials(_) | AuthError::Disabled(_)) {
                session.ops.defender.record_user_failure(&site.name, &user);
                if let Some(ban) = session.ops.defender.record(client, Offence::FailedLogin) {
                    session.ops.metrics.bans.inc();
                    return Err(events::banned_reply(ban));
                }
                session.login_failures += 1;
                tokio::time::sleep(session.settings.login_failure_delay).await;
                if session.login_failures >= session.settings.max_login_failures {
                    return Err(Reply::new(
                        ReplyCode::ServiceNotAvailable,
                        "Too many failed logins",
                    )
                    .and_close());
                }
            }
            Err(auth_error(&err))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::AuthError;
    use crate::ftp::session::State;
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn login_sequence() {
        let mut h = Harness::new();
        assert_eq!(h.cmd("PASS x").await.code.number(), 503);
        h.cmd("USER alice").await;
        assert_eq!(
            h.cmd("PASS secret").await.to_wire(),
            "230 Login successful\r\n"
        );
        let user = h.session.logged_in().unwrap();
        assert_eq!(
            (user.home.as_str(), user.cwd.as_str()),
            ("/home/alice", "/")
        );
        assert_eq!(h.cmd("PASS secret").await.code.number(), 503);
    }

    #[tokio::test]
    async fn failures_are_counted_then_close() {
        let mut h = Harness::new();
        for _ in 0..2 {
            h.cmd("USER alice").await;
            let reply = h.cmd("PASS wrong").await;
            assert_eq!(reply.code.number(), 530);
            assert!(!reply.closes());
            assert!(matches!(h.session.state, State::NeedUser));
        }
        h.cmd("USER alice").await;
        let reply = h.cmd("PASS wrong").await;
        assert_eq!(reply.code.number(), 421);
        assert!(reply.closes());
    }

    #[tokio::test]
    async fn backend_failures() {
        let mut h = Harness::new();
        h.auth
            .fail_with(Some(AuthError::PluginFailed("trap".into())));
        h.cmd("USER alice").await;
        assert_eq!(h.cmd("PASS secret").await.code.number(), 451);
        h.auth.fail_with(Some(AuthError::Unavailable(None)));
        h.cmd("USER alice").await;
        let reply = h.cmd("PASS secret").await;
        assert_eq!(reply.code.number(), 421);
        assert!(reply.closes());
        assert_eq!(h.session.login_failures, 0);
    }
}
