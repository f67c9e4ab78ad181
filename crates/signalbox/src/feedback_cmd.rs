//! `signalbox feedback …`: the feedback engine from the command line.
//!
//! `feedback redact` finds personal data in text lines and redacts it, with a tenant's PII
//! settings, for scripting, spot checks and pipelines that used Presidio's analyzer.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use feedback::analysis::Analyzer;
use feedback::config::{FeedbackConfig, RedactionMode};
use feedback::pii::{api_findings, presidio_results, redact, Detector, Finding, Redaction};
use serde::Serialize;

/// `signalbox feedback` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum FeedbackCommand {
    /// Find and redact personal data in text lines from stdin; one JSON object per line on
    /// stdout, in order: `{"text_redacted": …, "pii": [{"type", "start", "end", "confidence"}]}`.
    Redact(RedactArgs),
    /// The tenant's data keys for feedback texts.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Signed research reports: verify a report file, generate one.
    #[command(subcommand)]
    Report(crate::report_cmd::ReportCommand),
    /// Import a legacy system's export (CSV or JSON lines) through a mapping file, in batches
    /// that commit with a checkpoint: run the same command again to resume after a crash or
    /// Ctrl-C. `import status` lists the tenant's imports.
    Import(Box<crate::feedback_import::ImportArgs>),
    /// Compare a legacy export with the tenant's items by id: missing, extra and different
    /// (per field; texts by SHA-256). Exit 0 when they agree, 1 otherwise.
    Reconcile(Box<crate::feedback_import::ReconcileArgs>),
}

/// `signalbox feedback keys` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Rotate a tenant's data key: texts are sealed under a new key from now on, and a
    /// `feedback.reencrypt` job (run by `serve` or `signalbox jobs work`) re-encrypts the stored
    /// ones; the old key is retired. The same service as `POST /api/v1/feedback/keys:rotate`.
    /// Prints `{"tenant_id", "key_id", "job_id"}`.
    Rotate {
        /// The tenant's id (`tn_…`) or name.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        custody: crate::custody_cmd::CustodyArgs,
    },
}

/// The id of the tenant given by id or name.
pub(crate) async fn tenant_id(store: &store::Store, given: &str) -> anyhow::Result<String> {
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

/// Runs `feedback keys …` against the database, with the same custody keys as `serve`.
pub async fn keys(common: crate::Common, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate { tenant, custody } => {
            let store = common.open_store().await?;
            let tenant_id = tenant_id(&store, &tenant).await?;
            let custody = crate::custody_cmd::serve_settings(&custody, &common, store.backend())?;
            let (state, _scratch) = crate::jobs_worker::worker_state(
                store.clone(),
                server::JobSettings::default(),
                custody,
            )
            .await?;
            let (key_id, job_id) = state
                .feedback()
                .rotate_keys(&state, &tenant_id, "operator")
                .await
                .map_err(|e| anyhow::anyhow!("feedback keys rotate: {e}"))?;
            println!(
                "{}",
                serde_json::json!({ "tenant_id": tenant_id, "key_id": key_id, "job_id": job_id })
            );
            store.close().await;
            Ok(())
        }
    }
}

/// `signalbox feedback redact` options.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Lines are split on \\n; a trailing \\r is kept, as the text may contain \
    it. Bytes that are not UTF-8 are replaced by U+FFFD (never fatal), and offsets count \
    characters (Unicode scalar values, as Python str indices) of that replaced text."
)]
pub struct RedactArgs {
    /// A tenant's feedback configuration (TOML, the per-tenant feedback settings):
    /// its `[pii]` settings and `redaction` apply; the whole file is validated. (Named
    /// `--feedback-config` because `--config` is signalbox's own configuration file.)
    #[arg(long, value_name = "FILE")]
    feedback_config: Option<PathBuf>,
    /// Redact with keyed pseudonyms (`<EMAIL_ADDRESS_3f2a9c1b04d7>`, the same for the same
    /// value under the same key) instead of type tags; the key is the value of this
    /// environment variable (never a flag, so it stays out of shell history and `ps`).
    #[arg(long, value_name = "VAR")]
    pseudonym_key_env: Option<String>,
    /// The findings' JSON shape: `api` (`type`, `start`, `end`, `confidence`) or `presidio`
    /// (Presidio analyzer's `entity_type`, `start`, `end`, `score`).
    #[arg(long, value_enum, default_value_t = FindingFormat::Api)]
    format: FindingFormat,
}

