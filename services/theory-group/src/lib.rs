//! The theory group of seed 000: it runs seminars and grades presentations by its own scheme,
//! a weighted set of criteria, and hires teaching assistants. Like the SE group it learns its
//! students from enrollments and who is taken from the TA pool; it shares no code with the SE
//! group, only the contract of the events both read.

#[cfg(feature = "http")]
pub mod api;
pub mod events;
pub mod model;

use seam_core::codec::{Catalog, CatalogError};

/// The service name (topic `theory-group.events`).
pub const NAME: &str = "theory-group";

/// The published contract.
pub fn catalog() -> Result<Catalog, CatalogError> {
    Catalog::from_sources([
        (
            "PresentationAssessed.avsc",
            include_str!("../../../schemas/theory-group/PresentationAssessed.avsc"),
        ),
        (
            "StudentGraded.avsc",
            include_str!("../../../schemas/theory-group/StudentGraded.avsc"),
        ),
        (
            "StudentHired.avsc",
            include_str!("../../../schemas/theory-group/StudentHired.avsc"),
        ),
    ])
}

#[cfg(test)]
mod tests;
