//! Secret values sealed to the conductor. The CLI encrypts each value to
//! the conductor's ML-KEM-768 encapsulation key (FIPS 203) before it signs
//! the manifest, so the signed bytes, the audit log, the store and every
//! API answer hold only ciphertext; the conductor opens a value only to
//! build a node's assignments, which travel inside TLS.
//!
//! A sealed value is `mlkem768:` and the hex of the KEM ciphertext (1088
//! bytes) followed by the value under ChaCha20-Poly1305. The AEAD key is
//! the KEM's shared secret: 32 bytes made fresh by each encapsulation, used
//! once, so the nonce is fixed at zero. The additional data binds the app
//! and variable name: a sealed value moved to another app or variable does
//! not open. Both primitives come from aws-lc-rs, the library that already
//! does TLS here.

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, EncapsulationKey, ML_KEM_768};

/// Prefix of a sealed secret value.
pub const SEALED_PREFIX: &str = "mlkem768:";
/// ML-KEM-768 sizes (FIPS 203).
pub const ENCAPSULATION_KEY_LEN: usize = 1184;
pub const CIPHERTEXT_LEN: usize = 1088;
/// Domain separation of the additional data.
const AAD_CONTEXT: &[u8] = b"skr8tr/secret/v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("not a sealed value (`{SEALED_PREFIX}…`)")]
    NotSealed,
    #[error("the sealed value is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the sealed value does not open with this conductor's key (sealed to another \
         cluster, for another app or variable, or altered)"
    )]
    DoesNotOpen,
    #[error("the conductor's sealing key is not an ML-KEM-768 key")]
    BadKey,
    #[error("the crypto library failed")]
    Crypto,
}

/// Whether a secret value in a manifest is sealed.
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

fn aad(app: &str, name: &str) -> Vec<u8> {
    let mut a = AAD_CONTEXT.to_vec();
    for part in [app, name] {
        a.extend_from_slice(&(part.len() as u64).to_le_bytes());
        a.extend_from_slice(part.as_bytes());
    }
    a
}

/// The public half: what the CLI seals to (`PingReply::sealing_key`).
pub struct SealingKey(EncapsulationKey);

impl SealingKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<SealingKey, SealError> {
        EncapsulationKey::new(&ML_KEM_768, bytes)
            .map(SealingKey)
            .map_err(|_| SealError::BadKey)
    }

    /// Seals `value` of secret `name` of `app`.
    pub fn seal(&self, app: &str, name: &str, value: &str) -> Result<String, SealError> {
        let (ciphertext, shared) = self.0.encapsulate().map_err(|_| SealError::Crypto)?;
        let key =
            UnboundKey::new(&CHACHA20_POLY1305, shared.as_ref()).map_err(|_| SealError::Crypto)?;
        let mut body = value.as_bytes().to_vec();
        LessSafeKey::new(key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(aad(app, name)),
                &mut body,
            )
            .map_err(|_| SealError::Crypto)?;
        let mut all = ciphertext.as_ref().to_vec();
        all.extend_from_slice(&body);
        Ok(format!("{SEALED_PREFIX}{}", crate::hex::encode(&all)))
    }
}

/// The conductor's private half (`DATA/conductor.kem`, 0600).
pub struct OpeningKey {
    key: DecapsulationKey,
    public: Vec<u8>,
}

impl OpeningKey {
    pub fn generate() -> Result<OpeningKey, SealError> {
        let key = DecapsulationKey::generate(&ML_KEM_768).map_err(|_| SealError::Crypto)?;
        let public = key
            .encapsulation_key()
            .and_then(|k| k.key_bytes())
            .map_err(|_| SealError::Crypto)?
            .as_ref()
            .to_vec();
        Ok(OpeningKey { key, public })
    }

