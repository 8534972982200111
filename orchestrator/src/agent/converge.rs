//! One convergence pass: list this node's containers, run [`plan`](super::plan::plan), make the
//! engine calls, probe health, and report every desired instance's state.
//!
//! Stops run beside the passes (a container may take its whole stop grace to exit), so one
//! slow stop never holds up the start of other instances.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gantry_common::agent::{DesiredInstance, ObservedInstance};
use gantry_common::cluster::InstanceState;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::images::{self, ImageUse};
use super::plan::{self, create_backoff, CreateError, Step, Tracked};
use crate::runtime::{
    labels, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerStatus, LogLimit, RuntimeError,
};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const PIDS_LIMIT: i64 = 512;

/// The name of a team's own Docker network on a node. It carries the node's name so that agents
/// sharing one engine (tests, benchmarks) never race to create the same network.
pub fn team_network(team: &str, node: &str) -> String {
    format!("gantry-team-{team}-on-{node}")
}

pub fn container_name(instance: Uuid) -> String {
    format!("gantry-{instance}")
}

pub struct Converger<R> {
    runtime: Arc<R>,
    node: String,
    /// Where ports are published and probed.
    address: String,
    /// The last desired set from the server; `None` until the first one arrives, and until then
    /// nothing is created or removed (a restarted agent keeps its containers running).
    desired: Option<(u64, Vec<DesiredInstance>)>,
    tracked: HashMap<Uuid, Tracked>,
    /// This node's containers by instance, as of the last pass (those being stopped left out).
    containers: HashMap<Uuid, ContainerInfo>,
    /// Instances with a container being stopped, as of the last pass.
    leaving: HashSet<Uuid>,
    /// Stops under way, by container id.
    stopping: HashMap<String, JoinHandle<()>>,
    http: reqwest::Client,
    /// When the node's instances last used each image, and where that is kept (none: images
    /// are never removed).
    image_use: ImageUse,
    image_use_file: Option<PathBuf>,
    /// When images were last looked at for removal.
    images_checked: Option<Instant>,
    /// Every container of this node as of the last pass (for the log followers).
    on_node: Vec<ContainerInfo>,
    /// How much output the engine keeps per container.
    log_limit: LogLimit,
}

