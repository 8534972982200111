//! The real [`ContainerRuntime`]: the Docker Engine API through bollard.
//!
//! Things about the engine worth knowing here (tested against Docker 20.10, API 1.41):
//! - bollard 0.19 speaks API 1.49 by default, and an older engine refuses every request ("client
//!   version 1.49 is too new"); [`DockerRuntime::connect`] negotiates the version down.
//! - Engines below API 1.44 create a second network with an existing name when asked (with a
//!   warning) unless `CheckDuplicate` is set, which bollard 0.19's request type no longer has.
//!   Two networks with one name make the name unusable ("ambiguous"), so
//!   [`DockerRuntime::ensure_network`] serialises its own calls and deletes a duplicate it made.
//! - Names in the API also match id prefixes; lookups by name check the name they get back.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    HostConfig, HostConfigLogConfig, NetworkCreateRequest, PortBinding, PortMap,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptions, CreateImageOptions, InspectContainerOptions,
    ListContainersOptions, ListNetworksOptions, LogsOptions, PushImageOptionsBuilder,
    RemoveContainerOptions, RemoveImageOptions, StartContainerOptions, StatsOptions,
    StopContainerOptions,
};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};
use gantry_common::agent::{PullSecret, PULL_USER};
use gantry_common::logs::LogStream;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{
    BuildContext, BuildSpec, Capacity, ContainerInfo, ContainerRuntime, ContainerSpec,
    ContainerStatus, OutputLine, RuntimeError, RuntimeResult, Usage,
};

/// Where bollard connects when `DOCKER_HOST` is unset (on Unix).
const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// Containers inspected at once by [`DockerRuntime::list`].
const LIST_CONCURRENCY: usize = 8;
/// How much longer than the stop grace a stop request may take before we give up on it.
const STOP_REQUEST_SLACK: Duration = Duration::from_secs(30);
const MIB: i64 = 1024 * 1024;

/// The node's Docker engine.
///
/// Cheap to clone: bollard's client is a handle to one connection pool.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// The engine has an init binary (docker-init, i.e. tini) to run as each container's PID 1.
    has_init: bool,
    /// Serialises [`ContainerRuntime::ensure_network`] in this process (see the module docs),
    /// and remembers the ids of the networks it ensured, so starting an instance does not ask
    /// the engine for them each time. An entry goes when a container cannot be created on it.
    networks: std::sync::Arc<tokio::sync::Mutex<HashMap<String, String>>>,
}

impl std::fmt::Debug for DockerRuntime {
    // bollard's client is not `Debug`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("api", &self.docker.client_version().to_string())
            .field("has_init", &self.has_init)
            .finish_non_exhaustive()
    }
}

impl DockerRuntime {
    /// Connects to the engine named by `DOCKER_HOST` (`unix://` or `tcp://`), else the local
    /// socket, agrees on an API version and checks that the engine answers.
    ///
    /// bollard's `connect_with_local_defaults` would ignore a `tcp://` `DOCKER_HOST`, so this
    /// uses `connect_with_defaults`, which honours both schemes.
    ///
    /// # Errors
    /// [`RuntimeError::Engine`] ("cannot reach the Docker engine at …") when the engine does not
    /// answer.
    pub async fn connect() -> RuntimeResult<Self> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_DOCKER_HOST.to_owned());
        let unreachable = |err: DockerError| {
            RuntimeError::Engine(format!(
                "cannot reach the Docker engine at {host}: {}",
                engine_message(err)
            ))
        };
        let docker = Docker::connect_with_defaults().map_err(unreachable)?;
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        let info = docker.info().await.map_err(unreachable)?;
        // The engine reports the init it is configured with, and "N/A" as the init's commit when
        // it could not run it (Debian's tini reports an empty commit, so "" means present).
        let init_commit = info.init_commit.and_then(|c| c.id);
        let has_init = info.init_binary.is_some_and(|b| !b.is_empty())
            && init_commit.as_deref() != Some("N/A");
        tracing::debug!(
            docker.host = %host,
            docker.api = %docker.client_version(),
            docker.init = has_init,
            "connected to the Docker engine at {host}"
        );
        Ok(DockerRuntime {
            docker,
            has_init,
            networks: Default::default(),
        })
    }

    /// The bollard client, for what the trait does not cover (tests inspect with it).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Whether containers run with the engine's init as PID 1.
    pub fn has_init(&self) -> bool {
        self.has_init
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInspectResponse, DockerError> {
        self.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
    }

    /// Starts the container `name` left by an earlier `run` whose answer was lost.
    async fn adopt(&self, name: &str) -> RuntimeResult<String> {
        let existing = self.inspect_container(name).await.map_err(engine_error)?;
        let id = existing.id.clone().unwrap_or_default();
        if existing.name.as_deref().map(strip_slash) != Some(name) || id.is_empty() {
            return Err(RuntimeError::Engine(format!(
                "container name {name} is taken, but the engine cannot show it"
            )));
        }
        let running = existing
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false);
        if !running {
            self.start(&id).await?;
        }
        Ok(id)
    }
}

