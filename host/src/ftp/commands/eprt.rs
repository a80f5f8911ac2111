//! EPRT (RFC 2428 section 2): `EPRT |proto|address|port|` for IPv4 (1) and
//! IPv6 (2), with the same bounce checks as PORT.

use std::net::{IpAddr, SocketAddr};

use crate::ftp::dtp::DataEndpoint;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    shared::refuse_after_epsv_all(session)?;
    let addr = parse(arg.trim())?;
    shared::check_active_target(session, addr)?;
    session.set_data_endpoint(DataEndpoint::Active(addr));
    Ok(Reply::new(ReplyCode::CommandOk, "EPRT command successful"))
}

fn parse(arg: &str) -> Result<SocketAddr, Reply> {
    let bad = || Reply::new(ReplyCode::ArgumentError, "Use EPRT |proto|address|port|");
    // The delimiter is the first character, any printable ASCII (section 2).
    let delimiter = arg
        .chars()
        .next()
        .filter(|c| ('!'..='~').contains(c))
        .ok_or_else(bad)?;
    let fields: Vec<&str> = arg.split(delimiter).collect();
    let ["", proto, address, port, ""] = fields[..] else {
        return Err(bad());
    };
    let ip: IpAddr = match proto {
        "1" => IpAddr::V4(address.parse().map_err(|_| bad())?),
        "2" => IpAddr::V6(address.parse().map_err(|_| bad())?),
        _ => {
            return Err(Reply::new(
                ReplyCode::UnsupportedNetworkProtocol,
                "Network protocol not supported, use (1,2)",
            ));
        }
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ftp::test_support::Harness;

    #[test]
    fn parsing() {
        assert_eq!(
            parse("|1|127.0.0.1|6446|").unwrap(),
            "127.0.0.1:6446".parse().unwrap()
        );
        assert_eq!(
            parse("!2!::1!6446!").unwrap(),
            "[::1]:6446".parse().unwrap()
        );
        assert_eq!(parse("|3|x|1|").unwrap_err().code.number(), 522);
        assert_eq!(parse("|1|::1|6446|").unwrap_err().code.number(), 501);
        assert_eq!(parse("|1|127.0.0.1|0|").unwrap_err().code.number(), 501);
        assert_eq!(parse("|1|127.0.0.1|6446").unwrap_err().code.number(), 501);
        assert_eq!(parse("").unwrap_err().code.number(), 501);
    }

    #[tokio::test]
    async fn eprt_checks_target() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("EPRT |1|127.0.0.1|6446|").await.code.number(), 200);
        assert_eq!(h.cmd("EPRT |1|127.0.0.1|21|").await.code.number(), 504);
        assert_eq!(h.cmd("EPRT |2|2001:db8::1|6446|").await.code.number(), 504);
    }
}
