//! Stateless handshake cookies, in the spirit of TCP SYN cookies and QUIC Retry tokens.
//!
//! # Why stateless
//!
//! If a server kept a connection slot for every first handshake datagram it received, a flood of
//! datagrams with forged source addresses could use up its memory. Its replies would also hit the
//! forged addresses, so attackers could use it to flood third parties. So the endpoint answers a
//! first handshake with a [`Cookie`] and then forgets the client. The client must send the cookie
//! back, which proves it can receive at the address it claims. Only then does the server spend
//! memory on it. A [`CookieJar`] holds two secrets and a few counters, however many clients knock.
//!
//! # What a cookie binds
//!
//! A cookie is [`COOKIE_LEN`] = 24 bytes:
//!
//! | bytes    | content                                                              |
//! |----------|----------------------------------------------------------------------|
//! | `0..8`   | issue time: milliseconds since the jar's epoch, `u64` big-endian     |
//! | `8..24`  | the first 16 bytes of HMAC-SHA256(secret, message)                   |
//!
//! The message is the issue time (8 bytes), an address family tag (1 byte: `4` or `6`), the IP
//! address (4 or 16 bytes), the port (2 bytes, big-endian) and the client's nonce (8 bytes,
//! big-endian). Once the family tag is read, every field has a fixed width. So two different
//! inputs can never produce the same message.
//!
//! So a cookie verifies only for the IP, port and nonce it was issued to. An IPv4 address and the
//! same address in IPv4-mapped IPv6 form count as different clients. The IPv6 flow label and scope
//! id are not bound, because they do not identify the client. The issue time is sent in the clear
//! but the tag covers it, so nobody can edit it to make a cookie live longer. Forging a 128-bit tag
//! takes about 2^128 guesses.
//!
//! # Time and secret rotation
//!
//! The jar never reads a clock: every call takes `now`. Time is cut into windows of one `lifetime`
//! each, counted from the epoch. Window `w` runs from `w * lifetime` to `(w + 1) * lifetime`. The
//! secret for a window comes from the caller's RNG at the first call that falls in that window, so
//! rotation happens lazily. The jar keeps the secrets for the current window and the window before
//! it. A cookie issued in window `w` is checked against window `w`'s secret only. If that secret
//! has been dropped or has not been drawn yet, the cookie is [`CookieError::Invalid`], and no MAC
//! is computed.
//!
//! Windows last exactly one `lifetime`. So a genuine cookie that has not expired was issued in the
//! current or the previous window, and its secret is still held: rotation never cuts a cookie's
//! life short. A cookie issued two or more rotations ago fails whatever its timestamp says. And if
//! one secret leaks, an attacker can forge cookies for at most two windows.
//!
//! [`CookieJar::verify`] checks the tag first and the age second. So [`CookieError::Expired`]
//! means this jar really issued the cookie and it is now too old. A cookie that was changed in any
//! way, timestamp included, is [`CookieError::Invalid`].
//!
//! The jar's clock never runs backwards: a `now` earlier than one it has already seen counts as
//! the latest one seen.
//!
//! # Replay
//!
//! The server keeps no state, so a client can send the same cookie more than once while it is still
//! valid. It works only from the address and with the nonce it was issued for, so only someone who
//! can receive at that address can replay it. The endpoint must treat a repeated valid cookie from
//! a client that is already connected as the same connection, not as a new one.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::RngCore;
use ring::hmac;

/// Length of a [`Cookie`] on the wire: an 8-byte issue time and a 16-byte tag.
pub(crate) const COOKIE_LEN: usize = STAMP_LEN + TAG_LEN;

/// A handshake cookie as sent on the wire. See the [module docs](self) for its layout.
///
/// Comparing two cookies with `==` takes longer the more leading bytes they share. Only
/// [`CookieJar::verify`] checks cookies, and it compares tags in constant time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Cookie(pub(crate) [u8; COOKIE_LEN]);