impl DockerRuntime {
    /// The id of the network named exactly `name` (the engine's filter matches substrings).
    async fn network_id(&self, name: &str) -> RuntimeResult<Option<String>> {
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
        };
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(engine_error)?;
        Ok(networks
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| n.id)
            .min())
    }
}

impl ContainerRuntime for DockerRuntime {
    async fn capacity(&self) -> RuntimeResult<Capacity> {
        let info = self.docker.info().await.map_err(engine_error)?;
        let cpus = info.ncpu.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        let memory = info
            .mem_total
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0);
        Ok(Capacity {
            cpu_millis: cpus * 1000,
            memory_mib: memory / (1024 * 1024),
        })
    }

    /// # Guarantees
    /// Pulls nothing when the image is present. A pull failure, including one the engine reports
    /// inside the progress stream after a 200, is [`RuntimeError::ImagePull`].
    async fn ensure_image(
        &self,
        image: &str,
        pull_secret: Option<&PullSecret>,
    ) -> RuntimeResult<String> {
        if !is_plausible_image_ref(image) {
            return Err(RuntimeError::ImagePull(format!(
                "invalid image reference {image:?}"
            )));
        }
        let image_id = |inspected: bollard::models::ImageInspect| {
            inspected.id.ok_or_else(|| {
                RuntimeError::Engine(format!("the engine shows image {image} without an id"))
            })
        };
        // An image of the server's registry is always pulled: the engine checks the secret
        // with the registry, and fetches only the layers it lacks.
        if pull_secret.is_none() {
            match self.docker.inspect_image(image).await {
                Ok(inspected) => return image_id(inspected),
                // 400 is a malformed reference: the pull says so, as an ImagePull error.
                Err(err) if matches!(status_of(&err), Some(404 | 400)) => {}
                Err(err) => return Err(engine_error(err)),
            }
        }
        tracing::info!(image, "pulling image {image}");
        let (from_image, tag) = split_image_ref(image);
        let options = CreateImageOptions {
            from_image: Some(from_image.to_owned()),
            tag: tag.map(str::to_owned),
            ..Default::default()
        };
        let credentials = pull_secret.map(|secret| DockerCredentials {
            username: Some(PULL_USER.to_owned()),
            password: Some(secret.0.clone()),
            serveraddress: from_image.split('/').next().map(str::to_owned),
            ..Default::default()
        });
        self.docker
            .create_image(Some(options), None, credentials)
            .try_for_each(|_progress| async { Ok(()) })
            .await
            .map_err(|err| RuntimeError::ImagePull(engine_message(err)))?;
        match self.docker.inspect_image(image).await {
            Ok(inspected) => image_id(inspected),
            Err(err) if status_of(&err) == Some(404) => Err(RuntimeError::ImagePull(format!(
                "the pull of {image} ended without error, but the engine does not have it"
            ))),
            Err(err) => Err(engine_error(err)),
        }
    }

    /// # Guarantees
    /// Creates the network only when no network of that name exists; leaves an existing one as
    /// it is (its labels included). Returns its id.
    ///
    /// # Assumptions
    /// Only this process creates networks of this name. Engines before API 1.44 let two racing
    /// creators make two networks of one name, after which no container on it can start; calls
    /// within this process are serialised, and agents sharing an engine use distinct names
    /// (the network's name carries the node's).
    async fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> RuntimeResult<String> {
        let mut known = self.networks.lock().await;
        if let Some(id) = known.get(name) {
            return Ok(id.clone());
        }
        if let Some(id) = self.network_id(name).await? {
            known.insert(name.to_owned(), id.clone());
            return Ok(id);
        }
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => {}
            // Someone else created it since we looked (engines from API 1.44 on say so).
            Err(err) if status_of(&err) == Some(409) => {}
            Err(err) => return Err(engine_error(err)),
        }
        let id = self.network_id(name).await?.ok_or_else(|| {
            RuntimeError::Engine(format!("network {name} vanished right after its creation"))
        })?;
        known.insert(name.to_owned(), id.clone());
        Ok(id)
    }

    /// # Guarantees
    /// Idempotent by name: when a container named `spec.name` exists (an earlier call whose
    /// answer was lost), it is started if need be and its id returned.
    ///
    /// # Assumptions
    /// The image is on the node ([`ContainerRuntime::ensure_image`]) and the network exists.
    async fn run(&self, spec: &ContainerSpec) -> RuntimeResult<String> {
        if spec.cpu_millis == 0 || spec.memory_mib == 0 || spec.pids_limit <= 0 {
            // Docker reads 0 (and -1 for pids) as "unlimited": never by accident.
            return Err(RuntimeError::Engine(format!(
                "refusing to run {} without CPU, memory and pids limits",
                spec.name
            )));
        }
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = match self
            .docker
            .create_container(Some(options), container_body(spec, self.has_init))
            .await
        {
            Ok(created) => created,
            Err(err) if status_of(&err) == Some(409) => return self.adopt(&spec.name).await,
            Err(err) => {
                // A network removed behind our back (404) is looked up again next time.
                if status_of(&err) == Some(404) {
                    self.networks
                        .lock()
                        .await
                        .retain(|_, id| *id != spec.network);
                }
                return Err(engine_error(err));
            }
        };
        // A failed start leaves the container created: a retry finds it by name and starts it.
        self.start(&created.id).await?;
        tracing::debug!(
            container.id = %created.id,
            container.name = %spec.name,
            "started container {}", spec.name
        );
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> RuntimeResult<()> {
        // bollard turns the engine's 304 ("already started") into Ok.
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(engine_error)
    }

    /// # Guarantees
    /// A container that is already stopped or gone is fine. The engine sends the image's stop
    /// signal (SIGTERM unless the image says otherwise), then SIGKILL after `grace`.
    ///
    /// # Assumptions
    /// Nothing else waits on this call: it takes up to `grace`.
    async fn remove(&self, id: &str, grace: Duration) -> RuntimeResult<()> {
        let stop = StopContainerOptions {
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        // The engine answers a stop only once the container is down, up to `grace` later: this
        // request gets a timeout of its own beyond that (bollard's default is 2 minutes).
        let patient = self.docker.clone().with_timeout(grace + STOP_REQUEST_SLACK);
        match patient.stop_container(id, Some(stop)).await {
            // 304 (already stopped) arrives as Ok.
            Ok(()) => {}
            Err(err) if status_of(&err) == Some(404) => return Ok(()),
            Err(err) => return Err(engine_error(err)),
        }
        let remove = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(remove)).await {
            Ok(()) => Ok(()),
            Err(err) if status_of(&err) == Some(404) => Ok(()),
            Err(err) => Err(engine_error(err)),
        }
    }

    async fn remove_image(&self, id: &str) -> RuntimeResult<bool> {
        // Not forced: an image some container still uses (409) stays.
        match self
            .docker
            .remove_image(id, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if status_of(&err) == Some(404) => Ok(true),
            Err(err) if status_of(&err) == Some(409) => Ok(false),
            Err(err) => Err(engine_error(err)),
        }
    }

    async fn inspect(&self, id: &str) -> RuntimeResult<Option<ContainerInfo>> {
        match self.inspect_container(id).await {
            Ok(details) => Ok(Some(container_info(details))),
            Err(err) if status_of(&err) == Some(404) => Ok(None),
            Err(err) => Err(engine_error(err)),
        }
    }

    async fn usage(&self, id: &str) -> RuntimeResult<Option<Usage>> {
        let options = StatsOptions {
            stream: false,
            // One sample at once: the agent works out rates from its own previous sample.
            one_shot: true,
        };
        let mut stats = self.docker.stats(id, Some(options));
        match stats.next().await {
            None => Ok(None),
            Some(Err(err)) if status_of(&err) == Some(404) => Ok(None),
            Some(Err(err)) => Err(engine_error(err)),
            Some(Ok(s)) => {
                let cpu_ns = s
                    .cpu_stats
                    .as_ref()
                    .and_then(|c| c.cpu_usage.as_ref())
                    .and_then(|u| u.total_usage);
                let Some(cpu_ns) = cpu_ns else {
                    return Ok(None); // not running: the engine reports nothing
                };
                let memory = s.memory_stats.as_ref();
                let used = memory.and_then(|m| m.usage).unwrap_or(0);
                // As `docker stats` shows it: minus the inactive page cache (cgroup v2), or
                // the cache (v1).
                let cache = memory
                    .and_then(|m| m.stats.as_ref())
                    .and_then(|st| {
                        st.get("inactive_file")
                            .or_else(|| st.get("total_inactive_file"))
                            .or_else(|| st.get("cache"))
                    })
                    .copied()
                    .unwrap_or(0);
                let (rx_bytes, tx_bytes) = s
                    .networks
                    .iter()
                    .flatten()
                    .fold((0, 0), |(rx, tx), (_, n)| {
                        (rx + n.rx_bytes.unwrap_or(0), tx + n.tx_bytes.unwrap_or(0))
                    });
                Ok(Some(Usage {
                    cpu_ns,
                    memory_bytes: used.saturating_sub(cache),
                    rx_bytes,
                    tx_bytes,
                }))
            }
        }
    }

    fn follow_output(
        &self,
        id: &str,
        since: i64,
    ) -> futures_util::stream::BoxStream<'static, RuntimeResult<OutputLine>> {
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            since: i32::try_from(since).unwrap_or(0),
            timestamps: true,
            ..Default::default()
        };
        self.docker
            .logs(id, Some(options))
            .map(|frame| match frame {
                Ok(LogOutput::StdOut { message }) => Ok(output_line(LogStream::Stdout, &message)),
                Ok(LogOutput::StdErr { message }) => Ok(output_line(LogStream::Stderr, &message)),
                // A tty container has one stream; Gantry creates none, but read it as stdout.
                Ok(LogOutput::Console { message }) => Ok(output_line(LogStream::Stdout, &message)),
                Ok(LogOutput::StdIn { message }) => Ok(output_line(LogStream::Stdout, &message)),
                Err(err) => Err(engine_error(err)),
            })
            .boxed()
    }

    async fn list(&self, key: &str, value: &str) -> RuntimeResult<Vec<ContainerInfo>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{key}={value}")],
            )])),
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine_error)?;
        let inspected: Vec<RuntimeResult<Option<ContainerInfo>>> =
            futures_util::stream::iter(summaries.into_iter().filter_map(|s| s.id))
                .map(|id| async move {
                    match self.inspect_container(&id).await {
                        Ok(details) => Ok(Some(container_info(details))),
                        // Removed between the list and the inspect.
                        Err(err) if status_of(&err) == Some(404) => Ok(None),
                        Err(err) => Err(engine_error(err)),
                    }
                })
                .buffered(LIST_CONCURRENCY)
                .collect()
                .await;
        inspected
            .into_iter()
            .filter_map(Result::transpose)
            .collect()
    }

    async fn tags_of(&self, repo: &str) -> RuntimeResult<Vec<String>> {
        let options = bollard::query_parameters::ListImagesOptions {
            filters: Some(HashMap::from([(
                "reference".to_owned(),
                vec![repo.to_owned()],
            )])),
            ..Default::default()
        };
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(engine_error)?;
        let prefix = format!("{repo}:");
        Ok(images
            .into_iter()
            .flat_map(|image| image.repo_tags)
            .filter(|tag| tag.starts_with(&prefix))
            .collect())
    }

    fn build(
        &self,
        spec: BuildSpec,
        context: BuildContext,
    ) -> futures_util::stream::BoxStream<'static, RuntimeResult<String>> {
        let docker = self.docker.clone();
        forward(move |tx| async move {
            let options = build_options(&spec);
            let mut output =
                docker.build_image(options, None, Some(bollard::body_try_stream(context)));
            // The engine writes chunks that hold several lines, or part of one.
            let mut pending = String::new();
            while let Some(item) = output.next().await {
                match item {
                    Ok(info) => {
                        if let Some(text) = info.stream.or(info.status) {
                            pending.push_str(&text);
                            while let Some(end) = pending.find('\n') {
                                let line: String = pending.drain(..=end).collect();
                                if tx.send(Ok(line.trim_end().to_owned())).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    Err(err) => {
                        let _ = tx.send(Err(engine_error(err))).await;
                        return;
                    }
                }
            }
            if !pending.trim().is_empty() {
                let _ = tx.send(Ok(pending.trim_end().to_owned())).await;
            }
        })
    }

    fn push(
        &self,
        image: &str,
        user: &str,
        secret: &PullSecret,
    ) -> futures_util::stream::BoxStream<'static, RuntimeResult<String>> {
        let docker = self.docker.clone();
        let (name, tag) = split_image_ref(image);
        let (name, tag) = (name.to_owned(), tag.unwrap_or("latest").to_owned());
        let credentials = DockerCredentials {
            username: Some(user.to_owned()),
            password: Some(secret.0.clone()),
            serveraddress: name.split('/').next().map(str::to_owned),
            ..Default::default()
        };
        forward(move |tx| async move {
            let options = PushImageOptionsBuilder::new().tag(&tag).build();
            let mut progress = docker.push_image(&name, Some(options), Some(credentials));
            while let Some(item) = progress.next().await {
                let line = match item {
                    // Per-layer progress bars are noise in a log; what each layer ended as,
                    // and the digest, are not.
                    Ok(info) if info.progress_detail.is_some() || info.progress.is_some() => {
                        continue
                    }
                    Ok(info) => match info.status {
                        Some(status) => Ok(status),
                        None => continue,
                    },
                    Err(err) => Err(engine_error(err)),
                };
                let failed = line.is_err();
                if tx.send(line).await.is_err() || failed {
                    return;
                }
            }
        })
    }
}

