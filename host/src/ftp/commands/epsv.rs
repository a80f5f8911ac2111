//! EPSV (RFC 2428 section 3): passive mode that advertises only the port
//! (`229 (|||port|)`). `EPSV 1`/`EPSV 2` name the network protocol; `EPSV ALL`
//! promises only EPSV from now on (section 4), so other setup commands are
//! refused afterwards.

use crate::ftp::dtp::DataEndpoint;
use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

use super::shared;

pub async fn run(session: &mut Session, arg: &str) -> HandlerResult {
    let local_v4 = session.local.ip().to_canonical().is_ipv4();
    match arg.trim().to_ascii_uppercase().as_str() {
        "" => {}
        "ALL" => {
            session.set_epsv_all();
            return Ok(Reply::new(ReplyCode::CommandOk, "EPSV ALL ok"));
        }
        "1" if local_v4 => {}
        "2" if !local_v4 => {}
        "1" | "2" => return Err(unsupported_protocol(local_v4)),
        other if other.parse::<u32>().is_ok() => return Err(unsupported_protocol(local_v4)),
        _ => return Err(Reply::new(ReplyCode::ArgumentError, "Use EPSV [1|2|ALL]")),
    }
    let listener = shared::passive_listener(session).await?;
    let port = listener
        .local_addr()
        .map_err(|_| shared::cant_listen())?
        .port();
    session.set_data_endpoint(DataEndpoint::Passive(listener));
    Ok(Reply::new(
        ReplyCode::EnteringExtendedPassive,
        format!("Entering Extended Passive Mode (|||{port}|)"),
    ))
}

fn unsupported_protocol(local_v4: bool) -> Reply {
    let supported = if local_v4 { 1 } else { 2 };
    Reply::new(
        ReplyCode::UnsupportedNetworkProtocol,
        format!("Network protocol not supported, use ({supported})"),
    )
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn epsv_variants() {
        let mut h = Harness::logged_in();
        let reply = h.cmd("EPSV").await;
        assert_eq!(reply.code.number(), 229);
        assert!(reply.lines[0].starts_with("Entering Extended Passive Mode (|||"));
        assert_eq!(h.cmd("EPSV 1").await.code.number(), 229);
        assert_eq!(
            h.cmd("EPSV 2").await.to_wire(),
            "522 Network protocol not supported, use (1)\r\n"
        );
        assert_eq!(h.cmd("EPSV 3").await.code.number(), 522);
        assert_eq!(h.cmd("EPSV x").await.code.number(), 501);
    }

    #[tokio::test]
    async fn epsv_all_refuses_others() {
        let mut h = Harness::logged_in();
        assert_eq!(h.cmd("EPSV ALL").await.code.number(), 200);
        assert_eq!(h.cmd("PASV").await.code.number(), 503);
        assert_eq!(h.cmd("PORT 127,0,0,1,200,10").await.code.number(), 503);
        assert_eq!(h.cmd("EPRT |1|127.0.0.1|51210|").await.code.number(), 503);
        assert_eq!(h.cmd("EPSV").await.code.number(), 229);
    }
}
