//! `ctxctl snapshot save|status`: backups of the whole cluster (docs/operations.md,
//! "Backup and restore"). The format is `ctxstore_api::backup`.

use crate::Output;
use clap::Subcommand;
use ctxstore_client::backup::{Manifest, ShardFile, FORMAT, MANIFEST};
use ctxstore_client::{Client, Error, Result};
use sha2::Digest as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum SnapshotCmd {
    /// Back up every shard, the meta shard included, into DIR (created; it must be
    /// empty). Each shard's state is taken after a ReadIndex on its leader, so every
    /// write acknowledged before the save started is in it; writes may go on
    /// meanwhile. Restore with `ctxd restore --from DIR`.
    Save { dir: PathBuf },
    /// Check a backup: every file against the manifest's size and sha256 (exit 1 on
    /// a mismatch).
    Status {
        dir: PathBuf,
        /// `table` (default) or `json`.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

pub(crate) async fn run(client: &Client, cmd: SnapshotCmd) -> Result<ExitCode> {
    match cmd {
        SnapshotCmd::Save { dir } => {
            let m = save(client, &dir).await?;
            let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
            let keys: u64 = m.shards.iter().map(|s| s.keys).sum();
            println!(
                "saved {} shards ({keys} keys, {bytes} bytes) to {} in {:.1} s",
                m.shards.len(),
                dir.display(),
                (m.finished_ms - m.started_ms) as f64 / 1000.0
            );
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCmd::Status { dir, output } => {
            let m = Manifest::read(&dir)?;
            let bad: std::collections::BTreeMap<u64, String> =
                m.check_files(&dir).into_iter().collect();
            match output {
                Output::Json => {
                    let rows: Vec<_> = m
                        .shards
                        .iter()
                        .map(|s| {
                            serde_json::json!({
                                "shard": s.shard_id, "applied_index": s.applied_index,
                                "keys": s.keys, "bytes": s.bytes,
                                "ok": !bad.contains_key(&s.shard_id),
                                "problem": bad.get(&s.shard_id),
                            })
                        })
                        .collect();
                    let doc = serde_json::json!({
                        "format": m.format, "started_ms": m.started_ms,
                        "finished_ms": m.finished_ms, "shards": rows,
                    });
                    println!("{doc}");
                }
                Output::Table => {
                    println!(
                        "backup of {} shards, format {}, saved by ctxctl {}",
                        m.shards.len(),
                        m.format,
                        m.tool_version
                    );
                    println!("SHARD  INDEX       TERM  KEYS        BYTES  CHECK");
                    for s in &m.shards {
                        let check = bad.get(&s.shard_id).map_or("ok", String::as_str);
                        println!(
                            "{:<5}  {:<10}  {:<4}  {:<10}  {:<5}  {check}",
                            s.shard_id, s.applied_index, s.applied_term, s.keys, s.bytes
                        );
                    }
                }
            }
            Ok(if bad.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::invalid("dir", format!("{what} {}: {e}", path.display()))
}

/// Saves every shard to `dir`, then the manifest.
async fn save(client: &Client, dir: &Path) -> Result<Manifest> {
    let started_ms = now_ms();
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::invalid(
            "dir",
            format!(
                "{} is not empty: a backup goes into a new directory",
                dir.display()
            ),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    let table = client.routing_table().await?;
    let mut ids: Vec<u64> = table
        .shards
        .iter()
        .filter_map(|r| r.descriptor.as_ref().map(|d| d.shard_id))
        .collect();
    ids.sort_unstable();
    let mut shards = Vec::with_capacity(ids.len());
    for id in ids {
        let mut tries = 0;
        let entry = loop {
            tries += 1;
            match save_shard(client, dir, id).await {
                Ok(e) => break e,
                // A leader change or a lost connection mid-stream: take it again.
                Err(e) if tries < 3 && e.is_retryable() => {
                    eprintln!("shard {id}: {e}; taking it again");
                }
                Err(e) => return Err(e),
            }
        };
        shards.push(entry);
    }
    // A split during the save leaves a hole in the ring: the new shard, or the
    // parent's new arcs, are not in the backup.
    let after = client.routing_table().await?;
    for route in &after.shards {
        let Some(d) = route.descriptor.as_ref() else {
            continue;
        };
        let saved = shards
            .iter()
            .find(|s: &&ShardFile| s.shard_id == d.shard_id);
        if saved.is_none_or(|s| s.ring_ver < d.ring_ver) {
            return Err(Error::FailedPrecondition(format!(
                "shard {} split or was created during the save; save again (turn automatic \
                 splits off meanwhile with `ctxctl config set split.enabled false`)",
                d.shard_id
            )));
        }
    }
    let m = Manifest {
        format: FORMAT,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        started_ms,
        finished_ms: now_ms(),
        routing_version: table.routing_version,
        shards,
    };
    let text = serde_json::to_string_pretty(&m).map_err(|e| Error::Internal(e.to_string()))?;
    write_durably(&dir.join(MANIFEST), text.as_bytes())?;
    Ok(m)
}

/// Streams one shard's file to `dir/shard-ID.snap` (through a `.tmp`), hashing it.
async fn save_shard(client: &Client, dir: &Path, id: u64) -> Result<ShardFile> {
    let name = format!("shard-{id}.snap");
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
    let mut sha = sha2::Sha256::new();
    let mut written = 0u64;
    let mut stream = client.backup_shard(id).await?;
    let info = loop {
        let chunk = stream
            .message()
            .await
            .map_err(Error::from)?
            .ok_or_else(|| {
                Error::Transport(format!("shard {id}: the backup stream ended early"))
            })?;
        if let Some(info) = chunk.done {
            break info;
        }
        f.write_all(&chunk.data)
            .map_err(|e| io("cannot write", &tmp, e))?;
        sha.update(&chunk.data);
        written += chunk.data.len() as u64;
    };
    f.sync_all().map_err(|e| io("cannot sync", &tmp, e))?;
    drop(f);
    if written != info.size {
        return Err(Error::Transport(format!(
            "shard {id}: got {written} bytes of a {}-byte file",
            info.size
        )));
    }
    let path = dir.join(&name);
    std::fs::rename(&tmp, &path).map_err(|e| io("cannot rename", &tmp, e))?;
    let desc = info.descriptor.unwrap_or_default();
    let entry = ShardFile {
        shard_id: id,
        file: name,
        bytes: written,
        sha256: format!("{:x}", sha.finalize()),
        xxh3: info.xxh3,
        applied_index: info.applied_index,
        applied_term: info.applied_term,
        conf_ver: desc.conf_ver,
        ring_ver: desc.ring_ver,
        keys: info.keys,
        data_digest: info.data_digest,
    };
    Ok(entry)
}

/// Writes `path` through a `.tmp`, synced, then renamed.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| io("cannot write", &tmp, e))?;
    f.sync_all().map_err(|e| io("cannot sync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("cannot rename", &tmp, e))
}
