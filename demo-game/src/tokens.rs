//! Key and connect-token files for secure sessions (`demo-game keygen`, `demo-game token`,
//! `server --secure --key`, `play --token`, `bots --key`): generate, mint, load, each failure
//! with a message that says what to do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tickwire::{
    ClientId, ConnectToken, IssueError, KeyFileError, PrivateKey, TokenError, TokenSpec,
};

use crate::net::{protocol_id, unix_now};

/// A key or token file could not be made or used.
#[derive(Debug, Error)]
pub enum TokenFileError {
    /// The key file is missing, unreadable or not a key.
    #[error("{source}; make one with `demo-game keygen --out FILE`")]
    Key {
        /// The engine's error, naming the file.
        #[source]
        source: KeyFileError,
    },
    /// The token file could not be read or written.
    #[error("token file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The token file does not hold a connect token.
    #[error("token file {}: {source}; mint one with `demo-game token --key FILE --server HOST:PORT --client-id N --out FILE`", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: TokenError,
    },
    /// The token can no longer start a session.
    #[error("token file {} expired {ago} s ago: mint a new one with `demo-game token` (tokens are short-lived; --valid-s sets how long)", path.display())]
    Expired {
        /// The file.
        path: PathBuf,
        /// Seconds since it expired.
        ago: u64,
    },
    /// The token does not list the server being dialled.
    #[error("token file {} is for {listed:?}, not {server}: mint one with `--server {server}`", path.display())]
    OtherServer {
        /// The file.
        path: PathBuf,
        /// The server dialled.
        server: SocketAddr,
        /// The servers the token names.
        listed: Vec<SocketAddr>,
    },
    /// The token could not be minted.
    #[error("could not mint a token: {0}")]
    Issue(#[from] IssueError),
}

/// Writes a fresh key to `path`.
pub fn generate_key(path: &Path) -> Result<(), TokenFileError> {
    PrivateKey::generate()
        .save(path)
        .map_err(|source| TokenFileError::Key { source })
}

/// Reads the key in `path`.
pub fn load_key(path: &Path) -> Result<PrivateKey, TokenFileError> {
    PrivateKey::load(path).map_err(|source| TokenFileError::Key { source })
}

/// Mints a token for `client_id` to join `server`, valid for `valid_for` from now.
pub fn mint(
    key: &PrivateKey,
    server: SocketAddr,
    client_id: u64,
    valid_for: Duration,
) -> Result<ConnectToken, TokenFileError> {
    let spec = TokenSpec {
        valid_for,
        ..TokenSpec::new(protocol_id(), ClientId(client_id), vec![server])
    };
    Ok(spec.issue(key, unix_now())?)
}

/// Writes `token` to `path`.
pub fn save_token(token: &ConnectToken, path: &Path) -> Result<(), TokenFileError> {
    std::fs::write(path, token.to_bytes()).map_err(|source| TokenFileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads the token in `path` and checks that it is still valid and names `server`.
pub fn load_token(path: &Path, server: SocketAddr) -> Result<ConnectToken, TokenFileError> {
    let bytes = std::fs::read(path).map_err(|source| TokenFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let token = ConnectToken::from_bytes(&bytes).map_err(|source| TokenFileError::Bad {
        path: path.to_owned(),
        source,
    })?;
    let now = unix_now();
    if token.is_expired(now) {
        return Err(TokenFileError::Expired {
            path: path.to_owned(),
            ago: now.saturating_sub(token.expires()),
        });
    }
    if !token.servers().contains(&server) {
        return Err(TokenFileError::OtherServer {
            path: path.to_owned(),
            server,
            listed: token.servers().to_vec(),
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_loads_back_for_its_server_only() {
        let dir = std::env::temp_dir().join(format!("demo-game-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (key_path, token_path) = (dir.join("server.key"), dir.join("client.token"));
        generate_key(&key_path).unwrap();
        let key = load_key(&key_path).unwrap();
        let server: SocketAddr = "127.0.0.1:7777".parse().unwrap();
        let token = mint(&key, server, 7, Duration::from_secs(30)).unwrap();
        save_token(&token, &token_path).unwrap();
        assert_eq!(
            load_token(&token_path, server).unwrap().client_id(),
            ClientId(7)
        );
        let other = "127.0.0.1:7778".parse().unwrap();
        assert!(matches!(
            load_token(&token_path, other),
            Err(TokenFileError::OtherServer { .. })
        ));
        std::fs::write(&token_path, b"junk").unwrap();
        assert!(matches!(
            load_token(&token_path, server),
            Err(TokenFileError::Bad { .. })
        ));
        let missing = load_key(&dir.join("missing.key")).unwrap_err().to_string();
        assert!(missing.contains("demo-game keygen"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
