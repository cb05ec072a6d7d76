//! The software engineering group of seed 000: it runs the modelling course, sets assignments,
//! awards points per student, turns points into a grade, and hires good students as teaching
//! assistants. It learns its students from the students office's enrollments and who is already
//! a TA from the TA pool, both through translators.

#[cfg(feature = "http")]
pub mod api;
pub mod events;
pub mod model;

use seam_core::codec::{Catalog, CatalogError};

/// The service name (topic `se-group.events`).
pub const NAME: &str = "se-group";

/// The published contract.
pub fn catalog() -> Result<Catalog, CatalogError> {
    Catalog::from_sources([
        (
            "AssignmentCreated.avsc",
            include_str!("../../../schemas/se-group/AssignmentCreated.avsc"),
        ),
        (
            "PointsAwarded.avsc",
            include_str!("../../../schemas/se-group/PointsAwarded.avsc"),
        ),
        (
            "StudentGraded.avsc",
            include_str!("../../../schemas/se-group/StudentGraded.avsc"),
        ),
        (
            "StudentHired.avsc",
            include_str!("../../../schemas/se-group/StudentHired.avsc"),
        ),
    ])
}

#[cfg(test)]
mod tests;
