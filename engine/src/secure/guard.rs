//! The server's handshake limits in secure mode: a global rate cap on token decryptions and a
//! bounded table of tokens already used, so that a token seen from one address is refused from
//! any other.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::token::TAG_LEN;

/// Tokens remembered at most; the oldest entry is forgotten first. Entries are added only after
/// a client proved its address with a cookie, so a flood of forged addresses cannot fill it.
pub(crate) const MAX_USED_TOKENS: usize = 8192;

/// Rate cap and used-token table.
#[derive(Debug)]
pub(crate) struct HandshakeGuard {
    /// Token decryptions allowed per second, and the bucket's state.
    rate: u32,
    tokens: f64,
    refilled: Instant,
    used: HashMap<[u8; TAG_LEN], Used>,
    order: VecDeque<[u8; TAG_LEN]>,
}

#[derive(Clone, Copy, Debug)]
struct Used {
    addr: SocketAddr,
    /// Unix time after which the token is refused anyway, so the entry may go.
    expires: u64,
}

impl HandshakeGuard {
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate,
            tokens: f64::from(rate),
            refilled: now,
            used: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Takes one decryption from the bucket; `false` when the cap is reached.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled);
        if elapsed > Duration::ZERO {
            self.refilled = now;
            self.tokens = (self.tokens + elapsed.as_secs_f64() * f64::from(self.rate))
                .min(f64::from(self.rate));
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the token named by `tag` was used from an address other than `from`.
    pub(crate) fn used_elsewhere(&self, tag: &[u8; TAG_LEN], from: SocketAddr) -> bool {
        self.used.get(tag).is_some_and(|used| used.addr != from)
    }

    /// Records that the token named by `tag` started a session from `from`.
    pub(crate) fn record(
        &mut self,
        tag: [u8; TAG_LEN],
        from: SocketAddr,
        expires: u64,
        unix_now: u64,
    ) {
        if let Some(used) = self.used.get_mut(&tag) {
            used.addr = from;
            return;
        }
        while self.order.len() >= MAX_USED_TOKENS {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.used.remove(&old);
        }
        // Forget expired entries at the front cheaply while we are here.
        while let Some(front) = self.order.front() {
            if self.used.get(front).is_some_and(|u| u.expires <= unix_now) {
                let front = *front;
                self.order.pop_front();
                self.used.remove(&front);
            } else {
                break;
            }
        }
        self.used.insert(
            tag,
            Used {
                addr: from,
                expires,
            },
        );
        self.order.push_back(tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_caps_and_refills() {
        let start = Instant::now();
        let mut guard = HandshakeGuard::new(10, start);
        assert_eq!((0..20).filter(|_| guard.allow(start)).count(), 10);
        assert!(guard.allow(start + Duration::from_millis(100)));
        assert!(!guard.allow(start + Duration::from_millis(100)));
    }

    #[test]
    fn a_used_token_is_refused_elsewhere_and_the_table_is_bounded() {
        let mut guard = HandshakeGuard::new(10, Instant::now());
        let a = "10.0.0.1:1".parse().unwrap();
        let b = "10.0.0.2:1".parse().unwrap();
        guard.record([1; TAG_LEN], a, 100, 0);
        assert!(!guard.used_elsewhere(&[1; TAG_LEN], a));
        assert!(guard.used_elsewhere(&[1; TAG_LEN], b));
        for i in 0..MAX_USED_TOKENS as u32 + 10 {
            let mut tag = [0u8; TAG_LEN];
            tag[..4].copy_from_slice(&i.to_be_bytes());
            tag[15] = 9;
            guard.record(tag, a, 100, 0);
        }
        assert!(guard.used.len() <= MAX_USED_TOKENS);
        assert_eq!(guard.used.len(), guard.order.len());
    }
}
