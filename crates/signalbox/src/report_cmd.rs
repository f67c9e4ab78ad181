//! `signalbox feedback report …`: signed research reports.
//!
//! `verify` checks a report file offline (canonical form, then the Ed25519 signature, under the
//! expected key when given); `generate` makes one through the same service as `POST
//! /api/v1/feedback/reports`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use feedback::report::{verify, MAX_REPORT_BYTES};

/// Exit status of a report that does not verify.
pub const EXIT_NOT_VERIFIED: i32 = 1;

/// `signalbox feedback report` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ReportCommand {
    /// Verify a signed research report file: canonical form, then the Ed25519 signature. Prints
    /// `OK report <id> signed by key <key id>, period <from>..<to>, epsilon <ε>` and exits 0, or
    /// one line naming what failed and exits 1. Without --public-key the report's own key is
    /// used: compare the printed key id with the server's (GET /api/v1/audit/public-key).
    Verify {
        /// The report file (`-` for stdin).
        file: PathBuf,
        /// The expected public key: base64 of its 32 bytes, or `@FILE` holding it (or the JSON of
        /// GET /api/v1/audit/public-key).
        #[arg(long, value_name = "BASE64|@FILE")]
        public_key: Option<String>,
    },
    /// Make a signed research report of a tenant's feedback over [from, to), through the same
    /// service as POST /api/v1/feedback/reports (it spends the report's epsilon from the
    /// tenant's privacy budget), and write the signed file to --out (a new file). Prints the
    /// report's summary as JSON.
    Generate {
        /// The tenant's id (`tn_…`) or name.
        #[arg(long)]
        tenant: String,
        /// The first day, YYYY-MM-DD (UTC).
        #[arg(long)]
        from: String,
        /// The day after the last, YYYY-MM-DD.
        #[arg(long)]
        to: String,
        /// The report's total epsilon (default 0.5).
        #[arg(long)]
        epsilon: Option<f64>,
        /// Where to write the signed report (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        custody: crate::custody_cmd::CustodyArgs,
    },
}

/// Runs `feedback report …`.
pub(crate) async fn run(global: crate::GlobalArgs, cmd: ReportCommand) -> anyhow::Result<()> {
    match cmd {
        ReportCommand::Generate {
            tenant,
            from,
            to,
            epsilon,
            out,
            custody,
        } => {
            let common = crate::Common::resolve(global)?;
            let store = common.open_store().await?;
            let result =
                generate(&common, &store, &tenant, from, to, epsilon, &out, &custody).await;
            store.close().await;
            result
        }
        ReportCommand::Verify { file, public_key } => {
            let expected = public_key.as_deref().map(parse_key).transpose()?;
            let bytes = read_limited(&file)?;
            match verify(&bytes, expected.as_ref()) {
                Ok(v) => {
                    println!(
                        "OK report {} signed by key {}, period {}..{}, epsilon {}",
                        v.report.id,
                        v.key_id,
                        v.report.period.from,
                        v.report.period.to,
                        v.report.privacy.epsilon_nanos as f64 / 1e9,
                    );
                    Ok(())
                }
                Err(e) => {
                    println!("FAILED {}: {e}", file.display());
                    std::process::exit(EXIT_NOT_VERIFIED);
                }
            }
        }
    }
}

/// Reads the file (or stdin for `-`), refusing more than a report's limit.
fn read_limited(path: &Path) -> anyhow::Result<Vec<u8>> {
    let limit = (MAX_REPORT_BYTES + 2) as u64;
    let mut bytes = Vec::new();
    let result = if path == Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    result.with_context(|| format!("FILE: cannot read {}", path.display()))?;
    Ok(bytes)
}

/// `--public-key`: base64, or `@FILE` with base64 or the public-key endpoint's JSON.
fn parse_key(given: &str) -> anyhow::Result<audit::VerifyingKey> {
    let text = match given.strip_prefix('@') {
        Some(path) => {
            let mut text = String::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
                .with_context(|| format!("--public-key: cannot read {path}"))?;
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(json) => json["public_key"]
                    .as_str()
                    .map(str::to_owned)
                    .context("--public-key: the JSON has no \"public_key\" string")?,
                Err(_) => text,
            }
        }
        None => given.to_owned(),
    };
    server::custody::parse_public_key(&text)
        .context("--public-key: not the base64 of an Ed25519 public key")
}

#[allow(clippy::too_many_arguments)]
async fn generate(
    common: &crate::Common,
    store: &store::Store,
    tenant: &str,
    from: String,
    to: String,
    epsilon: Option<f64>,
    out: &Path,
    custody: &crate::custody_cmd::CustodyArgs,
) -> anyhow::Result<()> {
    let tenant_id = crate::feedback_cmd::tenant_id(store, tenant).await?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("--out: cannot create {}", out.display()))?;
    let settings = crate::custody_cmd::serve_settings(custody, common, store.backend())?;
    let (state, _scratch) =
        crate::jobs_worker::worker_state(store.clone(), server::JobSettings::default(), settings)
            .await?;
    let request = server::feedback::report::ReportRequest { from, to, epsilon };
    let made = server::feedback::report::generate(
        &state,
        &tenant_id,
        "operator",
        &request,
        server::jobs::now_ms(),
    )
    .await;
    let (summary, body) = match made {
        Ok(made) => made,
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(out);
            anyhow::bail!(
                "{}",
                match e {
                    server::feedback::report::ReportServiceError::Invalid { field, message } => {
                        format!("--{field}: {message}")
                    }
                    other => other.to_string(),
                }
            );
        }
    };
    std::io::Write::write_all(&mut file, body.as_bytes())
        .with_context(|| format!("--out: cannot write {}", out.display()))?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}
