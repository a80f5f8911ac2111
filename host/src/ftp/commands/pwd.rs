//! PWD and XPWD (RFC 959 section 4.1.3, RFC 775): the working directory as the
//! client sees it (`/` is the home).

use crate::ftp::reply::{Reply, ReplyCode, quote_path};
use crate::ftp::session::{HandlerResult, Session};

pub async fn run(session: &mut Session, _arg: &str) -> HandlerResult {
    let user = session.user()?;
    Ok(Reply::new(
        ReplyCode::PathCreated,
        format!("{} is the current directory", quote_path(&user.cwd)),
    ))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn pwd() {
        let mut h = Harness::logged_in();
        assert_eq!(
            h.cmd("PWD").await.to_wire(),
            "257 \"/\" is the current directory\r\n"
        );
        h.fs.mkdir_all("/home/alice/say \"hi\"");
        h.cmd("CWD say \"hi\"").await;
        assert_eq!(
            h.cmd("XPWD").await.to_wire(),
            "257 \"/say \"\"hi\"\"\" is the current directory\r\n"
        );
    }
}
