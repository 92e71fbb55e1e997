//! Connect tokens: issued by a backend holding the [`PrivateKey`], carried by the client, read
//! by servers. Byte layouts in `engine/PROTOCOL.md` ("Connect tokens").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rand::{CryptoRng, SeedableRng};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use thiserror::Error;

use super::key::PrivateKey;
use super::ClientId;
use crate::wire::{DecodeError, Reader, Writer};

/// Version byte of the token layouts.
pub const TOKEN_VERSION: u8 = 1;
/// Most server addresses one token may list.
pub const MAX_TOKEN_SERVERS: usize = 8;
/// Most bytes of user data one token may carry.
pub const MAX_USER_DATA: usize = 256;
/// Length of each per-direction session key.
pub(crate) const SESSION_KEY_LEN: usize = 32;
/// AEAD tag length (Poly1305).
pub(crate) const TAG_LEN: usize = 16;
/// Bytes before the sealed ciphertext: version, protocol id, created, expires, nonce.
const SEALED_HEADER_LEN: usize = 1 + 8 + 8 + 8 + NONCE_LEN;
/// Associated data of the seal: version, protocol id, created, expires.
const SEALED_AD_LEN: usize = 1 + 8 + 8 + 8;
const NONCE_LEN: usize = 12;
/// Largest sealed part: header, the largest private plaintext, tag.
pub(crate) const MAX_SEALED_LEN: usize = SEALED_HEADER_LEN
    + 8
    + 1
    + MAX_TOKEN_SERVERS * 19
    + 2 * SESSION_KEY_LEN
    + 2
    + MAX_USER_DATA
    + TAG_LEN;

/// What a token grants: fill it in and call [`issue`](Self::issue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSpec {
    /// The application's protocol id; must equal the server's `Config::protocol_id`.
    pub protocol_id: u64,
    /// Who the client is; the server keys sessions by it.
    pub client_id: ClientId,
    /// The addresses the client may connect to (1 to [`MAX_TOKEN_SERVERS`]), as the servers
    /// list them in `TokenSecurity::public_addresses`.
    pub servers: Vec<SocketAddr>,
    /// How long the token may be used to start sessions, in whole seconds (rounded down, at
    /// least 1 s). Default 30 s: long enough to connect, short enough that a leaked token soon
    /// stops working. A session outlives its token.
    pub valid_for: Duration,
    /// Opaque bytes for the server (at most [`MAX_USER_DATA`]), sealed like the keys. Default
    /// empty.
    pub user_data: Vec<u8>,
}

impl TokenSpec {
    /// A spec with the default validity and no user data.
    pub fn new(protocol_id: u64, client_id: ClientId, servers: Vec<SocketAddr>) -> Self {
        Self {
            protocol_id,
            client_id,
            servers,
            valid_for: Duration::from_secs(30),
            user_data: Vec::new(),
        }
    }

    /// Issues a token valid from `unix_now` (seconds since the Unix epoch, read by the caller),
    /// with fresh session keys from the operating system's random source.
    pub fn issue(&self, key: &PrivateKey, unix_now: u64) -> Result<ConnectToken, IssueError> {
        self.issue_with(key, unix_now, &mut rand::rngs::StdRng::from_os_rng())
    }

    /// [`issue`](Self::issue) with keys and nonce drawn from `rng` (seed it only in tests).
    pub fn issue_with(
        &self,
        key: &PrivateKey,
        unix_now: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<ConnectToken, IssueError> {
        if self.servers.is_empty() || self.servers.len() > MAX_TOKEN_SERVERS {
            return Err(IssueError::ServerCount(self.servers.len()));
        }
        if self.user_data.len() > MAX_USER_DATA {
            return Err(IssueError::UserDataTooLong(self.user_data.len()));
        }
        let expires = unix_now.saturating_add(self.valid_for.as_secs().max(1));
        let mut client_to_server = [0u8; SESSION_KEY_LEN];
        let mut server_to_client = [0u8; SESSION_KEY_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut client_to_server);
        rng.fill_bytes(&mut server_to_client);
        rng.fill_bytes(&mut nonce);

        let mut sealed = vec![0u8; MAX_SEALED_LEN];
        let mut w = Writer::new(&mut sealed);
        let written = (|| {
            w.u8(TOKEN_VERSION)?;
            w.u64(self.protocol_id)?;
            w.u64(unix_now)?;
            w.u64(expires)?;
            w.put(&nonce)?;
            w.u64(self.client_id.0)?;
            write_addresses(&mut w, &self.servers)?;
            w.put(&client_to_server)?;
            w.put(&server_to_client)?;
            w.u16(self.user_data.len() as u16)?;
            w.put(&self.user_data)?;
            Ok::<usize, crate::wire::BufferTooSmall>(w.position())
        })()
        .map_err(|_| IssueError::ServerCount(self.servers.len()))?;
        sealed.truncate(written);
        let (header, plaintext) = sealed.split_at_mut(SEALED_HEADER_LEN);
        let tag = seal_key(key)
            .seal_in_place_separate_tag(
                nonce_from(&nonce),
                Aad::from(&header[..SEALED_AD_LEN]),
                plaintext,
            )
            .map_err(|_| IssueError::Seal)?;
        sealed.extend_from_slice(tag.as_ref());
        Ok(ConnectToken {
            protocol_id: self.protocol_id,
            client_id: self.client_id,
            created: unix_now,
            expires,
            servers: self.servers.clone(),
            client_to_server,
            server_to_client,
            sealed,
        })
    }
}

/// A connect token as the client holds it: a public part it can read (ids, times, servers, its
/// session keys) and a sealed part only servers can open, which it sends in its connection
/// request.
///
/// Serialise it with [`to_bytes`](Self::to_bytes) to hand it from the backend to the client
/// (over TLS: it holds the session keys). `Debug` does not print the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectToken {
    protocol_id: u64,
    client_id: ClientId,
    created: u64,
    expires: u64,
    servers: Vec<SocketAddr>,
    client_to_server: [u8; SESSION_KEY_LEN],
    server_to_client: [u8; SESSION_KEY_LEN],
    sealed: Vec<u8>,
}

