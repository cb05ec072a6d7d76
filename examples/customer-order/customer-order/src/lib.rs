//! Seed 002 on seam: CustomerService and OrderService are CRUD services on their own PostgreSQL
//! databases (crate `customer-order-crud`, which links no seam). Each gets an adapter process
//! (`customer-order adapter <service>`): a CDC source publishing its table's row changes, and a
//! database sink applying the other service's, through the translators here.
#![forbid(unsafe_code)]

pub mod adapter;
pub mod crud;
pub mod demo;
pub mod translators;

/// The services of the example, each a CRUD service with its database.
pub const SERVICES: [(&str, &str); 2] = [("customer-service", "customers"), ("order-service", "orders")];

/// The topology file used when `-t` is not given.
pub fn default_topology() -> std::path::PathBuf {
    let here = std::path::Path::new("deploy/customer-order.yaml");
    if here.is_file() {
        return here.to_path_buf();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../deploy/customer-order.yaml")
}