impl<R: ContainerRuntime> Converger<R> {
    pub fn new(runtime: Arc<R>, node: String, address: String) -> Self {
        Self {
            runtime,
            node,
            address,
            desired: None,
            tracked: HashMap::new(),
            containers: HashMap::new(),
            leaving: HashSet::new(),
            stopping: HashMap::new(),
            image_use: ImageUse::default(),
            image_use_file: None,
            images_checked: None,
            on_node: Vec::new(),
            log_limit: LogLimit::default(),
            http: reqwest::Client::builder()
                .timeout(PROBE_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a reqwest client with only a timeout builds"),
        }
    }

    pub fn set_desired(&mut self, generation: u64, instances: Vec<DesiredInstance>) {
        self.tracked
            .retain(|id, _| instances.iter().any(|d| d.id == *id && !d.stop));
        for d in instances.iter().filter(|d| !d.stop) {
            self.tracked.entry(d.id).or_default();
        }
        self.desired = Some((generation, instances));
    }

    /// Whether an instance is starting up: then [`Self::probe_starting`] should run often.
    pub fn settling(&self) -> bool {
        self.tracked.values().any(Tracked::starting)
    }

    /// The generation last applied, if any.
    pub fn generation(&self) -> Option<u64> {
        self.desired.as_ref().map(|(g, _)| *g)
    }

    /// Waits for the stops under way (tests; an agent that is shutting down).
    pub async fn finish_stops(&mut self) {
        for (_, handle) in self.stopping.drain() {
            let _ = handle.await;
        }
    }

    /// One pass. Engine errors are logged and retried next pass; they never end the agent.
    ///
    /// Removes images no instance of this node has used for a day ([`images`]), keeping when
    /// each was last used in `file` (across restarts).
    /// How much output the engine keeps of each container it creates.
    pub fn limit_logs(mut self, limit: LogLimit) -> Self {
        self.log_limit = limit;
        self
    }

    /// Every container of this node as of the last pass, ours to follow the output of.
    pub fn on_node(&self) -> &[ContainerInfo] {
        &self.on_node
    }

    pub fn collect_images(mut self, file: PathBuf) -> Self {
        self.image_use = ImageUse::load(&file);
        self.image_use_file = Some(file);
        self
    }

    /// # Guarantees
    /// Touches only containers labelled `gantry.node=<this node>`, and only images such
    /// containers ran.
    pub async fn pass(&mut self) -> Result<Vec<ObservedInstance>, RuntimeError> {
        let now = Instant::now();
        self.stopping.retain(|_, handle| !handle.is_finished());
        let containers = self.runtime.list(labels::NODE, &self.node).await?;
        self.on_node.clone_from(&containers);
        let Some((_, desired)) = self.desired.clone() else {
            return Ok(Vec::new());
        };
        plan::observe_exits(&containers, &mut self.tracked, now);
        let stopping: HashSet<String> = self.stopping.keys().cloned().collect();
        let steps = plan::plan(&desired, &containers, &self.tracked, &stopping, now);
        let mut touched = Vec::new();
        for step in steps {
            touched.extend(self.execute(step, &desired).await);
        }
        // Only the containers just created or started changed (stops run aside and their
        // containers are left out below): look at those again, not at the whole node.
        let mut containers = containers;
        for id in touched {
            containers.retain(|c| c.id != id);
            containers.extend(self.runtime.inspect(&id).await?);
        }
        self.on_node.clone_from(&containers);
        // After this pass's creations: the images they run are in use.
        self.tend_images(&containers, now).await;
        self.leaving.clear();
        self.containers.clear();
        for c in containers {
            let Some(id) = plan::instance_of(&c) else {
                continue;
            };
            if self.stopping.contains_key(&c.id) {
                self.leaving.insert(id);
            } else {
                self.containers.insert(id, c);
            }
        }
        self.probe(&desired, |_| true).await;
        Ok(self.observed(&desired))
    }

    /// Records which images the node's containers use, and once an hour removes those unused
    /// for a day. Failures are logged: an image left behind is retried an hour later.
    async fn tend_images(&mut self, containers: &[ContainerInfo], now: Instant) {
        let Some(file) = self.image_use_file.clone() else {
            return;
        };
        let unix = OffsetDateTime::now_utc().unix_timestamp();
        let in_use: HashSet<&str> = containers
            .iter()
            .filter_map(|c| c.image_id.as_deref())
            .collect();
        let mut changed = self.image_use.record(in_use.iter().copied(), unix);
        let due = self
            .images_checked
            .is_none_or(|at| now.duration_since(at) >= images::EVERY);
        if due {
            self.images_checked = Some(now);
            for id in self.image_use.stale(&in_use, unix) {
                match self.runtime.remove_image(&id).await {
                    Ok(removed) => {
                        if removed {
                            tracing::info!(image = %id, "removed image {id}: unused for a day");
                        }
                        // In use by a container that is not ours: not ours to remove.
                        self.image_use.forget(&id);
                    }
                    Err(e) => tracing::warn!(image = %id, "failed to remove image {id}: {e}"),
                }
            }
            changed = true;
        }
        if changed {
            if let Err(e) = self.image_use.save(&file) {
                tracing::warn!("failed to save {}: {e}", file.display());
            }
        }
    }

    /// Between passes, while instances start up: probes only those (no engine calls), so an
    /// instance is reported ready within milliseconds of answering.
    pub async fn probe_starting(&mut self) -> Vec<ObservedInstance> {
        let Some((_, desired)) = self.desired.clone() else {
            return Vec::new();
        };
        self.probe(&desired, Tracked::starting).await;
        self.observed(&desired)
    }

    /// Every desired instance's state, from the last listing and what is tracked. An instance
    /// the server wants stopped is reported (`stopping`) until its container is gone.
    fn observed(&self, desired: &[DesiredInstance]) -> Vec<ObservedInstance> {
        let now = Instant::now();
        desired
            .iter()
            .filter_map(|d| {
                let container = self.containers.get(&d.id);
                if d.stop {
                    let present = container.is_some() || self.leaving.contains(&d.id);
                    return present.then(|| ObservedInstance {
                        id: d.id,
                        state: InstanceState::Stopping,
                        reason: None,
                        host_port: None,
                        restarts: 0,
                        last_exit_code: None,
                        started_at: container.and_then(|c| c.started_at),
                        image_id: container.and_then(|c| c.image_id.clone()),
                    });
                }
                let tracked = self.tracked.get(&d.id).cloned().unwrap_or_default();
                let (state, reason) = plan::observed_state(container, &tracked, now);
                Some(ObservedInstance {
                    id: d.id,
                    state,
                    reason,
                    host_port: container.and_then(|c| c.host_port),
                    restarts: tracked.restarts,
                    last_exit_code: tracked.last_exit_code,
                    started_at: container.and_then(|c| c.started_at),
                    image_id: container.and_then(|c| c.image_id.clone()),
                })
            })
            .collect()
    }

    /// Makes one engine call; returns the container it created or started, if any.
    async fn execute(&mut self, step: Step, desired: &[DesiredInstance]) -> Option<String> {
        let spec_of = |id: Uuid| desired.iter().find(|d| d.id == id);
        match step {
            Step::Stop { container, grace } => {
                self.stop_beside(container, grace);
                None
            }
            Step::Create { instance } => {
                let d = spec_of(instance)?;
                let result = self.try_create(d).await;
                self.record_create(d.id, result.clone());
                result.ok()
            }
            Step::Start {
                instance,
                container,
            } => {
                let result = self.runtime.start(&container).await;
                self.record_create(instance, result.map(|()| container.clone()));
                Some(container)
            }
            Step::Restart {
                instance,
                container,
            } => {
                tracing::info!(instance.id = %instance, "restarting instance {instance}");
                let result = self.runtime.start(&container).await;
                let t = self.tracked.entry(instance).or_default();
                t.restarts += 1;
                match result {
                    Ok(()) => {
                        t.retry_at = None;
                        t.running_since = Some(Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!(instance.id = %instance, "failed to restart instance {instance}: {e}");
                        t.retry_at = Some(Instant::now() + plan::crash_backoff(t.crash_streak));
                    }
                }
                Some(container)
            }
            Step::Replace {
                instance,
                container,
                grace,
                why,
            } => {
                tracing::warn!(instance.id = %instance, "instance {instance} {why}; replacing its container");
                let t = self.tracked.entry(instance).or_default();
                t.restarts += 1;
                t.ready = false;
                t.ever_ready = false;
                t.probe_failures = 0;
                t.running_since = None;
                t.replaced_because = Some(why);
                // A fresh container is created once this one is gone (the plan waits for it).
                self.stop_beside(container, grace);
                None
            }
        }
    }

    /// Starts stopping a container in the background; passes leave it alone meanwhile.
    fn stop_beside(&mut self, container: String, grace: Duration) {
        if self.stopping.contains_key(&container) {
            return;
        }
        tracing::info!(container.id = %container, "stopping container {container} (grace {grace:?})");
        let runtime = Arc::clone(&self.runtime);
        let id = container.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = runtime.remove(&id, grace).await {
                tracing::warn!(container.id = %id, "failed to stop container {id}: {e}");
            }
        });
        self.stopping.insert(container, handle);
    }

