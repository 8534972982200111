//! An in-memory [`ContainerRuntime`] for the agent's unit tests: it records every call, keeps
//! containers in a map, and can be told to fail pulls or to "crash" a container.

use gantry_common::agent::PullSecret;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;

use super::{
    Capacity, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerStatus, OutputLine,
    RuntimeError, RuntimeResult, Usage,
};

/// One call the runtime received, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    EnsureImage(String),
    EnsureNetwork(String),
    Run(String),
    Start(String),
    Remove(String),
    RemoveImage(String),
}

#[derive(Default)]
struct Inner {
    containers: BTreeMap<String, ContainerInfo>,
    calls: Vec<Call>,
    missing_images: HashSet<String>,
    /// Image ids by reference, for images whose id a test chose.
    image_ids: HashMap<String, String>,
    /// Containers that publish no port (workers).
    unpublished: HashSet<String>,
    next_id: u64,
    next_port: u16,
    /// What containers wrote, by container id.
    output: HashMap<String, Vec<OutputLine>>,
    /// What running containers used, by container id.
    usage: HashMap<String, Usage>,
}

#[derive(Default)]
pub struct FakeRuntime {
    inner: Mutex<Inner>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pulls of `image` fail from now on, as with a typo in the name.
    pub fn fail_pulls_of(&self, image: &str) {
        self.lock().missing_images.insert(image.to_owned());
    }

    /// `image` resolves to `id` from now on (as after a rebuild under the same tag).
    pub fn set_image_id(&self, image: &str, id: &str) {
        self.lock()
            .image_ids
            .insert(image.to_owned(), id.to_owned());
    }

    /// Every call so far, oldest first; clears the record.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    /// Makes a container exit with `code`, as if its process died.
    pub fn exit(&self, id: &str, code: i64) {
        if let Some(c) = self.lock().containers.get_mut(id) {
            c.status = ContainerStatus::Exited { code };
            c.host_port = None;
        }
    }

    /// Adds a container the way another agent process (or a previous run) left it.
    pub fn insert(&self, info: ContainerInfo) {
        self.lock().containers.insert(info.id.clone(), info);
    }

    /// Makes a container have written `line` (the fake's output does not follow: a stream
    /// ends after the lines written so far).
    pub fn write_output(&self, id: &str, line: OutputLine) {
        self.lock()
            .output
            .entry(id.to_owned())
            .or_default()
            .push(line);
    }

    /// Makes a container have used this much so far.
    pub fn set_usage(&self, id: &str, usage: Usage) {
        self.lock().usage.insert(id.to_owned(), usage);
    }

