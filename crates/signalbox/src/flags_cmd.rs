//! `signalbox flags …`: a tenant's flags in one environment as a file, for GitOps. `import`
//! validates the whole set the environment would end up with before writing anything and then
//! writes only the differences; `export` writes the documented format (`docs/flags.md`) so that
//! export, import into an empty environment and export again give the same bytes; `list` shows
//! versions. They talk to the store directly, so they work with or without a running server.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use flags::{Flag, FlagSet};
use serde_json::{json, Value};
use store::{FlagRecord, Store};

use crate::Common;

/// The audit trail's actor for every change made from the command line.
const ACTOR: &str = "cli";
/// The largest flag file read; one flag is at most [`store::MAX_FLAG_DEFINITION_BYTES`], so this
/// holds hundreds of the largest flags and thousands of ordinary ones.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Longest environment name the store accepts.
const MAX_ENVIRONMENT_CHARS: usize = 200;

#[derive(clap::Subcommand, Debug)]
pub enum FlagsCommand {
    /// Make an environment's flags match a file (a JSON array of flags, docs/flags.md).
    ///
    /// The set the environment would end up with is validated first, and nothing is written if
    /// any flag in it is invalid (one line per problem on stderr). Only differences are written.
    /// Prints one JSON line per flag:
    /// `{"action":"create|update|unchanged|delete","key":…,"version":…}`.
    Import(ImportArgs),
    /// Write an environment's flags in the import format, sorted by key.
    Export(ExportArgs),
    /// One JSON line per flag: key, version, updated_at, updated_by.
    List(Scope),
    /// One JSON line per stale flag (docs/flags.md, "Usage analytics and stale flags"): not
    /// evaluated for `--days` days, serving one variant to everyone, expired, or completed /
    /// archived; with its reasons and last evaluation. The same report as
    /// `GET /api/v1/flags/stale`; running servers store their counts every 10 s.
    Stale(StaleArgs),
}

#[derive(clap::Args, Debug)]
pub struct StaleArgs {
    #[command(flatten)]
    scope: Scope,
    /// Flags not evaluated for this many days are stale (1-3650).
    #[arg(long, default_value_t = server::flag_usage::DEFAULT_STALE_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(server::flag_usage::MAX_STALE_DAYS)))]
    days: u32,
}

/// Whose flags: one tenant's, in one environment.
#[derive(clap::Args, Debug)]
pub struct Scope {
    /// The tenant's id (`tn_…`).
    #[arg(long)]
    tenant: String,
    /// The environment; each has its own flags.
    #[arg(long, default_value = "production")]
    environment: String,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The flag file.
    file: PathBuf,
    #[command(flatten)]
    scope: Scope,
    /// Validate and print what would change, without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Also delete the environment's flags that are not in the file.
    #[arg(long)]
    prune: bool,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    scope: Scope,
    /// Write the flags here (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub async fn run(common: Common, cmd: FlagsCommand) -> anyhow::Result<()> {
    let scope = match &cmd {
        FlagsCommand::Import(args) => &args.scope,
        FlagsCommand::Export(args) => &args.scope,
        FlagsCommand::List(scope) => scope,
        FlagsCommand::Stale(args) => &args.scope,
    };
    check_environment(&scope.environment)?;
    // A bad file is reported before the store is opened: it needs no database to be wrong.
    let wanted = match &cmd {
        FlagsCommand::Import(args) => read_flag_file(&args.file)?,
        _ => Vec::new(),
    };
    let store = common.open_store().await?;
    let result = match &cmd {
        FlagsCommand::Import(args) => import(&store, args, wanted).await,
        FlagsCommand::Export(args) => export(&store, args).await,
        FlagsCommand::List(scope) => list(&store, scope).await,
        FlagsCommand::Stale(args) => stale(&store, args).await,
    };
    store.close().await;
    result
}

