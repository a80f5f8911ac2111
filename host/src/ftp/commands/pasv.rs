//! PASV (RFC 959 section 4.1.2): listen on a passive port and advertise it as
//! `h1,h2,h3,h4,p1,p2`. IPv4 only (RFC 2428 added EPSV for everything else);
//! refused after `EPSV ALL`.

use std::net::IpAddr;

use crate::ftp::dtp::DataEndpoint;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

use super::shared;

pub async fn run(session: &mut Session, _arg: &str) -> HandlerResult {
    shared::refuse_after_epsv_all(session)?;
    let advertised = session.passive_address().to_canonical();
    let IpAddr::V4(ip) = advertised else {
        return Err(Reply::new(
            ReplyCode::CantOpenDataConnection,
            "PASV needs IPv4; use EPSV",
        ));
    };
    let listener = shared::passive_listener(session).await?;
    let port = listener
        .local_addr()
        .map_err(|_| shared::cant_listen())?
        .port();
    session.set_data_endpoint(DataEndpoint::Passive(listener));
    let [a, b, c, d] = ip.octets();
    Ok(Reply::new(
        ReplyCode::EnteringPassive,
        format!(
            "Entering Passive Mode ({a},{b},{c},{d},{},{})",
            port >> 8,
            port & 0xff
        ),
    ))
}

#[cfg(test)]
mod tests {
    use crate::ftp::dtp::DataEndpoint;
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn pasv_listens() {
        let mut h = Harness::logged_in();
        let reply = h.cmd("PASV").await;
        assert_eq!(reply.code.number(), 227);
        let Some(DataEndpoint::Passive(listener)) = &h.session.data else {
            panic!("no listener")
        };
        let port = listener.local_addr().unwrap().port();
        assert!(reply.lines[0].ends_with(&format!("(127,0,0,1,{},{})", port >> 8, port & 0xff)));
    }

    #[tokio::test]
    async fn pasv_advertises_configured_address() {
        let mut h = Harness::logged_in_with(|s| {
            s.passive = crate::ops::nat::PassiveAddresses::fixed("203.0.113.7".parse().unwrap())
        });
        assert!(h.cmd("PASV").await.lines[0].contains("(203,0,113,7,"));
    }
}
