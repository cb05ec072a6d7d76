//! Every fixture beside the parser is loaded: the good one parses, each bad one fails with a
//! message naming the field and the fix.

use super::*;

fn fixture(name: &str) -> Result<Topology, TopologyError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/topology/fixtures")
        .join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Topology::parse(&format!("{name}.yaml"), &text)
}

#[test]
fn the_good_fixture_parses() {
    let t = fixture("good").expect("good topology");
    assert_eq!(t.services.len(), 2);
    assert_eq!(t.sources_of("fulfilment")[0].service, "orders");
    let f = t.service("fulfilment").expect("fulfilment");
    assert_eq!(f.replication, Some(1));
    assert_eq!(f.retention_ms(), 30 * 86_400_000);
    assert_eq!(f.compatibility(), "FULL_TRANSITIVE");
    assert_eq!(f.principal(), "User:fulfilment-svc");
    let o = t.service("orders").expect("orders");
    assert_eq!(
        (o.retention_ms(), o.cleanup_policy(), o.compatibility()),
        (-1, "delete", "BACKWARD_TRANSITIVE")
    );
    assert_eq!(
        (
            o.replication_on(1),
            o.replication_on(5),
            o.min_insync_on(3),
            o.min_insync_on(1)
        ),
        (1, 3, 2, 1)
    );
    assert_eq!(o.principal(), "User:orders");
}

#[test]
fn retention_durations_parse_to_milliseconds() {
    assert_eq!(parse_retention("unbounded"), Ok(-1));
    assert_eq!(parse_retention("500ms"), Ok(500));
    assert_eq!(parse_retention("90m"), Ok(5_400_000));
    assert_eq!(parse_retention("12h"), Ok(43_200_000));
    for bad in ["7 days", "d", "0s", "10w", "99999999999999999d", ""] {
        assert!(parse_retention(bad).is_err(), "{bad}");
    }
}

#[test]
fn each_bad_fixture_names_the_field_and_the_fix() {
    let cases = [
        ("bad-version", "apiVersion", "use `seam/v1`"),
        ("bad-unknown-field", "unknown field `partition`", "line 4"),
        ("bad-partitions", "services[0].partitions", "use 1 to 1000"),
        ("bad-name", "services[0].name", "lowercase letters"),
        (
            "bad-translator",
            "consumers[0].sources[0].translator",
            "use `orders-to-fulfilment`",
        ),
        (
            "bad-unknown-source",
            "consumers[0].sources[0].service",
            "`billing` is not a declared service",
        ),
        ("bad-self", "consumers[0].sources[0].service", "its own events"),
        ("bad-retention", "services[0].retention", "30d"),
        ("bad-compatibility", "services[0].compatibility", "BACKWARD_TRANSITIVE"),
        ("bad-min-isr", "services[0].minInsyncReplicas", "use 1 to 1"),
        ("bad-principal", "services[0].principal", "`User:orders`"),
        ("bad-cleanup", "services[0].cleanupPolicy", "`compact,delete`"),
    ];
    for (name, field, fix) in cases {
        let err = fixture(name).expect_err(name).to_string();
        assert!(err.starts_with(&format!("{name}.yaml")), "{name}: {err}");
        assert!(err.contains(field) && err.contains(fix), "{name}: {err}");
    }
}

#[test]
fn every_fixture_file_is_covered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/topology/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures")
        .filter_map(Result::ok)
        .filter_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    for name in names {
        let result = fixture(&name);
        assert_eq!(result.is_ok(), name == "good", "{name}: {result:?}");
    }
}

#[test]
fn a_file_that_is_no_topology_says_what_a_topology_looks_like() {
    for text in ["just some prose", "- a\n- list\n"] {
        let err = Topology::parse("notes.md", text).expect_err(text).to_string();
        assert!(
            err.starts_with("notes.md: ") && err.contains("apiVersion: seam/v1"),
            "{err}"
        );
    }
}

#[test]
fn a_missing_file_or_schema_dir_is_named() {
    let err = Topology::load(Path::new("/nonexistent/topology.yaml")).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/topology.yaml"), "{err}");
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/topology/fixtures/good.yaml");
    let err = Topology::load(&good).expect_err("no schema dirs next to the fixture");
    assert!(err.to_string().contains("services[0].schemas"), "{err}");
}

#[test]
fn every_topology_under_deploy_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/") {
        let path = entry.expect("entry").path();
        // compose.yaml is Docker Compose's, checked by tests/manifests.rs.
        if path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("compose.yaml") {
            Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
            found += 1;
        }
    }
    assert!(found >= 1, "no topology files under deploy/");
}

