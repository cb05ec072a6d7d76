//! The two translators of the example. Each maps the other service's row changes (as its CDC
//! source publishes them) to statements on its own database; the tables they write are the
//! ones the CRUD services declared as their replicas.

use seam::translator::{ForeignEvent, TranslateError, Translator};
use seam_postgres::sink::{SinkCommand, SqlValue};
use serde::Deserialize;

/// The customer service's customers as the order service reads them.
const CUSTOMER: &str = r#"{"type": "record", "name": "CustomersInserted", "namespace": "seam.cdc.customer_service",
 "fields": [{"name": "id", "type": "long"},
            {"name": "name", "type": ["null", "string"], "default": null},
            {"name": "email", "type": ["null", "string"], "default": null}]}"#;
const CUSTOMER_UPDATED: &str = r#"{"type": "record", "name": "CustomersUpdated", "namespace": "seam.cdc.customer_service",
 "fields": [{"name": "id", "type": "long"},
            {"name": "name", "type": ["null", "string"], "default": null},
            {"name": "email", "type": ["null", "string"], "default": null}]}"#;
const CUSTOMER_DELETED: &str = r#"{"type": "record", "name": "CustomersDeleted", "namespace": "seam.cdc.customer_service",
 "fields": [{"name": "id", "type": "long"}]}"#;

/// The order service's orders as the customer service reads them.
const ORDER: &str = r#"{"type": "record", "name": "OrdersInserted", "namespace": "seam.cdc.order_service",
 "fields": [{"name": "id", "type": "long"},
            {"name": "customer_id", "type": ["null", "long"], "default": null},
            {"name": "amount_cents", "type": ["null", "long"], "default": null}]}"#;
const ORDER_UPDATED: &str = r#"{"type": "record", "name": "OrdersUpdated", "namespace": "seam.cdc.order_service",
 "fields": [{"name": "id", "type": "long"},
            {"name": "customer_id", "type": ["null", "long"], "default": null},
            {"name": "amount_cents", "type": ["null", "long"], "default": null}]}"#;
const ORDER_DELETED: &str = r#"{"type": "record", "name": "OrdersDeleted", "namespace": "seam.cdc.order_service",
 "fields": [{"name": "id", "type": "long"}]}"#;