/// Issues and checks [`Cookie`]s. The only state is two rotating secrets, whatever the number
/// of clients.
///
/// `Debug` does not print the secrets.
#[derive(Debug)]
pub(crate) struct CookieJar {
    /// Time zero for the timestamps stored in cookies.
    epoch: Instant,
    /// How long a cookie stays valid, and so how long each secret window lasts, in milliseconds
    /// (at least 1).
    lifetime_ms: u64,
    /// The latest `now` seen, in milliseconds since `epoch`. The jar's clock never goes below it.
    latest_ms: u64,
    /// The number of the window that `current` belongs to.
    window: u64,
    /// The secret for window `window`.
    current: hmac::Key,
    /// The secret for window `window - 1`. `None` if the jar skipped that window (it was idle, or
    /// it was just created).
    previous: Option<hmac::Key>,
}

/// Why [`CookieJar::verify`] rejected a cookie.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieError {
    /// The tag does not match: the cookie was forged or changed, was issued for another address
    /// or nonce, or its secret was rotated out (it is two or more windows old).
    #[error("cookie tag does not match")]
    Invalid,
    /// The tag is genuine, but the cookie was issued longer ago than the lifetime (or, which
    /// should never happen, after `now`).
    #[error("cookie has expired")]
    Expired,
}

impl CookieJar {
    /// Creates a jar whose cookies stay valid for `lifetime` after they are issued.
    ///
    /// `epoch` is time zero for cookie timestamps. A `now` earlier than `epoch` counts as `epoch`.
    /// `lifetime` is rounded down to whole milliseconds, with a minimum of 1 ms, and is also how
    /// often the secret rotates. A longer lifetime is kinder to clients on slow paths. A shorter
    /// one limits how long a captured cookie can be replayed. `rng` supplies the secrets. Pass
    /// the endpoint's seeded RNG so that runs can be replayed exactly.
    pub(crate) fn new(epoch: Instant, lifetime: Duration, rng: &mut impl RngCore) -> Self {
        let lifetime_ms = u64::try_from(lifetime.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            epoch,
            lifetime_ms,
            latest_ms: 0,
            window: 0,
            current: fresh_key(rng),
            previous: None,
        }
    }

    /// Issues a cookie to `client` for its handshake nonce `client_nonce`, stamped with `now`.
    ///
    /// If `now` is in a new window, the secret rotates first, using `rng`.
    pub(crate) fn issue(
        &mut self,
        now: Instant,
        client: SocketAddr,
        client_nonce: u64,
        rng: &mut impl RngCore,
    ) -> Cookie {
        let issued = self.advance(now, rng);
        let tag = mac(&self.current, issued, client, client_nonce);
        let mut bytes = [0u8; COOKIE_LEN];
        let (stamp_out, tag_out) = bytes.split_at_mut(STAMP_LEN);
        stamp_out.copy_from_slice(&issued.to_be_bytes());
        tag_out.copy_from_slice(&tag);
        Cookie(bytes)
    }

    /// Checks a cookie that `client` sent back with `client_nonce`.
    ///
    /// If `now` is in a new window, the secret rotates first, using `rng`. Returns `Ok(())` only
    /// if this jar issued `cookie` to this exact address and nonce, and did so no more than one
    /// lifetime before `now`. The cookie comes from the wire: any bytes give an error, never a
    /// panic.
    pub(crate) fn verify(
        &mut self,
        now: Instant,
        client: SocketAddr,
        client_nonce: u64,
        cookie: &Cookie,
        rng: &mut impl RngCore,
    ) -> Result<(), CookieError> {
        let now_ms = self.advance(now, rng);
        let Some((stamp, tag)) = cookie.0.split_first_chunk::<STAMP_LEN>() else {
            return Err(CookieError::Invalid);
        };
        let issued = u64::from_be_bytes(*stamp);

        // Only the secret of the window the cookie claims to be from can have made its tag.
        let issued_window = issued / self.lifetime_ms;
        let key = if issued_window == self.window {
            &self.current
        } else if issued_window.checked_add(1) == Some(self.window) {
            self.previous.as_ref().ok_or(CookieError::Invalid)?
        } else {
            return Err(CookieError::Invalid);
        };
        if !constant_time_eq(&mac(key, issued, client, client_nonce), tag) {
            return Err(CookieError::Invalid);
        }

        // The tag is genuine, so the timestamp is ours; now judge its age.
        match now_ms.checked_sub(issued) {
            Some(age) if age <= self.lifetime_ms => Ok(()),
            _ => Err(CookieError::Expired),
        }
    }

