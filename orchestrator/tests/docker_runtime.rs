//! `DockerRuntime` against the real Docker engine, with the demo app's image.
//!
//! Needs a reachable engine and `gantry-hello:latest`: run `scripts/build-hello-image` first.
//! Without either the tests fail (never skip), saying so. Nothing here pulls from a registry.
//!
//! Every test labels what it creates with `gantry.test=<random id>`, so parallel runs never see
//! each other's containers, and a [`Cleanup`] guard removes them even when an assertion fails.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use bollard::query_parameters::{InspectContainerOptions, StopContainerOptions};
use futures_util::StreamExt;
use gantry_common::agent::{Env, PullSecret};
use gantry_common::logs::LogStream;
use gantry_orchestrator::runtime::docker::DockerRuntime;
use gantry_orchestrator::runtime::{
    labels, ContainerRuntime, ContainerSpec, ContainerStatus, LogLimit, RuntimeError,
};

const IMAGE: &str = "gantry-hello:latest";
const TEST_LABEL: &str = "gantry.test";

/// A fresh id per test, so names and labels never collide between tests or runs.
fn run_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

/// The engine, and the demo image on it, or a failure that says what to do.
async fn runtime() -> DockerRuntime {
    let rt = DockerRuntime::connect().await.unwrap_or_else(|err| {
        panic!("{err}\nThese tests need a running Docker engine (and `scripts/build-hello-image`).")
    });
    // Inspect, not `ensure_image`: a missing image must not send the engine to a registry.
    if let Err(err) = rt.client().inspect_image(IMAGE).await {
        panic!("{IMAGE} is not on the Docker engine ({err}): run scripts/build-hello-image first");
    }
    rt
}

/// Removes every container and network labelled `gantry.test=<id>` when dropped, also while a
/// failed assertion unwinds. It uses a fresh runtime on its own thread: the test's runtime may
/// be the one unwinding.
struct Cleanup {
    id: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let id = self.id.clone();
        let cleaned = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
            rt.block_on(remove_everything_labelled(&id))
        })
        .join();
        match cleaned {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("cleanup of {TEST_LABEL}={}: {err}", self.id),
            Err(_) => eprintln!("cleanup of {TEST_LABEL}={} panicked", self.id),
        }
    }
}

async fn remove_everything_labelled(id: &str) -> Result<(), String> {
    use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions};
    let docker = bollard::Docker::connect_with_defaults()
        .map_err(|e| e.to_string())?
        .negotiate_version()
        .await
        .map_err(|e| e.to_string())?;
    let filters =
        std::collections::HashMap::from([("label".to_owned(), vec![format!("{TEST_LABEL}={id}")])]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
        .map_err(|e| e.to_string())?;
    for id in containers.into_iter().filter_map(|c| c.id) {
        let force = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let _ = docker.remove_container(&id, Some(force)).await;
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|e| e.to_string())?;
    for id in networks.into_iter().filter_map(|n| n.id) {
        docker
            .remove_network(&id)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn test_labels(id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED.to_owned(), "true".to_owned()),
        (TEST_LABEL.to_owned(), id.to_owned()),
    ])
}

