//! REIN (RFC 959 section 4.1.1): back to the state right after connecting,
//! including the site (RFC 7151 section 3.3); see
//! [`Session::reinitialize`] for what stays. The session loop has already
//! waited for a running transfer.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(session: &mut Session, _arg: &str) -> HandlerResult {
    session.reinitialize();
    Ok(Reply::new(
        ReplyCode::ServiceReady,
        "Service ready for new user",
    ))
}

#[cfg(test)]
mod tests {
    use crate::ftp::session::{State, TransferType};
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn rein_logs_out() {
        let mut h = Harness::logged_in();
        h.cmd("TYPE I").await;
        h.cmd("PASV").await;
        assert!(h.session.kept_listener.is_some());
        assert_eq!(h.cmd("REIN").await.code.number(), 220);
        assert!(h.session.data.is_none());
        assert!(
            h.session.kept_listener.is_none(),
            "the next user does not inherit the passive port"
        );
        assert!(matches!(h.session.state, State::NeedUser));
        assert_eq!(h.session.transfer_type, TransferType::Ascii);
        assert_eq!(h.cmd("PWD").await.code.number(), 530);
    }
}
