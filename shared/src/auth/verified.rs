//! The callers of tokens whose signature was checked, held until the token expires.
//!
//! A desk's client sends the same token with every request until it expires, and checking its
//! signature again each time (an Ed25519 or RSA verification) was the largest single cost of a
//! registration. Only tokens that passed every check are held, keyed by the whole token, so
//! a token is taken from here only if it is byte for byte one already verified; nothing an
//! unauthenticated caller sends can add to the cache. Each entry carries the token's `exp` (plus
//! the leeway), after which it is refused exactly as a fresh check would refuse it. The keys
//! are read once at start-up, so a change of keys (a restart) starts an empty cache.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::Caller;

/// At most this many tokens are held: a hospital's staff signed in at once, with room to spare.
/// Each costs about the token's length plus its caller (well under 1 KiB).
pub(crate) const CAPACITY: usize = 1024;

pub(crate) struct Verified {
    tokens: Mutex<HashMap<Box<str>, Entry>>,
}

struct Entry {
    caller: Caller,
    /// Unix seconds from which the token is refused: its `exp` plus the leeway.
    refused_from: u64,
}

impl Verified {
    pub(crate) fn new() -> Self {
        Self {
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The caller of `token` if it was verified and has not expired since.
    pub(crate) fn get(&self, token: &str) -> Option<Caller> {
        let now = now()?;
        let mut tokens = self.lock();
        let entry = tokens.get(token)?;
        if now < entry.refused_from {
            return Some(entry.caller.clone());
        }
        tokens.remove(token);
        None
    }

    /// Holds `caller` for `token`, which passed every check and is valid until `refused_from`.
    pub(crate) fn insert(&self, token: &str, caller: &Caller, refused_from: u64) {
        let Some(now) = now() else { return };
        let mut tokens = self.lock();
        if tokens.len() >= CAPACITY {
            tokens.retain(|_, entry| now < entry.refused_from);
            // Still full of live tokens: start over rather than track which were used last.
            // The cost is one signature check for each token sent again, never a wrong answer.
            if tokens.len() >= CAPACITY {
                tokens.clear();
            }
        }
        tokens.insert(
            token.into(),
            Entry {
                caller: caller.clone(),
                refused_from,
            },
        );
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The map is consistent after any panic (each change is one call), so a poisoned lock is
    /// taken as it is.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Unix seconds, the clock the token checks read; none for a clock before 1970, when nothing
/// is taken from the cache or put in it.
fn now() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|since| since.as_secs())
}