async fn export(store: &Store, args: &ExportArgs) -> anyhow::Result<()> {
    let records = stored_flags(store, &args.scope).await?;
    let flags = records
        .iter()
        .map(|r| {
            stored_flag(r).map_err(|e| {
                anyhow::anyhow!(
                    "flag {:?}: the stored definition (version {}) is not in the flag format: {e}",
                    r.key,
                    r.version
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let text = export_text(flags)?;
    match &args.out {
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .context("stdout")?;
        }
        Some(path) => {
            write_atomically(path, text.as_bytes())?;
            println!(
                "{}",
                json!({"out": path.display().to_string(), "flags": records.len()})
            );
        }
    }
    Ok(())
}

async fn list(store: &Store, scope: &Scope) -> anyhow::Result<()> {
    for r in stored_flags(store, scope).await? {
        println!(
            "{}",
            json!({
                "key": r.key,
                "version": r.version,
                "updated_at": server::rfc3339_ms(r.updated_at_ms),
                "updated_by": r.updated_by,
            })
        );
    }
    Ok(())
}

async fn stale(store: &Store, args: &StaleArgs) -> anyhow::Result<()> {
    stored_flags(store, &args.scope).await?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let report = server::flag_usage::stale_flags(
        store,
        None,
        &args.scope.tenant,
        &args.scope.environment,
        args.days,
        now_ms,
    )
    .await?;
    for flag in report.flags() {
        println!("{}", serde_json::to_string(flag)?);
    }
    Ok(())
}

/// The environment's flags in key order, after checking that the tenant exists (the store
/// answers an unknown tenant with no flags, which would make an export look empty).
async fn stored_flags(store: &Store, scope: &Scope) -> anyhow::Result<Vec<FlagRecord>> {
    if store.tenant(&scope.tenant).await?.is_none() {
        bail!("--tenant: no tenant '{}'", scope.tenant.escape_debug());
    }
    Ok(store.flags(&scope.tenant, &scope.environment).await?)
}

/// Environment names follow the store's rule; checked here so that a dry run, which writes
/// nothing, refuses a bad name too.
fn check_environment(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ENVIRONMENT_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        bail!(
            "--environment: use 1 to {MAX_ENVIRONMENT_CHARS} characters of A-Z, a-z, 0-9, '_', '.', '-'"
        );
    }
    Ok(())
}

fn read_flag_file(path: &Path) -> anyhow::Result<Vec<Flag>> {
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot open"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{name}: cannot read"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        bail!(
            "{name}: larger than {} MiB; split the flags over environments or files",
            MAX_FILE_BYTES >> 20
        );
    }
    parse_flags(&bytes).map_err(|e| anyhow::anyhow!("{name}:{e}"))
}

/// Parses the file format: a JSON array of flags. An error reads `LINE:COLUMN: PATH: MESSAGE`
/// (the path, e.g. `[2].variants[0].weight_bp`, when the JSON is well-formed but not a flag).
fn parse_flags(bytes: &[u8]) -> Result<Vec<Flag>, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let flags: Vec<Flag> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = position(&inner);
        if path == "." {
            format!("{at} {}", message(&inner))
        } else {
            format!("{at} {path}: {}", message(&inner))
        }
    })?;
    de.end()
        .map_err(|e| format!("{} {}", position(&e), message(&e)))?;
    Ok(flags)
}

/// `LINE:COLUMN:`, both from 1 (serde_json says column 0 for an error before the first byte).
fn position(e: &serde_json::Error) -> String {
    format!("{}:{}:", e.line(), e.column().max(1))
}

/// serde_json's message without the " at line L column C" it appends (the position is printed
/// in front, compiler-style).
fn message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// A stored definition as a flag. The store keeps definitions verbatim and only checks that a
/// `key` present in one is the flag's own, so a definition written without its key gets it here.
fn stored_flag(record: &FlagRecord) -> Result<Flag, String> {
    let mut value: Value =
        serde_json::from_str(&record.definition_json).map_err(|e| e.to_string())?;
    if let Value::Object(map) = &mut value {
        map.entry("key")
            .or_insert_with(|| Value::String(record.key.clone()));
    }
    let flag: Flag = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("{path}: {}", e.into_inner())
    })?;
    Ok(flag)
}