    /// Moves the jar's clock to `now` and rotates the secrets if `now` is in a new window.
    /// Returns `now` in milliseconds since the epoch. This never decreases.
    fn advance(&mut self, now: Instant, rng: &mut impl RngCore) -> u64 {
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX)
            .max(self.latest_ms);
        self.latest_ms = now_ms;

        let window = now_ms / self.lifetime_ms;
        if window == self.window {
            return now_ms;
        }
        // The clock is monotonic, so `window > self.window`.
        let old = std::mem::replace(&mut self.current, fresh_key(rng));
        // Keep the old secret only if it belongs to the window just before the new one.
        self.previous = (self.window.checked_add(1) == Some(window)).then_some(old);
        self.window = window;
        now_ms
    }
}

/// Draws a new HMAC-SHA256 secret from `rng`.
fn fresh_key(rng: &mut impl RngCore) -> hmac::Key {
    let mut secret = [0u8; SECRET_LEN];
    rng.fill_bytes(&mut secret);
    hmac::Key::new(hmac::HMAC_SHA256, &secret)
}

/// The truncated tag over the fields listed in the module docs.
fn mac(key: &hmac::Key, issued: u64, client: SocketAddr, client_nonce: u64) -> [u8; TAG_LEN] {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(&issued.to_be_bytes());
    match client.ip() {
        IpAddr::V4(ip) => {
            ctx.update(&[FAMILY_V4]);
            ctx.update(&ip.octets());
        }
        IpAddr::V6(ip) => {
            ctx.update(&[FAMILY_V6]);
            ctx.update(&ip.octets());
        }
    }
    ctx.update(&client.port().to_be_bytes());
    ctx.update(&client_nonce.to_be_bytes());

    let full = ctx.sign();
    let mut tag = [0u8; TAG_LEN];
    for (out, byte) in tag.iter_mut().zip(full.as_ref()) {
        *out = *byte;
    }
    tag
}

