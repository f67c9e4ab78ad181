//! `signalbox tenants …` and `signalbox keys …`: operator commands that talk to the store
//! directly, so they work with or without a running server.

use anyhow::{bail, Context};
use serde_json::json;
use store::{Scopes, Tier};

use crate::Common;

#[derive(clap::Subcommand, Debug)]
pub enum TenantsCommand {
    /// Create a tenant and its first key (admin scope). Prints
    /// `{"tenant_id":…,"api_key":…}`; the key is shown this once.
    Create {
        /// Unique tenant name (1-100 characters).
        name: String,
        #[arg(long, default_value = "free", value_parser = parse_tier)]
        tier: Tier,
    },
    /// List tenants, one JSON object per line.
    List,
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Issue another key for a tenant. Prints the key once.
    Create {
        /// The tenant's id (`tn_…`).
        #[arg(long)]
        tenant: String,
        /// Comma-separated: read, write, admin, assert_user, read_clear (admin implies the
        /// others but read_clear; assert_user lets the key name its user in X-User-Id, for
        /// per-user rate limits; read_clear reads feedback text in clear, audited).
        #[arg(long, value_parser = parse_scopes)]
        scopes: Scopes,
        /// A note for people, e.g. where the key is used.
        #[arg(long)]
        label: Option<String>,
        /// Bind the key to one user (1-128 visible ASCII characters): per-user rate limits
        /// count its requests against this user.
        #[arg(long)]
        user_id: Option<String>,
    },
    /// List a tenant's keys (never the secrets), one JSON object per line.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key. A running server stops accepting it within its auth cache TTL (5s by default).
    /// The tenant's last active admin key is refused unless --force: without an admin key
    /// nobody can manage the tenant over the API (recovery: `keys create --scopes admin`).
    Revoke {
        /// The key's id (`key_…`).
        key_id: String,
        /// Revoke it even if it is the tenant's last active admin key.
        #[arg(long)]
        force: bool,
    },
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    s.parse().map_err(|e: store::ParseNameError| e.to_string())
}

fn parse_scopes(s: &str) -> Result<Scopes, String> {
    let scopes: Scopes = s
        .parse()
        .map_err(|e: store::ParseNameError| e.to_string())?;
    if scopes.is_empty() {
        return Err(
            "at least one of read, write, admin, assert_user, read_clear is required".to_owned(),
        );
    }
    Ok(scopes)
}

pub async fn tenants(common: Common, cmd: TenantsCommand) -> anyhow::Result<()> {
    let store = common.open_store().await?;
    let result = match cmd {
        TenantsCommand::Create { name, tier } => {
            let tenant = store
                .create_tenant(&name, tier)
                .await
                .map_err(named("name"))?;
            let key = store
                .issue_api_key(
                    &tenant.id,
                    Scopes::from_iter([store::Scope::Admin]),
                    Some("initial"),
                )
                .await?;
            // Every tenant's predictions are refitted daily; the schedule is theirs to change.
            server::predictions::ensure_refit_schedule(&store, &tenant.id, server::jobs::now_ms())
                .await?;
            // And their feedback texts are purged daily past the retention of their config.
            server::feedback::ensure_retention_schedule(&store, &tenant.id, server::jobs::now_ms())
                .await?;
            // And their experiments are reviewed (scheduled starts and ends, guardrails).
            server::experiments::ensure_review_schedule(&store, &tenant.id, server::jobs::now_ms())
                .await?;
            println!("{}", json!({"tenant_id": tenant.id, "api_key": key.secret}));
            Ok(())
        }
        TenantsCommand::List => {
            for t in store.list_tenants().await? {
                println!(
                    "{}",
                    json!({"tenant_id": t.id, "name": t.name, "tier": t.tier, "created_at_ms": t.created_at_ms})
                );
            }
            Ok(())
        }
    };
    store.close().await;
    result
}

pub async fn keys(common: Common, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = common.open_store().await?;
    let result = run_keys(&store, cmd).await;
    store.close().await;
    result
}

async fn run_keys(store: &store::Store, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create {
            tenant,
            scopes,
            label,
            user_id,
        } => {
            let key = store
                .issue_key(
                    &tenant,
                    store::NewKey {
                        scopes,
                        label: label.as_deref(),
                        user_id: user_id.as_deref(),
                    },
                )
                .await
                .map_err(named("tenant"))?;
            let mut out = json!({"key_id": key.info.id, "tenant_id": key.info.tenant_id, "api_key": key.secret, "scopes": key.info.scopes});
            if let Some(user) = &key.info.user_id {
                out["user_id"] = json!(user);
            }
            println!("{out}");
        }
        KeysCommand::List { tenant } => {
            if store.tenant(&tenant).await?.is_none() {
                bail!("tenant: no tenant '{tenant}'");
            }
            for k in store.list_api_keys(&tenant).await? {
                println!("{}", serde_json::to_string(&k).context("encode key")?);
            }
        }
        KeysCommand::Revoke { key_id, force } => {
            let Some(owner) = store.operator_key_owner(&key_id).await? else {
                bail!("key_id: no key '{key_id}'");
            };
            let revoked = if force {
                store.revoke_api_key_allowing_lockout(&owner, &key_id).await
            } else {
                store.revoke_api_key(&owner, &key_id).await
            };
            let key = match revoked {
                Err(store::StoreError::LastAdminKey { tenant_id, .. }) => bail!(
                    "key_id: {key_id} is the last active admin key of tenant {tenant_id}; \
                     issue another first (signalbox keys create --tenant {tenant_id} --scopes \
                     admin), or pass --force to lock the tenant out of its admin API"
                ),
                other => other?,
            }
            .with_context(|| format!("key_id: no key '{key_id}'"))?;
            if force
                && !store
                    .list_api_keys(&owner)
                    .await?
                    .iter()
                    .any(|k| k.revoked_at_ms.is_none() && k.scopes.contains(store::Scope::Admin))
            {
                eprintln!(
                    "warning: tenant {owner} has no active admin key now; issue one with \
                     `signalbox keys create --tenant {owner} --scopes admin`"
                );
            }
            println!("{}", serde_json::to_string(&key).context("encode key")?);
        }
    }
    Ok(())
}

/// Prefixes a store error with the argument it concerns, unless the error names its own field.
fn named(arg: &'static str) -> impl Fn(store::StoreError) -> anyhow::Error {
    move |e| match e {
        store::StoreError::Invalid { .. } => anyhow::anyhow!("{e}"),
        e => anyhow::anyhow!("{arg}: {e}"),
    }
}
