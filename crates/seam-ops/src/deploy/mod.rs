//! `seam deploy`: makes a Kafka cluster and a schema registry hold what a topology declares:
//! topics with their configs, schema subjects (compatibility-checked before anything
//! changes), ACLs confining each service principal, and SCRAM users. It observes, plans per
//! resource, and applies only a plan without problems; nothing is deleted without its own
//! `--allow-delete`, and a second run finds nothing to do.

pub use seam_rdkafka_admin as admin_ffi;
mod apply;
pub mod coverage;
pub mod desired;
pub mod k8s;
pub mod plan;
mod schemas;
pub mod secrets;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, OwnedResourceSpecifier, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

pub use desired::Desired;
pub use plan::{Action, Change, Observed, ObservedTopic, Plan};
pub use schemas::Registry;

use seam::topology::Topology;

/// How to deploy.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Plan only.
    pub dry_run: bool,
    /// Resource ids that may be deleted.
    pub allow_delete: BTreeSet<String>,
    /// Where to write the client properties of SCRAM users deploy creates; None: users are
    /// not managed (an identity system outside seam owns them).
    pub secrets: Option<PathBuf>,
    /// Consumers running now (name → base URL): the reader schemas compiled into them are
    /// checked against the schemas this deploy registers, as the topology's files are.
    pub running: BTreeMap<String, String>,
}

/// What a deploy found and did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// Every resource and what happened to it.
    pub changes: Vec<Change>,
    /// Why nothing was applied (empty when the plan was fine).
    pub problems: Vec<String>,
    /// Things skipped on purpose.
    pub notes: Vec<String>,
    /// Whether the cluster was changed.
    pub applied: bool,
}

/// Plans, and applies unless `dry_run` or the plan has problems.
pub async fn deploy(
    topology: &Topology,
    client: &ClientConfig,
    registry: &Registry,
    options: &Options,
) -> anyhow::Result<Outcome> {
    let brokers = broker_count(client).await?;
    let desired = Desired::of(topology, brokers)?;
    let observed = observe(topology, &desired, client, registry, options).await?;
    let mut plan = plan::plan(&desired, &observed, &options.allow_delete);
    let (readers, unread) = coverage::readers(topology, &options.running).await;
    let gate = coverage::check(&readers, &desired, registry).await?;
    plan.problems.extend(gate.refused.iter().map(ToString::to_string));
    plan.notes.extend(unread.into_iter().chain(gate.notes));
    let apply = !options.dry_run && plan.problems.is_empty() && !plan.is_empty();
    if apply {
        apply::apply(&plan, &desired, &observed, client, registry, options).await?;
    }
    // The record is written even for an empty plan: it adopts what exists, so a later removal
    // from the topology is proposed as a delete.
    if !options.dry_run && plan.problems.is_empty() && plan.managed_after() != observed.managed {
        state::save(client, &topology.name, plan.managed_after(), brokers).await?;
    }
    // Where deploy manages users it also gives each principal its HTTP token (kept once made).
    if let (false, true, Some(dir)) = (options.dry_run, plan.problems.is_empty(), &options.secrets) {
        secrets::write_http_tokens(dir, topology)?;
    }
    Ok(Outcome {
        changes: plan.changes,
        problems: plan.problems,
        notes: plan.notes,
        applied: apply,
    })
}

/// Grants what a new subscription needs on a cluster that enforces ACLs: the consumer's
/// principal may read and describe the source's topic, exactly the rules `seam deploy` of the
/// edited topology adds. `seam register` runs it before the consumer reads the source, so the
/// registration does not wait for a deploy. Nothing is removed.
pub async fn grant_subscription(
    topology: &Topology,
    client: &ClientConfig,
    consumer: &str,
    source: &str,
) -> anyhow::Result<()> {
    let topic = seam::translator::events_topic(source);
    let principal = topology
        .service(consumer)
        .map(|s| s.principal())
        .ok_or_else(|| anyhow::anyhow!("the topology declares no service {consumer}"))?;
    let acls: Vec<admin_ffi::Acl> = Desired::of(topology, 1)?
        .acls
        .into_iter()
        .filter(|a| a.principal == principal && a.name == topic)
        .collect();
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    Ok(tokio::task::spawn_blocking(move || admin_ffi::create_acls(&admin, &acls, Duration::from_secs(30))).await??)
}

