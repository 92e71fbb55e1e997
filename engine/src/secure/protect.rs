//! Packet protection for secure sessions: per-session keys derived from the token's keys, and
//! AES-256-GCM (ring; hardware-accelerated on x86-64 and ARMv8) over every data, accept
//! and disconnect packet. With AES-GCM, encrypted T2 (`loopback_bench`) ran at 0.80x to 0.86x
//! the unencrypted rate (BENCHMARKS.md); with ChaCha20-Poly1305 it was 0.64x on the same machine.
//!
//! **Keys.** Each direction's key is HKDF-SHA256 with the token's key for that direction as
//! input, the client's handshake nonce (8 bytes, big-endian), the server's cookie (24 bytes)
//! and the server's random session salt (8 bytes, sent in the accept) as salt, and
//! `"tickwire c2s"` or `"tickwire s2c"` as info. The server draws the session salt for every
//! session it creates, so two sessions never share a key: not when a client reuses a token, not
//! when an attacker replays a connection response, not across restarts.
//!
//! **Nonces.** A data packet's AEAD nonce is 4 zero bytes followed by its 64-bit packet number
//! (big-endian); packet numbers never repeat within a session and direction. A disconnect uses
//! `00 00 00 01` and an accept `00 00 00 02`, followed by 8 zero bytes: every copy of either
//! has the same content, so the repeated nonce seals the same plaintext and reveals nothing.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf;

use super::token::{SESSION_KEY_LEN, TAG_LEN};
use crate::cookie::Cookie;

/// Bytes a secure data packet adds at most: the AEAD tag and the 8-byte session tag sent
/// while the path may have changed.
pub(crate) const SECURE_DATA_OVERHEAD: usize = TAG_LEN + SESSION_TAG_LEN;
/// Length of the session tag in a data header.
pub(crate) const SESSION_TAG_LEN: usize = 8;
/// The AEAD tag length.
pub(crate) const AEAD_TAG_LEN: usize = TAG_LEN;

/// One session's keys, one per direction.
pub(crate) struct PacketKeys {
    send: LessSafeKey,
    recv: LessSafeKey,
}

impl std::fmt::Debug for PacketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PacketKeys(..)")
    }
}

/// The AEAD refused: wrong key, altered bytes, or too short to hold a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unauthentic;

impl PacketKeys {
    /// The keys of the session named by `nonce` and `cookie`; `client` says which side this
    /// is (it sends with the client-to-server key).
    pub(crate) fn derive(
        client_to_server: &[u8; SESSION_KEY_LEN],
        server_to_client: &[u8; SESSION_KEY_LEN],
        nonce: u64,
        cookie: &Cookie,
        session_salt: u64,
        client: bool,
    ) -> Self {
        let mut salt = [0u8; 8 + crate::cookie::COOKIE_LEN + 8];
        salt[..8].copy_from_slice(&nonce.to_be_bytes());
        salt[8..8 + crate::cookie::COOKIE_LEN].copy_from_slice(&cookie.0);
        salt[8 + crate::cookie::COOKIE_LEN..].copy_from_slice(&session_salt.to_be_bytes());
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt);
        let c2s = expand(&salt, client_to_server, b"tickwire c2s");
        let s2c = expand(&salt, server_to_client, b"tickwire s2c");
        if client {
            Self {
                send: c2s,
                recv: s2c,
            }
        } else {
            Self {
                send: s2c,
                recv: c2s,
            }
        }
    }

    /// Encrypts `buf[header_len..len]` in place with `buf[..header_len]` as associated data
    /// and writes the tag after it; returns the new length. `buf` must have [`AEAD_TAG_LEN`]
    /// bytes of room after `len`.
    pub(crate) fn seal_data(
        &self,
        packet_number: u64,
        buf: &mut [u8],
        header_len: usize,
        len: usize,
    ) -> Option<usize> {
        let end = len.checked_add(TAG_LEN)?;
        if end > buf.len() || header_len > len {
            return None;
        }
        let (header, rest) = buf.split_at_mut(header_len);
        let (body, tag_out) = rest.split_at_mut(len - header_len);
        let tag = self
            .send
            .seal_in_place_separate_tag(data_nonce(packet_number), Aad::from(&*header), body)
            .ok()?;
        tag_out[..TAG_LEN].copy_from_slice(tag.as_ref());
        Some(end)
    }

    /// Decrypts `buf[header_len..]` (ciphertext and tag) in place; returns the plaintext's
    /// length. Nothing else changes, so a failure leaves the session as it was.
    pub(crate) fn open_data(
        &self,
        packet_number: u64,
        buf: &mut [u8],
        header_len: usize,
    ) -> Result<usize, Unauthentic> {
        if buf.len() < header_len + TAG_LEN {
            return Err(Unauthentic);
        }
        let (header, body) = buf.split_at_mut(header_len);
        let plain = self
            .recv
            .open_in_place(data_nonce(packet_number), Aad::from(&*header), body)
            .map_err(|_| Unauthentic)?;
        Ok(plain.len())
    }

    /// The tag that authenticates a disconnect packet whose clear bytes are `fields`.
    pub(crate) fn disconnect_tag(&self, fields: &[u8]) -> [u8; TAG_LEN] {
        tag_of(&self.send, CONTROL_DISCONNECT, fields)
    }

    /// Whether `tag` authenticates the peer's disconnect packet `fields`.
    pub(crate) fn verify_disconnect(&self, fields: &[u8], tag: &[u8; TAG_LEN]) -> bool {
        verify(&self.recv, CONTROL_DISCONNECT, fields, tag)
    }

    /// The tag that authenticates the server's accept whose clear bytes are `fields`.
    pub(crate) fn accept_tag(&self, fields: &[u8]) -> [u8; TAG_LEN] {
        tag_of(&self.send, CONTROL_ACCEPT, fields)
    }

    /// Whether `tag` authenticates the server's accept `fields` (client side).
    pub(crate) fn verify_accept(&self, fields: &[u8], tag: &[u8; TAG_LEN]) -> bool {
        verify(&self.recv, CONTROL_ACCEPT, fields, tag)
    }
}

