//! The schema registry, reached through `schema_registry_converter` with two caches in front:
//! writer schemas by id (decoding) and ids by subject (publishing). After warm-up the hot path
//! makes no registry call.
//!
//! Only the Confluent REST API is used, so Confluent Schema Registry, Apicurio (ccompat),
//! Karapace and Redpanda all work.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use schema_registry_converter::async_impl::schema_registry::{
    get_all_subjects, get_all_versions, get_schema_by_id, get_schema_by_subject_and_version, post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use thiserror::Error;

use super::catalog::RecordSchema;
use crate::fault::{Class, Classify};

/// What went wrong talking to the registry.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// No schema has this id: the bytes were framed against another registry, or corrupted.
    #[error("schema id {id} is unknown to the registry at {url}; was the event written against another registry?")]
    UnknownId {
        /// The id from the payload.
        id: u32,
        /// Registry asked.
        url: String,
    },
    /// The registry could not be reached or answered with a server error; worth retrying.
    #[error("the schema registry at {url} is unavailable ({detail}); retrying")]
    Unavailable {
        /// Registry asked.
        url: String,
        /// What the client saw.
        detail: String,
    },
    /// The registry refused a request for a reason retrying cannot fix (auth, incompatible schema).
    #[error("the schema registry at {url} refused {what}: {detail}")]
    Refused {
        /// Registry asked.
        url: String,
        /// The request, e.g. `registering subject orders.events-x.Placed`.
        what: String,
        /// What it said.
        detail: String,
    },
    /// The registry returned a schema seam cannot use.
    #[error("schema id {id} from the registry is not a usable Avro record schema: {detail}")]
    BadSchema {
        /// Its id.
        id: u32,
        /// Why.
        detail: String,
    },
}

impl Classify for RegistryError {
    fn class(&self) -> Class {
        match self {
            Self::UnknownId { .. } | Self::BadSchema { .. } => Class::Poison,
            Self::Unavailable { .. } => Class::Retryable,
            Self::Refused { .. } => Class::Fatal,
        }
    }
}

/// A writer schema fetched from the registry.
#[derive(Debug)]
pub struct WriterSchema {
    /// Registry id.
    pub id: u32,
    /// Full name of its record.
    pub full_name: String,
    /// The parsed schema, kept for the process lifetime (see the catalog's note on leaking).
    pub schema: &'static Schema,
}

/// A registry held in memory instead of reached over HTTP: the deterministic simulator's
/// (seam-sim), which decides when it is unavailable. Every call answers at once; `Err` means
/// unavailable (retryable), as a network failure would.
pub trait RegistryBackend: Send + Sync + std::fmt::Debug {
    /// The schema text registered under `id`; `Ok(None)` for an unknown id.
    fn schema(&self, id: u32) -> Result<Option<String>, String>;
    /// Registers `text` under `subject` (or finds it) and returns its id.
    fn register(&self, subject: &str, text: &str) -> Result<u32, String>;
    /// Every subject.
    fn subjects(&self) -> Result<Vec<String>, String>;
    /// The `(id, text)` of each version of `subject`, oldest first; empty when it does not exist.
    fn versions(&self, subject: &str) -> Result<Vec<(u32, String)>, String>;
}

/// How the registry is reached.
#[derive(Debug)]
enum Transport {
    /// Over HTTP (the Confluent REST API).
    Http(SrSettings),
    /// In memory: the simulator's registry.
    Backend(Arc<dyn RegistryBackend>),
}

/// A registry client with caches; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Registry {
    url: String,
    transport: Transport,
    writers: RwLock<HashMap<u32, Arc<WriterSchema>>>,
    ids: RwLock<HashMap<String, u32>>,
}