    /// Remembers how a create (or first start) went: success clears the error, failure sets
    /// the error the user sees and the backoff before the next try.
    fn record_create(&mut self, id: Uuid, result: Result<String, RuntimeError>) {
        let t = self.tracked.entry(id).or_default();
        match result {
            Ok(container) => {
                tracing::info!(instance.id = %id, container.id = %container, "instance {id} started");
                t.create_failures = 0;
                t.error = None;
                t.retry_at = None;
                t.running_since = Some(Instant::now());
                t.probe_error = None;
            }
            Err(e) => {
                tracing::warn!(instance.id = %id, "failed to create instance {id}: {e}");
                t.create_failures += 1;
                t.retry_at = Some(Instant::now() + create_backoff(t.create_failures));
                t.error = Some(match e {
                    RuntimeError::ImagePull(m) => CreateError::ImagePull(m),
                    RuntimeError::Engine(m) => CreateError::Engine(m),
                });
            }
        }
    }

    async fn try_create(&self, d: &DesiredInstance) -> Result<String, RuntimeError> {
        let t0 = Instant::now();
        let image_id = self
            .runtime
            .ensure_image(&d.image, d.pull_secret.as_ref())
            .await?;
        let t_image = t0.elapsed();
        if let Some(pinned) = d.image_digest.as_deref().filter(|p| *p != image_id) {
            // A rollback (or a new instance of an old release) must run what the release ran,
            // not whatever the tag points at today.
            return Err(RuntimeError::ImagePull(format!(
                "image {} is now {image_id}, but release v{} runs {pinned}; deploy the image again to run the new one",
                d.image, d.release
            )));
        }
        let network = team_network(&d.team, &self.node);
        let common_labels = BTreeMap::from([
            (labels::MANAGED.to_owned(), "true".to_owned()),
            (labels::TEAM.to_owned(), d.team.clone()),
            (labels::NODE.to_owned(), self.node.clone()),
        ]);
        let network_id = self
            .runtime
            .ensure_network(&network, &common_labels)
            .await?;
        let t_network = t0.elapsed();
        let mut container_labels = common_labels;
        container_labels.insert(labels::APP.into(), d.app.clone());
        container_labels.insert(labels::INSTANCE.into(), d.id.to_string());
        container_labels.insert(labels::RELEASE.into(), d.release.to_string());
        let container = self
            .runtime
            .run(&ContainerSpec {
                name: container_name(d.id),
                image: d.image.clone(),
                labels: container_labels,
                env: d.env.clone(),
                port: d.port,
                host_ip: self.address.clone(),
                network: network_id,
                cpu_millis: d.cpu_millis,
                memory_mib: d.memory_mib,
                pids_limit: PIDS_LIMIT,
                log_limit: self.log_limit,
            })
            .await?;
        tracing::debug!(
            instance.id = %d.id,
            "instance {} created in {:?} (image {:?}, network {:?}, container {:?})",
            d.id,
            t0.elapsed(),
            t_image,
            t_network - t_image,
            t0.elapsed() - t_network
        );
        Ok(container)
    }