/// GET `url`, retrying while the app inside the fresh container starts listening.
async fn get_when_ready(url: &str) -> (reqwest::StatusCode, String) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut last_err = None;
    for _ in 0..50 {
        match http.get(url).send().await {
            Ok(res) => {
                let status = res.status();
                return (status, res.text().await.unwrap());
            }
            Err(err) => last_err = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no answer from {url}: {last_err:?}");
}

#[tokio::test]
async fn runs_lists_and_removes_a_hardened_container() {
    let rt = runtime().await;
    let id = run_id();
    let _cleanup = Cleanup { id: id.clone() };

    let capacity = rt.capacity().await.unwrap();
    assert!(capacity.cpu_millis >= 1000, "{capacity:?}");
    assert!(capacity.memory_mib > 0, "{capacity:?}");

    let image_id = rt.ensure_image(IMAGE, None).await.expect("a present image");
    assert!(image_id.starts_with("sha256:"), "{image_id}");

    let network = format!("gantry-test-{id}");
    let labels = test_labels(&id);
    let network_id = rt.ensure_network(&network, &labels).await.unwrap();
    assert_eq!(
        rt.ensure_network(&network, &labels).await.unwrap(),
        network_id
    );
    let inspected = rt
        .client()
        .inspect_network(
            &network,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .expect("one network of that name (two would be 'ambiguous')");
    assert_eq!(inspected.driver.as_deref(), Some("bridge"));
    assert_eq!(
        inspected.labels.unwrap_or_default().get(TEST_LABEL),
        Some(&id)
    );

    let spec = ContainerSpec {
        name: format!("gantry-test-{id}"),
        image: IMAGE.to_owned(),
        labels: BTreeMap::from([
            (labels::MANAGED.to_owned(), "true".to_owned()),
            (labels::INSTANCE.to_owned(), format!("i-{id}")),
            (TEST_LABEL.to_owned(), id.clone()),
        ]),
        env: Env(BTreeMap::from([
            ("GREETING".to_owned(), "Hej".to_owned()),
            ("GANTRY_RELEASE".to_owned(), "v4".to_owned()),
        ])),
        port: Some(8888),
        host_ip: "127.0.0.1".to_owned(),
        network: network_id.clone(),
        cpu_millis: 250,
        memory_mib: 64,
        pids_limit: 64,
        log_limit: LogLimit::default(),
    };
    let container = rt.run(&spec).await.unwrap();

    let listed = rt.list(TEST_LABEL, &id).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let info = &listed[0];
    assert_eq!(info.id, container);
    assert_eq!(info.name, spec.name);
    assert_eq!(info.labels, spec.labels);
    assert_eq!(info.status, ContainerStatus::Running);
    assert!(info.started_at.is_some(), "{info:?}");
    assert_eq!(info.image_id.as_deref(), Some(image_id.as_str()));
    let host_port = info.host_port.expect("a published host port");

    let (status, body) = get_when_ready(&format!("http://127.0.0.1:{host_port}/")).await;
    assert_eq!(status, 200);
    // The environment reached the app: its greeting and the release it names.
    assert_eq!(
        body.trim_end(),
        format!("Hej from {} (release v4)", &container[..12])
    );

    // The hardening, as the engine recorded it.
    let details = rt
        .client()
        .inspect_container(&container, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let host = details.host_config.unwrap();
    assert!(host
        .cap_drop
        .unwrap_or_default()
        .contains(&"ALL".to_owned()));
    assert_eq!(host.cap_add.unwrap_or_default(), Vec::<String>::new());
    assert!(
        host.security_opt
            .unwrap_or_default()
            .iter()
            .any(|o| o.starts_with("no-new-privileges")),
        "no-new-privileges is set"
    );
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
    assert_eq!(host.memory_swap, Some(64 * 1024 * 1024), "no swap");
    assert_eq!(host.nano_cpus, Some(250_000_000));
    assert_eq!(host.pids_limit, Some(64));
    assert_eq!(host.privileged, Some(false));
    assert_eq!(host.init.unwrap_or(false), rt.has_init());
    assert_eq!(host.network_mode.as_deref(), Some(network_id.as_str()));
    assert!(host.binds.unwrap_or_default().is_empty());
    assert!(details.mounts.unwrap_or_default().is_empty());
    let published = details.network_settings.unwrap().ports.unwrap();
    let bindings = published["8888/tcp"].clone().unwrap();
    assert!(
        bindings
            .iter()
            .all(|b| b.host_ip.as_deref() == Some("127.0.0.1")),
        "published on loopback only: {bindings:?}"
    );

    // Idempotent: a retried run (its first answer lost) finds the same container.
    assert_eq!(rt.run(&spec).await.unwrap(), container);
    rt.start(&container).await.expect("already started is fine");

    // A stopped container: listed as exited, and a retried run starts it again.
    rt.client()
        .stop_container(
            &container,
            Some(StopContainerOptions {
                t: Some(5),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let listed = rt.list(TEST_LABEL, &id).await.unwrap();
    assert!(
        matches!(listed[0].status, ContainerStatus::Exited { .. }),
        "{listed:?}"
    );
    assert_eq!(listed[0].host_port, None, "no port while stopped");
    assert_eq!(rt.run(&spec).await.unwrap(), container);
    assert_eq!(
        rt.list(TEST_LABEL, &id).await.unwrap()[0].status,
        ContainerStatus::Running
    );

    // Under the engine's init, SIGTERM stops the app at once: the stop ends long before the
    // grace period would have made it a SIGKILL (the margin is wide: a loaded machine is slow).
    let grace = Duration::from_secs(60);
    let started = std::time::Instant::now();
    rt.remove(&container, grace).await.unwrap();
    if rt.has_init() {
        assert!(started.elapsed() < grace / 2, "{:?}", started.elapsed());
    }
    rt.remove(&container, Duration::from_secs(10))
        .await
        .expect("removing a removed container is fine");
    assert_eq!(rt.list(TEST_LABEL, &id).await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_failed_pull_is_an_image_pull_error() {
    let rt = runtime().await;
    // Port 1 on loopback: the pull fails at once and never leaves the machine.
    match rt.ensure_image("127.0.0.1:1/nope/missing:1", None).await {
        Err(RuntimeError::ImagePull(message)) => {
            assert!(!message.trim().is_empty());
            eprintln!("the engine said: {message}");
        }
        other => panic!("expected an ImagePull error, got {other:?}"),
    }
    // A malformed reference (uppercase repository) is refused by the engine, never pulled.
    match rt.ensure_image("127.0.0.1:1/NOPE:1", None).await {
        Err(RuntimeError::ImagePull(message)) => assert!(message.contains("invalid reference")),
        other => panic!("expected an ImagePull error, got {other:?}"),
    }
}

/// An image of the server's registry comes with a pull secret and is always pulled: a copy in
/// the engine's cache (left by another team's instance) does not stand in for the right to pull.
#[tokio::test]
async fn an_image_with_a_pull_secret_is_pulled_even_when_the_engine_has_it() {
    let rt = runtime().await;
    let cached = format!("127.0.0.1:1/cached/hello:{}", run_id());
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    docker
        .tag_image(
            IMAGE,
            Some(bollard::query_parameters::TagImageOptions {
                repo: Some(cached.rsplit_once(':').unwrap().0.to_owned()),
                tag: Some(cached.rsplit_once(':').unwrap().1.to_owned()),
            }),
        )
        .await
        .expect("tag the demo image");
    let without = rt.ensure_image(&cached, None).await;
    let secret = PullSecret("gnp_test".into());
    let with = rt.ensure_image(&cached, Some(&secret)).await;
    let _ = docker
        .remove_image(
            &cached,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
    assert!(
        without.is_ok(),
        "the cached image is used without a secret: {without:?}"
    );
    match with {
        // Port 1 on loopback: the pull fails at once and never leaves the machine.
        Err(RuntimeError::ImagePull(message)) => eprintln!("the engine said: {message}"),
        other => panic!("expected the pull to be tried (and fail), got {other:?}"),
    }
}

/// Removing an unused image by id: one that is gone counts as removed; one the engine refuses
/// to remove (here: it has two names) stays, and says so.
#[tokio::test]
async fn an_image_is_removed_only_when_nothing_holds_it() {
    let rt = runtime().await;
    let gone = format!("sha256:{}", "0".repeat(64));
    assert_eq!(rt.remove_image(&gone).await, Ok(true));
    let second_name = format!("gantry-test-second-name:{}", run_id());
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let (repo, tag) = second_name.split_once(':').unwrap();
    docker
        .tag_image(
            IMAGE,
            Some(bollard::query_parameters::TagImageOptions {
                repo: Some(repo.to_owned()),
                tag: Some(tag.to_owned()),
            }),
        )
        .await
        .expect("tag the demo image");
    let id = rt.ensure_image(IMAGE, None).await.expect("the demo image");
    let kept = rt.remove_image(&id).await;
    let _ = docker
        .remove_image(
            &second_name,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
    assert_eq!(kept, Ok(false));
    assert!(
        rt.ensure_image(IMAGE, None).await.is_ok(),
        "the demo image is still there"
    );
}

#[tokio::test]
async fn refuses_a_container_without_limits() {
    let rt = runtime().await;
    let id = run_id();
    let _cleanup = Cleanup { id: id.clone() };
    let spec = ContainerSpec {
        name: format!("gantry-test-{id}"),
        image: IMAGE.to_owned(),
        labels: test_labels(&id),
        env: Env::default(),
        port: Some(8888),
        host_ip: "127.0.0.1".to_owned(),
        network: "bridge".to_owned(),
        cpu_millis: 0,
        memory_mib: 64,
        pids_limit: 64,
        log_limit: LogLimit::default(),
    };
    assert!(matches!(rt.run(&spec).await, Err(RuntimeError::Engine(_))));
    assert_eq!(rt.list(TEST_LABEL, &id).await.unwrap(), vec![]);
}

/// The size on disk of a container's log files (the engine's json-file, and its rotations).
async fn log_bytes_on_disk(rt: &DockerRuntime, id: &str) -> u64 {
    let details = rt
        .client()
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .expect("inspect");
    let path = std::path::PathBuf::from(details.log_path.expect("a json-file log path"));
    let dir = path.parent().expect("the container's directory");
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::read_dir(dir)
        .expect("the container's directory (these tests run as root, beside the engine)")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&name))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// A container of the demo image that prints `lines` numbered lines of 200 bytes at once.
fn chatty(id: &str, lines: u32, log_limit: LogLimit) -> ContainerSpec {
    ContainerSpec {
        name: format!("gantry-test-{id}"),
        image: IMAGE.to_owned(),
        labels: test_labels(id),
        env: Env(BTreeMap::from([
            ("LOG_LINES".to_owned(), lines.to_string()),
            ("LOG_LINE_BYTES".to_owned(), "200".to_owned()),
        ])),
        port: Some(8888),
        host_ip: "127.0.0.1".to_owned(),
        network: "bridge".to_owned(),
        cpu_millis: 500,
        memory_mib: 64,
        pids_limit: 64,
        log_limit,
    }
}

/// Reads a container's output until `line <last>`; the lines' numbers in the order they came.
async fn numbers_until(rt: &DockerRuntime, container: &str, last: u32) -> Vec<u32> {
    let mut output = rt.follow_output(container, 0);
    let mut numbers = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while numbers.last() != Some(&last) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = tokio::time::timeout(left, output.next())
            .await
            .unwrap_or_else(|_| panic!("line {last} within a minute; got {}", numbers.len()))
            .expect("the stream stays open while the container runs")
            .expect("a line");
        assert_eq!(line.stream, LogStream::Stdout);
        if let Some(n) = line.text.strip_prefix("line ") {
            numbers.push(n.split(' ').next().unwrap().parse().unwrap());
        }
    }
    numbers
}

#[tokio::test]
async fn output_is_followed_in_order() {
    let rt = runtime().await;
    let id = run_id();
    let _cleanup = Cleanup { id: id.clone() };
    let container = rt
        .run(&chatty(&id, 2000, LogLimit::default()))
        .await
        .unwrap();
    let numbers = numbers_until(&rt, &container, 2000).await;
    assert_eq!(numbers, (1..=2000).collect::<Vec<_>>());
    rt.remove(&container, Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn output_on_disk_is_capped() {
    let rt = runtime().await;
    let id = run_id();
    let _cleanup = Cleanup { id: id.clone() };
    let limit = LogLimit {
        file_bytes: 64 * 1024,
        files: 2,
    };
    // 20,000 lines of 200 bytes: 4 MB written, far more than the 128 KiB kept.
    let container = rt.run(&chatty(&id, 20_000, limit)).await.unwrap();
    let cap = limit.file_bytes * u64::from(limit.files);
    let mut most = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        most = most.max(log_bytes_on_disk(&rt, &container).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The oldest lines went; the newest are kept.
    let kept = numbers_until(&rt, &container, 20_000).await;
    assert!(
        most <= cap + 16 * 1024,
        "the engine kept up to {most} bytes of output, more than the {cap} cap"
    );
    assert!(
        kept.len() < 1000 && kept[0] > 19_000,
        "kept {} lines from {}",
        kept.len(),
        kept[0]
    );
    rt.remove(&container, Duration::from_secs(1)).await.unwrap();
}