/// The engine's build parameters for a spec: no cache from pulls (nothing is pulled that the
/// node does not have), intermediate containers removed even on failure, limits always set.
fn build_options(spec: &BuildSpec) -> bollard::query_parameters::BuildImageOptions {
    // The API takes bytes as a 32-bit number.
    let memory = (i64::from(spec.memory_mib) * MIB).min(i64::from(i32::MAX)) as i32;
    let period = 100_000;
    let quota = (i64::from(spec.cpu_millis) * i64::from(period) / 1000).max(1000) as i32;
    BuildImageOptionsBuilder::new()
        .dockerfile(&spec.dockerfile)
        .t(&spec.tag)
        .rm(true)
        .forcerm(true)
        .memory(memory)
        .memswap(memory)
        .cpuperiod(period)
        .cpuquota(quota)
        .networkmode(&spec.network)
        .buildargs(
            &spec
                .build_args
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
        .build()
}

/// A stream fed by a task: the task ends (and drops what it drives, which cancels an engine
/// request) once the stream is dropped and it next sends.
fn forward<F, Fut>(work: F) -> futures_util::stream::BoxStream<'static, RuntimeResult<String>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<RuntimeResult<String>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(work(tx));
    let abort = task.abort_handle();
    let stream =
        futures_util::stream::unfold((rx, AbortOnDrop(abort)), |(mut rx, guard)| async move {
            rx.recv().await.map(|item| (item, (rx, guard)))
        });
    Box::pin(stream)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The container as Gantry runs every tenant: hardened here, so no caller can forget it.
fn container_body(spec: &ContainerSpec, has_init: bool) -> ContainerCreateBody {
    let port = spec.port.map(|p| format!("{p}/tcp"));
    let host_config = HostConfig {
        port_bindings: port.clone().map(|port| {
            HashMap::from([(
                port,
                Some(vec![PortBinding {
                    host_ip: Some(spec.host_ip.clone()),
                    // Empty: the engine picks a free ephemeral port; `list` reports it.
                    host_port: Some(String::new()),
                }]),
            )])
        }),
        memory: Some(i64::from(spec.memory_mib) * MIB),
        // Equal to `memory`: no swap on top.
        memory_swap: Some(i64::from(spec.memory_mib) * MIB),
        nano_cpus: Some(i64::from(spec.cpu_millis) * 1_000_000),
        pids_limit: Some(spec.pids_limit),
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: spec
            .port
            .is_some_and(|p| p < 1024)
            .then(|| vec!["NET_BIND_SERVICE".to_owned()]),
        security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
        privileged: Some(false),
        network_mode: Some(spec.network.clone()),
        // PID 1 gets no default signal actions from the kernel: an app without a SIGTERM
        // handler ignores `docker stop` as PID 1 and is killed only after the whole grace
        // period. Under the engine's init (tini) the app is not PID 1, so SIGTERM ends it at
        // once (measured: 0.2 s with init, the full timeout without), and zombies are reaped.
        init: has_init.then_some(true),
        // The engine's own default keeps every byte forever.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".to_owned()),
            config: Some(HashMap::from([
                ("max-size".to_owned(), spec.log_limit.file_bytes.to_string()),
                (
                    "max-file".to_owned(),
                    spec.log_limit.files.max(1).to_string(),
                ),
            ])),
        }),
        // No restart policy, binds or mounts: the agent restarts crashed containers itself, and
        // tenants get no host paths.
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        env: Some(
            spec.env
                .0
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect(),
        ),
        exposed_ports: port.map(|port| HashMap::from([(port, HashMap::new())])),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// One frame of `docker logs --timestamps`: `<RFC 3339 time> <text>\n`. A frame without a
/// readable time (none should come) is stamped now rather than lost.
fn output_line(stream: LogStream, message: &[u8]) -> OutputLine {
    let raw = String::from_utf8_lossy(message);
    let raw = raw.strip_suffix('\n').unwrap_or(&raw);
    let raw = raw.strip_suffix('\r').unwrap_or(raw);
    let parsed = raw
        .split_once(' ')
        .and_then(|(ts, text)| Some((OffsetDateTime::parse(ts, &Rfc3339).ok()?, text)));
    let (ts, text) = parsed.unwrap_or((OffsetDateTime::now_utc(), raw));
    OutputLine {
        stream,
        ts,
        text: text.to_owned(),
    }
}

fn container_info(details: ContainerInspectResponse) -> ContainerInfo {
    let status = container_status(details.state.as_ref());
    let host_port = if status == ContainerStatus::Running {
        details
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(first_tcp_host_port)
    } else {
        None
    };
    ContainerInfo {
        id: details.id.unwrap_or_default(),
        name: details
            .name
            .as_deref()
            .map(strip_slash)
            .unwrap_or_default()
            .to_owned(),
        labels: details
            .config
            .and_then(|c| c.labels)
            .unwrap_or_default()
            .into_iter()
            .collect(),
        status,
        host_port,
        started_at: parse_started_at(details.state.as_ref().and_then(|s| s.started_at.as_deref())),
        image_id: details.image,
    }
}

/// Docker puts a `/` before container names.
fn strip_slash(name: &str) -> &str {
    name.strip_prefix('/').unwrap_or(name)
}

fn container_status(state: Option<&ContainerState>) -> ContainerStatus {
    let Some(state) = state else {
        return ContainerStatus::Other;
    };
    match state.status {
        Some(ContainerStateStatusEnum::RUNNING) => ContainerStatus::Running,
        Some(ContainerStateStatusEnum::CREATED) => ContainerStatus::Created,
        Some(ContainerStateStatusEnum::EXITED) => ContainerStatus::Exited {
            code: state.exit_code.unwrap_or(0),
        },
        _ => ContainerStatus::Other,
    }
}

/// `State.StartedAt`; Docker writes its zero time (`0001-01-01T00:00:00Z`) for a container
/// never started.
fn parse_started_at(started_at: Option<&str>) -> Option<OffsetDateTime> {
    let at = OffsetDateTime::parse(started_at?, &Rfc3339).ok()?;
    (at.year() > 1).then_some(at)
}

/// The first published TCP host port, in port order so the answer is stable.
fn first_tcp_host_port(ports: &PortMap) -> Option<u16> {
    let mut tcp: Vec<(&String, &Vec<PortBinding>)> = ports
        .iter()
        .filter(|(port, _)| port.ends_with("/tcp"))
        .filter_map(|(port, bindings)| Some((port, bindings.as_ref()?)))
        .collect();
    tcp.sort_by_key(|(port, _)| {
        port.trim_end_matches("/tcp")
            .parse::<u16>()
            .unwrap_or(u16::MAX)
    });
    tcp.into_iter()
        .flat_map(|(_, bindings)| bindings)
        .find_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
}

/// The reference goes into a URL path (`/images/{image}/json`): only the characters image
/// references are made of, and no `.`/`..` segments. The engine checks the grammar itself.
fn is_plausible_image_ref(image: &str) -> bool {
    !image.is_empty()
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/@".contains(&b))
        && image
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."))
}

/// Splits an image reference into what the pull API takes as `fromImage` and `tag`.
///
/// `name:tag` splits at the tag's colon (not a registry's port colon: a tag has no `/` after
/// it); no tag means `latest`; a reference with a digest goes whole, without a tag.
fn split_image_ref(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let name_start = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[name_start..].rfind(':') {
        Some(colon) => {
            let colon = name_start + colon;
            (&image[..colon], Some(&image[colon + 1..]))
        }
        None => (image, Some("latest")),
    }
}

/// The HTTP status the engine answered with, when it answered with an error.
fn status_of(err: &DockerError) -> Option<u16> {
    match err {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own words when it gave any, else bollard's description.
fn engine_message(err: DockerError) -> String {
    match err {
        DockerError::DockerResponseServerError { message, .. } => message,
        DockerError::DockerStreamError { error } => error,
        other => other.to_string(),
    }
}

fn engine_error(err: DockerError) -> RuntimeError {
    RuntimeError::Engine(engine_message(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::LogLimit;
    use gantry_common::agent::Env;

    #[test]
    fn splits_image_refs() {
        let cases = [
            ("gantry-hello", ("gantry-hello", Some("latest"))),
            ("gantry-hello:1.2", ("gantry-hello", Some("1.2"))),
            ("library/nginx:1", ("library/nginx", Some("1"))),
            (
                "127.0.0.1:1/nope/missing:1",
                ("127.0.0.1:1/nope/missing", Some("1")),
            ),
            (
                "localhost:5000/team/app",
                ("localhost:5000/team/app", Some("latest")),
            ),
            (
                "registry.example/app@sha256:abc",
                ("registry.example/app@sha256:abc", None),
            ),
            ("app:1@sha256:abc", ("app:1@sha256:abc", None)),
        ];
        for (image, want) in cases {
            assert_eq!(split_image_ref(image), want, "{image}");
        }
    }

    #[test]
    fn refuses_references_that_would_bend_the_url() {
        for good in [
            "gantry-hello",
            "127.0.0.1:1/nope/missing:1",
            "registry.example/team/app_1.2:v1.0-rc.1",
            "app@sha256:0123abcdef",
        ] {
            assert!(is_plausible_image_ref(good), "{good}");
        }
        for bad in [
            "",
            "../../containers/json",
            "app/../x",
            "/app",
            "app/",
            "app?x=1",
            "app#x",
            "app name",
            "app%2f..",
        ] {
            assert!(!is_plausible_image_ref(bad), "{bad}");
        }
    }

    fn state(status: ContainerStateStatusEnum, exit_code: i64) -> ContainerState {
        ContainerState {
            status: Some(status),
            exit_code: Some(exit_code),
            ..Default::default()
        }
    }

    #[test]
    fn maps_states() {
        use ContainerStateStatusEnum as S;
        let cases = [
            (S::RUNNING, ContainerStatus::Running),
            (S::CREATED, ContainerStatus::Created),
            (S::EXITED, ContainerStatus::Exited { code: 137 }),
            (S::PAUSED, ContainerStatus::Other),
            (S::RESTARTING, ContainerStatus::Other),
            (S::REMOVING, ContainerStatus::Other),
            (S::DEAD, ContainerStatus::Other),
            (S::EMPTY, ContainerStatus::Other),
        ];
        for (docker, want) in cases {
            assert_eq!(
                container_status(Some(&state(docker, 137))),
                want,
                "{docker}"
            );
        }
        assert_eq!(container_status(None), ContainerStatus::Other);
    }

    #[test]
    fn parses_start_times() {
        let at = parse_started_at(Some("2026-11-28T04:13:00.123456789Z")).unwrap();
        assert_eq!(at.unix_timestamp(), 1_795_839_180);
        assert_eq!(at.nanosecond(), 123_456_789);
        assert_eq!(parse_started_at(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(parse_started_at(Some("yesterday")), None);
        assert_eq!(parse_started_at(None), None);
    }

    fn binding(ip: &str, port: &str) -> PortBinding {
        PortBinding {
            host_ip: Some(ip.to_owned()),
            host_port: Some(port.to_owned()),
        }
    }

    #[test]
    fn finds_the_published_tcp_port() {
        let ports = PortMap::from([
            ("53/udp".to_owned(), Some(vec![binding("0.0.0.0", "5353")])),
            (
                "9000/tcp".to_owned(),
                Some(vec![binding("127.0.0.1", "49002")]),
            ),
            (
                "8888/tcp".to_owned(),
                Some(vec![binding("127.0.0.1", "49001")]),
            ),
            ("80/tcp".to_owned(), None),
        ]);
        assert_eq!(first_tcp_host_port(&ports), Some(49001));
        // Exposed but not (or not yet) published.
        let unpublished = PortMap::from([("8888/tcp".to_owned(), Some(vec![binding("", "")]))]);
        assert_eq!(first_tcp_host_port(&unpublished), None);
        assert_eq!(first_tcp_host_port(&PortMap::new()), None);
    }

    fn spec(port: Option<u16>) -> ContainerSpec {
        ContainerSpec {
            name: "gantry-i1".into(),
            image: "gantry-hello:latest".into(),
            labels: BTreeMap::from([("gantry.managed".into(), "true".into())]),
            env: Env(BTreeMap::from([("PORT".to_owned(), "8888".to_owned())])),
            port,
            host_ip: "127.0.0.1".into(),
            network: "gantry-team-acme".into(),
            cpu_millis: 250,
            memory_mib: 64,
            pids_limit: 100,
            log_limit: LogLimit::default(),
        }
    }

    #[test]
    fn hardens_every_container() {
        let body = container_body(&spec(Some(8888)), true);
        assert_eq!(body.env, Some(vec!["PORT=8888".to_owned()]));
        let host = body.host_config.unwrap();
        assert_eq!(host.memory, Some(64 * MIB));
        assert_eq!(host.memory_swap, host.memory);
        assert_eq!(host.nano_cpus, Some(250_000_000));
        assert_eq!(host.pids_limit, Some(100));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.init, Some(true));
        assert_eq!(host.binds, None);
        assert_eq!(host.mounts, None);
        assert_eq!(host.restart_policy, None);
        let bindings = host.port_bindings.unwrap();
        assert_eq!(
            bindings["8888/tcp"],
            Some(vec![binding("127.0.0.1", "")]),
            "an ephemeral port on the node address"
        );
        assert!(body.exposed_ports.unwrap().contains_key("8888/tcp"));

        let low = container_body(&spec(Some(80)), false).host_config.unwrap();
        assert_eq!(low.cap_add, Some(vec!["NET_BIND_SERVICE".to_owned()]));
        assert_eq!(low.init, None);

        // A worker publishes nothing.
        let worker = container_body(&spec(None), true);
        assert_eq!(worker.exposed_ports, None);
        let host = worker.host_config.unwrap();
        assert_eq!(host.port_bindings, None);
        assert_eq!(host.cap_add, None);
    }

    #[test]
    fn prefers_the_engines_message() {
        let err = DockerError::DockerResponseServerError {
            status_code: 404,
            message: "No such container: x".into(),
        };
        assert_eq!(status_of(&err), Some(404));
        assert_eq!(engine_message(err), "No such container: x");
        let stream = DockerError::DockerStreamError {
            error: "manifest unknown".into(),
        };
        assert_eq!(status_of(&stream), None);
        assert_eq!(engine_message(stream), "manifest unknown");
    }
}
