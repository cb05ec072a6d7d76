//! `shop serve customers|orders`: runs one of the walkthrough's services as its own process,
//! one line per service.

fn main() -> std::process::ExitCode {
    seam::serve::Services::new("shop")
        .service(shop_customers::api::service())
        .service(shop_orders::api::service().translator(customers_to_orders::CustomersToOrders))
        .main()
}
