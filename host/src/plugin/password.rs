//! The `password` import: checks a password against a stored hash natively,
//! so auth plugins in any language get native speed without bundling crypto.
//!
//! Formats: argon2 PHC strings, bcrypt and SHA-crypt (`$6$`, `$5$`), the ones
//! `wasmftpd hash-password`, htpasswd/python-bcrypt and `/etc/shadow` or
//! `mkpasswd` produce. Each library compares in constant time. A hash whose
//! cost parameters exceed our bounds is refused before any work, so a config
//! (or a remote user directory) cannot make one login cost minutes or
//! gigabytes. The work runs on tokio's blocking threads, at most one per core
//! at a time, never on the threads that serve connections; the time it takes
//! is added to the calling plugin's deadline.

use std::sync::OnceLock;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::bindings::auth::wasmftpd::plugin::password::{self, HashError};
use super::instance::HostState;

/// Bounds on what one verification may cost.
const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
const MAX_ARGON2_PASSES: u32 = 16;
const MAX_ARGON2_LANES: u32 = 16;
const MAX_BCRYPT_COST: u32 = 15;
const MAX_SHA_CRYPT_ROUNDS: u64 = 1_000_000;

/// What a stored hash turned out to be, and whether it is affordable.
enum Scheme {
    Argon2,
    Bcrypt,
    Sha512Crypt,
    Sha256Crypt,
}

/// Identifies the scheme and checks its cost, without doing the work.
fn classify(hash: &str) -> Result<Scheme, HashError> {
    if hash.starts_with("$argon2") {
        let parsed =
            argon2::PasswordHash::new(hash).map_err(|e| HashError::Malformed(e.to_string()))?;
        if parsed.hash.is_none() || parsed.salt.is_none() {
            return Err(HashError::Malformed(
                "argon2 hash without salt or output".into(),
            ));
        }
        let params =
            argon2::Params::try_from(&parsed).map_err(|e| HashError::Malformed(e.to_string()))?;
        if params.m_cost() > MAX_ARGON2_MEMORY_KIB
            || params.t_cost() > MAX_ARGON2_PASSES
            || params.p_cost() > MAX_ARGON2_LANES
        {
            return Err(HashError::TooCostly(format!(
                "argon2 m={} KiB, t={}, p={} is above the host's bounds \
                 (m <= {MAX_ARGON2_MEMORY_KIB}, t <= {MAX_ARGON2_PASSES}, p <= {MAX_ARGON2_LANES})",
                params.m_cost(),
                params.t_cost(),
                params.p_cost()
            )));
        }
        Ok(Scheme::Argon2)
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        let cost: u32 = hash
            .get(4..6)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| HashError::Malformed("bcrypt hash without a cost".into()))?;
        if cost > MAX_BCRYPT_COST {
            return Err(HashError::TooCostly(format!(
                "bcrypt cost {cost} is above the host's bound of {MAX_BCRYPT_COST}"
            )));
        }
        Ok(Scheme::Bcrypt)
    } else if let Some(rest) = hash
        .strip_prefix("$6$")
        .or_else(|| hash.strip_prefix("$5$"))
    {
        if let Some(rounds) = rest.strip_prefix("rounds=") {
            let rounds: u64 = rounds
                .split('$')
                .next()
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| HashError::Malformed("invalid rounds= in SHA-crypt hash".into()))?;
            if rounds > MAX_SHA_CRYPT_ROUNDS {
                return Err(HashError::TooCostly(format!(
                    "SHA-crypt rounds={rounds} is above the host's bound of {MAX_SHA_CRYPT_ROUNDS}"
                )));
            }
        }
        Ok(if hash.starts_with("$6$") {
            Scheme::Sha512Crypt
        } else {
            Scheme::Sha256Crypt
        })
    } else {
        Err(HashError::UnknownFormat)
    }
}

