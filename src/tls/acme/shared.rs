//! HTTP-01 challenges shared by the nodes of a fleet through its Redis, so ACME works
//! behind one name or load balancer: the CA's validation request reaches whichever node
//! DNS or the balancer picks, and that node answers a token another node ordered with.
//!
//! The ordering node writes `dusk:acme:http01:<token>` (the key authorization, which
//! only proves control of the account's key to the CA: not a secret) before telling the
//! CA to validate, and deletes it when the order ends; a lookup on a node that does not
//! hold the token locally reads it. TLS-ALPN-01 cannot be shared this way: rustls picks
//! the certificate synchronously inside the handshake, with no room for a Redis read.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tracing::debug;

use crate::rendezvous::redis::{lazy_connection, OPERATION_TIMEOUT};

/// Every key this module writes starts with this.
pub const KEY_PREFIX: &str = "dusk:acme:http01:";
/// How long a published token lives if the order's end never deletes it (the node
/// died): longer than an order may take (`order::ORDER_TIMEOUT`).
const TOKEN_TTL: Duration = Duration::from_secs(600);
/// Longest token looked up: RFC 8555 tokens are 128 bits or more of base64url (43
/// characters from Let's Encrypt and pebble); anything longer is not worth a Redis read.
const MAX_TOKEN_LEN: usize = 128;

/// The fleet's Redis, for HTTP-01 tokens.
#[derive(Clone)]
pub struct SharedChallenges {
    connection: ConnectionManager,
}

impl std::fmt::Debug for SharedChallenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedChallenges")
    }
}

impl SharedChallenges {
    /// Connects on first use, as the fleet's directory does.
    pub fn new(redis_url: &str) -> Result<Self, String> {
        Ok(SharedChallenges {
            connection: lazy_connection(redis_url)?,
        })
    }

    /// Makes `token` answerable by every node; the order must not go on without it.
    pub async fn publish(&self, token: &str, key_authorization: &str) -> Result<(), String> {
        let mut set = redis::cmd("SET");
        set.arg(key(token))
            .arg(key_authorization)
            .arg("EX")
            .arg(TOKEN_TTL.as_secs());
        let mut connection = self.connection.clone();
        match tokio::time::timeout(OPERATION_TIMEOUT, set.query_async::<()>(&mut connection))
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "cannot share the HTTP-01 challenge through the fleet's Redis: {e}"
            )),
            Err(_) => Err(format!(
                "cannot share the HTTP-01 challenge through the fleet's Redis: no answer within {OPERATION_TIMEOUT:?}"
            )),
        }
    }

    /// The key authorization another node published for `token`, if any. Anyone can
    /// ask, so only token-shaped strings cost a Redis read, and a failing Redis is
    /// "not found" (the CA retries from its other vantage points).
    pub async fn lookup(&self, token: &str) -> Option<String> {
        if !is_token(token) {
            return None;
        }
        let mut get = redis::cmd("GET");
        get.arg(key(token));
        let mut connection = self.connection.clone();
        match tokio::time::timeout(
            OPERATION_TIMEOUT,
            get.query_async::<Option<String>>(&mut connection),
        )
        .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                debug!("ACME HTTP-01: Redis lookup failed: {e}");
                None
            }
            Err(_) => {
                debug!("ACME HTTP-01: no answer from Redis within {OPERATION_TIMEOUT:?}");
                None
            }
        }
    }

    /// Deletes the tokens an order published; best effort (they expire anyway).
    pub async fn withdraw(&self, tokens: &[String]) {
        if tokens.is_empty() {
            return;
        }
        let mut del = redis::cmd("DEL");
        for token in tokens {
            del.arg(key(token));
        }
        let mut connection = self.connection.clone();
        let deleted =
            tokio::time::timeout(OPERATION_TIMEOUT, del.query_async::<()>(&mut connection)).await;
        if !matches!(deleted, Ok(Ok(()))) {
            debug!("ACME HTTP-01: tokens left in Redis to expire");
        }
    }
}

fn key(token: &str) -> String {
    format!("{KEY_PREFIX}{token}")
}

/// base64url without padding, 1 to [`MAX_TOKEN_LEN`] characters (RFC 8555 section 8.1).
pub fn is_token(token: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_base64url_tokens_are_looked_up() {
        assert!(is_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        assert!(!is_token(""));
        assert!(!is_token("a/b"));
        assert!(!is_token("a b"));
        assert!(!is_token("*"));
        assert!(!is_token(&"a".repeat(MAX_TOKEN_LEN + 1)));
    }
}
