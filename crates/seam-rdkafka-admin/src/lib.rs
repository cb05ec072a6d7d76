//! ACLs and SCRAM credentials through librdkafka's Admin API. The rdkafka crate does not wrap
//! these calls, and shelling out to Kafka's Java tools would tie `seam deploy` to a JVM, so
//! this crate holds the only `unsafe` code of seam: every pointer it creates is destroyed
//! before the function returns, and callers see plain Rust values.

#![allow(unsafe_code)] // the FFI boundary; see the crate manifest

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;

/// The kinds of resources seam grants access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResourceKind {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// A transactional id (the publisher's).
    TransactionalId,
}

/// Operations seam grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Read a topic, join a group.
    Read,
    /// Produce, or use a transactional id.
    Write,
    /// Metadata, offsets.
    Describe,
}

/// One allow rule for a literal resource name from any host: the only shape seam creates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Acl {
    /// `User:<name>`.
    pub principal: String,
    /// What it is about.
    pub kind: ResourceKind,
    /// Its literal name.
    pub name: String,
    /// What is allowed.
    pub operation: Operation,
}

impl Acl {
    /// The stable resource id of deploy plans, e.g. `acl/User:a/read/topic/b.events`.
    pub fn id(&self) -> String {
        let op = match self.operation {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Describe => "describe",
        };
        let kind = match self.kind {
            ResourceKind::Topic => "topic",
            ResourceKind::Group => "group",
            ResourceKind::TransactionalId => "transactional-id",
        };
        format!("acl/{}/{op}/{kind}/{}", self.principal, self.name)
    }
}

type Admin = AdminClient<DefaultClientContext>;

