//! REIN (RFC 959 section 4.1.1): back to the state right after connecting,
//! including the site (RFC 7151 section 3.3). The session loop has already
//! waited for a running transfer. Failed logins stay counted.

use crate::ftp::listing::MlstFacts;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session, State, TransferType};

pub async fn run(session: &mut Session, _arg: &str) -> HandlerResult {
    session.state = State::NeedUser;
    session.site = session.initial_site.clone();
    session.host_selected = false;
    session.transfer_type = TransferType::Ascii;
    session.data = None;
    session.epsv_all = false;
    session.rest = 0;
    session.mlst_facts = MlstFacts::default();
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
        assert_eq!(h.cmd("REIN").await.code.number(), 220);
        assert!(matches!(h.session.state, State::NeedUser));
        assert_eq!(h.session.transfer_type, TransferType::Ascii);
        assert_eq!(h.cmd("PWD").await.code.number(), 530);
    }
}
