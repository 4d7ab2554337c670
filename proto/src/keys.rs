//! ML-DSA-65 key pairs and their files.
//!
//! A secret key is stored as PKCS#8 PEM in the 32-byte seed form and a public
//! key as SPKI PEM — the encodings current OpenSSL uses for ML-DSA — so
//! standard tools can read them. Secret key files are mode 0600 and are
//! refused when group or others can access them. A key is named everywhere
//! by its [`Fingerprint`].

use ml_dsa::{
    KeyExport, MlDsa65, Signature, SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use zeroize::Zeroizing;

/// Bytes of an encoded ML-DSA-65 public key.
pub const PUBLIC_KEY_LEN: usize = 1952;
/// Bytes of an ML-DSA-65 signature.
pub const SIGNATURE_LEN: usize = 3309;
/// Key files are small; anything larger is not a key.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// File names `skr8tr keygen` writes in its directory.
pub const SECRET_KEY_FILE: &str = "signing.sec";
pub const PUBLIC_KEY_FILE: &str = "signing.pub";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error("signing failed (context string too long or no randomness)")]
    Sign,
    #[error("not an ML-DSA-65 public key: expected {PUBLIC_KEY_LEN} bytes, got {0}")]
    PublicKeyLength(usize),
    #[error("not an ML-DSA-65 {what} in PEM form: {reason}")]
    Pem { what: &'static str, reason: String },
}

/// An ML-DSA-65 signing key. Its seed is wiped from memory on drop.
pub struct SecretKey {
    inner: SigningKey<MlDsa65>,
}

impl SecretKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(SecretKey::from_seed(&seed))
    }

    /// The key a 32-byte seed determines (FIPS 204 `ML-DSA.KeyGen_internal`).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey {
            inner: SigningKey::from_seed(&(*seed).into()),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::new(self.inner.expanded_key().verifying_key())
    }

    /// A hedged (randomized) signature over `message` under `context`, as
    /// FIPS 204 recommends.
    pub fn sign(&self, message: &[u8], context: &[u8]) -> Result<Vec<u8>, KeyError> {
        let sig = self
            .inner
            .expanded_key()
            .sign_randomized(message, context, &mut getrandom::SysRng)
            .map_err(|_| KeyError::Sign)?;
        Ok(sig.encode().to_vec())
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), seed form.
    pub fn to_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.inner
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Pem {
                what: "secret key",
                reason: e.to_string(),
            })
    }

    pub fn from_pem(text: &str) -> Result<SecretKey, KeyError> {
        SigningKey::<MlDsa65>::from_pkcs8_pem(text)
            .map(|inner| SecretKey { inner })
            .map_err(|e| KeyError::Pem {
                what: "secret key",
                reason: e.to_string(),
            })
    }

    /// The 32-byte seed; for tests and key escrow only.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.inner.to_bytes().into())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public().fingerprint())
    }
}

/// An ML-DSA-65 verifying key, decoded once (decoding costs about as much as
/// a verification, so keep these, not bytes).
#[derive(Clone)]
pub struct PublicKey {
    inner: VerifyingKey<MlDsa65>,
    fingerprint: Fingerprint,
}

impl PublicKey {
    fn new(inner: VerifyingKey<MlDsa65>) -> PublicKey {
        let fingerprint = Fingerprint::of(&inner.encode());
        PublicKey { inner, fingerprint }
    }

    /// From the raw 1952-byte FIPS 204 encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let encoded = bytes
            .try_into()
            .map_err(|_| KeyError::PublicKeyLength(bytes.len()))?;
        Ok(PublicKey::new(VerifyingKey::decode(encoded)))
    }

    /// The raw 1952-byte FIPS 204 encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.encode().to_vec()
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Whether `signature` is valid for `message` under `context`.
    pub fn verify(&self, message: &[u8], context: &[u8], signature: &[u8]) -> bool {
        match Signature::<MlDsa65>::try_from(signature) {
            Ok(sig) => self.inner.verify_with_context(message, context, &sig),
            Err(_) => false,
        }
    }

    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Pem {
                what: "public key",
                reason: e.to_string(),
            })
    }

    pub fn from_pem(text: &str) -> Result<PublicKey, KeyError> {
        VerifyingKey::<MlDsa65>::from_public_key_pem(text)
            .map(PublicKey::new)
            .map_err(|e| KeyError::Pem {
                what: "public key",
                reason: e.to_string(),
            })
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &PublicKey) -> bool {
        self.inner.encode() == other.inner.encode()
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint)
    }
}