impl ConnectToken {
    /// The protocol id it was issued for.
    pub fn protocol_id(&self) -> u64 {
        self.protocol_id
    }

    /// The client it was issued to.
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// When it was issued, in seconds since the Unix epoch.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// When it stops being accepted, in seconds since the Unix epoch.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// Whether servers refuse it at `unix_now`.
    pub fn is_expired(&self, unix_now: u64) -> bool {
        unix_now >= self.expires
    }

    /// The server addresses it is valid for, in the order to try them.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The layout in `engine/PROTOCOL.md` ("Connect tokens").
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; 1 + 8 * 4 + 1 + 19 * MAX_TOKEN_SERVERS + 64 + 2 + MAX_SEALED_LEN];
        let mut w = Writer::new(&mut out);
        let len = (|| {
            w.u8(TOKEN_VERSION)?;
            w.u64(self.protocol_id)?;
            w.u64(self.client_id.0)?;
            w.u64(self.created)?;
            w.u64(self.expires)?;
            write_addresses(&mut w, &self.servers)?;
            w.put(&self.client_to_server)?;
            w.put(&self.server_to_client)?;
            w.u16(self.sealed.len() as u16)?;
            w.put(&self.sealed)?;
            Ok::<usize, crate::wire::BufferTooSmall>(w.position())
        })()
        // A token built by `issue` or `from_bytes` respects every bound, so it always fits.
        .unwrap_or(0);
        out.truncate(len);
        out
    }

    /// Parses [`to_bytes`](Self::to_bytes)' output. Any bytes give an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenError> {
        let mut r = Reader::new(bytes);
        let parse = |r: &mut Reader<'_>| -> Result<Self, DecodeError> {
            if r.u8()? != TOKEN_VERSION {
                return Err(DecodeError::UnknownKind(0));
            }
            let protocol_id = r.u64()?;
            let client_id = ClientId(r.u64()?);
            let created = r.u64()?;
            let expires = r.u64()?;
            let servers = read_addresses(r)?;
            let client_to_server = r.array()?;
            let server_to_client = r.array()?;
            let len = usize::from(r.u16()?);
            if !(SEALED_HEADER_LEN + TAG_LEN..=MAX_SEALED_LEN).contains(&len) {
                return Err(DecodeError::LengthOverrun);
            }
            let sealed = r.take(len)?.to_vec();
            r.finish()?;
            Ok(Self {
                protocol_id,
                client_id,
                created,
                expires,
                servers,
                client_to_server,
                server_to_client,
                sealed,
            })
        };
        parse(&mut r).map_err(|_| TokenError::Malformed)
    }

    /// The sealed part, sent in connection requests.
    pub(crate) fn sealed(&self) -> &[u8] {
        &self.sealed
    }

    pub(crate) fn keys(&self) -> (&[u8; SESSION_KEY_LEN], &[u8; SESSION_KEY_LEN]) {
        (&self.client_to_server, &self.server_to_client)
    }
}

impl std::fmt::Debug for ConnectToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectToken")
            .field("protocol_id", &self.protocol_id)
            .field("client_id", &self.client_id)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// What a server checks a sealed token against.
#[derive(Clone, Copy, Debug)]
pub struct TokenCheck<'a> {
    /// The server's protocol id.
    pub protocol_id: u64,
    /// Seconds since the Unix epoch.
    pub unix_now: u64,
    /// The addresses this server is reached at; the token must list one of them.
    pub server_addresses: &'a [SocketAddr],
}

