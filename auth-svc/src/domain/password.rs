//! Password hashing with argon2id (OWASP parameters: m=19456 KiB, t=2, p=1,
//! random salt). Hashing runs on its own threads, one per permit of a
//! semaphore sized to the cores, so a login flood queues briefly and then
//! gets a 429 instead of starving the async runtime or timing out.
//!
//! The queue is fair across accounts: each hash names the account it is for
//! (a [`HashKey`]), and at most [`PER_KEY`] hashes of one key are queued or
//! running at once; more answer [`HashError::Busy`] at once, without
//! hashing. One account's flood therefore holds at most two places in the
//! (FIFO) queue, and everyone else's login waits behind at most those. The
//! threads run at a lower CPU priority (nice 10): when the machine is busy,
//! request handling, token checks and message delivery (on a shared host)
//! go first, and hashing uses the rest; on an idle machine it runs at full
//! speed.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password checks in flight")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// Nice value of the hashing threads (0 is normal, 19 the lowest).
const HASH_NICE: i32 = 10;

/// Hashes of one key queued or running at once.
pub const PER_KEY: usize = 2;

/// Whose hash this is, for fairness: a user id, or the normalised login
/// name when no account matches (so unknown names are limited the same way).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashKey(String);

impl HashKey {
    pub fn user(user_id: &str) -> Self {
        Self(format!("user:{user_id}"))
    }

    pub fn login(login_norm: &str) -> Self {
        Self(format!("login:{login_norm}"))
    }

    /// A known device of an account (by its token's hash): its own places,
    /// so a stranger's flood against the account cannot take them.
    pub fn device(token_hash: &str) -> Self {
        Self(format!("device:{token_hash}"))
    }
}

/// Counts hashes in flight per key; a [`KeySlot`] gives its place back on drop.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<HashKey, usize>>>);

struct KeySlot {
    in_flight: InFlight,
    key: HashKey,
}

impl InFlight {
    fn take(&self, key: &HashKey) -> Option<KeySlot> {
        let mut map = self.0.lock().ok()?;
        let n = map.entry(key.clone()).or_insert(0);
        if *n >= PER_KEY {
            return None;
        }
        *n += 1;
        Some(KeySlot {
            in_flight: self.clone(),
            key: key.clone(),
        })
    }
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.in_flight.0.lock() {
            if let Some(n) = map.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.key);
                }
            }
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// `n` threads taking jobs from one queue, at a lower CPU priority.
fn hashing_threads(n: usize) -> Result<mpsc::Sender<Job>, HashError> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..n {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("argon2-{i}"))
            .spawn(move || {
                // Per thread on Linux; failing only costs the priority.
                if let Err(e) = rustix::process::nice(HASH_NICE) {
                    tracing::warn!(error = %e, "hashing thread keeps the normal priority");
                }
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            })
            .map_err(|e| HashError::Internal(e.to_string()))?;
    }
    Ok(tx)
}

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    in_flight: InFlight,
    /// Verified against when the account does not exist, so unknown users
    /// cost the same time as wrong passwords.
    dummy_hash: Arc<str>,
    wait: Duration,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Internal(e.to_string()))
}