    pub fn containers(&self) -> Vec<ContainerInfo> {
        self.lock().containers.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ContainerRuntime for FakeRuntime {
    async fn capacity(&self) -> RuntimeResult<Capacity> {
        Ok(Capacity {
            cpu_millis: 4000,
            memory_mib: 8192,
        })
    }

    async fn ensure_image(
        &self,
        image: &str,
        _pull_secret: Option<&PullSecret>,
    ) -> RuntimeResult<String> {
        let mut inner = self.lock();
        inner.calls.push(Call::EnsureImage(image.to_owned()));
        if inner.missing_images.contains(image) {
            return Err(RuntimeError::ImagePull(format!(
                "pull access denied for {image}, repository does not exist"
            )));
        }
        Ok(fake_image_id(&inner, image))
    }

    async fn ensure_network(
        &self,
        name: &str,
        _labels: &BTreeMap<String, String>,
    ) -> RuntimeResult<String> {
        self.lock().calls.push(Call::EnsureNetwork(name.to_owned()));
        Ok(format!("net-{name}"))
    }

    async fn run(&self, spec: &ContainerSpec) -> RuntimeResult<String> {
        let mut inner = self.lock();
        inner.calls.push(Call::Run(spec.name.clone()));
        if let Some(existing) = inner.containers.values().find(|c| c.name == spec.name) {
            return Ok(existing.id.clone());
        }
        inner.next_id += 1;
        inner.next_port += 1;
        let id = format!("c{}", inner.next_id);
        let port = 40000 + inner.next_port;
        let image_id = fake_image_id(&inner, &spec.image);
        if spec.port.is_none() {
            inner.unpublished.insert(id.clone());
        }
        inner.containers.insert(
            id.clone(),
            ContainerInfo {
                id: id.clone(),
                name: spec.name.clone(),
                labels: spec.labels.clone(),
                status: ContainerStatus::Running,
                host_port: spec.port.map(|_| port),
                started_at: Some(time::OffsetDateTime::UNIX_EPOCH),
                image_id: Some(image_id),
            },
        );
        Ok(id)
    }

    async fn start(&self, id: &str) -> RuntimeResult<()> {
        let mut inner = self.lock();
        inner.calls.push(Call::Start(id.to_owned()));
        inner.next_port += 1;
        let port = (!inner.unpublished.contains(id)).then_some(40000 + inner.next_port);
        match inner.containers.get_mut(id) {
            Some(c) => {
                c.status = ContainerStatus::Running;
                c.host_port = port;
                Ok(())
            }
            None => Err(RuntimeError::Engine(format!("No such container: {id}"))),
        }
    }

    async fn remove(&self, id: &str, _grace: Duration) -> RuntimeResult<()> {
        let mut inner = self.lock();
        inner.calls.push(Call::Remove(id.to_owned()));
        inner.containers.remove(id);
        Ok(())
    }

    async fn remove_image(&self, id: &str) -> RuntimeResult<bool> {
        let mut inner = self.lock();
        inner.calls.push(Call::RemoveImage(id.to_owned()));
        let in_use = inner
            .containers
            .values()
            .any(|c| c.image_id.as_deref() == Some(id));
        Ok(!in_use)
    }

    async fn inspect(&self, id: &str) -> RuntimeResult<Option<ContainerInfo>> {
        Ok(self.lock().containers.get(id).cloned())
    }

    async fn usage(&self, id: &str) -> RuntimeResult<Option<Usage>> {
        let inner = self.lock();
        let running = inner
            .containers
            .get(id)
            .is_some_and(|c| c.status == ContainerStatus::Running);
        Ok(running.then(|| inner.usage.get(id).copied().unwrap_or_default()))
    }

    fn follow_output(
        &self,
        id: &str,
        since: i64,
    ) -> futures_util::stream::BoxStream<'static, RuntimeResult<OutputLine>> {
        let lines: Vec<RuntimeResult<OutputLine>> = self
            .lock()
            .output
            .get(id)
            .into_iter()
            .flatten()
            .filter(|l| l.ts.unix_timestamp() >= since)
            .cloned()
            .map(Ok)
            .collect();
        futures_util::stream::iter(lines).boxed()
    }

    async fn list(&self, key: &str, value: &str) -> RuntimeResult<Vec<ContainerInfo>> {
        Ok(self
            .lock()
            .containers
            .values()
            .filter(|c| c.labels.get(key).map(String::as_str) == Some(value))
            .cloned()
            .collect())
    }

    async fn tags_of(&self, _repo: &str) -> RuntimeResult<Vec<String>> {
        Ok(Vec::new())
    }

    // The agent's unit tests do not build: the e2e tests build on the real engine.
    fn build(
        &self,
        _spec: super::BuildSpec,
        _context: super::BuildContext,
    ) -> futures_util::stream::BoxStream<'static, RuntimeResult<String>> {
        unsupported("build images")
    }

    fn push(
        &self,
        _image: &str,
        _user: &str,
        _secret: &gantry_common::agent::PullSecret,
    ) -> futures_util::stream::BoxStream<'static, RuntimeResult<String>> {
        unsupported("push images")
    }
}

fn unsupported(what: &str) -> futures_util::stream::BoxStream<'static, RuntimeResult<String>> {
    let error = RuntimeError::Engine(format!("the fake engine does not {what}"));
    Box::pin(futures_util::stream::once(async move { Err(error) }))
}

fn fake_image_id(inner: &Inner, image: &str) -> String {
    inner
        .image_ids
        .get(image)
        .cloned()
        .unwrap_or_else(|| format!("sha256:id-of-{image}"))
}

/// Counts calls by kind, for compact assertions.
pub fn count(calls: &[Call]) -> HashMap<&'static str, usize> {
    let mut counts = HashMap::new();
    for call in calls {
        let kind = match call {
            Call::EnsureImage(_) => "ensure_image",
            Call::EnsureNetwork(_) => "ensure_network",
            Call::Run(_) => "run",
            Call::Start(_) => "start",
            Call::Remove(_) => "remove",
            Call::RemoveImage(_) => "remove_image",
        };
        *counts.entry(kind).or_default() += 1;
    }
    counts
}
