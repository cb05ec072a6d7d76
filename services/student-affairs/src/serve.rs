//! `student-affairs serve <service>`: runs one of the five services as its own process, through
//! `seam::serve` (configuration layers, the node with the translators the topology names, the
//! HTTP API, announce, signals, drain). The service table is [`services`], one line each.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use seam::serve::{Defaults, Services};

/// The services, for the demo and the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// Course programs, examinations, enrollments; receives grades.
    StudentsOffice,
    /// The modelling course: assignments, points, grades; hires TAs.
    SeGroup,
    /// Seminar presentations graded by a scheme; hires TAs.
    TheoryGroup,
    /// Collects the groups' hires.
    TaPool,
    /// Joins late: awards scholarships from enrollments and grades.
    ScholarshipOffice,
}

impl Which {
    /// The four founding services, in start order (the scholarship office joins later).
    pub const ALL: [Which; 4] = [Which::StudentsOffice, Which::SeGroup, Which::TheoryGroup, Which::TaPool];

    /// The service name.
    pub fn name(self) -> &'static str {
        match self {
            Which::StudentsOffice => students_office::NAME,
            Which::SeGroup => se_group::NAME,
            Which::TheoryGroup => theory_group::NAME,
            Which::TaPool => ta_pool::NAME,
            Which::ScholarshipOffice => scholarship_office::NAME,
        }
    }
}

/// Options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeCommand {
    /// The service to run.
    #[arg(value_enum)]
    pub service: Which,
    /// Port, store, topology, bootstrap (see `seam::serve::ServeArgs`).
    #[command(flatten)]
    pub serve: seam::serve::ServeArgs,
}

/// Every Student Affairs service with the translators into it.
pub fn services() -> Services {
    Services::new("student-affairs")
        .service(
            students_office::api::service()
                .translator(se_group_to_students_office::SeGroupToStudentsOffice)
                .translator(theory_group_to_students_office::TheoryGroupToStudentsOffice),
        )
        .service(
            se_group::api::service()
                .translator(students_office_to_se_group::StudentsOfficeToSeGroup)
                .translator(ta_pool_to_se_group::TaPoolToSeGroup),
        )
        .service(
            theory_group::api::service()
                .translator(students_office_to_theory_group::StudentsOfficeToTheoryGroup)
                .translator(ta_pool_to_theory_group::TaPoolToTheoryGroup),
        )
        .service(
            ta_pool::api::service()
                .translator(se_group_to_ta_pool::SeGroupToTaPool)
                .translator(theory_group_to_ta_pool::TheoryGroupToTaPool),
        )
        .service(
            scholarship_office::api::service()
                .translator(students_office_to_scholarship_office::StudentsOfficeToScholarshipOffice)
                .translator(se_group_to_scholarship_office::SeGroupToScholarshipOffice)
                .translator(theory_group_to_scholarship_office::TheoryGroupToScholarshipOffice),
        )
}

/// The default topology file: `deploy/student-affairs.yaml` of this repository.
pub fn default_topology() -> PathBuf {
    let here = PathBuf::from("deploy/student-affairs.yaml");
    if here.is_file() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/student-affairs.yaml")
}

/// Runs the service until SIGTERM/SIGINT; prints `ready http://...` once it serves. Stores
/// default to `$SEAM_HOME/student-affairs/<service>`, the topology to this repository's.
pub async fn run(args: ServeCommand) -> anyhow::Result<()> {
    let defaults = Defaults {
        store_root: Some(seam_local::Home::from_env()?.root().join("student-affairs")),
        topology: Some(default_topology()),
    };
    Ok(services()
        .defaults(defaults)
        .serve(args.service.name(), args.serve)
        .await?)
}
