//! The schema registry side of deploy, over the Confluent REST API only (Confluent, Apicurio's
//! ccompat, Karapace and Redpanda all answer it): find a schema's version, ask whether a new
//! one is compatible with every registered version, set a subject's level, register.

use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::desired::Schema;
use super::plan::ObservedSchema;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Why `new` may not follow `old` under the compatibility `level`, by Avro's own resolution
/// rules (apache-avro's checker): registries often answer only `is_compatible: false`.
/// `None` when the checker finds no problem (the registry's rule was stricter) or a schema
/// does not parse.
pub fn explain(old: &str, new: &str, level: &str) -> Option<String> {
    use apache_avro::schema_compatibility::SchemaCompatibility;
    let (old, new) = (
        apache_avro::Schema::parse_str(old).ok()?,
        apache_avro::Schema::parse_str(new).ok()?,
    );
    let name = match &new {
        apache_avro::Schema::Record(r) => r.name.fullname(None),
        _ => "the schema".into(),
    };
    let level = level.to_ascii_uppercase();
    let mut reasons = Vec::new();
    if level.starts_with("BACKWARD") || level.starts_with("FULL") {
        if let Err(e) = SchemaCompatibility::can_read(&old, &new) {
            reasons.push(format!(
                "{level} requires readers on the new {name} to read events written with the old one, and they cannot: {e}"
            ));
        }
    }
    if level.starts_with("FORWARD") || level.starts_with("FULL") {
        if let Err(e) = SchemaCompatibility::can_read(&new, &old) {
            reasons.push(format!(
                "{level} requires readers still on the old {name} to read events written with the new one, and they cannot: {e}"
            ));
        }
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// A registry client for deploy.
#[derive(Debug, Clone)]
pub struct Registry {
    base: String,
    http: reqwest::Client,
}

impl Registry {
    /// A client for the Confluent-compatible API at `base`.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?,
        })
    }

    /// What the registry holds for one desired subject, including (for a schema not registered
    /// yet) whether it is compatible with every existing version.
    pub async fn observe(&self, want: &Schema) -> anyhow::Result<ObservedSchema> {
        let subject = &want.subject;
        let mut o = ObservedSchema::default();
        let (status, body) = self.get(&format!("subjects/{subject}/versions")).await?;
        if status == StatusCode::OK {
            o.versions = serde_json::from_value(body).context("the registry's version list")?;
        } else if status != StatusCode::NOT_FOUND {
            anyhow::bail!("listing the versions of {subject}: {status} {body}");
        }
        let (status, body) = self.get(&format!("config/{subject}")).await?;
        if status == StatusCode::OK {
            o.compatibility = body["compatibilityLevel"].as_str().map(str::to_string);
        }
        if o.versions.is_empty() {
            return Ok(o);
        }
        let (status, body) = self.post(&format!("subjects/{subject}"), &want.text).await?;
        if status == StatusCode::OK {
            o.registered = body["version"].as_i64().map(|v| v as i32);
            return Ok(o);
        }
        // Not registered: every existing version must accept it under the subject's level.
        for v in &o.versions {
            let (status, body) = self
                .post(
                    &format!("compatibility/subjects/{subject}/versions/{v}?verbose=true"),
                    &want.text,
                )
                .await?;
            if status != StatusCode::OK {
                anyhow::bail!("checking {subject} against version {v}: {status} {body}");
            }
            if body["is_compatible"] == json!(false) {
                let level = o.compatibility.clone().unwrap_or_else(|| want.compatibility.clone());
                let (status, old) = self.get(&format!("subjects/{subject}/versions/{v}")).await?;
                let explained = match (status, old["schema"].as_str()) {
                    (StatusCode::OK, Some(old)) => explain(old, &want.text, &level),
                    _ => None,
                };
                let messages = body["messages"]
                    .as_array()
                    .map(|m| m.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
                    .filter(|m| !m.is_empty());
                let reason = match (explained, messages) {
                    (Some(e), _) => e,
                    (None, Some(m)) => m,
                    (None, None) => format!("the registry gave no reason; the subject's rule is {level}"),
                };
                o.incompatible = Some(format!("not compatible with version {v}: {reason}"));
                break;
            }
        }
        Ok(o)
    }

    /// Every registered version of `subject` with its schema text, oldest first; none for a
    /// subject the registry does not know.
    pub async fn schemas(&self, subject: &str) -> anyhow::Result<Vec<(i32, String)>> {
        let (status, body) = self.get(&format!("subjects/{subject}/versions")).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if status != StatusCode::OK {
            anyhow::bail!("listing the versions of {subject}: {status} {body}");
        }
        let versions: Vec<i32> = serde_json::from_value(body).context("the registry's version list")?;
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            let (status, body) = self.get(&format!("subjects/{subject}/versions/{v}")).await?;
            let text = body["schema"].as_str().filter(|_| status == StatusCode::OK);
            let text = text.with_context(|| format!("reading version {v} of {subject}: {status} {body}"))?;
            out.push((v, text.to_string()));
        }
        Ok(out)
    }

    /// Sets the subject's compatibility level.
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> anyhow::Result<()> {
        let body = json!({ "compatibility": level });
        let (status, answer) = self
            .call(Method::PUT, &format!("config/{subject}"), Some(&body))
            .await?;
        if !status.is_success() {
            anyhow::bail!("setting the compatibility of {subject}: {status} {answer}");
        }
        Ok(())
    }

    /// Registers the schema under its subject; returns the schema id.
    pub async fn register(&self, want: &Schema) -> anyhow::Result<i64> {
        let subject = &want.subject;
        let (status, body) = self.post(&format!("subjects/{subject}/versions"), &want.text).await?;
        if status != StatusCode::OK {
            anyhow::bail!("registering {subject}: {status} {body}");
        }
        body["id"]
            .as_i64()
            .with_context(|| format!("registering {subject}: no id in {body}"))
    }

    async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, schema: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Method::POST, path, Some(&json!({ "schema": schema }))).await
    }

    /// One request to the registry: its status and JSON answer (null when it has none). A
    /// request that gets no answer (refused, reset, timed out) is sent again, up to three times:
    /// every request deploy makes is idempotent (registering a schema the registry already
    /// holds returns its id), and a registry stalled for a few seconds should not fail a deploy.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<(StatusCode, Value)> {
        let mut attempt = 1;
        loop {
            let mut request = self.http.request(method.clone(), format!("{}/{path}", self.base));
            if let Some(body) = body {
                request = request.header("Content-Type", CONTENT_TYPE).json(body);
            }
            match request.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    return Ok((status, resp.json().await.unwrap_or(Value::Null)));
                }
                Err(e) if attempt < 3 && (e.is_timeout() || e.is_connect() || e.is_request()) => {
                    tracing::warn!(registry = %self.base, %path, attempt, error = %e, "the registry did not answer; asking again");
                    tokio::time::sleep(Duration::from_secs(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e))
                        .with_context(|| format!("the registry at {} does not answer", self.base))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::explain;

    const OLD: &str = r#"{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"id","type":"string"}]}"#;
    const ADDED_NO_DEFAULT: &str = r#"{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"colour","type":"string"}]}"#;
    const ADDED_DEFAULT: &str = r#"{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"colour","type":"string","default":"red"}]}"#;

    #[test]
    fn a_refusal_names_the_record_the_field_and_the_rule() {
        let why = explain(OLD, ADDED_NO_DEFAULT, "BACKWARD").expect("incompatible");
        assert!(
            why.contains("t.Thing") && why.contains("colour") && why.contains("default") && why.contains("BACKWARD"),
            "{why}"
        );
        assert_eq!(explain(OLD, ADDED_DEFAULT, "BACKWARD_TRANSITIVE"), None);
        assert_eq!(
            explain(OLD, ADDED_NO_DEFAULT, "FORWARD"),
            None,
            "old readers ignore the new field"
        );
        let removed = explain(ADDED_NO_DEFAULT, OLD, "FORWARD").expect("old readers need colour");
        assert!(removed.contains("colour") && removed.contains("FORWARD"), "{removed}");
        assert_eq!(explain(OLD, ADDED_NO_DEFAULT, "NONE"), None);
    }
}