impl PasswordHasher {
    /// `concurrency` hashes at once; callers wait at most `wait` for a slot.
    pub fn new(concurrency: usize, wait: Duration) -> Result<Self, HashError> {
        let dummy = hash_now("dummy password for timing equality")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            jobs: hashing_threads(concurrency.max(1))?,
            in_flight: InFlight::default(),
            dummy_hash: dummy.into(),
            wait,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        key: &HashKey,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        // Taken before queueing, so a flooding key never holds more places.
        let slot = self.in_flight.take(key).ok_or(HashError::Busy)?;
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(f());
                drop(permit);
                drop(slot);
            }))
            .map_err(|_| HashError::Internal("hashing threads stopped".into()))?;
        result
            .await
            .map_err(|_| HashError::Internal("hashing job dropped".into()))
    }

    pub async fn hash(&self, key: &HashKey, password: &SecretString) -> Result<String, HashError> {
        let password = password.expose_secret().to_owned();
        self.blocking(key, move || hash_now(&password)).await?
    }

    /// Checks `password` against `hash`, or against the dummy hash when there
    /// is no account (always false then, after the same work).
    pub async fn verify(
        &self,
        key: &HashKey,
        password: &SecretString,
        hash: Option<&str>,
    ) -> Result<bool, HashError> {
        let exists = hash.is_some();
        let hash = hash
            .map(str::to_owned)
            .unwrap_or_else(|| self.dummy_hash.to_string());
        let password = password.expose_secret().to_owned();
        let ok = self
            .blocking(key, move || {
                PasswordHash::new(&hash)
                    .map(|parsed| {
                        argon2()
                            .verify_password(password.as_bytes(), &parsed)
                            .is_ok()
                    })
                    .unwrap_or(false)
            })
            .await?;
        Ok(ok && exists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let hasher = PasswordHasher::new(2, Duration::from_secs(5)).unwrap();
        let pw = SecretString::from("correct horse battery staple".to_owned());
        let key = HashKey::user("u1");
        let hash = hasher.hash(&key, &pw).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher.verify(&key, &pw, Some(&hash)).await.unwrap());
        let wrong = SecretString::from("correct horse battery stapler".to_owned());
        assert!(!hasher.verify(&key, &wrong, Some(&hash)).await.unwrap());
        assert!(
            !hasher.verify(&key, &pw, None).await.unwrap(),
            "no account never verifies"
        );
        let again = hasher.hash(&key, &pw).await.unwrap();
        assert_ne!(hash, again, "random salt");
    }

    /// A burst from one key gets two places; another key still gets one.
    #[tokio::test]
    async fn one_key_holds_at_most_two_places_in_the_queue() {
        let hasher = PasswordHasher::new(1, Duration::from_secs(30)).unwrap();
        let pw = SecretString::from("correct horse battery staple".to_owned());
        let flood = HashKey::user("flood");
        let burst = (0..20).map(|_| hasher.hash(&flood, &pw));
        let other_key = HashKey::user("other");
        let other = hasher.hash(&other_key, &pw);
        let (burst, other) = tokio::join!(futures_util::future::join_all(burst), other);
        let hashed = burst.iter().filter(|r| r.is_ok()).count();
        let busy = burst
            .iter()
            .filter(|r| matches!(r, Err(HashError::Busy)))
            .count();
        assert_eq!((hashed, busy), (PER_KEY, 20 - PER_KEY));
        assert!(other.is_ok(), "another account is not refused");
        assert!(
            hasher.hash(&flood, &pw).await.is_ok(),
            "places are given back"
        );
    }

    /// The hashing threads run at nice 10, the rest of the process at 0.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_yield_to_the_rest_of_the_process() {
        // "tid (name) state ..." : nice is the 19th field.
        fn name_and_nice(stat: &str) -> (String, i32) {
            let (name, rest) = stat.rsplit_once(") ").unwrap();
            (
                name.to_owned(),
                rest.split(' ').nth(16).unwrap().parse().unwrap(),
            )
        }
        let hasher = PasswordHasher::new(2, Duration::from_secs(5)).unwrap();
        hasher
            .hash(&HashKey::user("u1"), &SecretString::from("x".repeat(12)))
            .await
            .unwrap();
        let (_, base) = name_and_nice(&std::fs::read_to_string("/proc/self/stat").unwrap());
        let mut niced = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
            let (name, nice) = name_and_nice(&stat);
            if name.ends_with("(argon2-0") || name.ends_with("(argon2-1") {
                assert_eq!(nice, (base + HASH_NICE).min(19), "{name}");
                niced += 1;
            } else if name.contains("tokio") {
                assert_eq!(nice, base, "{name}");
            }
        }
        assert!(niced >= 2, "hashing threads found: {niced}");
    }
}