/// The export format: pretty JSON, flags sorted by key, a final newline. Serialising the parsed
/// flags (rather than copying the stored text) is what makes a round trip byte-identical.
fn export_text(mut flags: Vec<Flag>) -> anyhow::Result<String> {
    flags.sort_by(|a, b| a.key.cmp(&b.key));
    let mut text = serde_json::to_string_pretty(&flags).context("encode flags")?;
    text.push('\n');
    Ok(text)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("--out: cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("--out: write to {} failed", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("--out: cannot create {}", path.display()))?;
    Ok(())
}

/// What an import does to one flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Update,
    Unchanged,
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Delete => "delete",
        }
    }
}

/// One step of an import plan.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    action: Action,
    key: String,
    /// The version the flag has after the step (for a delete: its last version).
    version: i64,
    /// The stored version the step was planned from, which the write checks again (`None` for
    /// a create).
    planned_from: Option<i64>,
    /// The definition to write (create and update).
    definition: Option<String>,
}

/// A stored flag: its record, and its definition parsed (or why it does not parse).
struct Stored {
    record: FlagRecord,
    flag: Result<Flag, String>,
}

/// The steps that turn the stored flags into `wanted` (plus, without `prune`, the stored flags
/// `wanted` does not mention), in an order that keeps each intermediate set as valid as possible:
/// creates and updates with prerequisites before the flags needing them, then deletes with the
/// flags needing others first. Refused with one line per problem if the resulting set is invalid.
fn plan(stored: Vec<Stored>, wanted: Vec<Flag>, prune: bool) -> Result<Vec<Step>, Vec<String>> {
    let wanted_keys: HashSet<&str> = wanted.iter().map(|f| f.key.as_str()).collect();
    let mut problems = Vec::new();
    let mut resulting = wanted.clone();
    for s in &stored {
        if prune || wanted_keys.contains(s.record.key.as_str()) {
            continue;
        }
        match &s.flag {
            Ok(flag) => resulting.push(flag.clone()),
            Err(e) => problems.push(format!(
                "flag {:?}: the stored definition (version {}) is not in the flag format ({e}); \
                 put the flag in the file or use --prune",
                s.record.key, s.record.version
            )),
        }
    }
    if let Err(errors) = FlagSet::compile(resulting) {
        problems.extend(
            errors
                .into_iter()
                .map(|e| format!("flag {:?}: {}: {}", e.flag, e.path, e.message)),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let by_key: HashMap<&str, &Stored> =
        stored.iter().map(|s| (s.record.key.as_str(), s)).collect();
    let mut steps = Vec::with_capacity(wanted.len());
    let wanted_refs: Vec<&Flag> = wanted.iter().collect();
    for i in prerequisites_first(&wanted_refs) {
        let Some(flag) = wanted.get(i) else {
            continue;
        };
        let current = by_key.get(flag.key.as_str());
        if let Some(Stored {
            record,
            flag: Ok(old),
        }) = current
        {
            if old == flag {
                steps.push(Step {
                    action: Action::Unchanged,
                    key: flag.key.clone(),
                    version: record.version,
                    planned_from: Some(record.version),
                    definition: None,
                });
                continue;
            }
        }
        let definition = match serde_json::to_string(flag) {
            Ok(text) if text.len() <= store::MAX_FLAG_DEFINITION_BYTES => text,
            Ok(text) => {
                problems.push(format!(
                    "flag {:?}: the definition is {} bytes, more than the {} allowed",
                    flag.key,
                    text.len(),
                    store::MAX_FLAG_DEFINITION_BYTES
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!("flag {:?}: cannot encode: {e}", flag.key));
                continue;
            }
        };
        steps.push(match current {
            Some(s) => Step {
                action: Action::Update,
                key: flag.key.clone(),
                version: s.record.version + 1,
                planned_from: Some(s.record.version),
                definition: Some(definition),
            },
            None => Step {
                action: Action::Create,
                key: flag.key.clone(),
                version: 1,
                planned_from: None,
                definition: Some(definition),
            },
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if prune {
        let parsed: Vec<(&Stored, &Flag)> = stored
            .iter()
            .filter_map(|s| s.flag.as_ref().ok().map(|f| (s, f)))
            .collect();
        let flags: Vec<&Flag> = parsed.iter().map(|(_, f)| *f).collect();
        // Unparseable definitions have no known prerequisites: delete them first.
        let mut doomed: Vec<&Stored> = stored.iter().filter(|s| s.flag.is_err()).collect();
        doomed.extend(
            prerequisites_first(&flags)
                .into_iter()
                .rev()
                .filter_map(|i| parsed.get(i).map(|(s, _)| *s)),
        );
        for s in doomed {
            if !wanted_keys.contains(s.record.key.as_str()) {
                steps.push(Step {
                    action: Action::Delete,
                    key: s.record.key.clone(),
                    version: s.record.version,
                    planned_from: Some(s.record.version),
                    definition: None,
                });
            }
        }
    }
    Ok(steps)
}

/// Indexes of `flags` ordered so that every flag comes after the flags of the set it names as
/// prerequisites, ties in key order. Cycles (refused by validation) cannot loop: a flag is
/// entered once. Iterative, so a long prerequisite chain cannot overflow the stack.
fn prerequisites_first(flags: &[&Flag]) -> Vec<usize> {
    let index: HashMap<&str, usize> = flags
        .iter()
        .enumerate()
        .map(|(i, f)| (f.key.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = flags
        .iter()
        .map(|f| {
            f.prerequisites
                .iter()
                .filter_map(|p| index.get(p.flag.as_str()).copied())
                .collect()
        })
        .collect();
    let mut roots: Vec<usize> = (0..flags.len()).collect();
    roots.sort_by(|&a, &b| {
        let key = |i: usize| flags.get(i).map(|f| f.key.as_str());
        key(a).cmp(&key(b))
    });
    let mut entered = vec![false; flags.len()];
    let mut order = Vec::with_capacity(flags.len());
    for root in roots {
        if std::mem::replace(&mut entered[root], true) {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        while let Some(&(node, child)) = stack.last() {
            match edges.get(node).and_then(|e| e.get(child)).copied() {
                Some(next) => {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    if !std::mem::replace(&mut entered[next], true) {
                        stack.push((next, 0));
                    }
                }
                None => {
                    order.push(node);
                    stack.pop();
                }
            }
        }
    }
    order
}

async fn import(store: &Store, args: &ImportArgs, wanted: Vec<Flag>) -> anyhow::Result<()> {
    let stored = stored_flags(store, &args.scope)
        .await?
        .into_iter()
        .map(|record| {
            let flag = stored_flag(&record);
            Stored { record, flag }
        })
        .collect();
    let steps = match plan(stored, wanted, args.prune) {
        Ok(steps) => steps,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            bail!(
                "{}: {} problem(s); nothing was written",
                args.file.display(),
                problems.len()
            );
        }
    };
    let Scope {
        tenant,
        environment,
    } = &args.scope;
    // A flag an experiment owns is deleted or changed only as the admin API allows it (the
    // rule lives in `server::experiments`); checked for every step before anything is written.
    let mut refused = Vec::new();
    for step in &steps {
        let next = match (step.action, &step.definition) {
            (Action::Delete, _) => None,
            (Action::Update, Some(def)) => match serde_json::from_str::<Flag>(def) {
                Ok(flag) => Some(flag),
                Err(_) => continue,
            },
            _ => continue,
        };
        if let Some((_, message)) = server::experiments::owned_flag_change_refused(
            store,
            tenant,
            environment,
            &step.key,
            next.as_ref(),
        )
        .await?
        {
            refused.push(message);
        }
    }
    if !refused.is_empty() {
        for p in &refused {
            eprintln!("{p}");
        }
        bail!(
            "{}: {} change(s) refused by experiments owning their flags; nothing was written",
            args.file.display(),
            refused.len()
        );
    }
    let mut written = 0usize;
    for step in steps {
        let version = if args.dry_run {
            step.version
        } else {
            // The version the plan was made from is checked again on every write, so a change
            // made meanwhile (by the admin API, or another import) stops the import.
            let result = match (step.action, &step.definition) {
                (Action::Create, Some(def)) => store
                    .create_flag(tenant, environment, &step.key, def, ACTOR)
                    .await
                    .map(|r| r.version),
                (Action::Update, Some(def)) => store
                    .update_flag(
                        tenant,
                        environment,
                        &step.key,
                        def,
                        step.planned_from,
                        ACTOR,
                    )
                    .await
                    .map(|r| r.version),
                (Action::Delete, _) => store
                    .delete_flag(tenant, environment, &step.key, step.planned_from, ACTOR)
                    .await
                    .map(|r| r.version),
                _ => Ok(step.version),
            };
            let version = result.with_context(|| {
                format!(
                    "flag {:?}: {} failed after {written} change(s) were written; import again to finish",
                    step.key,
                    step.action.as_str()
                )
            })?;
            if step.action != Action::Unchanged {
                written += 1;
            }
            version
        };
        println!(
            "{}",
            json!({"action": step.action.as_str(), "key": step.key, "version": version})
        );
    }
    if args.dry_run {
        eprintln!("dry run: nothing was written");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(key: &str, prerequisites: &[&str]) -> Flag {
        let pre: Vec<Value> = prerequisites
            .iter()
            .map(|p| json!({"flag": p, "variants": ["on"]}))
            .collect();
        serde_json::from_value(json!({
            "key": key, "type": "boolean", "status": "active",
            "variants": [{"key": "on", "value": true}, {"key": "off", "value": false}],
            "default_variant": "on", "off_variant": "off", "prerequisites": pre,
        }))
        .unwrap()
    }

    fn stored(f: &Flag, version: i64) -> Stored {
        Stored {
            record: FlagRecord {
                tenant_id: "tn_1".into(),
                environment: "production".into(),
                key: f.key.clone(),
                definition_json: serde_json::to_string(f).unwrap(),
                version,
                change_seq: 1,
                created_at_ms: 0,
                updated_at_ms: 0,
                updated_by: "cli".into(),
            },
            flag: Ok(f.clone()),
        }
    }

    fn actions(steps: &[Step]) -> Vec<(Action, &str, i64)> {
        steps
            .iter()
            .map(|s| (s.action, s.key.as_str(), s.version))
            .collect()
    }

    #[test]
    fn prerequisites_are_written_before_the_flags_needing_them_and_deleted_after() {
        let wanted = vec![flag("a", &["c"]), flag("c", &["b"]), flag("b", &[])];
        let steps = plan(Vec::new(), wanted, false).unwrap();
        assert_eq!(
            actions(&steps),
            [
                (Action::Create, "b", 1),
                (Action::Create, "c", 1),
                (Action::Create, "a", 1)
            ]
        );
        let old = [flag("x", &["y"]), flag("y", &[]), flag("z", &["x"])];
        let stored = old.iter().map(|f| stored(f, 3)).collect();
        let steps = plan(stored, vec![flag("y", &[])], true).unwrap();
        assert_eq!(
            actions(&steps),
            [
                (Action::Unchanged, "y", 3),
                (Action::Delete, "z", 3),
                (Action::Delete, "x", 3)
            ]
        );
    }

    #[test]
    fn the_whole_resulting_set_is_validated() {
        // The file alone is valid; with the stored flag it closes a cycle.
        let stored_flags = vec![stored(&flag("a", &["b"]), 1)];
        let problems = plan(stored_flags, vec![flag("b", &["a"])], false).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("prerequisite cycle"), "{problems:?}");
        // Pruning the stored flag leaves a dangling reference instead... which is refused too.
        let stored_flags = vec![stored(&flag("a", &[]), 1)];
        let problems = plan(stored_flags, vec![flag("b", &["a"])], true).unwrap_err();
        assert_eq!(
            problems,
            [r#"flag "b": prerequisites[0].flag: unknown prerequisite flag `a`"#]
        );
    }

    #[test]
    fn parse_errors_carry_line_column_and_path() {
        let err = parse_flags(b"[\n  {\"key\": \"x\", \"typ\": 1}\n]").unwrap_err();
        assert!(err.starts_with("2:"), "{err}");
        assert!(err.contains("[0].typ: unknown field `typ`"), "{err}");
        let err = parse_flags(b"[] x").unwrap_err();
        assert_eq!(err, "1:4: trailing characters");
        let err = parse_flags(b"{\"flags\": []}").unwrap_err();
        assert!(err.starts_with("1:1: invalid type: map"), "{err}");
    }
}