    /// Probes the health path of the running instances `which` selects, concurrently. A worker
    /// (no port) is ready as soon as its container runs.
    async fn probe(&mut self, desired: &[DesiredInstance], which: impl Fn(&Tracked) -> bool) {
        let probes = desired.iter().filter(|d| !d.stop).filter_map(|d| {
            if !self.tracked.get(&d.id).is_some_and(&which) {
                return None;
            }
            let container = self.containers.get(&d.id)?;
            if container.status != ContainerStatus::Running {
                return None;
            }
            if d.port.is_none() {
                return Some(futures_util::future::Either::Left(
                    async move { (d.id, Ok(())) },
                ));
            }
            let host_port = container.host_port?;
            let url = format!("http://{}:{host_port}{}", self.address, d.health_check_path);
            let http = self.http.clone();
            let path = d.health_check_path.clone();
            Some(futures_util::future::Either::Right(async move {
                let result = match http.get(&url).send().await {
                    Ok(res) if res.status().is_success() || res.status().is_redirection() => Ok(()),
                    Ok(res) => Err(format!("health check GET {path} answered {}", res.status())),
                    Err(e) if e.is_timeout() => Err(format!(
                        "health check GET {path} timed out after {PROBE_TIMEOUT:?}"
                    )),
                    Err(e) if e.is_connect() => Err(format!(
                        "health check GET {path}: nothing listens on the app's port"
                    )),
                    Err(_) => Err(format!("health check GET {path} failed")),
                };
                (d.id, result)
            }))
        });
        let results = futures_util::future::join_all(probes).await;
        for (id, result) in results {
            let t = self.tracked.entry(id).or_default();
            t.ready = result.is_ok();
            match result {
                Ok(()) => {
                    t.ever_ready = true;
                    t.probe_failures = 0;
                    t.probe_error = None;
                    t.replaced_because = None;
                }
                Err(why) => {
                    t.probe_failures += 1;
                    t.probe_error = Some(why);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::{count, Call, FakeRuntime};

    fn desired(n: u128, image: &str) -> DesiredInstance {
        DesiredInstance {
            image: image.into(),
            ..plan::tests::desired(n)
        }
    }

    #[tokio::test]
    async fn images_unused_for_a_day_are_removed_and_those_in_use_or_recent_stay() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("images.json");
        let long_ago = OffsetDateTime::now_utc().unix_timestamp() - 2 * 24 * 3600;
        std::fs::write(
            &file,
            format!(r#"{{"last_used":{{"sha256:old":{long_ago},"sha256:busy":{long_ago}}}}}"#),
        )
        .unwrap();
        let fake = Arc::new(FakeRuntime::new());
        fake.set_image_id("hello:1", "sha256:busy");
        let mut agent = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into())
            .collect_images(file.clone());
        agent.set_desired(1, vec![desired(1, "hello:1")]);
        agent.pass().await.unwrap();
        let removed: Vec<Call> = fake
            .take_calls()
            .into_iter()
            .filter(|c| matches!(c, Call::RemoveImage(_)))
            .collect();
        // The running instance's image stays (and is now recent); the old one goes.
        assert_eq!(removed, vec![Call::RemoveImage("sha256:old".into())]);
        let kept = ImageUse::load(&file);
        assert!(kept
            .stale(&HashSet::new(), long_ago + 3 * 24 * 3600)
            .contains(&"sha256:busy".to_owned()));
        assert!(!kept
            .stale(&HashSet::new(), long_ago + 3 * 24 * 3600)
            .contains(&"sha256:old".to_owned()));

        // Within the hour, nothing more is looked at, even once the instance is gone.
        agent.set_desired(2, vec![]);
        agent.pass().await.unwrap();
        assert!(!fake
            .take_calls()
            .iter()
            .any(|c| matches!(c, Call::RemoveImage(_))));
    }

    #[tokio::test]
    async fn nothing_is_touched_before_the_first_desired_set() {
        let fake = Arc::new(FakeRuntime::new());
        let mut other = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into());
        other.set_desired(1, vec![desired(1, "hello:1")]);
        other.pass().await.unwrap();
        fake.take_calls();

        // A restarted agent: same node, no desired set yet.
        let mut restarted = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into());
        assert_eq!(restarted.pass().await.unwrap(), vec![]);
        assert_eq!(fake.take_calls(), vec![]);
        assert_eq!(fake.containers().len(), 1);

        // Once told the same set, it keeps the running container.
        restarted.set_desired(2, vec![desired(1, "hello:1")]);
        restarted.pass().await.unwrap();
        assert_eq!(count(&fake.take_calls()).get("run"), None);
    }

    #[tokio::test]
    async fn scale_up_then_down_creates_then_removes() {
        let fake = Arc::new(FakeRuntime::new());
        let mut agent = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into());
        agent.set_desired(1, (1..=3).map(|n| desired(n, "hello:1")).collect());
        let observed = agent.pass().await.unwrap();
        assert_eq!(observed.len(), 3);
        assert_eq!(count(&fake.take_calls())["run"], 3);

        agent.set_desired(2, vec![desired(2, "hello:1")]);
        agent.pass().await.unwrap();
        agent.finish_stops().await;
        let calls = fake.take_calls();
        assert_eq!(count(&calls)["remove"], 2);
        assert_eq!(count(&calls).get("run"), None);
        let left: Vec<_> = fake
            .containers()
            .iter()
            .filter_map(plan::instance_of)
            .collect();
        assert_eq!(left, vec![Uuid::from_u128(2)]);
    }

