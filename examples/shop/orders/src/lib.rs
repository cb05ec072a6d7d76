//! Orders: takes orders for known customers and publishes `OrderPlaced`. It knows customers
//! from the customers service's events (through the `customers-to-orders` translator), kept as
//! a replica it never writes itself. The walkthrough's consumer (README, "Integrate your own
//! service").

#[cfg(feature = "http")]
pub mod api;

use apache_avro::AvroSchema;
use seam_core::codec::{Catalog, CatalogError};
use seam_core::service::{Apply, ApplyError, Event, Replica, Service};
use serde::{Deserialize, Serialize};

/// The service name; it publishes to `orders.events`.
pub const NAME: &str = "orders";

/// The published contract: every `.avsc` under `schemas/`.
pub fn catalog() -> Result<Catalog, CatalogError> {
    Catalog::from_sources([("OrderPlaced.avsc", include_str!("../schemas/OrderPlaced.avsc"))])
}

/// An order was placed (`schemas/OrderPlaced.avsc`; a test checks they agree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "shop.orders")]
pub struct OrderPlaced {
    /// Order id.
    pub order: String,
    /// Customer id.
    pub customer: String,
    /// What was ordered.
    pub item: String,
}

impl Event for OrderPlaced {
    const RECORD: &'static str = "shop.orders.OrderPlaced";
}

/// Commands: `Place` from clients, `KnowCustomer` from the translator only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// A customer orders an item.
    Place {
        /// Order id.
        order: String,
        /// Customer id.
        customer: String,
        /// What is ordered.
        item: String,
    },
    /// The customers service registered a customer (getOrCreate: a repeat changes nothing).
    KnowCustomer {
        /// Customer id.
        customer: String,
        /// Name.
        name: String,
    },
}

/// A customer as orders knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// Name.
    pub name: String,
}

/// Model key of a known customer (the replica).
pub fn customer_key(customer: &str) -> String {
    format!("customer/{customer}")
}

/// Model key of an order.
pub fn order_key(order: &str) -> String {
    format!("order/{order}")
}

/// The orders service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Orders;

impl Service for Orders {
    type Command = Command;

    fn apply(&self, ctx: &mut Apply<'_>, command: &Command) -> Result<(), ApplyError> {
        match command {
            Command::KnowCustomer { customer, name } => {
                ctx.put(&customer_key(customer), &Customer { name: name.clone() })
            }
            Command::Place { order, customer, item } => {
                if ctx.get::<Customer>(&customer_key(customer))?.is_none() {
                    return Err(ApplyError::rejected(format!(
                        "no customer {customer} (yet): register it with customers first"
                    )));
                }
                if ctx.get::<OrderPlaced>(&order_key(order))?.is_some() {
                    return Err(ApplyError::rejected(format!("order {order} exists already")));
                }
                let placed = OrderPlaced {
                    order: order.clone(),
                    customer: customer.clone(),
                    item: item.clone(),
                };
                ctx.put(&order_key(order), &placed)?;
                ctx.emit(&order_key(order), &placed)?;
                Ok(())
            }
        }
    }

    /// Customers are a replica: `seam replay orders --source customers` may rebuild them.
    fn replicas(&self) -> Vec<Replica> {
        vec![Replica {
            prefix: "customer/",
            sources: &["customers"],
        }]
    }

    /// Only the translator says who the customers are.
    fn is_internal(&self, command: &Command) -> bool {
        matches!(command, Command::KnowCustomer { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam_core::service::apply_command;
    use seam_core::store::{Store, WriteSet};

    #[test]
    fn the_rust_event_type_matches_its_schema_file() {
        catalog()
            .expect("catalog")
            .check_type::<OrderPlaced>(OrderPlaced::RECORD)
            .expect("OrderPlaced");
    }

    fn apply(store: &Store, set: &mut WriteSet, command: &Command) -> Result<(), ApplyError> {
        apply_command(&Orders, store, set, &catalog().expect("catalog"), command)
    }

    #[test]
    fn an_order_needs_a_known_customer() {
        let store = Store::in_memory();
        let mut set = store.write_set().expect("write set");
        let place = Command::Place {
            order: "o1".into(),
            customer: "c1".into(),
            item: "tea".into(),
        };
        let refused = apply(&store, &mut set, &place).expect_err("unknown customer");
        assert!(refused.to_string().contains("no customer c1"), "{refused}");
        let know = Command::KnowCustomer {
            customer: "c1".into(),
            name: "Ada".into(),
        };
        apply(&store, &mut set, &know).expect("translated");
        apply(&store, &mut set, &place).expect("placed");
        assert_eq!(set.entries().len(), 1, "one OrderPlaced");
        store.commit(&mut set, false).expect("commit");
        let again = apply(&store, &mut store.write_set().expect("write set"), &place).expect_err("placed twice");
        assert!(again.to_string().contains("exists already"), "{again}");
    }
}