/// The first 8 bytes of SHA-256 over the encoded public key, shown as 16 hex
/// digits: short enough to read aloud, long enough that operators' keys
/// never collide by accident.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 8]);

impl Fingerprint {
    pub fn of(encoded_public_key: &[u8]) -> Fingerprint {
        let digest = Sha256::digest(encoded_public_key);
        let mut out = [0u8; 8];
        out.copy_from_slice(&digest[..8]);
        Fingerprint(out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(s: &str) -> Result<Fingerprint, String> {
        let bytes = crate::hex::decode(s)
            .filter(|b| b.len() == 8)
            .ok_or_else(|| format!("`{s}` is not a key fingerprint (16 hex digits)"))?;
        let mut out = [0u8; 8];
        out.copy_from_slice(&bytes);
        Ok(Fingerprint(out))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists; pass --force to replace it (the old key is lost)")]
    Exists { path: PathBuf },
    #[error(
        "{path} is a secret key that group or others can access (mode {mode:04o}); \
         fix it with `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path} is larger than any key file ({size} bytes)")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{path} holds a secret key; pass the public key ({PUBLIC_KEY_FILE}) instead")]
    SecretNotPublic { path: PathBuf },
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: KeyError },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `dir/signing.sec` (mode 0600) and `dir/signing.pub`, creating `dir`
/// (mode 0700) if needed. Refuses to replace either file unless `force`.
pub fn write_key_pair(
    dir: &Path,
    key: &SecretKey,
    force: bool,
) -> Result<(PathBuf, PathBuf), KeyFileError> {
    write_key_files(dir, SECRET_KEY_FILE, PUBLIC_KEY_FILE, key, force)
}

/// [`write_key_pair`] with other file names (the conductor's own key).
pub fn write_key_files(
    dir: &Path,
    secret_name: &str,
    public_name: &str,
    key: &SecretKey,
    force: bool,
) -> Result<(PathBuf, PathBuf), KeyFileError> {
    let secret_path = dir.join(secret_name);
    let public_path = dir.join(public_name);
    if !force {
        for path in [&secret_path, &public_path] {
            if path.exists() {
                return Err(KeyFileError::Exists { path: path.clone() });
            }
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    let format = |source| KeyFileError::Format {
        path: secret_path.clone(),
        source,
    };
    let secret_pem = key.to_pem().map_err(format)?;
    let public_pem = key.public().to_pem().map_err(format)?;
    write_atomically(&secret_path, secret_pem.as_bytes(), 0o600)?;
    write_atomically(&public_path, public_pem.as_bytes(), 0o644)?;
    Ok((secret_path, public_path))
}

/// Writes a sibling temporary file with `mode` from the start, syncs it and
/// renames it over `path`: a crash leaves the old file or the new, whole.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyFileError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn read_small(path: &Path) -> Result<(fs::Metadata, Zeroizing<String>), KeyFileError> {
    let file = fs::File::open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(io_err(path))?;
    Ok((meta, text))
}

/// Reads a secret key file, refusing one that group or others can access.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    let (meta, text) = read_small(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    SecretKey::from_pem(&text).map_err(|source| KeyFileError::Format {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a public key file.
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyFileError> {
    let (_, text) = read_small(path)?;
    if text.contains("PRIVATE KEY-----") {
        return Err(KeyFileError::SecretNotPublic {
            path: path.to_path_buf(),
        });
    }
    PublicKey::from_pem(&text).map_err(|source| KeyFileError::Format {
        path: path.to_path_buf(),
        source,
    })
}