/// The work itself; blocking.
fn check(scheme: Scheme, hash: &str, password: &str) -> Result<bool, HashError> {
    match scheme {
        Scheme::Argon2 => {
            use argon2::PasswordVerifier as _;
            let parsed =
                argon2::PasswordHash::new(hash).map_err(|e| HashError::Malformed(e.to_string()))?;
            match argon2::Argon2::default().verify_password(password.as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::Password) => Ok(false),
                Err(e) => Err(HashError::Malformed(e.to_string())),
            }
        }
        Scheme::Bcrypt => {
            bcrypt::verify(password, hash).map_err(|e| HashError::Malformed(e.to_string()))
        }
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
            use sha_crypt::PasswordVerifier as _;
            match sha_crypt::ShaCrypt::default().verify_password(password.as_bytes(), hash) {
                Ok(()) => Ok(true),
                Err(sha_crypt::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(e) => Err(HashError::Malformed(e.to_string())),
            }
        }
    }
}

/// Verifications running at once: one per core, so hashing never takes
/// every thread and argon2's memory stays bounded.
fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Semaphore::new(cores)
    })
}

/// Checks `password` against `hash` on a blocking thread.
pub async fn verify(hash: String, password: String) -> Result<bool, HashError> {
    let hash = hash.trim().to_string();
    let scheme = classify(&hash)?;
    let _permit = permits()
        .acquire()
        .await
        .map_err(|_| HashError::Malformed("password verification is shutting down".into()))?;
    tokio::task::spawn_blocking(move || check(scheme, &hash, &password))
        .await
        .unwrap_or_else(|e| Err(HashError::Malformed(format!("verification failed: {e}"))))
}

impl password::Host for HostState {
    async fn verify(&mut self, hash: String, password: String) -> Result<bool, HashError> {
        let started = Instant::now();
        let answer = verify(hash, password).await;
        // Time spent here is the host's, not the plugin's.
        self.deadline.extend(started.elapsed());
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl passwd -6 -salt saltsalt secret` and `openssl passwd -5 ...`.
    const SHA512: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    const SHA256: &str = "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA";

    #[tokio::test]
    async fn known_formats_match_and_mismatch() {
        assert!(matches!(
            verify(SHA512.into(), "secret".into()).await,
            Ok(true)
        ));
        assert!(matches!(
            verify(SHA512.into(), "secreT".into()).await,
            Ok(false)
        ));
        assert!(matches!(
            verify(SHA256.into(), "secret".into()).await,
            Ok(true)
        ));
        let bcrypt = bcrypt::hash("secret", 4).unwrap();
        assert!(matches!(
            verify(bcrypt.clone(), "secret".into()).await,
            Ok(true)
        ));
        assert!(matches!(verify(bcrypt, "nope".into()).await, Ok(false)));
        let argon = {
            use argon2::password_hash::{PasswordHasher as _, SaltString};
            let salt = SaltString::encode_b64(b"saltsaltsalt").unwrap();
            argon2::Argon2::default()
                .hash_password(b"secret", &salt)
                .unwrap()
                .to_string()
        };
        assert!(matches!(
            verify(argon.clone(), "secret".into()).await,
            Ok(true)
        ));
        assert!(matches!(verify(argon, "nope".into()).await, Ok(false)));
    }

    #[tokio::test]
    async fn unknown_malformed_and_costly_hashes_are_refused() {
        assert!(matches!(
            verify("plaintext".into(), "plaintext".into()).await,
            Err(HashError::UnknownFormat)
        ));
        assert!(matches!(
            verify("$argon2id$v=19$garbage".into(), "x".into()).await,
            Err(HashError::Malformed(_))
        ));
        assert!(matches!(
            verify("$2b$31$abcdefghijklmnopqrstuu".into(), "x".into()).await,
            Err(HashError::TooCostly(_))
        ));
        assert!(matches!(
            verify("$6$rounds=999999999$salt$x".into(), "x".into()).await,
            Err(HashError::TooCostly(_))
        ));
        let huge = "$argon2id$v=19$m=4194304,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        assert!(matches!(
            verify(huge.into(), "x".into()).await,
            Err(HashError::TooCostly(_))
        ));
    }
}
