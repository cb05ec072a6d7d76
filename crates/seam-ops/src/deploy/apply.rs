//! Carries out a checked plan in the order that keeps every intermediate state usable: topics
//! and partitions first, then configs, then schemas (level before version), users, new ACLs,
//! and deletions last.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use tracing::info;

use super::admin_ffi::{self, Acl};
use super::desired::Desired;
use super::plan::{Action, Observed, Plan};
use super::{secrets, Options, Registry};

const TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn apply(
    plan: &Plan,
    desired: &Desired,
    observed: &Observed,
    client: &ClientConfig,
    registry: &Registry,
    options: &Options,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(TIMEOUT))
        .request_timeout(Some(TIMEOUT));
    let of = |prefix: &str, action: Action| -> Vec<String> {
        plan.changes
            .iter()
            .filter(|c| c.action == action)
            .filter_map(|c| c.resource.strip_prefix(prefix).map(str::to_string))
            .collect()
    };

    let creates: Vec<NewTopic<'_>> = of("topic/", Action::Create)
        .iter()
        .filter_map(|name| desired.topics.get(name))
        .map(|t| {
            t.configs.iter().fold(
                NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(t.replication)),
                |nt, (k, v)| nt.set(k, v),
            )
        })
        .collect();
    if !creates.is_empty() {
        for r in admin.create_topics(creates.iter(), &opts).await? {
            let name = r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
            info!(topic = %name, "created topic");
        }
    }

    let alters = of("topic/", Action::Alter);
    let grow: Vec<NewPartitions<'_>> = alters
        .iter()
        .filter_map(|name| Some((desired.topics.get(name)?, observed.topics.get(name)?)))
        .filter(|(want, have)| want.partitions > have.partitions)
        .map(|(want, _)| NewPartitions::new(&want.name, want.partitions as usize))
        .collect();
    if !grow.is_empty() {
        for r in admin.create_partitions(grow.iter(), &opts).await? {
            r.map_err(|(t, e)| anyhow::anyhow!("adding partitions to {t}: {e}"))?;
        }
    }
    let mut config_sets: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for name in &alters {
        let (Some(want), Some(have)) = (desired.topics.get(name), observed.topics.get(name)) else {
            continue;
        };
        if want.configs.iter().all(|(k, v)| have.configs.get(k) == Some(v)) {
            continue;
        }
        let mut set = have.dynamic.clone();
        set.extend(want.configs.clone());
        config_sets.push((name.clone(), set));
    }
    if !config_sets.is_empty() {
        let alter: Vec<AlterConfig<'_>> = config_sets
            .iter()
            .map(|(name, set)| {
                set.iter()
                    .fold(AlterConfig::new(ResourceSpecifier::Topic(name)), |a, (k, v)| {
                        a.set(k, v)
                    })
            })
            .collect();
        for r in admin.alter_configs(alter.iter(), &opts).await? {
            r.map_err(|(t, e)| anyhow::anyhow!("altering the configs of {t:?}: {e}"))?;
        }
    }

    for change in plan.effective().filter(|c| c.resource.starts_with("schema/")) {
        let subject = &change.resource["schema/".len()..];
        let Some(want) = desired.schemas.get(subject) else {
            continue;
        };
        if change.diff.contains_key("compatibility") {
            registry.set_compatibility(subject, &want.compatibility).await?;
        }
        if change.diff.contains_key("version") {
            let id = registry.register(want).await?;
            info!(%subject, id, "registered schema");
        }
    }

    let timeout = TIMEOUT;
    let new_users = of("user/", Action::Create);
    if let (Some(dir), false) = (&options.secrets, new_users.is_empty()) {
        for user in new_users {
            let password = secrets::generate()?;
            let admin: AdminClient<DefaultClientContext> = client.create()?;
            let (u, p) = (user.clone(), password.clone());
            tokio::task::spawn_blocking(move || admin_ffi::upsert_scram(&admin, &u, &p, timeout)).await??;
            secrets::write_user(dir, &user, &password, client)
                .with_context(|| format!("writing the credentials of {user}"))?;
            info!(%user, "created SCRAM-SHA-512 user");
        }
    }

    let acls_to = |action: Action| -> Vec<Acl> {
        let ids: Vec<&str> = plan
            .changes
            .iter()
            .filter(|c| c.action == action && c.resource.starts_with("acl/"))
            .map(|c| c.resource.as_str())
            .collect();
        let pool = desired.acls.iter().chain(observed.acls.iter().flatten());
        let mut v: Vec<Acl> = pool.filter(|a| ids.contains(&a.id().as_str())).cloned().collect();
        v.dedup();
        v
    };
    let (create, delete) = (acls_to(Action::Create), acls_to(Action::Delete));
    {
        let admin: AdminClient<DefaultClientContext> = client.create()?;
        tokio::task::spawn_blocking(move || {
            admin_ffi::create_acls(&admin, &create, timeout)?;
            admin_ffi::delete_acls(&admin, &delete, timeout)
        })
        .await??;
    }

    let doomed = of("topic/", Action::Delete);
    if !doomed.is_empty() {
        let names: Vec<&str> = doomed.iter().map(String::as_str).collect();
        for r in admin.delete_topics(&names, &opts).await? {
            let t = r.map_err(|(t, e)| anyhow::anyhow!("deleting topic {t}: {e}"))?;
            info!(topic = %t, "deleted topic");
        }
    }
    for user in of("user/", Action::Delete) {
        let admin: AdminClient<DefaultClientContext> = client.create()?;
        let u = user.clone();
        tokio::task::spawn_blocking(move || admin_ffi::delete_scram(&admin, &u, timeout)).await??;
        if let Some(dir) = &options.secrets {
            let _ = std::fs::remove_file(secrets::user_file(dir, &user));
        }
    }
    Ok(())
}
