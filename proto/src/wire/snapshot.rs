//! The snapshot file (`skr8tr snapshot save`): a preamble the conductor
//! signs, then the store's database file as of one consistent view.
//!
//! Layout: the 8 bytes `SKR8SNAP`, a u32 big-endian length, that many
//! bytes of postcard [`SignedSnapshotHeader`], then `db_bytes` bytes of
//! database whose SHA-256 is `db_sha256`. The header is signed with the
//! conductor's own key under [`SNAPSHOT_CONTEXT`]: `restore` checks it
//! against the `conductor.pub` among the key files it is given.

use super::seal::{seal, unseal};
use crate::command::ClusterId;
use crate::keys::{KeyError, PublicKey, SecretKey};
use serde::{Deserialize, Serialize};

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"SKR8SNAP";
pub const SNAPSHOT_CONTEXT: &[u8] = b"skr8tr/snapshot/v1";
/// Largest header a reader takes (it is a few kilobytes).
pub const MAX_SNAPSHOT_HEADER: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub cluster: ClusterId,
    pub taken_at_ms: u64,
    /// The last audit entry the copy holds, and its hash.
    pub audit_seq: u64,
    pub audit_hash: [u8; 32],
    pub db_bytes: u64,
    pub db_sha256: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedSnapshotHeader {
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl SignedSnapshotHeader {
    pub fn sign(key: &SecretKey, header: &SnapshotHeader) -> Result<Self, KeyError> {
        let (payload, signature) = seal(key, SNAPSHOT_CONTEXT, header)?;
        Ok(SignedSnapshotHeader { payload, signature })
    }

    /// The header, if `conductor` signed it.
    pub fn open(&self, conductor: &PublicKey) -> Result<SnapshotHeader, String> {
        unseal(conductor, SNAPSHOT_CONTEXT, &self.payload, &self.signature)
            .ok_or("not signed by this conductor key")?
    }

    /// The header, signature unchecked (to say what a file claims).
    pub fn claimed(&self) -> Result<SnapshotHeader, String> {
        super::decode(&self.payload)
    }

    /// The bytes before the database.
    pub fn preamble(&self) -> Vec<u8> {
        let body = super::encode(self);
        let mut out = SNAPSHOT_MAGIC.to_vec();
        out.extend((body.len() as u32).to_be_bytes());
        out.extend(body);
        out
    }

    /// Reads the preamble from the start of a snapshot file.
    pub fn read_from(r: &mut impl std::io::Read) -> Result<SignedSnapshotHeader, String> {
        let mut magic = [0u8; 12];
        r.read_exact(&mut magic)
            .map_err(|e| format!("not a skr8tr snapshot ({e})"))?;
        if &magic[..8] != SNAPSHOT_MAGIC {
            return Err("not a skr8tr snapshot (no SKR8SNAP at its start)".into());
        }
        let len = u32::from_be_bytes([magic[8], magic[9], magic[10], magic[11]]) as usize;
        if len > MAX_SNAPSHOT_HEADER {
            return Err(format!("a {len}-byte snapshot header is over the limit"));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)
            .map_err(|e| format!("the snapshot header is cut short ({e})"))?;
        super::decode(&body).map_err(|e| format!("the snapshot header is unreadable: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_header_round_trips_and_only_its_conductor_opens_it() {
        let key = SecretKey::from_seed(&[4; 32]);
        let header = SnapshotHeader {
            cluster: ClusterId([1; 16]),
            taken_at_ms: 5,
            audit_seq: 9,
            audit_hash: [2; 32],
            db_bytes: 100,
            db_sha256: [3; 32],
        };
        let signed = SignedSnapshotHeader::sign(&key, &header).unwrap();
        let bytes = signed.preamble();
        let back = SignedSnapshotHeader::read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(back.open(&key.public()).unwrap(), header);
        let other = SecretKey::from_seed(&[5; 32]);
        assert!(back.open(&other.public()).is_err());
        assert_eq!(back.claimed().unwrap(), header);
        assert!(SignedSnapshotHeader::read_from(&mut &b"NOTSNAPxxxxxxxx"[..]).is_err());
        let mut huge = SNAPSHOT_MAGIC.to_vec();
        huge.extend(u32::MAX.to_be_bytes());
        assert!(SignedSnapshotHeader::read_from(&mut huge.as_slice()).is_err());
    }
}