/// Every allow rule for a literal name from any host (the shape seam creates). Ask only a
/// cluster with an authorizer: librdkafka drops DescribeAcls' top-level error, so a cluster
/// without one answers with an empty list instead of SECURITY_DISABLED.
pub fn describe_acls(admin: &Admin, timeout: Duration) -> Result<Vec<Acl>, AdminError> {
    let mut errstr = [0 as c_char; 512];
    // SAFETY: a filter matching every binding; null strings mean "any".
    let filter = unsafe {
        rd::rd_kafka_AclBindingFilter_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_ANY,
            ptr::null(),
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_ANY,
            ptr::null(),
            ptr::null(),
            rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ANY,
            rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if filter.is_null() {
        return Err(AdminError::Kafka(format!(
            "cannot build an ACL filter: {}",
            text(errstr.as_ptr())
        )));
    }
    let result = call(admin, timeout, "describing ACLs", |rk, opts, queue| unsafe {
        rd::rd_kafka_DescribeAcls(rk, filter, opts, queue);
    });
    // SAFETY: the filter was copied by the request.
    unsafe { rd::rd_kafka_AclBinding_destroy(filter) };
    let event = result?;
    let mut acls = Vec::new();
    // SAFETY: the result belongs to the event, which lives until `event` is dropped.
    unsafe {
        let res = rd::rd_kafka_event_DescribeAcls_result(event.0);
        let mut n = 0usize;
        let bindings = rd::rd_kafka_DescribeAcls_result_acls(res, &mut n);
        for i in 0..n {
            let b = *bindings.add(i);
            let allow = rd::rd_kafka_AclBinding_permission_type(b)
                == rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW;
            let literal = rd::rd_kafka_AclBinding_resource_pattern_type(b)
                == rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL;
            let host = text(rd::rd_kafka_AclBinding_host(b));
            let (Some(kind), Some(operation)) = (
                kind_from(rd::rd_kafka_AclBinding_restype(b)),
                operation_from(rd::rd_kafka_AclBinding_operation(b)),
            ) else {
                continue;
            };
            if allow && literal && host == "*" {
                acls.push(Acl {
                    principal: text(rd::rd_kafka_AclBinding_principal(b)),
                    kind,
                    name: text(rd::rd_kafka_AclBinding_name(b)),
                    operation,
                });
            }
        }
    }
    acls.sort();
    Ok(acls)
}

/// Creates the ACLs (creating one that exists is a no-op for the broker).
pub fn create_acls(admin: &Admin, acls: &[Acl], timeout: Duration) -> Result<(), AdminError> {
    if acls.is_empty() {
        return Ok(());
    }
    let mut bindings = acls
        .iter()
        .map(|a| binding(a, false))
        .collect::<Result<Vec<_>, AdminError>>()?;
    let result = call(admin, timeout, "creating ACLs", |rk, opts, queue| unsafe {
        rd::rd_kafka_CreateAcls(rk, bindings.as_mut_ptr(), bindings.len(), opts, queue);
    });
    // SAFETY: the request copied the bindings.
    unsafe { rd::rd_kafka_AclBinding_destroy_array(bindings.as_mut_ptr(), bindings.len()) };
    let event = result?;
    // SAFETY: results belong to the event.
    unsafe {
        let res = rd::rd_kafka_event_CreateAcls_result(event.0);
        let mut n = 0usize;
        let results = rd::rd_kafka_CreateAcls_result_acls(res, &mut n);
        for (i, acl) in acls.iter().enumerate().take(n) {
            if let Some(e) = failed(rd::rd_kafka_acl_result_error(*results.add(i))) {
                return Err(AdminError::Kafka(format!("creating {}: {e}", acl.id())));
            }
        }
    }
    Ok(())
}

/// Deletes exactly these ACLs.
pub fn delete_acls(admin: &Admin, acls: &[Acl], timeout: Duration) -> Result<(), AdminError> {
    if acls.is_empty() {
        return Ok(());
    }
    let mut filters = acls
        .iter()
        .map(|a| binding(a, true))
        .collect::<Result<Vec<_>, AdminError>>()?;
    let result = call(admin, timeout, "deleting ACLs", |rk, opts, queue| unsafe {
        rd::rd_kafka_DeleteAcls(rk, filters.as_mut_ptr(), filters.len(), opts, queue);
    });
    // SAFETY: the request copied the filters.
    unsafe { rd::rd_kafka_AclBinding_destroy_array(filters.as_mut_ptr(), filters.len()) };
    let event = result?;
    // SAFETY: responses belong to the event.
    unsafe {
        let res = rd::rd_kafka_event_DeleteAcls_result(event.0);
        let mut n = 0usize;
        let responses = rd::rd_kafka_DeleteAcls_result_responses(res, &mut n);
        for (i, acl) in acls.iter().enumerate().take(n) {
            if let Some(e) = failed(rd::rd_kafka_DeleteAcls_result_response_error(*responses.add(i))) {
                return Err(AdminError::Kafka(format!("deleting {}: {e}", acl.id())));
            }
        }
    }
    Ok(())
}

/// Which of `users` have a SCRAM-SHA-512 credential.
pub fn scram_users(admin: &Admin, users: &[String], timeout: Duration) -> Result<Vec<String>, AdminError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<CString> = users.iter().map(|u| cstring(u)).collect::<Result<_, AdminError>>()?;
    let mut ptrs: Vec<*const c_char> = names.iter().map(|c| c.as_ptr()).collect();
    let event = call(
        admin,
        timeout,
        "describing SCRAM credentials",
        |rk, opts, queue| unsafe {
            rd::rd_kafka_DescribeUserScramCredentials(rk, ptrs.as_mut_ptr(), ptrs.len(), opts, queue);
        },
    )?;
    let mut found = Vec::new();
    // SAFETY: descriptions belong to the event.
    unsafe {
        let res = rd::rd_kafka_event_DescribeUserScramCredentials_result(event.0);
        let mut n = 0usize;
        let descriptions = rd::rd_kafka_DescribeUserScramCredentials_result_descriptions(res, &mut n);
        for i in 0..n {
            let d = *descriptions.add(i);
            if failed(rd::rd_kafka_UserScramCredentialsDescription_error(d)).is_some() {
                // RESOURCE_NOT_FOUND: the user has no credential.
                continue;
            }
            let count = rd::rd_kafka_UserScramCredentialsDescription_scramcredentialinfo_count(d);
            let sha512 = (0..count).any(|j| {
                rd::rd_kafka_ScramCredentialInfo_mechanism(
                    rd::rd_kafka_UserScramCredentialsDescription_scramcredentialinfo(d, j),
                ) == rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_512
            });
            if sha512 {
                found.push(text(rd::rd_kafka_UserScramCredentialsDescription_user(d)));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Sets (or replaces) a user's SCRAM-SHA-512 credential. The password stays in this process.
pub fn upsert_scram(admin: &Admin, user: &str, password: &str, timeout: Duration) -> Result<(), AdminError> {
    let name = cstring(user)?;
    // SAFETY: librdkafka copies username and password; an empty salt asks it to make one.
    let mut alteration = unsafe {
        rd::rd_kafka_UserScramCredentialUpsertion_new(
            name.as_ptr(),
            rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_512,
            8192,
            password.as_ptr(),
            password.len(),
            ptr::null(),
            0,
        )
    };
    let result = call(admin, timeout, "setting a SCRAM credential", |rk, opts, queue| unsafe {
        rd::rd_kafka_AlterUserScramCredentials(rk, &mut alteration, 1, opts, queue);
    });
    // SAFETY: the request copied the alteration.
    unsafe { rd::rd_kafka_UserScramCredentialAlteration_destroy(alteration) };
    let event = result?;
    // SAFETY: responses belong to the event.
    unsafe {
        let res = rd::rd_kafka_event_AlterUserScramCredentials_result(event.0);
        let mut n = 0usize;
        let responses = rd::rd_kafka_AlterUserScramCredentials_result_responses(res, &mut n);
        for i in 0..n {
            if let Some(e) = failed(rd::rd_kafka_AlterUserScramCredentials_result_response_error(
                *responses.add(i),
            )) {
                return Err(AdminError::Kafka(format!(
                    "setting the SCRAM credential of {user}: {e}"
                )));
            }
        }
    }
    Ok(())
}

/// Removes a user's SCRAM-SHA-512 credential.
pub fn delete_scram(admin: &Admin, user: &str, timeout: Duration) -> Result<(), AdminError> {
    let name = cstring(user)?;
    // SAFETY: librdkafka copies the name.
    let mut alteration = unsafe {
        rd::rd_kafka_UserScramCredentialDeletion_new(
            name.as_ptr(),
            rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_512,
        )
    };
    let result = call(
        admin,
        timeout,
        "deleting a SCRAM credential",
        |rk, opts, queue| unsafe {
            rd::rd_kafka_AlterUserScramCredentials(rk, &mut alteration, 1, opts, queue);
        },
    );
    // SAFETY: the request copied the alteration.
    unsafe { rd::rd_kafka_UserScramCredentialAlteration_destroy(alteration) };
    result.map(drop)
}

fn binding(acl: &Acl, filter: bool) -> Result<*mut rd::rd_kafka_AclBinding_t, AdminError> {
    let name = cstring(&acl.name)?;
    let principal = cstring(&acl.principal)?;
    let host = cstring("*")?;
    let restype = match acl.kind {
        ResourceKind::Topic => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
        ResourceKind::Group => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP,
        ResourceKind::TransactionalId => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID,
    };
    let operation = match acl.operation {
        Operation::Read => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ,
        Operation::Write => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE,
        Operation::Describe => rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_DESCRIBE,
    };
    let mut errstr = [0 as c_char; 512];
    let make = if filter {
        rd::rd_kafka_AclBindingFilter_new
    } else {
        rd::rd_kafka_AclBinding_new
    };
    // SAFETY: all strings outlive the call; librdkafka copies them.
    let b = unsafe {
        make(
            restype,
            name.as_ptr(),
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
            principal.as_ptr(),
            host.as_ptr(),
            operation,
            rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if b.is_null() {
        return Err(AdminError::Kafka(format!(
            "cannot build {}: {}",
            acl.id(),
            text(errstr.as_ptr())
        )));
    }
    Ok(b)
}

/// An admin result event, destroyed on drop.
struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the event came from rd_kafka_queue_poll and is destroyed once.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The cluster refused the request or one of its parts (authorization, a missing resource).
    #[error("{0}")]
    Kafka(String),
    /// The cluster did not answer in time.
    #[error("{0}: no answer from the cluster within {1:?}")]
    Timeout(&'static str, Duration),
    /// A name cannot be passed to librdkafka.
    #[error("{0:?} contains a NUL byte; Kafka names and principals cannot")]
    Nul(String),
}

/// Runs one admin request on a private queue and waits for its result event.
fn call(
    admin: &Admin,
    timeout: Duration,
    what: &'static str,
    request: impl FnOnce(*mut rd::rd_kafka_t, *const rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
) -> Result<Event, AdminError> {
    let rk = admin.inner().native_ptr();
    // SAFETY: queue and options are created and destroyed here; the client outlives the call.
    unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        let opts = rd::rd_kafka_AdminOptions_new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ANY);
        let mut errstr = [0 as c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            opts,
            timeout.as_millis().min(i32::MAX as u128) as i32,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        request(rk, opts, queue);
        let raw = rd::rd_kafka_queue_poll(queue, timeout.as_millis().min(i32::MAX as u128) as i32 + 5000);
        rd::rd_kafka_AdminOptions_destroy(opts);
        rd::rd_kafka_queue_destroy(queue);
        if raw.is_null() {
            return Err(AdminError::Timeout(what, timeout));
        }
        let event = Event(raw);
        let code = rd::rd_kafka_event_error(event.0);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let detail = text(rd::rd_kafka_event_error_string(event.0));
            return Err(AdminError::Kafka(format!("{what}: {detail} ({code:?})")));
        }
        Ok(event)
    }
}

/// A per-item error, if it is one: librdkafka hands out error objects with code 0 too.
fn failed(err: *const rd::rd_kafka_error_t) -> Option<String> {
    if err.is_null() {
        return None;
    }
    // SAFETY: a non-null error object owned by its result.
    unsafe {
        let code = rd::rd_kafka_error_code(err);
        (code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| format!("{} ({code:?})", text(rd::rd_kafka_error_string(err))))
    }
}

fn kind_from(t: rd::rd_kafka_ResourceType_t) -> Option<ResourceKind> {
    match t {
        rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC => Some(ResourceKind::Topic),
        rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP => Some(ResourceKind::Group),
        rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID => Some(ResourceKind::TransactionalId),
        _ => None,
    }
}

fn operation_from(o: rd::rd_kafka_AclOperation_t) -> Option<Operation> {
    match o {
        rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_READ => Some(Operation::Read),
        rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_WRITE => Some(Operation::Write),
        rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_DESCRIBE => Some(Operation::Describe),
        _ => None,
    }
}

fn cstring(s: &str) -> Result<CString, AdminError> {
    CString::new(s).map_err(|_| AdminError::Nul(s.to_string()))
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: librdkafka returns NUL-terminated strings that live as long as their owner.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}