impl Registry {
    /// A client for the registry at `url` (e.g. `http://127.0.0.1:8081/apis/ccompat/v7`).
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let settings = SrSettings::new_builder(url.to_string())
            .set_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| RegistryError::Refused {
                url: url.to_string(),
                what: "the client settings".into(),
                detail: e.error,
            })?;
        Ok(Self {
            url: url.to_string(),
            transport: Transport::Http(settings),
            writers: RwLock::default(),
            ids: RwLock::default(),
        })
    }

    /// A client of a registry held in memory (the simulator's); `name` stands in for the URL
    /// in messages.
    pub fn with_backend(name: &str, backend: Arc<dyn RegistryBackend>) -> Self {
        Self {
            url: format!("sim://{name}"),
            transport: Transport::Backend(backend),
            writers: RwLock::default(),
            ids: RwLock::default(),
        }
    }

    fn unavailable(&self, detail: String) -> RegistryError {
        RegistryError::Unavailable {
            url: self.url.clone(),
            detail,
        }
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The writer schema for an id, if already fetched.
    pub fn cached_writer(&self, id: u32) -> Option<Arc<WriterSchema>> {
        self.writers.read().ok().and_then(|m| m.get(&id).cloned())
    }

    /// The writer schema for an id, fetched once and cached. Unknown ids are not cached, so a
    /// schema registered later (the fix for a parked event) is found on redrive.
    pub async fn writer(&self, id: u32) -> Result<Arc<WriterSchema>, RegistryError> {
        if let Some(found) = self.cached_writer(id) {
            return Ok(found);
        }
        let text = match &self.transport {
            Transport::Backend(backend) => match backend.schema(id).map_err(|e| self.unavailable(e))? {
                Some(text) => text,
                None => {
                    return Err(RegistryError::UnknownId {
                        id,
                        url: self.url.clone(),
                    })
                }
            },
            Transport::Http(settings) => {
                get_schema_by_id(id, settings)
                    .await
                    .map_err(|e| self.classify(e, format!("schema id {id}"), Some(id)))?
                    .schema
            }
        };
        let parsed = Schema::parse_str(&text).map_err(|e| RegistryError::BadSchema {
            id,
            detail: e.to_string(),
        })?;
        let full_name = match &parsed {
            Schema::Record(r) => r.name.fullname(None),
            other => {
                return Err(RegistryError::BadSchema {
                    id,
                    detail: format!(
                        "it is a {:?}, not a record",
                        apache_avro::schema::SchemaKind::from(other)
                    ),
                })
            }
        };
        let writer = Arc::new(WriterSchema {
            id,
            full_name,
            schema: Box::leak(Box::new(parsed)),
        });
        if let Ok(mut map) = self.writers.write() {
            map.insert(id, Arc::clone(&writer));
        }
        Ok(writer)
    }

    /// Seeds the writer cache with a schema known by other means (a snapshot file's metadata,
    /// an offline decoder, tests), so decoding it needs no registry call.
    pub fn preload(&self, id: u32, schema_text: &str) -> Result<Arc<WriterSchema>, RegistryError> {
        let parsed = Schema::parse_str(schema_text).map_err(|e| RegistryError::BadSchema {
            id,
            detail: e.to_string(),
        })?;
        // A schema this client already knows under the id stays: a snapshot exported against
        // another registry must not redefine the ids live events use here.
        let known = self.writers.read().ok().and_then(|map| map.get(&id).cloned());
        if let Some(known) = known {
            if known.schema.canonical_form() != parsed.canonical_form() {
                return Err(RegistryError::BadSchema {
                    id,
                    detail: format!(
                        "the snapshot carries another schema under this id than the registry ({} vs {}); was it exported against another registry?",
                        parsed.canonical_form(),
                        known.schema.canonical_form()
                    ),
                });
            }
            return Ok(known);
        }
        let Schema::Record(record) = &parsed else {
            return Err(RegistryError::BadSchema {
                id,
                detail: "not a record".into(),
            });
        };
        let writer = Arc::new(WriterSchema {
            id,
            full_name: record.name.fullname(None),
            schema: Box::leak(Box::new(parsed)),
        });
        if let Ok(mut map) = self.writers.write() {
            map.insert(id, Arc::clone(&writer));
        }
        Ok(writer)
    }

    /// Registers (or finds) a record's schema under the topic-record subject
    /// `<topic>-<record full name>` and returns its id. The registry applies its compatibility
    /// rule; an incompatible schema is refused, never produced.
    pub async fn register(&self, topic: &str, record: &RecordSchema) -> Result<u32, RegistryError> {
        self.register_text(topic, &record.full_name, &record.source).await
    }

    /// [`Registry::register`] for a schema given as text: one an older (or newer) binary wrote
    /// journal entries with, found again when those entries are published.
    pub async fn register_text(&self, topic: &str, full_name: &str, text: &str) -> Result<u32, RegistryError> {
        let subject = subject_name(topic, full_name);
        let cache_key = format!("{subject}\0{text}");
        if let Some(id) = self.ids.read().ok().and_then(|m| m.get(&cache_key).copied()) {
            return Ok(id);
        }
        let id = match &self.transport {
            Transport::Backend(backend) => backend.register(&subject, text).map_err(|e| self.unavailable(e))?,
            Transport::Http(settings) => {
                let supplied = SuppliedSchema::new(Some(full_name.to_string()), SchemaType::Avro, text.to_string());
                post_schema(settings, subject.clone(), supplied)
                    .await
                    .map_err(|e| self.classify(e, format!("registering subject {subject}"), None))?
                    .id
            }
        };
        if let Ok(mut map) = self.ids.write() {
            map.insert(cache_key, id);
        }
        Ok(id)
    }

    /// The records with a topic-record subject for `topic`: what its producer publishes (or
    /// published), by full name.
    pub async fn records_of(&self, topic: &str) -> Result<Vec<String>, RegistryError> {
        let subjects = match &self.transport {
            Transport::Backend(backend) => backend.subjects().map_err(|e| self.unavailable(e))?,
            Transport::Http(settings) => get_all_subjects(settings)
                .await
                .map_err(|e| self.classify(e, "listing subjects".into(), None))?,
        };
        let prefix = format!("{topic}-");
        let mut records: Vec<String> = subjects
            .into_iter()
            .filter_map(|s| s.strip_prefix(&prefix).map(str::to_string))
            .collect();
        records.sort();
        Ok(records)
    }

    /// Every schema registered under a record's topic-record subject, newest first, as
    /// `(id, text)`; empty if the subject does not exist.
    pub async fn versions(&self, topic: &str, full_name: &str) -> Result<Vec<(u32, String)>, RegistryError> {
        let subject = subject_name(topic, full_name);
        let settings = match &self.transport {
            Transport::Backend(backend) => {
                let mut found = backend.versions(&subject).map_err(|e| self.unavailable(e))?;
                found.reverse();
                return Ok(found);
            }
            Transport::Http(settings) => settings,
        };
        let versions = match get_all_versions(settings, subject.clone()).await {
            Ok(v) => v,
            Err(e) if e.error.contains("status 404") => return Ok(Vec::new()),
            Err(e) => return Err(self.classify(e, format!("listing the versions of subject {subject}"), None)),
        };
        let mut found = Vec::with_capacity(versions.len());
        for version in versions.into_iter().rev() {
            let registered = get_schema_by_subject_and_version(settings, &subject, Some(version))
                .await
                .map_err(|e| self.classify(e, format!("reading version {version} of subject {subject}"), None))?;
            found.push((registered.id, registered.schema));
        }
        Ok(found)
    }

    fn classify(&self, e: SRCError, what: String, id: Option<u32>) -> RegistryError {
        let detail = match &e.cause {
            Some(cause) => format!("{}: {cause}", e.error),
            None => e.error.clone(),
        };
        let url = self.url.clone();
        if e.retriable || e.error.contains("status 5") {
            RegistryError::Unavailable { url, detail }
        } else if let (Some(id), true) = (id, e.error.contains("status 404")) {
            RegistryError::UnknownId { id, url }
        } else {
            RegistryError::Refused { url, what, detail }
        }
    }
}

/// The topic-record subject name: `<topic>-<record full name>`.
pub fn subject_name(topic: &str, record_full_name: &str) -> String {
    format!("{topic}-{record_full_name}")
}
