//! The README's "Integrate your own service" walkthrough, end to end on the real cluster: the
//! topology deployed with `seam deploy`, both services started with the `shop` binary exactly
//! as the README says, a customer registered with customers reaching orders' replica through
//! the translator, an order placed against it, and the README's code the same as these files.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use seam_testkit::{unique_name, wait_until, TestCluster};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A service started as `shop serve <name> -t shop.yaml`.
struct Shop {
    url: String,
    child: tokio::process::Child,
}

impl Shop {
    async fn start(service: &str) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop"))
            .args(["serve", service, "-t"])
            .arg(example("shop.yaml"))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("shop starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("ready within 2 minutes")
            .expect("stdout")
            .unwrap_or_default();
        let url = ready
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("{service}: expected `ready <url>`, got {ready:?}"))
            .to_string();
        Self { url, child }
    }

    async fn post(&self, body: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/commands", self.url))
            .json(&body)
            .send()
            .await
            .expect("POST /commands");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::get(format!("{}{path}", self.url)).await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// SIGTERM, then the exit status: a service drains and exits 0.
    async fn stop(mut self) {
        let pid = self.child.id().expect("running") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("stops within a minute")
            .expect("exit status");
        assert!(status.success(), "a stopped service exits 0, got {status}");
    }
}

/// `seam deploy -t examples/shop/shop.yaml`, as the README says.
async fn deploy() {
    let args = seam_ops::commands::deploy::DeployArgs::of(example("shop.yaml"));
    let code = seam_ops::commands::deploy::run(args).await.expect("seam deploy");
    assert_eq!(code, std::process::ExitCode::SUCCESS, "seam deploy failed");
}

/// Whether `topic` exists on the cluster.
fn topic_exists(cluster: &TestCluster, topic: &str) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = cluster.client_config().create().expect("client");
    let metadata = client.fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    metadata.topics().iter().any(|t| t.name() == topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_runs_on_the_real_cluster() {
    let cluster = TestCluster::connect();
    // The services keep their stores where the README's commands put them, under SEAM_HOME;
    // stores left from a stack that was purged since would not match its new, empty topics.
    if !topic_exists(&cluster, "customers.events") {
        let home = seam_local::Home::from_env().expect("SEAM_HOME");
        let _ = std::fs::remove_dir_all(home.root().join("services"));
    }
    deploy().await;
    let customers = Shop::start("customers").await;
    let orders = Shop::start("orders").await;

    let customer = unique_name("c");
    let order = unique_name("o");
    let place = json!({"command": "place", "order": order, "customer": customer, "item": "tea"});
    let (status, body) = orders.post(place.clone()).await;
    assert_eq!(
        status, 422,
        "an order for a customer orders does not know is refused: {body}"
    );

    let (status, body) = customers
        .post(json!({"command": "register", "customer": customer, "name": "Ada", "email": "ada@example.org"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let known = wait_until(Duration::from_secs(60), "the customer reaches orders", || async {
        match orders.get(&format!("/customers/{customer}")).await {
            (200, body) => Ok(body),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await
    .expect("replicated");
    assert_eq!(known, json!({"name": "Ada"}));

    let (status, body) = orders.post(place).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = orders.get(&format!("/orders/{order}")).await;
    assert_eq!(
        (status, body),
        (200, json!({"order": order, "customer": customer, "item": "tea"}))
    );

    let (status, body) = orders
        .post(json!({"command": "know_customer", "customer": customer, "name": "Mallory"}))
        .await;
    assert_eq!(
        status, 403,
        "the replica changes only through customers' events: {body}"
    );

    customers.stop().await;
    orders.stop().await;
}

/// Every Rust, TOML and YAML block of the README's walkthrough that names a file on its first
/// line (`// examples/shop/...` or `# examples/shop/...`) is part of that file, word for word.
#[test]
fn the_readme_shows_these_files() {
    let readme = std::fs::read_to_string(example("../../README.md")).expect("README.md");
    let section = readme
        .split("## Integrate your own service")
        .nth(1)
        .expect("the README has the walkthrough")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let mut checked = 0;
    for block in section.split("```").skip(1).step_by(2) {
        let Some(code) = ["rust\n", "toml\n", "yaml\n"]
            .iter()
            .find_map(|lang| block.strip_prefix(lang))
        else {
            continue;
        };
        let Some(path) = code
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// ").or_else(|| l.strip_prefix("# ")))
        else {
            continue;
        };
        let Some(path) = path.strip_prefix("examples/shop/") else {
            continue;
        };
        let body: String = code.lines().skip(1).map(|l| format!("{l}\n")).collect();
        let file = std::fs::read_to_string(example(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let first_difference = body.lines().find(|line| !file.contains(line));
        assert!(
            file.contains(&body),
            "README's block for examples/shop/{path} differs from the file (first line not in it: {first_difference:?}); \
             copy the file into the README"
        );
        checked += 1;
    }
    assert!(
        checked >= 7,
        "the walkthrough shows the example's files ({checked} found)"
    );
}