/// A sealed token that opened and passed every check.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    client_id: ClientId,
    expires: u64,
    user_data: Vec<u8>,
    client_to_server: [u8; SESSION_KEY_LEN],
    server_to_client: [u8; SESSION_KEY_LEN],
    tag: [u8; TAG_LEN],
}

impl VerifiedToken {
    /// The client it was issued to.
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// When it stops being accepted, in seconds since the Unix epoch.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// The backend's user data.
    pub fn user_data(&self) -> &[u8] {
        &self.user_data
    }

    pub(crate) fn keys(&self) -> (&[u8; SESSION_KEY_LEN], &[u8; SESSION_KEY_LEN]) {
        (&self.client_to_server, &self.server_to_client)
    }

    /// The seal's tag: unique per token, names it in the used-token table.
    pub(crate) fn tag(&self) -> [u8; TAG_LEN] {
        self.tag
    }

    pub(crate) fn into_user_data(self) -> Vec<u8> {
        self.user_data
    }
}

impl std::fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("client_id", &self.client_id)
            .field("expires", &self.expires)
            .field("user_data", &self.user_data.len())
            .finish_non_exhaustive()
    }
}

/// Opens the sealed part of a token (as a client sends it) and checks it: at most one AEAD
/// decryption, after the cheap checks on the authenticated clear fields.
pub fn verify_token(
    key: &PrivateKey,
    sealed: &[u8],
    check: &TokenCheck<'_>,
) -> Result<VerifiedToken, TokenError> {
    if sealed.len() < SEALED_HEADER_LEN + TAG_LEN || sealed.len() > MAX_SEALED_LEN {
        return Err(TokenError::Malformed);
    }
    let mut r = Reader::new(sealed);
    let (version, protocol_id, expires, nonce) = (|| {
        let version = r.u8()?;
        let protocol_id = r.u64()?;
        let _created = r.u64()?;
        let expires = r.u64()?;
        let nonce: [u8; NONCE_LEN] = r.array()?;
        Ok::<_, DecodeError>((version, protocol_id, expires, nonce))
    })()
    .map_err(|_| TokenError::Malformed)?;
    if version != TOKEN_VERSION {
        return Err(TokenError::Malformed);
    }
    if protocol_id != check.protocol_id {
        return Err(TokenError::WrongProtocol);
    }
    if check.unix_now >= expires {
        return Err(TokenError::Expired);
    }
    let mut buf = [0u8; MAX_SEALED_LEN];
    let buf = &mut buf[..sealed.len()];
    buf.copy_from_slice(sealed);
    let (header, ciphertext) = buf.split_at_mut(SEALED_HEADER_LEN);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&ciphertext[ciphertext.len() - TAG_LEN..]);
    let plaintext = seal_key(key)
        .open_in_place(
            nonce_from(&nonce),
            Aad::from(&header[..SEALED_AD_LEN]),
            ciphertext,
        )
        .map_err(|_| TokenError::Invalid)?;
    let mut r = Reader::new(plaintext);
    let opened = (|| {
        let client_id = ClientId(r.u64()?);
        let servers = read_addresses(&mut r)?;
        let client_to_server = r.array()?;
        let server_to_client = r.array()?;
        let len = usize::from(r.u16()?);
        if len > MAX_USER_DATA {
            return Err(DecodeError::LengthOverrun);
        }
        let user_data = r.take(len)?.to_vec();
        r.finish()?;
        Ok::<_, DecodeError>((
            servers,
            VerifiedToken {
                client_id,
                expires,
                user_data,
                client_to_server,
                server_to_client,
                tag,
            },
        ))
    })();
    // Only the key holder can seal, so a plaintext that does not parse is a backend bug.
    let (servers, token) = opened.map_err(|_| TokenError::Malformed)?;
    if !servers.iter().any(|s| check.server_addresses.contains(s)) {
        return Err(TokenError::WrongServer);
    }
    Ok(token)
}

/// Why [`TokenSpec::issue`] refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum IssueError {
    /// A token lists 1 to [`MAX_TOKEN_SERVERS`] server addresses.
    #[error("a token lists 1 to {MAX_TOKEN_SERVERS} server addresses, not {0}")]
    ServerCount(usize),
    /// More than [`MAX_USER_DATA`] bytes of user data.
    #[error("user data of {0} bytes exceeds the {MAX_USER_DATA}-byte limit")]
    UserDataTooLong(usize),
    /// The AEAD refused to seal (never happens with these sizes).
    #[error("the token could not be sealed")]
    Seal,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// The bytes are not a token of this version.
    #[error("not a connect token of this version")]
    Malformed,
    /// The seal did not open: another key, or changed bytes.
    #[error("the token was not sealed with this server's key, or was altered")]
    Invalid,
    /// Issued for another protocol id.
    #[error("the token was issued for another protocol id")]
    WrongProtocol,
    /// Past its expiry time.
    #[error("the token has expired; ask the backend for a new one")]
    Expired,
    /// Lists none of this server's addresses.
    #[error("the token is not valid for this server's address")]
    WrongServer,
}

