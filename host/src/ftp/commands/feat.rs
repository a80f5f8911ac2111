//! FEAT (RFC 2389): the feature lines come from the command table; MLST shows
//! the facts currently selected with OPTS MLST.

use crate::ftp::reply::{Reply, ReplyCode};
use crate::ftp::session::{HandlerResult, Session};

use super::COMMANDS;

pub async fn run(session: &mut Session, _arg: &str) -> HandlerResult {
    let tls = session.tls_offered().is_some();
    let mut features: Vec<String> = COMMANDS
        .iter()
        .filter(|c| tls || !c.feat_needs_tls)
        .filter_map(|c| c.feat)
        .map(|feat| {
            if feat == "MLST" {
                format!("MLST {}", session.mlst_facts.feat())
            } else {
                feat.to_string()
            }
        })
        .collect();
    features.sort();
    features.dedup();
    let mut lines = vec!["Features:".to_string()];
    lines.extend(features.into_iter().map(|f| format!(" {f}")));
    lines.push("End".to_string());
    Ok(Reply::multi(ReplyCode::SystemStatus, lines))
}

#[cfg(test)]
mod tests {
    use crate::ftp::test_support::Harness;

    #[tokio::test]
    async fn feat_lists_features() {
        let mut h = Harness::new();
        let wire = h.cmd("FEAT").await.to_wire();
        assert!(wire.starts_with("211-Features:\r\n"));
        assert!(wire.ends_with("211 End\r\n"));
        for feat in [
            "EPRT",
            "EPSV",
            "HOST",
            "MDTM",
            "MFMT",
            "REST STREAM",
            "SIZE",
            "TVFS",
            "UTF8",
        ] {
            assert!(
                wire.contains(&format!("\r\n {feat}\r\n")),
                "{feat} missing in {wire}"
            );
        }
        assert!(wire.contains(" MLST type*;size*;modify*;perm*;\r\n"));
        h.cmd("OPTS MLST size;").await;
        assert!(
            h.cmd("FEAT")
                .await
                .to_wire()
                .contains(" MLST type;size*;modify;perm;\r\n")
        );
    }
}
