//! The auth battery: the caller's expectations (`alice:secret=ok`), plus checks
//! every auth plugin must pass whatever its policy: unknown users and wrong
//! passwords are refused as bad credentials, odd input is refused rather than
//! trapping, and an accepted account has a usable home.

use std::net::IpAddr;

use super::report::{Outcome, Report};
use crate::backend::{Account, AuthError, Authenticator, Credentials};

/// What a login should come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Ok,
    /// Accepted whatever the password (anonymous-style accounts).
    Open,
    /// Refused as bad credentials (`530`).
    Refused,
    /// Refused as disabled (`530`).
    Disabled,
    /// The user store is unavailable (`421`).
    Unavailable,
}

/// One `--expect USER:PASSWORD=OUTCOME[@ADDRESS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub user: String,
    pub password: String,
    pub expected: Expected,
    /// The client address to log in from; the battery's default when `None`.
    pub from: Option<IpAddr>,
}

impl std::str::FromStr for Expectation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "`{text}`: expected USER:PASSWORD=ok|open|refused|disabled|unavailable[@ADDRESS]"
            )
        };
        // The outcome comes after the last `=`, so passwords may contain `=`.
        let (credentials, outcome) = text.rsplit_once('=').ok_or_else(usage)?;
        let (user, password) = credentials.split_once(':').ok_or_else(usage)?;
        let (word, from) = match outcome.split_once('@') {
            Some((word, addr)) => (
                word,
                Some(
                    addr.parse::<IpAddr>()
                        .map_err(|_| format!("`{addr}` is not an IP address"))?,
                ),
            ),
            None => (outcome, None),
        };
        let expected = match word {
            "ok" => Expected::Ok,
            "open" => Expected::Open,
            "refused" => Expected::Refused,
            "disabled" => Expected::Disabled,
            "unavailable" => Expected::Unavailable,
            _ => return Err(usage()),
        };
        Ok(Expectation {
            user: user.into(),
            password: password.into(),
            expected,
            from,
        })
    }
}

/// How the battery logs in.
pub struct AuthSettings {
    pub expectations: Vec<Expectation>,
    pub client: IpAddr,
    pub tls: bool,
    pub site: String,
}

pub async fn run<W: std::io::Write>(
    auth: &dyn Authenticator,
    settings: &AuthSettings,
    report: &mut Report<W>,
) {
    let login = |user: &str, password: &str, from: Option<IpAddr>| {
        let credentials = Credentials {
            user: user.into(),
            password: password.into(),
            client_ip: from.unwrap_or(settings.client),
            tls: settings.tls,
            site: settings.site.clone(),
        };
        async move { auth.login(&credentials).await }
    };

    for e in &settings.expectations {
        let from = e.from.map(|a| format!(" from {a}")).unwrap_or_default();
        let name = format!("login {}{from} -> {}", e.user, word(e.expected));
        let result = login(&e.user, &e.password, e.from).await;
        report.record(&name, judge(&result, e.expected));
        if e.expected == Expected::Open && result.is_ok() {
            let name = format!("login {}{from} with another password -> ok", e.user);
            let other = format!("{}x", e.password);
            report.record(
                &name,
                judge(&login(&e.user, &other, e.from).await, Expected::Open),
            );
        }
        if e.expected == Expected::Ok && result.is_ok() {
            let wrong = format!("{}x", e.password);
            let name = format!("login {}{from} with a wrong password -> refused", e.user);
            report.record(
                &name,
                judge(&login(&e.user, &wrong, e.from).await, Expected::Refused),
            );
            let name = format!("login {}{from} with an empty password -> refused", e.user);
            report.record(
                &name,
                judge(&login(&e.user, "", e.from).await, Expected::Refused),
            );
            let name = format!("login {}{from} twice -> same account", e.user);
            let again = login(&e.user, &e.password, e.from).await;
            report.record(&name, same_account(&result, &again));
        }
    }

    let unknown = format!("no-such-user-{}", std::process::id());
    report.record(
        "unknown user -> refused",
        judge(&login(&unknown, "password", None).await, Expected::Refused),
    );
    report.record(
        "empty user and password -> refused",
        not_accepted(&login("", "", None).await),
    );
    let long = "p".repeat(64 << 10);
    report.record(
        "64 KiB password -> refused, no trap",
        not_accepted(&login(&unknown, &long, None).await),
    );
    report.record(
        "odd user name (NUL, newline, dots, UTF-8) -> refused, no trap",
        not_accepted(&login("../a\0b\n.c ünï", "x", None).await),
    );
}