#[derive(Deserialize)]
struct Customer {
    id: i64,
    name: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct Order {
    id: i64,
    customer_id: Option<i64>,
    amount_cents: Option<i64>,
}

#[derive(Deserialize)]
struct Key {
    id: i64,
}

/// A customer's latest row, counting the changes received (each exactly once).
const UPSERT_CUSTOMER: &str = "INSERT INTO customers (id, name, email) VALUES ($1, $2, $3) \
     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, changes = customers.changes + 1";

/// An order's latest row, counting the changes received.
const UPSERT_ORDER: &str = "INSERT INTO customer_orders (order_id, customer_id, amount_cents) VALUES ($1, $2, $3) \
     ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, amount_cents = EXCLUDED.amount_cents, \
     changes = customer_orders.changes + 1";

/// `customer-service-to-order-service`: customers into the order service's `customers`.
pub struct CustomersToOrders;

impl Translator<SinkCommand> for CustomersToOrders {
    fn source(&self) -> &str {
        "customer-service"
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("seam.cdc.customer_service.CustomersInserted", CUSTOMER),
            ("seam.cdc.customer_service.CustomersUpdated", CUSTOMER_UPDATED),
            ("seam.cdc.customer_service.CustomersDeleted", CUSTOMER_DELETED),
        ]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<SinkCommand>, TranslateError> {
        if event.record.ends_with("Deleted") {
            let k: Key = event.payload()?;
            return Ok(vec![SinkCommand::delete("customers", &[("id", k.id.into())])]);
        }
        let c: Customer = event.payload()?;
        let (Some(name), Some(email)) = (c.name, c.email) else {
            return Err(TranslateError::Invalid(format!(
                "customer {} has no name or email; the order service needs both",
                c.id
            )));
        };
        Ok(vec![SinkCommand::sql(
            UPSERT_CUSTOMER,
            vec![c.id.into(), name.into(), email.into()],
        )])
    }
}

/// Recomputes the order count and total of one customer from the replicated orders.
const STATS_OF: &str = "INSERT INTO customer_order_stats (customer_id, order_count, total_cents) \
     SELECT $1::bigint, count(*), COALESCE(sum(amount_cents), 0) FROM customer_orders WHERE customer_id = $1::bigint \
     ON CONFLICT (customer_id) DO UPDATE SET order_count = EXCLUDED.order_count, total_cents = EXCLUDED.total_cents";

/// Recomputes the stats of the customer an order belonged to before (without the order), when
/// that is not `$2`: an order moved to another customer, or deleted (`$2` null).
const STATS_OF_PREVIOUS: &str = "INSERT INTO customer_order_stats (customer_id, order_count, total_cents) \
     SELECT o.customer_id, count(x.order_id), COALESCE(sum(x.amount_cents), 0) \
     FROM customer_orders o LEFT JOIN customer_orders x ON x.customer_id = o.customer_id AND x.order_id <> o.order_id \
     WHERE o.order_id = $1::bigint AND o.customer_id IS DISTINCT FROM $2::bigint GROUP BY o.customer_id \
     ON CONFLICT (customer_id) DO UPDATE SET order_count = EXCLUDED.order_count, total_cents = EXCLUDED.total_cents";

/// `order-service-to-customer-service`: orders into the customer service's `customer_orders`,
/// and each customer's order count and total into `customer_order_stats`.
pub struct OrdersToCustomers;

impl Translator<SinkCommand> for OrdersToCustomers {
    fn source(&self) -> &str {
        "order-service"
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("seam.cdc.order_service.OrdersInserted", ORDER),
            ("seam.cdc.order_service.OrdersUpdated", ORDER_UPDATED),
            ("seam.cdc.order_service.OrdersDeleted", ORDER_DELETED),
        ]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<SinkCommand>, TranslateError> {
        if event.record.ends_with("Deleted") {
            let k: Key = event.payload()?;
            return Ok(vec![
                SinkCommand::sql(STATS_OF_PREVIOUS, vec![k.id.into(), SqlValue::Null]),
                SinkCommand::delete("customer_orders", &[("order_id", k.id.into())]),
            ]);
        }
        let o: Order = event.payload()?;
        let (Some(customer), Some(amount)) = (o.customer_id, o.amount_cents) else {
            return Err(TranslateError::Invalid(format!(
                "order {} has no customer or amount",
                o.id
            )));
        };
        Ok(vec![
            SinkCommand::sql(STATS_OF_PREVIOUS, vec![o.id.into(), customer.into()]),
            SinkCommand::sql(UPSERT_ORDER, vec![o.id.into(), customer.into(), amount.into()]),
            SinkCommand::sql(STATS_OF, vec![customer.into()]),
        ])
    }
}

/// Every translator of `service`'s sink.
pub fn of(service: &str) -> Vec<Box<dyn Translator<SinkCommand>>> {
    match service {
        "order-service" => vec![Box::new(CustomersToOrders)],
        "customer-service" => vec![Box::new(OrdersToCustomers)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam::translator::test_event;
    use serde::Serialize;

    #[derive(Serialize)]
    struct C {
        id: i64,
        name: Option<&'static str>,
        email: Option<&'static str>,
    }

    #[derive(Serialize)]
    struct O {
        id: i64,
        customer_id: Option<i64>,
        amount_cents: Option<i64>,
    }

    #[derive(Serialize)]
    struct K {
        id: i64,
    }

    #[test]
    fn a_customer_becomes_an_upsert_and_a_deleted_one_a_delete() {
        let e = test_event(
            "customer-service",
            "seam.cdc.customer_service.CustomersInserted",
            C {
                id: 3,
                name: Some("Ada"),
                email: Some("ada@example.org"),
            },
        );
        let commands = CustomersToOrders.translate(&e).expect("translates");
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0].statement, UPSERT_CUSTOMER);
        let d = test_event(
            "customer-service",
            "seam.cdc.customer_service.CustomersDeleted",
            K { id: 3 },
        );
        assert_eq!(
            CustomersToOrders.translate(&d).expect("translates")[0].statement,
            "DELETE FROM \"customers\" WHERE \"id\" = $1"
        );
    }

    #[test]
    fn a_customer_without_a_name_is_refused_with_its_id() {
        let e = test_event(
            "customer-service",
            "seam.cdc.customer_service.CustomersUpdated",
            C {
                id: 9,
                name: None,
                email: Some("x@y"),
            },
        );
        let err = CustomersToOrders.translate(&e).expect_err("refused").to_string();
        assert!(err.contains("customer 9"), "{err}");
    }

    #[test]
    fn an_order_moves_its_amount_between_customers_stats() {
        let e = test_event(
            "order-service",
            "seam.cdc.order_service.OrdersUpdated",
            O {
                id: 5,
                customer_id: Some(2),
                amount_cents: Some(700),
            },
        );
        let commands = OrdersToCustomers.translate(&e).expect("translates");
        assert_eq!(commands.len(), 3);
        assert_eq!(commands[0].statement, STATS_OF_PREVIOUS);
        assert_eq!(commands[2].params, vec![SqlValue::Text("2".into())]);
    }

    #[test]
    fn the_reader_schemas_parse() {
        for t in [of("order-service"), of("customer-service")].into_iter().flatten() {
            for (name, text) in t.reader_schemas() {
                let schema = apache_avro::Schema::parse_str(text).expect("parses");
                assert_eq!(schema.name().map(|n| n.fullname(None)).as_deref(), Some(name));
            }
        }
    }
}