    /// The key as stored: the decapsulation key's bytes, then the
    /// encapsulation key's (which aws-lc cannot derive from the former).
    pub fn to_bytes(&self) -> Result<Vec<u8>, SealError> {
        let mut out = self
            .key
            .key_bytes()
            .map_err(|_| SealError::Crypto)?
            .as_ref()
            .to_vec();
        out.extend_from_slice(&self.public);
        Ok(out)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<OpeningKey, SealError> {
        let split = bytes
            .len()
            .checked_sub(ENCAPSULATION_KEY_LEN)
            .ok_or(SealError::BadKey)?;
        let (private, public) = bytes.split_at(split);
        let key = DecapsulationKey::new(&ML_KEM_768, private).map_err(|_| SealError::BadKey)?;
        SealingKey::from_bytes(public)?;
        Ok(OpeningKey {
            key,
            public: public.to_vec(),
        })
    }

    /// The encapsulation key's bytes, which clients seal to.
    pub fn sealing_key(&self) -> &[u8] {
        &self.public
    }

    /// Opens a value [`SealingKey::seal`] sealed for `app`/`name`.
    pub fn open(&self, app: &str, name: &str, sealed: &str) -> Result<String, SealError> {
        let hex = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SealError::NotSealed)?;
        let bytes = crate::hex::decode(hex).ok_or(SealError::Malformed("not hex"))?;
        if bytes.len() < CIPHERTEXT_LEN + 16 {
            return Err(SealError::Malformed("too short"));
        }
        let (kem, body) = bytes.split_at(CIPHERTEXT_LEN);
        let shared = self
            .key
            .decapsulate(Ciphertext::from(kem))
            .map_err(|_| SealError::DoesNotOpen)?;
        let key =
            UnboundKey::new(&CHACHA20_POLY1305, shared.as_ref()).map_err(|_| SealError::Crypto)?;
        let mut body = body.to_vec();
        let plain = LessSafeKey::new(key)
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(aad(app, name)),
                &mut body,
            )
            .map_err(|_| SealError::DoesNotOpen)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Malformed("not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_key_app_and_name() {
        let conductor = OpeningKey::generate().unwrap();
        let to = SealingKey::from_bytes(conductor.sealing_key()).unwrap();
        let sealed = to.seal("web", "DB_PASS", "hunter2").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            conductor.open("web", "DB_PASS", &sealed).unwrap(),
            "hunter2"
        );
        // Sealing twice gives two ciphertexts.
        assert_ne!(to.seal("web", "DB_PASS", "hunter2").unwrap(), sealed);
        // Moved to another app or variable, or opened by another key.
        assert_eq!(
            conductor.open("api", "DB_PASS", &sealed),
            Err(SealError::DoesNotOpen)
        );
        assert_eq!(
            conductor.open("web", "OTHER", &sealed),
            Err(SealError::DoesNotOpen)
        );
        let other = OpeningKey::generate().unwrap();
        assert_eq!(
            other.open("web", "DB_PASS", &sealed),
            Err(SealError::DoesNotOpen)
        );
        // Altered anywhere: in the KEM ciphertext or the AEAD part.
        for at in [SEALED_PREFIX.len() + 10, sealed.len() - 3] {
            let mut bad = sealed.clone().into_bytes();
            bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
            let bad = String::from_utf8(bad).unwrap();
            assert_eq!(
                conductor.open("web", "DB_PASS", &bad),
                Err(SealError::DoesNotOpen)
            );
        }
        assert_eq!(
            conductor.open("web", "DB_PASS", "hunter2"),
            Err(SealError::NotSealed)
        );
        assert!(matches!(
            conductor.open("web", "DB_PASS", "mlkem768:abcd"),
            Err(SealError::Malformed(_))
        ));
        // The stored key reads back and still opens.
        let again = OpeningKey::from_bytes(&conductor.to_bytes().unwrap()).unwrap();
        assert_eq!(again.open("web", "DB_PASS", &sealed).unwrap(), "hunter2");
        assert_eq!(again.sealing_key(), conductor.sealing_key());
        assert!(OpeningKey::from_bytes(&[0; 100]).is_err());
        assert!(SealingKey::from_bytes(&[0; 10]).is_err());
    }
}