fn word(e: Expected) -> &'static str {
    match e {
        Expected::Ok => "ok",
        Expected::Open => "ok with any password",
        Expected::Refused => "refused",
        Expected::Disabled => "disabled",
        Expected::Unavailable => "unavailable",
    }
}

fn got(result: &Result<Account, AuthError>) -> String {
    match result {
        Ok(a) => format!(
            "accepted (home {}, permissions {:?})",
            a.home, a.permissions
        ),
        Err(AuthError::BadCredentials(_)) => "refused (bad-credentials)".into(),
        Err(AuthError::Disabled(m)) => {
            format!("disabled ({})", m.as_deref().unwrap_or("no message"))
        }
        Err(AuthError::Unavailable(m)) => {
            format!("unavailable ({})", m.as_deref().unwrap_or("no message"))
        }
        Err(AuthError::PluginFailed(m)) => format!("plugin failed: {m}"),
    }
}

fn judge(result: &Result<Account, AuthError>, expected: Expected) -> Outcome {
    let matches = matches!(
        (result, expected),
        (Ok(_), Expected::Ok | Expected::Open)
            | (Err(AuthError::BadCredentials(_)), Expected::Refused)
            | (Err(AuthError::Disabled(_)), Expected::Disabled)
            | (Err(AuthError::Unavailable(_)), Expected::Unavailable)
    );
    if !matches {
        return Outcome::Fail(format!("got {}", got(result)));
    }
    match result {
        Ok(account) => match home_problem(&account.home) {
            Some(problem) => Outcome::Fail(format!("home {:?} {problem}", account.home)),
            None => Outcome::PassNote(format!("home {}, {:?}", account.home, account.permissions)),
        },
        Err(_) => Outcome::Pass,
    }
}

/// A refusal of any kind passes; acceptance or a trap fails.
fn not_accepted(result: &Result<Account, AuthError>) -> Outcome {
    match result {
        Err(AuthError::BadCredentials(_) | AuthError::Disabled(_) | AuthError::Unavailable(_)) => {
            Outcome::Pass
        }
        other => Outcome::Fail(format!("got {}", got(other))),
    }
}

fn same_account(
    first: &Result<Account, AuthError>,
    second: &Result<Account, AuthError>,
) -> Outcome {
    match (first, second) {
        (Ok(a), Ok(b)) if a == b => Outcome::Pass,
        _ => Outcome::Fail(format!("first {}, then {}", got(first), got(second))),
    }
}

/// Why a home is unusable: the session starts there, so it must be an absolute,
/// normalized virtual path.
fn home_problem(home: &str) -> Option<&'static str> {
    let Some(rest) = home.strip_prefix('/') else {
        return Some("is not absolute");
    };
    if rest.is_empty() {
        return None;
    }
    if rest
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
        || home.contains('\0')
    {
        return Some("is not normalized");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_expectations() {
        let e: Expectation = "alice:s3=cr:et=ok".parse().unwrap();
        assert_eq!(
            (e.user.as_str(), e.password.as_str(), e.expected),
            ("alice", "s3=cr:et", Expected::Ok)
        );
        let e: Expectation = "bob:pw=disabled@2001:db8::1".parse().unwrap();
        assert_eq!(e.expected, Expected::Disabled);
        assert_eq!(e.from, Some("2001:db8::1".parse().unwrap()));
        assert!("bob=ok".parse::<Expectation>().is_err());
        assert!("bob:pw=maybe".parse::<Expectation>().is_err());
        assert!("bob:pw=ok@nowhere".parse::<Expectation>().is_err());
    }

    #[test]
    fn homes_must_be_absolute_and_normalized() {
        assert_eq!(home_problem("/"), None);
        assert_eq!(home_problem("/home/alice"), None);
        assert!(home_problem("home").is_some());
        assert!(home_problem("/a//b").is_some());
        assert!(home_problem("/a/../b").is_some());
        assert!(home_problem("/a/").is_some());
    }
}