const CONTROL_DISCONNECT: u8 = 1;
const CONTROL_ACCEPT: u8 = 2;

fn tag_of(key: &LessSafeKey, control: u8, fields: &[u8]) -> [u8; TAG_LEN] {
    let mut out = [0u8; TAG_LEN];
    if let Ok(tag) =
        key.seal_in_place_separate_tag(control_nonce(control), Aad::from(fields), &mut [])
    {
        out.copy_from_slice(tag.as_ref());
    }
    out
}

fn verify(key: &LessSafeKey, control: u8, fields: &[u8], tag: &[u8; TAG_LEN]) -> bool {
    let mut buf = *tag;
    key.open_in_place(control_nonce(control), Aad::from(fields), &mut buf)
        .is_ok()
}

fn expand(salt: &hkdf::Salt, ikm: &[u8; SESSION_KEY_LEN], info: &[u8]) -> LessSafeKey {
    let prk = salt.extract(ikm);
    let info = [info];
    // 32 bytes is within HKDF-SHA256's limit (255 × 32), so expansion cannot fail.
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .unwrap_or_else(|_| unreachable!("32 bytes of HKDF output"));
    LessSafeKey::new(UnboundKey::from(okm))
}

fn data_nonce(packet_number: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&packet_number.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

fn control_nonce(control: u8) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[3] = control;
    Nonce::assume_unique_for_key(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (PacketKeys, PacketKeys) {
        let cookie = Cookie([3; crate::cookie::COOKIE_LEN]);
        (
            PacketKeys::derive(&[1; 32], &[2; 32], 77, &cookie, 5, true),
            PacketKeys::derive(&[1; 32], &[2; 32], 77, &cookie, 5, false),
        )
    }

    #[test]
    fn sealed_data_opens_only_unaltered_with_its_number() {
        let (client, server) = pair();
        let mut buf = [0u8; 64];
        buf[..10].copy_from_slice(b"hdrpayload");
        let len = client.seal_data(5, &mut buf, 3, 10).unwrap();
        assert_eq!(len, 26);
        let mut copy = buf;
        assert_eq!(server.open_data(5, &mut copy[..len], 3), Ok(7));
        assert_eq!(&copy[..10], b"hdrpayload");
        let mut copy = buf;
        assert!(server.open_data(6, &mut copy[..len], 3).is_err());
        for i in 0..len {
            let mut bent = buf;
            bent[i] ^= 0x40;
            assert!(
                server.open_data(5, &mut bent[..len], 3).is_err(),
                "byte {i}"
            );
        }
        // The client cannot open its own packets: the directions have different keys.
        let mut copy = buf;
        assert!(client.open_data(5, &mut copy[..len], 3).is_err());
    }

    #[test]
    fn disconnect_tags_verify() {
        let (client, server) = pair();
        let tag = client.disconnect_tag(b"fields");
        assert!(server.verify_disconnect(b"fields", &tag));
        assert!(!server.verify_disconnect(b"fieldz", &tag));
        assert!(!client.verify_disconnect(b"fields", &tag));
        let accept = server.accept_tag(b"fields");
        assert!(client.verify_accept(b"fields", &accept));
        assert!(!server.verify_disconnect(b"fields", &accept));
    }

    #[test]
    fn another_session_salt_gives_other_keys() {
        let cookie = Cookie([3; crate::cookie::COOKIE_LEN]);
        let a = PacketKeys::derive(&[1; 32], &[2; 32], 77, &cookie, 5, true);
        let b = PacketKeys::derive(&[1; 32], &[2; 32], 77, &cookie, 6, false);
        let mut buf = [0u8; 64];
        let len = a.seal_data(0, &mut buf, 3, 10).unwrap();
        assert!(b.open_data(0, &mut buf[..len], 3).is_err());
    }
}
