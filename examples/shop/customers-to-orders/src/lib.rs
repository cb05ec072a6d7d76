//! `customers-to-orders`: who registered with customers, for orders' replica of customers.
//!
//! Reads `CustomerRegistered` through its own reader schema (`reader/`, only the fields orders
//! keeps) and turns it into `KnowCustomer`. Pure and deterministic.

use apache_avro::AvroSchema;
use seam_core::translator::{ForeignEvent, TranslateError, Translator};
use serde::{Deserialize, Serialize};
use shop_orders::Command;

/// The record this translator reads.
pub const CUSTOMER_REGISTERED: &str = "shop.customers.CustomerRegistered";

/// Orders' view of `CustomerRegistered` (`reader/CustomerRegistered.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "shop.customers")]
pub struct CustomerRegistered {
    /// Customer id.
    pub customer: String,
    /// Name.
    pub name: String,
}

/// The translator.
#[derive(Debug, Default, Clone, Copy)]
pub struct CustomersToOrders;

impl Translator<Command> for CustomersToOrders {
    fn source(&self) -> &str {
        "customers"
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![(CUSTOMER_REGISTERED, include_str!("../reader/CustomerRegistered.avsc"))]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<Command>, TranslateError> {
        if event.record != CUSTOMER_REGISTERED {
            return Ok(vec![]);
        }
        let e: CustomerRegistered = event.payload()?;
        Ok(vec![Command::KnowCustomer {
            customer: e.customer,
            name: e.name,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam_core::translator::{check_reader, check_reader_type, test_event};

    const WRITER: &str = include_str!("../../customers/schemas/CustomerRegistered.avsc");

    #[test]
    fn the_reader_schema_file_matches_the_reader_type_and_reads_what_customers_writes() {
        for (_, reader) in CustomersToOrders.reader_schemas() {
            check_reader_type::<CustomerRegistered>(reader).expect("reader type and file agree");
            check_reader(WRITER, reader).expect("reads the published schema");
        }
    }

    #[test]
    fn a_registration_becomes_know_customer() {
        let registered = CustomerRegistered {
            customer: "c1".into(),
            name: "Ada".into(),
        };
        let commands = CustomersToOrders
            .translate(&test_event("customers", CUSTOMER_REGISTERED, registered))
            .expect("translates");
        assert_eq!(
            commands,
            vec![Command::KnowCustomer {
                customer: "c1".into(),
                name: "Ada".into()
            }]
        );
    }
}
