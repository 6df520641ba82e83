//! The on-disk format of a backup (`ctxctl snapshot save DIR`, `ctxd restore --from
//! DIR`): one snapshot file per shard, the meta shard included, and `manifest.json`
//! describing them. Shared by the tool that writes a backup and the server that
//! restores it.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";

/// The manifest format this version writes and reads.
pub const FORMAT: u32 = 1;

/// `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The version of `ctxctl` that wrote it.
    pub tool_version: String,
    /// When the save started and ended (milliseconds since the Unix epoch).
    pub started_ms: u64,
    pub finished_ms: u64,
    /// The routing table's version when the save started.
    pub routing_version: u64,
    /// One entry per shard, by shard id.
    pub shards: Vec<ShardFile>,
}

/// One shard's file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ShardFile {
    pub shard_id: u64,
    /// File name inside the backup directory.
    pub file: String,
    /// Bytes, sha256 (hex) and the snapshot format's own xxh3-64 of the file.
    pub bytes: u64,
    pub sha256: String,
    pub xxh3: u64,
    /// The applied index and term the shard's state was taken at.
    pub applied_index: u64,
    pub applied_term: u64,
    /// The shard's epoch then.
    pub conf_ver: u64,
    pub ring_ver: u64,
    /// Data records and their digest, as a replica loaded from the file reports it
    /// (`Status` with digests).
    pub keys: u64,
    pub data_digest: u64,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::invalid("backup", format!("cannot read {}: {e}", path.display()))
        })?;
        let m: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::invalid("backup", format!("{}: {e}", path.display())))?;
        if m.format != FORMAT {
            return Err(Error::invalid(
                "backup",
                format!(
                    "{} has format {}; this version reads {FORMAT}",
                    path.display(),
                    m.format
                ),
            ));
        }
        Ok(m)
    }

    /// Checks every file against the manifest (size and sha256); the entries that do
    /// not match, with why.
    pub fn check_files(&self, dir: &Path) -> Vec<(u64, String)> {
        self.shards
            .iter()
            .filter_map(|s| s.check(dir).err().map(|e| (s.shard_id, e)))
            .collect()
    }
}

impl ShardFile {
    /// Whether `dir/file` has the recorded size and sha256.
    pub fn check(&self, dir: &Path) -> std::result::Result<(), String> {
        if self.file.contains('/') || self.file.contains("..") {
            return Err(format!("{}: not a file name", self.file));
        }
        let path = dir.join(&self.file);
        let (bytes, sha) = sha256_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if bytes != self.bytes {
            return Err(format!(
                "{}: {bytes} bytes, the manifest says {}",
                path.display(),
                self.bytes
            ));
        }
        if sha != self.sha256 {
            return Err(format!(
                "{}: sha256 {sha} does not match the manifest's {}",
                path.display(),
                self.sha256
            ));
        }
        Ok(())
    }
}

/// The length and sha256 (hex) of a file, read in pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    use sha2::Digest as _;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, format!("{:x}", h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_differs_from_the_manifest_is_named() {
        let dir = std::env::temp_dir().join(format!("ctxstore-backup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("shard-1.snap"), b"hello").unwrap();
        let (bytes, sha256) = sha256_file(&dir.join("shard-1.snap")).unwrap();
        assert_eq!(bytes, 5);
        assert_eq!(
            sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let entry = ShardFile {
            shard_id: 1,
            file: "shard-1.snap".into(),
            bytes,
            sha256,
            xxh3: 0,
            applied_index: 7,
            applied_term: 2,
            conf_ver: 1,
            ring_ver: 1,
            keys: 0,
            data_digest: 0,
        };
        let m = Manifest {
            format: FORMAT,
            tool_version: "t".into(),
            started_ms: 1,
            finished_ms: 2,
            routing_version: 3,
            shards: vec![
                entry.clone(),
                ShardFile {
                    file: "../x".into(),
                    ..entry
                },
            ],
        };
        std::fs::write(dir.join(MANIFEST), serde_json::to_string(&m).unwrap()).unwrap();
        let read = Manifest::read(&dir).unwrap();
        assert_eq!(read, m);
        let bad = read.check_files(&dir);
        assert_eq!(bad.len(), 1, "{bad:?}");
        std::fs::write(dir.join("shard-1.snap"), b"hellO").unwrap();
        let bad = read.check_files(&dir);
        assert!(bad[0].1.contains("does not match"), "{bad:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