/// Warnings for record types a producer's schemas hold that a consumer's translator neither
/// reads nor ignores: their events would be skipped (and counted as unhandled). A translator's
/// declarations are in its binary, so each consumer is asked while it runs (`GET
/// /subscriptions` at its address in `urls`); one that is not running is noted as unchecked.
pub async fn undeclared_types(topology: &Topology, urls: &BTreeMap<String, String>) -> Vec<String> {
    let http = crate::commands::reach::http(Some(Duration::from_secs(3)));
    let mut out = Vec::new();
    for consumer in topology.consumers.iter().filter(|c| !c.sources.is_empty()) {
        let name = &consumer.service;
        let answer = match urls.get(name) {
            Some(url) => http
                .get(format!("{url}/subscriptions"))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status),
            None => {
                out.push(format!(
                    "{name} is not running here, so its translators' record types were not checked against its sources' schemas"
                ));
                continue;
            }
        };
        let declared: BTreeMap<String, seam::runtime::Declared> = match answer {
            Ok(r) => match r.json::<serde_json::Value>().await {
                Ok(v) => serde_json::from_value(v["declared"].clone()).unwrap_or_default(),
                Err(_) => BTreeMap::new(),
            },
            Err(e) => {
                out.push(format!(
                    "{name} did not answer ({e}); its translators' record types were not checked"
                ));
                continue;
            }
        };
        for source in &consumer.sources {
            let Some(producer) = topology.service(&source.service) else {
                continue;
            };
            let Ok(catalog) = seam::codec::Catalog::load_dir(&producer.schemas) else {
                continue;
            };
            let Some(d) = declared.get(&seam::translator::events_topic(&source.service)) else {
                out.push(format!(
                    "{name} runs no translator {} (it will not start with this topology)",
                    source.translator
                ));
                continue;
            };
            for record in catalog.records().filter(|r| !d.covers(&r.full_name)) {
                out.push(format!(
                    "{}'s schemas hold {}, which {name}'s translator {} neither reads nor ignores: its events will be skipped and counted as unhandled; declare it in the translator",
                    source.service, record.full_name, source.translator
                ));
            }
        }
    }
    out
}

/// How many brokers the cluster has (replication factors are capped by it). A broker that is
/// down is missing from the metadata's broker list but still named in the replica lists of its
/// partitions, so both are counted: a deploy during a broker restart does not take the cluster
/// for a smaller one.
pub async fn broker_count(client: &ClientConfig) -> anyhow::Result<i32> {
    let client = client.clone();
    tokio::task::spawn_blocking(move || {
        let probe: BaseConsumer = client.create()?;
        let md = probe
            .fetch_metadata(None, Duration::from_secs(10))
            .context("the cluster does not answer a metadata request")?;
        let mut ids: BTreeSet<i32> = md.brokers().iter().map(|b| b.id()).collect();
        for t in md.topics() {
            for p in t.partitions() {
                ids.extend(p.replicas().iter().copied());
            }
        }
        Ok(ids.len() as i32)
    })
    .await?
}

/// Whether the brokers run an authorizer (`authorizer.class.name` is set).
async fn has_authorizer(admin: &AdminClient<DefaultClientContext>) -> anyhow::Result<bool> {
    let brokers = {
        let md = admin.inner().fetch_metadata(None, Duration::from_secs(10))?;
        md.brokers().iter().map(|b| b.id()).collect::<Vec<_>>()
    };
    let Some(id) = brokers.first() else {
        anyhow::bail!("the cluster's metadata lists no brokers")
    };
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let results = admin.describe_configs([&ResourceSpecifier::Broker(*id)], &opts).await?;
    let resource = results
        .into_iter()
        .next()
        .context("no answer describing the broker config")?
        .map_err(|e| anyhow::anyhow!("describing the config of broker {id}: {e}"))?;
    Ok(resource
        .get("authorizer.class.name")
        .and_then(|e| e.value.as_deref())
        .is_some_and(|v| !v.trim().is_empty()))
}