fn seal_key(key: &PrivateKey) -> LessSafeKey {
    // A 32-byte key is always the right length for ChaCha20-Poly1305.
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, key.as_bytes());
    LessSafeKey::new(unbound.unwrap_or_else(|_| unreachable!("32-byte ChaCha20 key")))
}

fn nonce_from(bytes: &[u8; NONCE_LEN]) -> Nonce {
    Nonce::assume_unique_for_key(*bytes)
}

const _: () = assert!(aead::NONCE_LEN == NONCE_LEN);

fn write_addresses(
    w: &mut Writer<'_>,
    servers: &[SocketAddr],
) -> Result<(), crate::wire::BufferTooSmall> {
    w.u8(servers.len() as u8)?;
    for server in servers {
        match server.ip() {
            IpAddr::V4(ip) => {
                w.u8(4)?;
                w.put(&ip.octets())?;
            }
            IpAddr::V6(ip) => {
                w.u8(6)?;
                w.put(&ip.octets())?;
            }
        }
        w.u16(server.port())?;
    }
    Ok(())
}

fn read_addresses(r: &mut Reader<'_>) -> Result<Vec<SocketAddr>, DecodeError> {
    let count = usize::from(r.u8()?);
    if count == 0 || count > MAX_TOKEN_SERVERS {
        return Err(DecodeError::LengthOverrun);
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let ip = match r.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
            other => return Err(DecodeError::UnknownKind(other)),
        };
        out.push(SocketAddr::new(ip, r.u16()?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TokenSpec {
        TokenSpec {
            user_data: vec![7; 40],
            ..TokenSpec::new(42, ClientId(9), vec!["10.0.0.1:7777".parse().unwrap()])
        }
    }

    fn check(unix_now: u64, servers: &[SocketAddr]) -> TokenCheck<'_> {
        TokenCheck {
            protocol_id: 42,
            unix_now,
            server_addresses: servers,
        }
    }

    #[test]
    fn issued_tokens_round_trip_and_verify() {
        let key = PrivateKey::generate();
        let token = spec().issue(&key, 1000).unwrap();
        let parsed = ConnectToken::from_bytes(&token.to_bytes()).unwrap();
        assert_eq!(parsed, token);
        assert_eq!(token.expires(), 1030);
        let servers = ["10.0.0.1:7777".parse().unwrap()];
        let verified = verify_token(&key, token.sealed(), &check(1001, &servers)).unwrap();
        assert_eq!(verified.client_id(), ClientId(9));
        assert_eq!(verified.user_data(), &[7; 40][..]);
        assert_eq!(verified.keys(), token.keys());
    }

    #[test]
    fn every_check_refuses() {
        let key = PrivateKey::generate();
        let token = spec().issue(&key, 1000).unwrap();
        let servers = ["10.0.0.1:7777".parse().unwrap()];
        let other = ["10.0.0.1:7778".parse().unwrap()];
        let sealed = token.sealed();
        assert_eq!(
            verify_token(&PrivateKey::generate(), sealed, &check(1001, &servers)),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify_token(&key, sealed, &check(1030, &servers)),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_token(&key, sealed, &check(1001, &other)),
            Err(TokenError::WrongServer)
        );
        for i in 0..sealed.len() {
            let mut bent = sealed.to_vec();
            bent[i] ^= 1;
            assert!(
                verify_token(&key, &bent, &check(1001, &servers)).is_err(),
                "byte {i}"
            );
        }
        for cut in 0..sealed.len() {
            assert!(verify_token(&key, &sealed[..cut], &check(1001, &servers)).is_err());
        }
        let bytes = token.to_bytes();
        for cut in 0..bytes.len() {
            assert!(ConnectToken::from_bytes(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn issue_refuses_bad_specs() {
        let key = PrivateKey::generate();
        let mut bad = spec();
        bad.servers.clear();
        assert_eq!(bad.issue(&key, 0), Err(IssueError::ServerCount(0)));
        let mut bad = spec();
        bad.user_data = vec![0; MAX_USER_DATA + 1];
        assert_eq!(bad.issue(&key, 0), Err(IssueError::UserDataTooLong(257)));
        let mut full = spec();
        full.servers = vec!["[::1]:1".parse().unwrap(); MAX_TOKEN_SERVERS];
        full.user_data = vec![1; MAX_USER_DATA];
        let token = full.issue(&key, 0).unwrap();
        assert_eq!(token.sealed().len(), MAX_SEALED_LEN);
    }
}
