//! The server's private key: 32 random bytes shared by the token backend and the servers.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rand::{CryptoRng, SeedableRng};
use thiserror::Error;

/// Length of a [`PrivateKey`] in bytes.
pub const KEY_LEN: usize = 32;

/// The key that seals the private part of connect tokens.
///
/// The backend that issues tokens and every server that accepts them hold the same key; clients
/// never see it. `Debug` does not print it.
///
/// **Key file format**: the 32 bytes as 64 hexadecimal digits (either case) on one line; blank
/// space around them (a trailing newline) is ignored. [`save`](Self::save) writes lowercase
/// digits and a newline, with mode `0600` on Unix.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey([u8; KEY_LEN]);

impl PrivateKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::StdRng::from_os_rng();
        Self::generate_with(&mut rng)
    }

    /// A fresh key from `rng` (seed it only in tests).
    pub fn generate_with(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key as 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(KEY_LEN * 2);
        for byte in self.0 {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        out
    }

    /// Parses 64 hexadecimal digits (surrounding blank space is ignored).
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        let text = text.trim();
        if text.len() != KEY_LEN * 2 {
            return Err(KeyParseError::Length(text.len()));
        }
        let mut bytes = [0u8; KEY_LEN];
        for (out, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let (Some(high), Some(low)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(KeyParseError::NotHex);
            };
            *out = high << 4 | low;
        }
        Ok(Self(bytes))
    }

    /// Reads a key file (see the type's docs for the format).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_hex(&text).map_err(|source| KeyFileError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes a key file, replacing any file at `path`; readable by the owner only on Unix.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), KeyFileError> {
        let path = path.as_ref();
        let io_error = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io_error)?;
        io::Write::write_all(&mut file, format!("{}\n", self.to_hex()).as_bytes()).map_err(io_error)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// Why a key's text was refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum KeyParseError {
    /// Not 64 characters once blank space is trimmed.
    #[error("a key is 64 hexadecimal digits, found {0} characters")]
    Length(usize),
    /// A character that is not a hexadecimal digit.
    #[error("a key may contain only hexadecimal digits 0-9 and a-f")]
    NotHex,
}

/// Why a key file could not be read or written.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// The file could not be opened, read or written.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file does not hold a key.
    #[error("key file {}: {source}; create one with PrivateKey::generate().save(..) (the connect_token example: `keygen`)", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        #[source]
        source: KeyParseError,
    },
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        let key = PrivateKey::generate_with(&mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(PrivateKey::from_hex(&key.to_hex()), Ok(key.clone()));
        assert_eq!(
            PrivateKey::from_hex(&format!("  {}\n", key.to_hex().to_uppercase())),
            Ok(key)
        );
        assert_eq!(PrivateKey::from_hex("abc"), Err(KeyParseError::Length(3)));
        assert_eq!(
            PrivateKey::from_hex(&"g".repeat(64)),
            Err(KeyParseError::NotHex)
        );
    }

    #[test]
    fn files_round_trip() {
        let dir = std::env::temp_dir().join(format!("tickwire-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.key");
        let key = PrivateKey::generate();
        key.save(&path).unwrap();
        assert_eq!(PrivateKey::load(&path).unwrap(), key);
        std::fs::write(&path, "nope").unwrap();
        assert!(matches!(
            PrivateKey::load(&path),
            Err(KeyFileError::Parse { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