/// Compares two byte strings in time that depends only on their lengths, not their contents.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Bytes of the issue time at the start of a cookie.
const STAMP_LEN: usize = 8;
/// Bytes of HMAC-SHA256 output kept in a cookie (128 bits).
const TAG_LEN: usize = 16;
/// Bytes of each random secret (the HMAC-SHA256 output size, as RFC 2104 recommends).
const SECRET_LEN: usize = 32;
/// Address family tag for IPv4 in the MAC input.
const FAMILY_V4: u8 = 4;
/// Address family tag for IPv6 in the MAC input.
const FAMILY_V6: u8 = 6;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

    const LIFETIME: Duration = Duration::from_secs(10);
    const NONCE: u64 = 0x0123_4567_89ab_cdef;

    fn v4() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 5000))
    }

    fn v6() -> SocketAddr {
        SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 5000))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A jar created at `t0`, and the RNG it will keep drawing from.
    fn jar(t0: Instant, seed: u64) -> (CookieJar, StdRng) {
        let mut rng = StdRng::seed_from_u64(seed);
        let jar = CookieJar::new(t0, LIFETIME, &mut rng);
        (jar, rng)
    }

    #[test]
    fn round_trip_v4_and_v6() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0, 1);
        let cookies =
            [v4(), v6()].map(|addr| (addr, jar.issue(t0 + ms(1234), addr, NONCE, &mut rng)));
        for (addr, cookie) in cookies {
            assert_eq!(cookie.0[..STAMP_LEN], 1234u64.to_be_bytes());
            assert_eq!(
                jar.verify(t0 + ms(2000), addr, NONCE, &cookie, &mut rng),
                Ok(())
            );
        }
    }

    #[test]
    fn same_seed_gives_same_cookies() {
        let t0 = Instant::now();
        let (mut a, mut rng_a) = jar(t0, 7);
        let (mut b, mut rng_b) = jar(t0, 7);
        for step in 0..5 {
            let now = t0 + LIFETIME * step;
            assert_eq!(
                a.issue(now, v4(), NONCE, &mut rng_a),
                b.issue(now, v4(), NONCE, &mut rng_b)
            );
        }
    }

    #[test]
    fn wrong_address_is_invalid() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0, 1);
        let cookie = jar.issue(t0, v4(), NONCE, &mut rng);
        let other_ip = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 2), 5000));
        let other_port = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 5001));
        for addr in [other_ip, other_port, v6()] {
            assert_eq!(
                jar.verify(t0, addr, NONCE, &cookie, &mut rng),
                Err(CookieError::Invalid),
                "{addr}"
            );
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_is_another_address() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0, 1);
        let plain = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 5000);
        let mapped = SocketAddr::from((plain.ip().to_ipv6_mapped(), plain.port()));
        let cookie = jar.issue(t0, SocketAddr::V4(plain), NONCE, &mut rng);
        assert_eq!(
            jar.verify(t0, mapped, NONCE, &cookie, &mut rng),
            Err(CookieError::Invalid)
        );
        let cookie = jar.issue(t0, mapped, NONCE, &mut rng);
        assert_eq!(
            jar.verify(t0, SocketAddr::V4(plain), NONCE, &cookie, &mut rng),
            Err(CookieError::Invalid)
        );
    }

    #[test]
    fn wrong_nonce_is_invalid() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0, 1);
        let cookie = jar.issue(t0, v4(), NONCE, &mut rng);
        assert_eq!(
            jar.verify(t0, v4(), NONCE ^ 1, &cookie, &mut rng),
            Err(CookieError::Invalid)
        );
    }

    #[test]
    fn any_flipped_bit_is_invalid() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0, 1);
        // Issued mid-window, so flipping a low timestamp bit stays inside the lifetime and only
        // the tag can catch it.
        let now = t0 + ms(4321);
        let cookie = jar.issue(now, v4(), NONCE, &mut rng);
        for byte in 0..COOKIE_LEN {
            for bit in 0..8 {
                let mut bad = cookie;
                bad.0[byte] ^= 1 << bit;
                assert_eq!(
                    jar.verify(now, v4(), NONCE, &bad, &mut rng),
                    Err(CookieError::Invalid),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn cookie_from_another_jar_is_invalid() {
        let t0 = Instant::now();
        let (mut ours, mut rng_ours) = jar(t0, 1);
        let (mut theirs, mut rng_theirs) = jar(t0, 2);
        let cookie = theirs.issue(t0, v4(), NONCE, &mut rng_theirs);
        assert_eq!(
            ours.verify(t0, v4(), NONCE, &cookie, &mut rng_ours),
            Err(CookieError::Invalid)
        );
    }

    #[test]
    fn expires_after_lifetime() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0, 1);
        let cookie = jar.issue(t0, v4(), NONCE, &mut rng);
        assert_eq!(
            jar.verify(t0 + LIFETIME, v4(), NONCE, &cookie, &mut rng),
            Ok(())
        );
        assert_eq!(
            jar.verify(t0 + LIFETIME + ms(1), v4(), NONCE, &cookie, &mut rng),
            Err(CookieError::Expired)
        );
    }

    #[test]
    fn still_valid_right_after_one_rotation() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0, 1);
        let cookie = jar.issue(t0 + LIFETIME - ms(1), v4(), NONCE, &mut rng);
        // `t0 + LIFETIME` starts window 1: the secret rotates, the old one becomes `previous`.
        assert_eq!(
            jar.verify(t0 + LIFETIME, v4(), NONCE, &cookie, &mut rng),
            Ok(())
        );
        assert_eq!(jar.window, 1);
        // Cookies issued after the rotation use the new secret and verify too.
        let fresh = jar.issue(t0 + LIFETIME, v4(), NONCE, &mut rng);
        assert_eq!(
            jar.verify(t0 + LIFETIME, v4(), NONCE, &fresh, &mut rng),
            Ok(())
        );
    }

    #[test]
    fn invalid_after_two_rotations() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0, 1);
        let cookie = jar.issue(t0 + LIFETIME - ms(1), v4(), NONCE, &mut rng);
        assert_eq!(
            jar.verify(t0 + LIFETIME, v4(), NONCE, &cookie, &mut rng),
            Ok(())
        );
        // Window 2: the secret of window 0 is gone, so the tag cannot be checked at all.
        assert_eq!(
            jar.verify(t0 + LIFETIME * 2, v4(), NONCE, &cookie, &mut rng),
            Err(CookieError::Invalid)
        );
    }

    #[test]
    fn long_idle_drops_both_secrets() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0, 1);
        let cookie = jar.issue(t0, v4(), NONCE, &mut rng);
        let later = t0 + LIFETIME * 100;
        assert_eq!(
            jar.verify(later, v4(), NONCE, &cookie, &mut rng),
            Err(CookieError::Invalid)
        );
        assert!(jar.previous.is_none());
        let fresh = jar.issue(later, v4(), NONCE, &mut rng);
        assert_eq!(
            jar.verify(later + ms(5), v4(), NONCE, &fresh, &mut rng),
            Ok(())
        );
    }

    #[test]
    fn clock_never_runs_backwards() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0, 1);
        let cookie = jar.issue(t0 + LIFETIME * 3, v4(), NONCE, &mut rng);
        // An earlier `now` counts as the latest one seen: no panic, no rotation back.
        assert_eq!(jar.verify(t0, v4(), NONCE, &cookie, &mut rng), Ok(()));
        assert_eq!(jar.window, 3);
    }

    #[test]
    fn now_before_epoch_counts_as_epoch() {
        let t0 = Instant::now();
        let (mut jar, mut rng) = jar(t0 + LIFETIME, 1);
        let cookie = jar.issue(t0, v4(), NONCE, &mut rng);
        assert_eq!(cookie.0[..STAMP_LEN], 0u64.to_be_bytes());
        assert_eq!(jar.verify(t0, v4(), NONCE, &cookie, &mut rng), Ok(()));
    }

    #[test]
    fn zero_lifetime_is_one_millisecond() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut jar = CookieJar::new(t0, Duration::ZERO, &mut rng);
        let cookie = jar.issue(t0, v4(), NONCE, &mut rng);
        assert_eq!(
            jar.verify(t0 + ms(1), v4(), NONCE, &cookie, &mut rng),
            Ok(())
        );
        assert_eq!(
            jar.verify(t0 + ms(2), v4(), NONCE, &cookie, &mut rng),
            Err(CookieError::Invalid)
        );
    }

    proptest! {
        /// Any 24 bytes from the wire are rejected without a panic.
        #[test]
        fn random_bytes_never_verify(
            bytes in prop::array::uniform24(any::<u8>()),
            offset_ms in 0u64..100_000,
            nonce in any::<u64>(),
        ) {
            let t0 = Instant::now();
            let (mut jar, mut rng) = jar(t0, 1);
            let result = jar.verify(t0 + ms(offset_ms), v4(), nonce, &Cookie(bytes), &mut rng);
            prop_assert!(result.is_err());
        }
    }
}
