//! Customers: registers customers and publishes `CustomerRegistered`. The walkthrough's source
//! service (README, "Integrate your own service").

#[cfg(feature = "http")]
pub mod api;

use apache_avro::AvroSchema;
use seam_core::codec::{Catalog, CatalogError};
use seam_core::service::{Apply, ApplyError, Event, Service, SnapshotOut};
use serde::{Deserialize, Serialize};

/// The service name; it publishes to `customers.events`.
pub const NAME: &str = "customers";

/// The published contract: every `.avsc` under `schemas/`.
pub fn catalog() -> Result<Catalog, CatalogError> {
    Catalog::from_sources([(
        "CustomerRegistered.avsc",
        include_str!("../schemas/CustomerRegistered.avsc"),
    )])
}

/// A customer registered (`schemas/CustomerRegistered.avsc`; a test checks they agree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "shop.customers")]
pub struct CustomerRegistered {
    /// Customer id.
    pub customer: String,
    /// Name.
    pub name: String,
    /// Email address.
    pub email: String,
}

impl Event for CustomerRegistered {
    const RECORD: &'static str = "shop.customers.CustomerRegistered";
}

/// What clients ask of the service (`POST /commands`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Register a new customer.
    Register {
        /// Customer id.
        customer: String,
        /// Name.
        name: String,
        /// Email address.
        email: String,
    },
}

/// Model key of a customer.
pub fn key(customer: &str) -> String {
    format!("customer/{customer}")
}

/// The customers service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Customers;

impl Service for Customers {
    type Command = Command;

    fn apply(&self, ctx: &mut Apply<'_>, command: &Command) -> Result<(), ApplyError> {
        let Command::Register { customer, name, email } = command;
        if ctx.get::<CustomerRegistered>(&key(customer))?.is_some() {
            return Err(ApplyError::rejected(format!(
                "customer {customer} is registered already"
            )));
        }
        let registered = CustomerRegistered {
            customer: customer.clone(),
            name: name.clone(),
            email: email.clone(),
        };
        ctx.put(&key(customer), &registered)?;
        ctx.emit(&key(customer), &registered)?;
        Ok(())
    }

    /// Every customer as its `CustomerRegistered`: what a consumer that joins late bootstraps from.
    fn snapshot(&self, out: &mut SnapshotOut<'_>) -> Result<(), ApplyError> {
        for customer in out.scan::<CustomerRegistered>("customer/")? {
            let (key, registered) = customer?;
            out.emit(&key, &registered)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam_core::service::apply_command;
    use seam_core::store::{Store, WriteSet};

    #[test]
    fn the_rust_event_type_matches_its_schema_file() {
        let catalog = catalog().expect("catalog");
        catalog
            .check_type::<CustomerRegistered>(CustomerRegistered::RECORD)
            .expect("CustomerRegistered");
    }

    fn apply(store: &Store, set: &mut WriteSet, command: &Command) -> Result<(), ApplyError> {
        apply_command(&Customers, store, set, &catalog().expect("catalog"), command)
    }

    #[test]
    fn a_customer_registers_once() {
        let store = Store::in_memory();
        let mut set = store.write_set().expect("write set");
        let register = Command::Register {
            customer: "c1".into(),
            name: "Ada".into(),
            email: "ada@example.org".into(),
        };
        apply(&store, &mut set, &register).expect("first registration");
        let again = apply(&store, &mut set, &register).expect_err("second registration");
        assert!(again.to_string().contains("registered already"), "{again}");
        assert_eq!(set.entries().len(), 1, "one CustomerRegistered");
    }
}
