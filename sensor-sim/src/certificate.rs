//! The hub's QUIC certificate, kept in its data directory so that sensors' pins survive hub
//! restarts.
//!
//! The engine's default generates a new self-signed certificate at every start, so a pinned
//! fingerprint would go stale with each restart. The hub instead generates one (rcgen) on its
//! first QUIC start, writes it next to the database, and loads it on every later start.

use std::path::{Path, PathBuf};

use thiserror::Error;
use tickwire::ServerCertificate;

/// The certificate file in the data directory (PEM).
pub const CERT_FILE: &str = "quic-cert.pem";
/// Its private key (PEM, PKCS#8), readable by the owner only.
pub const KEY_FILE: &str = "quic-key.pem";

/// The certificate could not be made or saved.
#[derive(Debug, Error)]
pub enum CertificateError {
    /// rcgen could not generate it.
    #[error("could not generate the hub's QUIC certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("could not write {}: {source}: check that the data directory is writable", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// The hub's certificate in `data_dir`, generated (self-signed, for `localhost` and `names`)
/// if it does not exist yet.
pub fn persistent(
    data_dir: &Path,
    names: &[String],
) -> Result<ServerCertificate, CertificateError> {
    let cert = data_dir.join(CERT_FILE);
    let key = data_dir.join(KEY_FILE);
    if !(cert.exists() && key.exists()) {
        let mut sans = vec!["localhost".to_owned()];
        sans.extend(names.iter().cloned());
        let generated = rcgen::generate_simple_self_signed(sans)?;
        let write = |path: &Path, text: String| {
            write_private(path, text.as_bytes()).map_err(|source| CertificateError::Write {
                path: path.to_path_buf(),
                source,
            })
        };
        std::fs::create_dir_all(data_dir).map_err(|source| CertificateError::Write {
            path: data_dir.to_path_buf(),
            source,
        })?;
        write(&key, generated.key_pair.serialize_pem())?;
        write(&cert, generated.cert.pem())?;
    }
    Ok(ServerCertificate::Pem { cert, key })
}

/// Writes `bytes` to a new file only its owner can read (on Unix).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_generated_once_and_then_reused() {
        let dir = std::env::temp_dir().join(format!("sensor-sim-cert-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = persistent(&dir, &[]).unwrap();
        let pem = std::fs::read(dir.join(CERT_FILE)).unwrap();
        assert_eq!(persistent(&dir, &[]).unwrap(), first);
        assert_eq!(std::fs::read(dir.join(CERT_FILE)).unwrap(), pem);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