/// The findings' JSON shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FindingFormat {
    /// `{"type", "start", "end", "confidence"}`, as `GET /api/v1/feedback/{id}` shows them.
    Api,
    /// `{"entity_type", "start", "end", "score"}`, as Presidio's analyzer reports them.
    Presidio,
}

/// One output line.
#[derive(Serialize)]
struct RedactedLine<'a, F: Serialize> {
    text_redacted: &'a str,
    pii: F,
}

/// Runs `feedback redact`: reads stdin to the end, one output line per input line.
pub fn redact_lines(args: RedactArgs) -> anyhow::Result<()> {
    let config = match &args.feedback_config {
        Some(path) => load_config(path)?,
        None => FeedbackConfig::default(),
    };
    let redaction = match (&args.pseudonym_key_env, config.redaction) {
        (Some(var), _) => Redaction::Pseudonym {
            key: pseudonym_key(var)?,
        },
        (None, RedactionMode::Pseudonym) => anyhow::bail!(
            "{}: redaction = \"pseudonym\" needs a key: pass --pseudonym-key-env VAR",
            args.feedback_config
                .as_deref()
                .map_or_else(String::new, |p| p.display().to_string())
        ),
        (None, RedactionMode::Tag) => Redaction::Tag,
    };
    // Validated already by Analyzer::from_config; a failure here would still be reported.
    let detector = Detector::new(&config.pii).map_err(|e| anyhow::anyhow!("pii.{e}"))?;

    let mut reader = std::io::BufReader::new(std::io::stdin().lock());
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut line = Vec::new();
    let mut findings: Vec<Finding> = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("stdin: read failed after line {number}"))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line);
        detector.detect_into(&text, &mut findings);
        let redacted = if findings.is_empty() {
            std::borrow::Cow::Borrowed(text.as_ref())
        } else {
            std::borrow::Cow::Owned(redact(&text, &findings, &redaction))
        };
        let written = match args.format {
            FindingFormat::Api => serde_json::to_writer(
                &mut out,
                &RedactedLine {
                    text_redacted: &redacted,
                    pii: api_findings(&text, &findings),
                },
            ),
            FindingFormat::Presidio => serde_json::to_writer(
                &mut out,
                &RedactedLine {
                    text_redacted: &redacted,
                    pii: presidio_results(&text, &findings),
                },
            ),
        };
        written.context("stdout: write failed")?;
        out.write_all(b"\n").context("stdout: write failed")?;
    }
    out.flush().context("stdout: write failed")?;
    Ok(())
}

/// Reads and validates a tenant configuration; errors name the file and the field.
fn load_config(path: &Path) -> anyhow::Result<FeedbackConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--feedback-config {}", path.display()))?;
    let refused = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("{}: {}", path.display(), one_line(&e.to_string()))
    };
    let config = FeedbackConfig::parse(&text).map_err(|e| refused(&e))?;
    // The whole configuration, so a file that `redact` accepts is one the server accepts.
    Analyzer::from_config(&config).map_err(|e| refused(&e))?;
    Ok(config)
}

/// A message on one line: the regex compiler's and the TOML parser's span several, with a
/// caret under the fault.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The pseudonymisation key: the bytes of environment variable `var`.
fn pseudonym_key(var: &str) -> anyhow::Result<Vec<u8>> {
    match std::env::var_os(var) {
        Some(value) if !value.is_empty() => Ok(value.into_encoded_bytes()),
        Some(_) => anyhow::bail!("--pseudonym-key-env: the environment variable {var} is empty"),
        None => anyhow::bail!("--pseudonym-key-env: the environment variable {var} is not set"),
    }
}
