//! The secure local stack (`seam local up --secure`): a CA made for this stack, one broker
//! certificate for 127.0.0.1/localhost signed by it, SASL_SSL listeners with SCRAM-SHA-512 for
//! clients and brokers, PLAIN over TLS between controllers (KRaft cannot check SCRAM before
//! its metadata is loaded), and the standard authorizer with `User:admin` as the only super
//! user. Made once per stack and kept, so restarts reuse it.
//!
//! Everything secret lives in `<stack>/secure/` with mode 0600: the CA key, the broker key
//! store (PKCS#12: Java 17 cannot read PBES2-encrypted PEM keys), `secrets.json`, and
//! `admin.properties`, the operator's client properties. Clients verify the broker
//! certificate against `ca.pem`: a client of this stack cannot be pointed at another cluster.

use std::io::Write;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use serde::{Deserialize, Serialize};

use super::error::LocalError;
use super::layout::Home;
use super::shape::{NodePorts, Shape};

/// The operator principal: the only super user.
pub const ADMIN: &str = "admin";

/// Passwords of the stack, made once.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secrets {
    /// `User:admin`'s SCRAM password (clients and inter-broker).
    pub admin: String,
    /// The controllers' PLAIN password.
    pub controller: String,
    /// The broker key's password.
    pub key: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([redacted])")
    }
}

/// Files of the secure stack.
#[derive(Debug, Clone)]
pub struct Material {
    /// The folder.
    pub dir: PathBuf,
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The broker's key and certificate chain (PKCS#12, password-protected).
    pub broker: PathBuf,
    /// The operator's client properties.
    pub admin_properties: PathBuf,
    /// The passwords.
    pub secrets: Secrets,
}

/// Makes (or finds) the CA, the broker certificate, the passwords and the admin's properties.
pub fn prepare(home: &Home, shape: &Shape) -> Result<Material, LocalError> {
    let dir = home.secure_dir(shape);
    std::fs::create_dir_all(dir.join("users")).map_err(LocalError::io("cannot create", &dir))?;
    let secrets_file = dir.join("secrets.json");
    let secrets: Secrets = match std::fs::read(&secrets_file) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| LocalError::Tls(format!("{}: {e}", secrets_file.display())))?
        }
        Err(_) => {
            let s = Secrets {
                admin: generate_password().map_err(|e| LocalError::Tls(e.to_string()))?,
                controller: generate_password().map_err(|e| LocalError::Tls(e.to_string()))?,
                key: generate_password().map_err(|e| LocalError::Tls(e.to_string()))?,
            };
            write_private(&secrets_file, &serde_json::to_vec_pretty(&s).unwrap_or_default())?;
            s
        }
    };
    let m = Material {
        ca: dir.join("ca.pem"),
        broker: dir.join("broker.p12"),
        admin_properties: dir.join("admin.properties"),
        dir: dir.clone(),
        secrets,
    };
    if !m.ca.is_file() || !m.broker.is_file() {
        make_certificates(&m).map_err(|e| LocalError::Tls(format!("generating the stack's certificates: {e}")))?;
    }
    let props = format!(
        "# The local stack's operator ({ADMIN}, a super user); written by `seam local up --secure`.\n\
security.protocol=SASL_SSL\n\
sasl.mechanism=SCRAM-SHA-512\n\
sasl.username={ADMIN}\n\
sasl.password={}\n\
ssl.ca.location={}\n\
ssl.endpoint.identification.algorithm=https\n",
        m.secrets.admin,
        m.ca.display()
    );
    write_private(&m.admin_properties, props.as_bytes())?;
    Ok(m)
}

/// The listener and security part of a secure node's `server.properties`.
pub fn server_properties(m: &Material, node: &NodePorts) -> String {
    format!(
        "listeners=SASL_SSL://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}\n\
advertised.listeners=SASL_SSL://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}\n\
inter.broker.listener.name=SASL_SSL\n\
controller.listener.names=CONTROLLER\n\
listener.security.protocol.map=CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL\n\
sasl.enabled.mechanisms=SCRAM-SHA-512\n\
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512\n\
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{ADMIN}\" password=\"{admin}\";\n\
sasl.mechanism.controller.protocol=PLAIN\n\
listener.name.controller.sasl.enabled.mechanisms=PLAIN\n\
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"{ADMIN}\" password=\"{cp}\" user_{ADMIN}=\"{cp}\";\n\
ssl.keystore.type=PKCS12\n\
ssl.keystore.location={broker}\n\
ssl.keystore.password={key}\n\
ssl.key.password={key}\n\
ssl.truststore.type=PEM\n\
ssl.truststore.location={ca}\n\
ssl.endpoint.identification.algorithm=https\n\
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
super.users=User:{ADMIN}\n\
allow.everyone.if.no.acl.found=false\n",
        client = node.client_port,
        controller = node.controller_port,
        admin = m.secrets.admin,
        cp = m.secrets.controller,
        key = m.secrets.key,
        broker = m.broker.display(),
        ca = m.ca.display(),
    )
}

/// The `--add-scram` argument that creates the admin's credential when storage is formatted.
pub fn format_scram(m: &Material) -> String {
    format!("SCRAM-SHA-512=[name={ADMIN},password={}]", m.secrets.admin)
}

fn make_certificates(m: &Material) -> Result<(), openssl::error::ErrorStack> {
    let ca_key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let ca = certificate("seam local stack CA", &ca_key, None, true)?;
    let broker_key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let broker = certificate("127.0.0.1", &broker_key, Some((&ca, &ca_key)), false)?;
    let save = |path: &Path, bytes: &[u8]| write_private(path, bytes).map_err(|_| openssl::error::ErrorStack::get());
    save(&m.dir.join("ca.key"), &ca_key.private_key_to_pem_pkcs8()?)?;
    save(&m.ca, &ca.to_pem()?)?;
    let mut chain = Stack::new()?;
    chain.push(ca.clone())?;
    let keystore = Pkcs12::builder()
        .name("kafka")
        .pkey(&broker_key)
        .cert(&broker)
        .ca(chain)
        .build2(&m.secrets.key)?;
    save(&m.broker, &keystore.to_der()?)?;
    Ok(())
}

fn certificate(
    common_name: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    is_ca: bool,
) -> Result<X509, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", common_name)?;
    name.append_entry_by_text("O", "seam")?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(issuer.map_or(&name, |(ca, _)| ca.subject_name()))?;
    b.set_pubkey(key)?;
    b.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    b.set_not_after(Asn1Time::days_from_now(3650)?.as_ref())?;
    if is_ca {
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    } else {
        b.append_extension(BasicConstraints::new().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_encipherment()
                .build()?,
        )?;
        b.append_extension(ExtendedKeyUsage::new().server_auth().client_auth().build()?)?;
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .dns("localhost")
            .build(&b.x509v3_context(issuer.map(|(ca, _)| ca.as_ref()), None))?;
        b.append_extension(san)?;
    }
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())?;
    Ok(b.build())
}

/// Writes a file only its owner can read.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(LocalError::io("cannot write", path))?;
    f.write_all(bytes).map_err(LocalError::io("cannot write", path))
}

/// A 32-character password from the OS's random source, for a SCRAM user.
pub fn generate_password() -> Result<String, std::io::Error> {
    use base64::Engine;
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
