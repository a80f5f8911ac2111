//! PORT (RFC 959 section 4.1.2): the client listens at `h1,h2,h3,h4,p1,p2`.
//! An address other than the client's, or a port below 1024, is refused
//! (FTP bounce, RFC 2577) unless the configuration allows it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::ftp::dtp::DataEndpoint;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    shared::refuse_after_epsv_all(session)?;
    let addr = parse(arg)
        .ok_or_else(|| Reply::new(ReplyCode::ArgumentError, "Use PORT h1,h2,h3,h4,p1,p2"))?;
    shared::check_active_target(session, addr)?;
    session.set_data_endpoint(DataEndpoint::Active(addr));
    Ok(Reply::new(ReplyCode::CommandOk, "PORT command successful"))
}

fn parse(arg: &str) -> Option<SocketAddr> {
    let numbers: Vec<u8> = arg
        .trim()
        .split(',')
        .map(|n| n.trim().parse().ok())
        .collect::<Option<_>>()?;
    let [a, b, c, d, p1, p2] = numbers[..] else {
        return None;
    };
    let port = (u16::from(p1) << 8) | u16::from(p2);
    (port != 0).then(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::test_support::Harness;

    #[test]
    fn parsing() {
        assert_eq!(
            parse("127,0,0,1,200,10"),
            Some("127.0.0.1:51210".parse().unwrap())
        );
        assert_eq!(
            parse(" 10, 0,0,1,0,21 "),
            Some("10.0.0.1:21".parse().unwrap())
        );
        assert_eq!(parse("127,0,0,1,200"), None);
        assert_eq!(parse("127,0,0,1,200,10,1"), None);
        assert_eq!(parse("127,0,0,256,200,10"), None);
        assert_eq!(parse("127,0,0,1,0,0"), None);
    }

    #[tokio::test]
    async fn port_and_bounce_refusal() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("PORT 127,0,0,1,200,10").await.code.number(), 200);
        assert!(matches!(h.session.data, Some(DataEndpoint::Active(_))));
        assert_eq!(h.cmd("PORT 127,0,0,1,0,21").await.code.number(), 504);
        assert_eq!(h.cmd("PORT 10,1,2,3,200,10").await.code.number(), 504);
        assert_eq!(h.cmd("PORT x").await.code.number(), 501);
        let mut h = Harness::logged_in_with(|s| s.allow_foreign_data = true);
        assert_eq!(h.cmd("PORT 10,1,2,3,0,21").await.code.number(), 200);
    }
}
