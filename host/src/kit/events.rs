//! The event battery: an event plugin must accept every kind of event the
//! server sends, odd but valid content, and a long run of events on one
//! instance, each within its deadline. A handler that answers an error (its
//! endpoint refused, say) fails the check with the handler's own message, so
//! the author sees what the server would log.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use super::report::{Outcome, Report};
use crate::backend::{Event, EventHandler, EventKind};

/// Every kind, in the order a session would produce them.
const KINDS: [EventKind; 9] = [
    EventKind::Login,
    EventKind::Upload,
    EventKind::Download,
    EventKind::Mkdir,
    EventKind::Rename,
    EventKind::Delete,
    EventKind::Rmdir,
    EventKind::LoginFailed,
    EventKind::Logout,
];

/// Events handed to the plugin one after another on one instance.
const RUN: usize = 100;

/// A realistic event of `kind`, as the server fills it in.
pub fn sample(kind: EventKind) -> Event {
    let (path, target, size, duration) = match kind {
        EventKind::Login | EventKind::LoginFailed | EventKind::Logout => (None, None, None, None),
        EventKind::Upload | EventKind::Download => (
            Some("/kit/report.pdf".to_string()),
            None,
            Some(123_456),
            Some(Duration::from_millis(42)),
        ),
        EventKind::Rename => (
            Some("/kit/a.txt".to_string()),
            Some("/kit/b.txt".to_string()),
            None,
            None,
        ),
        EventKind::Mkdir | EventKind::Rmdir | EventKind::Delete => {
            (Some("/kit/dir".to_string()), None, None, None)
        }
    };
    Event {
        kind,
        site: "kit".into(),
        user: "kit".into(),
        client_ip: IpAddr::from([127, 0, 0, 1]),
        path,
        target,
        size,
        duration,
        ok: kind != EventKind::LoginFailed,
        time: SystemTime::now(),
    }
}

pub async fn run<W: std::io::Write>(
    handler: &dyn EventHandler,
    call_timeout: Duration,
    report: &mut Report<W>,
) {
    for kind in KINDS {
        let name = format!("event `{}` is handled", kind_name(kind));
        report.record(&name, handle(handler, &sample(kind), call_timeout).await);
    }

    let odd = [
        ("a path with spaces, quotes and non-ASCII", {
            let mut e = sample(EventKind::Upload);
            e.path = Some("/kit/ünïcødé \"quoted\" 'name' ✓.txt".into());
            e
        }),
        ("a 4 KiB path", {
            let mut e = sample(EventKind::Delete);
            e.path = Some(format!("/{}", "d/".repeat(2047)));
            e
        }),
        ("an IPv6 client and a failed transfer of 0 bytes", {
            let mut e = sample(EventKind::Download);
            e.client_ip = "2001:db8::1".parse().unwrap_or(e.client_ip);
            e.size = Some(0);
            e.ok = false;
            e
        }),
        ("a huge size", {
            let mut e = sample(EventKind::Upload);
            e.size = Some(u64::MAX);
            e.duration = Some(Duration::from_secs(86_400 * 365));
            e
        }),
        ("a failed login with an empty user name", {
            let mut e = sample(EventKind::LoginFailed);
            e.user = String::new();
            e
        }),
    ];
    for (what, event) in odd {
        let name = format!("odd but valid event: {what}");
        report.record(&name, handle(handler, &event, call_timeout).await);
    }

    let started = Instant::now();
    let mut failure = None;
    for i in 0..RUN {
        let mut event = sample(KINDS[i % KINDS.len()]);
        event.path = event.path.map(|p| format!("{p}.{i}"));
        if let Outcome::Fail(why) = handle(handler, &event, call_timeout).await {
            failure = Some(format!("event {i}: {why}"));
            break;
        }
    }
    let name = format!("{RUN} events in a row");
    match failure {
        Some(why) => report.record(&name, Outcome::Fail(why)),
        None => {
            let each = started.elapsed() / RUN as u32;
            report.record(&name, Outcome::Pass);
            report.info(&format!("{each:.1?} per event"));
        }
    }
}

/// One event: handled without error, within the call deadline.
async fn handle(handler: &dyn EventHandler, event: &Event, call_timeout: Duration) -> Outcome {
    let started = Instant::now();
    let result = handler.handle(event).await;
    let took = started.elapsed();
    match result {
        Err(why) => Outcome::Fail(why),
        // The runtime stops a call a little after its deadline; anything
        // that long was stopped, or nearly.
        Ok(()) if took > call_timeout => Outcome::Fail(format!(
            "took {took:.1?}, longer than call_timeout {call_timeout:?}"
        )),
        Ok(()) => Outcome::Pass,
    }
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Login => "login",
        EventKind::LoginFailed => "login-failed",
        EventKind::Logout => "logout",
        EventKind::Upload => "upload",
        EventKind::Download => "download",
        EventKind::Delete => "delete",
        EventKind::Rename => "rename",
        EventKind::Mkdir => "mkdir",
        EventKind::Rmdir => "rmdir",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Refuses;

    #[async_trait::async_trait]
    impl EventHandler for Refuses {
        async fn handle(&self, event: &Event) -> Result<(), String> {
            if event.kind == EventKind::Rename {
                return Err("endpoint answered 500".into());
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_refused_event_fails_its_check_with_the_handlers_message() {
        let mut out = Vec::new();
        let mut report = Report::new(&mut out);
        run(&Refuses, Duration::from_secs(5), &mut report).await;
        let (passed, failed) = report.finish();
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("FAIL event `rename` is handled: endpoint answered 500"),
            "{text}"
        );
        // The run stops at its first failure (a rename is the 5th event).
        assert!(
            text.contains("FAIL 100 events in a row: event 4:"),
            "{text}"
        );
        assert_eq!((passed, failed), (13, 2));
    }
}