    #[tokio::test]
    async fn containers_of_other_nodes_are_never_touched() {
        let fake = Arc::new(FakeRuntime::new());
        let mut n2 = Converger::new(fake.clone(), "n2".into(), "127.0.0.1".into());
        n2.set_desired(1, vec![desired(7, "hello:1")]);
        n2.pass().await.unwrap();
        fake.take_calls();

        let mut n1 = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into());
        n1.set_desired(1, vec![]);
        n1.pass().await.unwrap();
        n1.finish_stops().await;
        assert_eq!(fake.take_calls(), vec![]);
        assert_eq!(fake.containers().len(), 1);
    }

    #[tokio::test]
    async fn a_missing_image_is_an_instance_state_not_a_crash() {
        let fake = Arc::new(FakeRuntime::new());
        fake.fail_pulls_of("nope:1");
        let mut agent = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into());
        agent.set_desired(1, vec![desired(1, "nope:1")]);
        let observed = agent.pass().await.unwrap();
        assert_eq!(
            observed[0].state,
            gantry_common::cluster::InstanceState::ImagePullError
        );
        assert!(observed[0].reason.as_deref().unwrap().contains("nope:1"));
        // Within the backoff nothing is retried.
        agent.pass().await.unwrap();
        let calls = fake.take_calls();
        assert_eq!(calls, vec![Call::EnsureImage("nope:1".into())]);
    }

    #[tokio::test]
    async fn the_container_carries_the_labels_and_the_team_network() {
        let fake = Arc::new(FakeRuntime::new());
        let mut agent = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into());
        agent.set_desired(1, vec![desired(1, "hello:1")]);
        agent.pass().await.unwrap();
        assert!(fake
            .take_calls()
            .contains(&Call::EnsureNetwork("gantry-team-acme-on-n1".into())));
        let c = &fake.containers()[0];
        assert_eq!(c.name, container_name(Uuid::from_u128(1)));
        for (k, v) in [
            (labels::TEAM, "acme"),
            (labels::APP, "web"),
            (labels::NODE, "n1"),
            (labels::MANAGED, "true"),
            (labels::RELEASE, "1"),
        ] {
            assert_eq!(c.labels.get(k).map(String::as_str), Some(v), "label {k}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashed_container_is_restarted_and_counted() {
        let fake = Arc::new(FakeRuntime::new());
        let mut agent = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into());
        agent.set_desired(1, vec![desired(1, "hello:1")]);
        agent.pass().await.unwrap();
        let id = fake.containers()[0].id.clone();
        fake.exit(&id, 2);
        let observed = agent.pass().await.unwrap();
        assert_eq!(
            observed[0].state,
            gantry_common::cluster::InstanceState::CrashLoop
        );
        assert_eq!(observed[0].last_exit_code, Some(2));
        tokio::time::sleep(plan::crash_backoff(0)).await;
        let observed = agent.pass().await.unwrap();
        assert_eq!(observed[0].restarts, 1);
        assert!(fake.take_calls().contains(&Call::Start(id)));
    }

    #[tokio::test]
    async fn a_stop_order_stops_the_container_and_reports_stopping_until_it_is_gone() {
        let fake = Arc::new(FakeRuntime::new());
        let mut agent = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into());
        agent.set_desired(1, vec![desired(1, "hello:1"), desired(2, "hello:1")]);
        agent.pass().await.unwrap();
        fake.take_calls();

        let mut leaving = desired(1, "hello:1");
        leaving.stop = true;
        agent.set_desired(2, vec![leaving, desired(2, "hello:1")]);
        let observed = agent.pass().await.unwrap();
        let one = observed
            .iter()
            .find(|o| o.id == Uuid::from_u128(1))
            .unwrap();
        assert_eq!(one.state, gantry_common::cluster::InstanceState::Stopping);
        agent.finish_stops().await;
        let calls = fake.take_calls();
        assert_eq!(count(&calls)["remove"], 1);
        assert_eq!(
            count(&calls).get("run"),
            None,
            "nothing new is created for it"
        );
        // Once the container is gone, the instance is no longer reported.
        let observed = agent.pass().await.unwrap();
        assert_eq!(
            observed.iter().map(|o| o.id).collect::<Vec<_>>(),
            vec![Uuid::from_u128(2)]
        );
    }

    #[tokio::test]
    async fn the_environment_reaches_the_container_and_workers_are_ready_once_running() {
        let fake = Arc::new(FakeRuntime::new());
        let mut agent = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into());
        let mut worker = desired(1, "hello:1");
        worker.port = None;
        worker.env = gantry_common::agent::Env(BTreeMap::from([
            ("GREETING".to_owned(), "hi".to_owned()),
            ("GANTRY_RELEASE".to_owned(), "v1".to_owned()),
        ]));
        agent.set_desired(1, vec![worker]);
        let observed = agent.pass().await.unwrap();
        assert_eq!(
            observed[0].state,
            gantry_common::cluster::InstanceState::Ready
        );
        assert_eq!(observed[0].host_port, None);
        assert_eq!(
            observed[0].image_id.as_deref(),
            Some("sha256:id-of-hello:1")
        );
    }

    #[tokio::test]
    async fn an_image_that_now_resolves_to_another_id_is_refused_not_run() {
        let fake = Arc::new(FakeRuntime::new());
        fake.set_image_id("hello:1", "sha256:rebuilt");
        let mut agent = Converger::new(fake.clone(), "n1".into(), "127.0.0.1".into());
        let mut pinned = desired(1, "hello:1");
        pinned.image_digest = Some("sha256:original".into());
        agent.set_desired(1, vec![pinned]);
        let observed = agent.pass().await.unwrap();
        assert_eq!(
            observed[0].state,
            gantry_common::cluster::InstanceState::ImagePullError
        );
        let reason = observed[0].reason.as_deref().unwrap();
        assert!(
            reason.contains("sha256:rebuilt") && reason.contains("sha256:original"),
            "{reason}"
        );
        assert_eq!(count(&fake.take_calls()).get("run"), None);
    }
}
