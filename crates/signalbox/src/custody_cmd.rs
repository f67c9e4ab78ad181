//! `signalbox audit …` and `signalbox keyring …`, and the custody settings of `serve`: the
//! audit log checked, exported and proved straight from the database, master keys generated
//! and rotated. See docs/audit.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use server::custody::{self, KeySource};
use server::{Custody, CustodyKeys, CustodySettings};

use crate::Common;

/// The exit code of `audit verify` when the log does not verify (other failures exit 1).
pub const EXIT_TAMPERED: i32 = 2;

/// Where custody's keys come from (`serve` and the commands that need them).
#[derive(clap::Args, Debug, Default)]
pub struct KeyArgs {
    /// Keyring file (TOML; docs/audit.md): the master keys that wrap tenants' data keys
    /// [default: SIGNALBOX_MASTER_KEY, else DATA_DIR/keyring.toml, generated on first start].
    #[arg(long, env = "SIGNALBOX_KEYRING", value_name = "FILE")]
    keyring: Option<PathBuf>,
    /// A master key as `ID:BASE64` (several comma-separated, the first active), instead of a
    /// keyring file. Prefer the variable: a command-line value is visible to other local users.
    #[arg(
        long,
        env = "SIGNALBOX_MASTER_KEY",
        hide_env_values = true,
        value_name = "ID:BASE64"
    )]
    master_key: Option<String>,
    /// The audit log's Ed25519 signing key file (base64 of the 32-byte seed)
    /// [default: DATA_DIR/audit-signing.key, generated on first start].
    #[arg(long, env = "SIGNALBOX_AUDIT_SIGNING_KEY", value_name = "FILE")]
    audit_signing_key: Option<PathBuf>,
}

/// `serve`'s custody settings.
#[derive(clap::Args, Debug)]
pub struct CustodyArgs {
    #[command(flatten)]
    keys: KeyArgs,
    /// How often each tenant's audit log head is signed when it moved [default: 60s].
    #[arg(long, env = "SIGNALBOX_AUDIT_CHECKPOINT_INTERVAL", value_parser = humantime::parse_duration, value_name = "DURATION")]
    audit_checkpoint_interval: Option<Duration>,
}

fn describe(source: &KeySource) -> String {
    match source {
        KeySource::File(p) => format!("file {}", p.display()),
        KeySource::Environment => "SIGNALBOX_MASTER_KEY".to_owned(),
        KeySource::Generated(p) => format!("generated {}", p.display()),
    }
}