fn admin(client: &ClientConfig) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(client.create()?)
}

async fn observe(
    topology: &Topology,
    desired: &Desired,
    client: &ClientConfig,
    registry: &Registry,
    options: &Options,
) -> anyhow::Result<Observed> {
    let managed = {
        let client = client.clone();
        let name = topology.name.clone();
        tokio::task::spawn_blocking(move || state::load(&client, &name)).await??
    };
    let managed_topics: BTreeSet<String> = managed
        .iter()
        .filter_map(|id| id.strip_prefix("topic/").map(str::to_string))
        .collect();
    let wanted: BTreeSet<String> = desired
        .topics
        .keys()
        .cloned()
        .chain(desired.external.keys().cloned())
        .chain(managed_topics)
        .collect();
    let mut topics = {
        let client = client.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<BTreeMap<String, ObservedTopic>> {
            let probe: BaseConsumer = client.create()?;
            let md = probe.fetch_metadata(None, Duration::from_secs(10))?;
            Ok(md
                .topics()
                .iter()
                .filter(|t| wanted.contains(t.name()) && t.error().is_none())
                .map(|t| {
                    let replication = t.partitions().first().map_or(0, |p| p.replicas().len() as i32);
                    (
                        t.name().to_string(),
                        ObservedTopic {
                            partitions: t.partitions().len() as i32,
                            replication,
                            configs: BTreeMap::new(),
                            dynamic: BTreeMap::new(),
                        },
                    )
                })
                .collect())
        })
        .await??
    };
    let describer = admin(client)?;
    let names: Vec<String> = topics.keys().cloned().collect();
    let specs: Vec<ResourceSpecifier<'_>> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    if !specs.is_empty() {
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
        for result in describer.describe_configs(specs.iter(), &opts).await? {
            let resource = result.map_err(|e| anyhow::anyhow!("describing topic configs: {e}"))?;
            let OwnedResourceSpecifier::Topic(name) = &resource.specifier else {
                continue;
            };
            if let Some(t) = topics.get_mut(name) {
                for entry in &resource.entries {
                    let Some(v) = &entry.value else { continue };
                    if desired::MANAGED_CONFIGS.contains(&entry.name.as_str()) {
                        t.configs.insert(entry.name.clone(), v.clone());
                    }
                    if entry.source == ConfigSource::DynamicTopic {
                        t.dynamic.insert(entry.name.clone(), v.clone());
                    }
                }
            }
        }
    }
    let mut subjects = BTreeMap::new();
    for s in desired.schemas.values() {
        subjects.insert(s.subject.clone(), registry.observe(s).await?);
    }
    let timeout = Duration::from_secs(30);
    let acls = if has_authorizer(&describer).await? {
        let admin = admin(client)?;
        let found = tokio::task::spawn_blocking(move || admin_ffi::describe_acls(&admin, timeout)).await??;
        Some(found.into_iter().collect::<BTreeSet<_>>())
    } else {
        None
    };
    let users = match &options.secrets {
        None => None,
        Some(dir) => {
            let admin = admin(client)?;
            let names: BTreeSet<String> = desired
                .users
                .iter()
                .cloned()
                .chain(
                    managed
                        .iter()
                        .filter_map(|id| id.strip_prefix("user/").map(str::to_string)),
                )
                .collect();
            let names: Vec<String> = names.into_iter().collect();
            let found = tokio::task::spawn_blocking(move || admin_ffi::scram_users(&admin, &names, timeout)).await??;
            // A credential whose file is lost is as good as none: it is set again.
            let usable = |u: &String| !desired.users.contains(u) || secrets::user_file(dir, u).is_file();
            Some(found.into_iter().filter(usable).collect())
        }
    };
    Ok(Observed {
        topics,
        schemas: subjects,
        acls,
        users,
        managed,
    })
}