#[test]
fn a_postgres_cdc_service_names_its_database_and_tables_and_no_schemas() {
    let head = "apiVersion: seam/v1\nname: crm\nservices:\n  - name: crm\n    partitions: 3\n";
    let good = format!(
        "{head}    kind: postgres-cdc\n    postgres:\n      database: crm\n      tables:\n        - name: customers\n        - name: notes\n          key: [customer, at]\n"
    );
    let t = Topology::parse("t.yaml", &good).expect("a cdc topology");
    let s = t.service("crm").expect("crm");
    assert!(s.is_postgres_cdc());
    let pg = s.postgres.as_ref().expect("postgres");
    assert_eq!(
        (pg.schema(), pg.tables[1].key.as_deref()),
        ("public", Some(&["customer".to_string(), "at".to_string()][..]))
    );
    let bad = |body: &str, expected: &str| {
        let err = Topology::parse("t.yaml", &format!("{head}{body}"))
            .expect_err(body)
            .to_string();
        assert!(err.contains(expected), "{body}: {err}");
    };
    bad("    kind: postgres-cdc\n", "services[0].postgres: missing");
    bad(
        "    kind: postgres-cdc\n    schemas: s\n    postgres:\n      database: crm\n      tables: [{name: a}]\n",
        "remove `schemas:`",
    );
    bad(
        "    kind: postgres-cdc\n    postgres:\n      database: crm\n      tables: []\n",
        "postgres.tables: no tables",
    );
    bad(
        "    kind: postgres-cdc\n    postgres:\n      database: crm\n      tables: [{name: a}, {name: a}]\n",
        "listed twice",
    );
    bad(
        "    kind: postgres-cdc\n    postgres:\n      database: crm\n      tables: [{name: a, key: []}]\n",
        "tables[0].key: empty",
    );
    bad(
        "    kind: postgres-cdc\n    postgres:\n      database: crm\n      tables: [{name: public.a}]\n",
        "is not a table name",
    );
    bad(
        "    schemas: s\n    postgres:\n      database: crm\n      tables: [{name: a}]\n",
        "add `kind: postgres-cdc`",
    );
    bad("    kind: kafka\n    schemas: s\n", "`kafka` is not a service kind");
    bad("    partitions2: 1\n", "unknown field");
}

#[test]
fn an_external_source_names_its_topic_and_is_routed_to_it() {
    let t = Topology::parse(
        "t.yaml",
        "apiVersion: seam/v1\nname: x\nservices:\n  - name: legacy-orders-route-test\n    kind: external\n    topic: crm.orders.v1\n    partitions: 6\n",
    )
    .expect("valid");
    let s = t.service("legacy-orders-route-test").expect("declared");
    assert!(s.is_external());
    assert_eq!(
        crate::translator::events_topic("legacy-orders-route-test"),
        "crm.orders.v1"
    );
    assert!(crate::translator::is_external("legacy-orders-route-test"));
    let bad = |service: &str, expected: &str| {
        let text = format!("apiVersion: seam/v1\nname: x\nservices:\n  - name: a\n    partitions: 3\n{service}");
        let e = Topology::parse("t.yaml", &text).expect_err("invalid").to_string();
        assert!(e.contains(expected), "{e}");
    };
    bad("    kind: external\n", "services[0].topic: missing");
    bad("    kind: external\n    topic: a b\n", "not a Kafka topic name");
    bad(
        "    kind: external\n    topic: t\n    schemas: s\n",
        "registers its own schemas",
    );
    bad("    schemas: s\n    topic: t\n", "add `kind: external`");
}

#[test]
fn a_postgres_sink_names_its_database_publishes_nothing_and_is_read_by_nobody() {
    let head = "apiVersion: seam/v1\nname: x\nservices:\n  - name: crm\n    partitions: 3\n    kind: postgres-cdc\n    postgres:\n      database: crm\n      tables: [{name: customers}]\n  - name: billing\n    partitions: 1\n    kind: postgres-sink\n";
    let t = Topology::parse(
        "t.yaml",
        &format!("{head}    postgres:\n      database: billing\nconsumers:\n  - service: billing\n    sources:\n      - service: crm\n        translator: crm-to-billing\n"),
    )
    .expect("valid");
    assert!(t.service("billing").expect("declared").is_postgres_sink());
    let bad = |rest: &str, expected: &str| {
        let e = Topology::parse("t.yaml", &format!("{head}{rest}"))
            .expect_err("invalid")
            .to_string();
        assert!(e.contains(expected), "{e}");
    };
    bad("", "services[1].postgres: missing");
    bad(
        "    postgres:\n      database: b\n      tables: [{name: t}]\n",
        "publishes no tables",
    );
    bad(
        "    schemas: s\n    postgres:\n      database: b\n",
        "publishes no events",
    );
    bad(
        "    postgres:\n      database: b\nconsumers:\n  - service: crm\n    sources:\n      - service: billing\n        translator: billing-to-crm\n",
        "it only consumes",
    );
}

#[test]
fn the_translators_directory_is_relative_to_the_file() {
    let t =
        Topology::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/student-affairs.yaml")).expect("load");
    let dir = t.translators.expect("translators:");
    assert!(
        dir.ends_with("translators") && !dir.to_string_lossy().contains(".."),
        "{}",
        dir.display()
    );
    assert!(
        dir.join("se-group-to-students-office/reader").is_dir(),
        "{}",
        dir.display()
    );
    assert_eq!(lexically_clean(Path::new("a/b/../../c/./d")), PathBuf::from("c/d"));
    assert_eq!(lexically_clean(Path::new("../x/../y")), PathBuf::from("../y"));
}