/// Loads (or, on first start, generates in the data directory) the keys `serve` uses.
pub fn serve_settings(
    args: &CustodyArgs,
    common: &Common,
    backend: store::Backend,
) -> anyhow::Result<CustodySettings> {
    let interval = args
        .audit_checkpoint_interval
        .unwrap_or(Duration::from_secs(60));
    if interval.is_zero() {
        bail!("audit checkpoint interval: must be more than zero");
    }
    std::fs::create_dir_all(&common.data_dir)
        .with_context(|| format!("data dir: cannot create {}", common.data_dir.display()))?;
    let (keys, keyring_source, signing_source) = custody::load_or_generate_keys(
        args.keys.keyring.as_deref(),
        args.keys.master_key.as_deref(),
        args.keys.audit_signing_key.as_deref(),
        &common.data_dir,
    )
    .map_err(|e| anyhow::anyhow!("custody keys: {e}"))?;
    for (what, source) in [
        ("keyring", &keyring_source),
        ("audit signing key", &signing_source),
    ] {
        if let KeySource::Generated(path) = source {
            tracing::warn!(path = %path.display(), "generated a new {what} (mode 0600); back it up: without it, encrypted data cannot be read and checkpoints cannot be verified");
            if backend == store::Backend::Postgres {
                tracing::warn!("replicas sharing this PostgreSQL database need the same {what}: set SIGNALBOX_KEYRING / SIGNALBOX_AUDIT_SIGNING_KEY to one shared file");
            }
        }
    }
    tracing::info!(
        keyring = %describe(&keyring_source),
        active_master_key = %keys.keyring.active().id,
        signing_key = %describe(&signing_source),
        public_key = %custody::public_key_text(&keys.signing_key.verifying_key()),
        "custody keys ready"
    );
    Ok(CustodySettings {
        keys: Some(keys),
        checkpoint_interval: interval,
        ..CustodySettings::default()
    })
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Check a tenant's whole audit log from the database: every record's hash, gapless
    /// numbering, the tree against the stored head and every checkpoint, and against
    /// checkpoints kept outside (--checkpoint) for truncation. Prints OK and the speed, or
    /// names the first bad record and exits 2.
    Verify {
        /// The tenant's id (`tn_…`) or name.
        #[arg(long)]
        tenant: String,
        /// A checkpoint kept outside the database (a note, or the JSON of GET
        /// /api/v1/audit/checkpoint); repeat for several.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// The log's public key (base64), when the signing key file is not at hand.
        #[arg(long, value_name = "BASE64")]
        public_key: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Export the latest signed checkpoint (signing the head first if it moved) for witnesses.
    Checkpoint {
        #[arg(long)]
        tenant: String,
        /// Write the note here (a new file) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Print an inclusion proof of record SEQ in the tree of SIZE records, checked before it is
    /// printed, as JSON.
    Prove {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        seq: u64,
        /// The tree size [default: the log's size now].
        #[arg(long)]
        size: Option<u64>,
    },
    /// Measure `audit verify` on a scratch SQLite database (a temporary directory, removed
    /// after): appends RECORDS synthetic records, signs a checkpoint every 100,000, then
    /// verifies REPEAT times. Prints JSON with the median records/s, reading included.
    Bench {
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        #[arg(long, default_value_t = 3)]
        repeat: u32,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum KeyringCommand {
    /// Generate a keyring with one new active master key (TOML).
    Generate {
        /// Write it here (a new file, mode 0600) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The key's id [default: k<year>-<month>].
        #[arg(long)]
        id: Option<String>,
    },
    /// After a new master key was made active in the keyring: rewrap every tenant's data keys
    /// under it. The old master key can leave the keyring once this reports no failures.
    Rewrap {
        #[command(flatten)]
        keys: KeyArgs,
    },
}

async fn tenant_id(store: &store::Store, given: &str) -> anyhow::Result<String> {
    if store.tenant(given).await?.is_some() {
        return Ok(given.to_owned());
    }
    store
        .list_tenants()
        .await?
        .into_iter()
        .find(|t| t.name == given)
        .map(|t| t.id)
        .with_context(|| format!("--tenant: no tenant '{}'", given.escape_debug()))
}

/// The signing key from the flag or the data directory; never generated here.
fn signing_key(keys: &KeyArgs, common: &Common) -> anyhow::Result<audit::SigningKey> {
    let path = keys
        .audit_signing_key
        .clone()
        .unwrap_or_else(|| common.data_dir.join(custody::SIGNING_KEY_FILE));
    custody::read_signing_key(&path).map_err(|e| {
        anyhow::anyhow!("audit signing key: {e} (set SIGNALBOX_AUDIT_SIGNING_KEY, or pass --public-key to verify)")
    })
}

/// The keyring from the flag, the environment or the data directory; never generated here.
fn keyring(keys: &KeyArgs, common: &Common) -> anyhow::Result<vault::Keyring> {
    match (&keys.keyring, &keys.master_key) {
        (Some(path), _) => custody::read_keyring(path).map_err(|e| anyhow::anyhow!("{e}")),
        (None, Some(value)) => vault::Keyring::from_env_value(value)
            .map_err(|e| anyhow::anyhow!("SIGNALBOX_MASTER_KEY: {e}")),
        (None, None) => custody::read_keyring(&common.data_dir.join(custody::KEYRING_FILE))
            .map_err(|e| anyhow::anyhow!("{e} (set SIGNALBOX_KEYRING or SIGNALBOX_MASTER_KEY)")),
    }
}

/// A checkpoint file: the note itself, or the JSON the API answers with.
fn read_checkpoint(path: &Path) -> anyhow::Result<audit::SignedCheckpoint> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--checkpoint: cannot read {}", path.display()))?;
    let note = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => value
            .get("note")
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            .with_context(|| format!("--checkpoint {}: JSON without a `note`", path.display()))?,
        Err(_) => text,
    };
    audit::SignedCheckpoint::parse(&note)
        .map_err(|e| anyhow::anyhow!("--checkpoint {}: {e}", path.display()))
}

pub async fn audit(common: Common, cmd: AuditCommand) -> anyhow::Result<()> {
    if let AuditCommand::Bench { records, repeat } = cmd {
        return bench(records, repeat).await;
    }
    let store = common.open_store().await?;
    let result = run_audit(&common, &store, cmd).await;
    store.close().await;
    match result {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(EXIT_TAMPERED),
        Err(e) => Err(e),
    }
}

/// `Ok(false)`: the log did not verify (already reported).
async fn run_audit(
    common: &Common,
    store: &store::Store,
    cmd: AuditCommand,
) -> anyhow::Result<bool> {
    match cmd {
        AuditCommand::Verify {
            tenant,
            checkpoints,
            public_key,
            keys,
        } => {
            let tenant = tenant_id(store, &tenant).await?;
            let key = match public_key {
                Some(text) => custody::parse_public_key(&text)
                    .context("--public-key: not the base64 of an Ed25519 public key")?,
                None => signing_key(&keys, common)?.verifying_key(),
            };
            let trusted = checkpoints
                .iter()
                .map(|p| read_checkpoint(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let origin = format!("{}/{tenant}", custody::DEFAULT_ORIGIN_PREFIX);
            let started = Instant::now();
            let outcome = store
                .verify_audit_log(&tenant, &origin, &key, &trusted)
                .await?;
            let elapsed = started.elapsed().as_secs_f64();
            match outcome {
                Ok(log) => {
                    let rate = log.records as f64 / elapsed.max(1e-9);
                    println!(
                        "OK tenant {tenant}: {} records, root {}, {} heads checked{}; {:.3} s, {:.0} records/s",
                        log.records,
                        hex::encode(log.root),
                        log.heads_checked,
                        log.largest_trusted
                            .map(|s| format!(" (largest trusted checkpoint: {s})"))
                            .unwrap_or_default(),
                        elapsed,
                        rate
                    );
                    Ok(true)
                }
                Err(e) => {
                    println!("FAILED tenant {tenant}: {e}");
                    Ok(false)
                }
            }
        }
        AuditCommand::Checkpoint { tenant, out, keys } => {
            let tenant = tenant_id(store, &tenant).await?;
            let settings = CustodySettings {
                keys: Some(CustodyKeys {
                    keyring: keyring(&keys, common).or_else(|_| {
                        // Signing needs no master key; a throwaway keyring stands in.
                        CustodyKeys::generate("unused").map(|k| k.keyring)
                    })?,
                    signing_key: signing_key(&keys, common)?,
                }),
                ..CustodySettings::default()
            };
            let custody = Custody::new(store.clone(), &settings)?;
            let cp = custody.checkpoint(&tenant).await?;
            match out {
                Some(path) => {
                    custody::write_private_new(&path, &cp.note)?;
                    eprintln!(
                        "checkpoint of {} records written to {}",
                        cp.size,
                        path.display()
                    );
                }
                None => print!("{}", cp.note),
            }
            Ok(true)
        }
        AuditCommand::Prove { tenant, seq, size } => {
            let tenant = tenant_id(store, &tenant).await?;
            let head = store.audit_head(&tenant).await?;
            let size = size.unwrap_or(head.size);
            if size > head.size {
                bail!("--size {size}: the log has {} records", head.size);
            }
            if seq >= size {
                bail!("--seq {seq}: not in a tree of {size} records");
            }
            let leaves = store.audit_leaf_hashes(&tenant, size).await?;
            let proof = audit::inclusion_proof(seq, &leaves)?;
            let root = audit::root_of(&leaves);
            let leaf = leaves[seq as usize];
            audit::verify_inclusion(seq, size, &leaf, &proof, &root)?;
            let checkpoint = store.audit_checkpoint(&tenant, size).await?;
            let body = serde_json::json!({
                "tenant_id": tenant,
                "seq": seq,
                "size": size,
                "leaf_hash": hex::encode(leaf),
                "root": hex::encode(root),
                "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                "checkpoint": checkpoint.map(|c| c.note),
            });
            println!("{body}");
            Ok(true)
        }
        AuditCommand::Bench { .. } => Ok(true),
    }
}

async fn bench(records: u64, repeat: u32) -> anyhow::Result<()> {
    if records == 0 || repeat == 0 {
        bail!("--records and --repeat must be more than zero");
    }
    let dir = tempfile::tempdir().context("bench: temporary directory")?;
    let store = store::Store::connect(&store::StoreOptions::sqlite_in(dir.path())).await?;
    let tenant = store
        .create_tenant("audit-bench", store::Tier::Starter)
        .await?
        .id;
    let custody = Custody::new(
        store.clone(),
        &CustodySettings {
            keys: Some(CustodyKeys::generate("bench")?),
            ..CustodySettings::default()
        },
    )?;
    let events = [
        audit::Event::Received,
        audit::Event::Redacted,
        audit::Event::Scored,
        audit::Event::Routed,
        audit::Event::Processed,
    ];
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < records {
        let n = (records - seq).min(10_000);
        let batch: Vec<store::NewAuditRecord> = (seq..seq + n)
            .map(|i| store::NewAuditRecord {
                at_ms: 1_767_225_600_000 + i as i64,
                item_id: format!("fb_{:032x}", i / 5),
                event: events[(i % 5) as usize].clone(),
                actor: "key_0195f4a2c3d47e8f9a0b1c2d3e4f5a6b".to_owned(),
                detail_hash: [(i % 251) as u8; 32],
            })
            .collect();
        store.append_audit(&tenant, &batch).await?;
        seq += n;
        if seq.is_multiple_of(100_000) || seq == records {
            custody.checkpoint(&tenant).await?;
        }
    }
    let append_s = started.elapsed().as_secs_f64();
    let mut rates = Vec::new();
    for _ in 0..repeat {
        let started = Instant::now();
        let log = custody
            .verify(&tenant, &[])
            .await?
            .map_err(|e| anyhow::anyhow!("bench log does not verify: {e}"))?;
        let elapsed = started.elapsed().as_secs_f64();
        if log.records != records {
            bail!("verified {} records of {records}", log.records);
        }
        rates.push(records as f64 / elapsed.max(1e-9));
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    store.close().await;
    println!(
        "{}",
        serde_json::json!({
            "backend": "sqlite",
            "records": records,
            "append_records_per_s": (records as f64 / append_s).round(),
            "verify_runs": repeat,
            "verify_records_per_s_median": median.round(),
            "verify_records_per_s": rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

pub async fn keyring_command(common: Common, cmd: KeyringCommand) -> anyhow::Result<()> {
    match cmd {
        KeyringCommand::Generate { out, id } => {
            let id = id.unwrap_or_else(custody::default_master_key_id);
            let text =
                custody::generate_keyring_toml(&id).map_err(|e| anyhow::anyhow!("--id: {e}"))?;
            match out {
                Some(path) => {
                    custody::write_private_new(&path, &text)?;
                    eprintln!("keyring with master key {id} written to {}", path.display());
                }
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
            Ok(())
        }
        KeyringCommand::Rewrap { keys } => {
            let keyring = keyring(&keys, &common)?;
            let store = common.open_store().await?;
            let settings = CustodySettings {
                keys: Some(CustodyKeys {
                    keyring,
                    // Rewrapping signs nothing.
                    signing_key: CustodyKeys::generate("unused")?.signing_key,
                }),
                ..CustodySettings::default()
            };
            let custody = Custody::new(store.clone(), &settings)?;
            let report = custody.rewrap_all().await;
            store.close().await;
            let report = report?;
            let failed: Vec<_> = report
                .failed
                .iter()
                .map(|(tenant, key, e)| {
                    serde_json::json!({"tenant_id": tenant, "key_id": key, "error": e.to_string()})
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "active_master_key": custody.keyring().active().id,
                    "rewrapped": report.rewrapped,
                    "failed": failed,
                })
            );
            if !report.failed.is_empty() {
                bail!(
                    "{} data keys could not be rewrapped; keep their master keys in the keyring",
                    report.failed.len()
                );
            }
            Ok(())
        }
    }
}
