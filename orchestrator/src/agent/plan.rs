//! The agent's decisions, as pure functions of what it was asked to run, what the engine shows,
//! and what it remembers of each instance (restarts, backoff, health).
//!
//! [`plan`] says which engine calls to make next; [`observe_exits`] turns newly exited
//! containers into a crash backoff; [`observed_state`] names the state a person sees.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use gantry_common::agent::DesiredInstance;
use gantry_common::cluster::InstanceState;
use tokio::time::Instant;
use uuid::Uuid;

use crate::runtime::{labels, ContainerInfo, ContainerStatus};

/// Consecutive failed liveness probes (after the instance was once ready) that restart it.
pub const LIVENESS_FAILURES: u32 = 3;
/// A container that ran this long before exiting starts its crash backoff afresh, as kubelet does.
pub const STABLE_RUN: Duration = Duration::from_secs(600);
/// For this long after a (re)start, an instance that is not ready yet is probed between passes.
pub const FAST_PROBE_WINDOW: Duration = Duration::from_secs(5);
/// How long a container nobody wants any more (or a duplicate) gets between SIGTERM and SIGKILL.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// What the agent remembers of one desired instance between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracked {
    pub restarts: u32,
    pub last_exit_code: Option<i64>,
    /// Consecutive crashes since the last stable run; the backoff's exponent.
    pub crash_streak: u32,
    /// Consecutive failed attempts to create the container (pull or engine errors).
    pub create_failures: u32,
    /// No create or restart before this instant.
    pub retry_at: Option<Instant>,
    /// The last create error, shown to the user.
    pub error: Option<CreateError>,
    pub running_since: Option<Instant>,
    /// The last health probe passed.
    pub ready: bool,
    pub ever_ready: bool,
    /// What the last failed health probe saw, shown while the instance is not ready.
    pub probe_error: Option<String>,
    /// Why its last container was replaced, shown until the new one is ready (so the reason an
    /// instance never becomes ready outlives each fresh attempt).
    pub replaced_because: Option<String>,
    pub probe_failures: u32,
}

impl Tracked {
    /// Started a moment ago and not ready yet.
    pub fn starting(&self) -> bool {
        !self.ready
            && self
                .running_since
                .is_some_and(|since| since.elapsed() < FAST_PROBE_WINDOW)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    ImagePull(String),
    Engine(String),
}

/// One engine call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Stop (SIGTERM, `grace`, SIGKILL) and remove a container: one the server wants stopped,
    /// one nobody wants any more, or a duplicate. Runs beside the passes that follow.
    Stop { container: String, grace: Duration },
    /// Pull the image if needed, ensure the team network, create and start the container.
    Create { instance: Uuid },
    /// Start a container that was created but never started (a start that failed, or an agent
    /// that died in between).
    Start { instance: Uuid, container: String },
    /// Start an exited container again: a restart, counted.
    Restart { instance: Uuid, container: String },
    /// Liveness failed, or the instance never became ready within its startup deadline: stop
    /// the container (counted as a restart); a fresh one is created once it is gone.
    Replace {
        instance: Uuid,
        container: String,
        grace: Duration,
        why: String,
    },
}

/// Crash backoff: 1 s, 2 s, 4 s… capped at one minute.
pub fn crash_backoff(streak: u32) -> Duration {
    Duration::from_secs(1u64 << streak.min(6)).min(Duration::from_secs(60))
}

/// Pull and create retry backoff: 5 s, 10 s, 20 s… capped at two minutes.
pub fn create_backoff(failures: u32) -> Duration {
    (Duration::from_secs(5) * (1u32 << failures.saturating_sub(1).min(5)))
        .min(Duration::from_secs(120))
}

/// The instance a Gantry container belongs to, from its label.
pub fn instance_of(container: &ContainerInfo) -> Option<Uuid> {
    container
        .labels
        .get(labels::INSTANCE)
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// Records exits seen for the first time: the exit code and when the restart may happen.
///
/// # Guarantees
/// Idempotent: an exit already recorded (a `retry_at` is set) is not counted again.
pub fn observe_exits(
    containers: &[ContainerInfo],
    tracked: &mut HashMap<Uuid, Tracked>,
    now: Instant,
) {
    for container in containers {
        let (Some(id), ContainerStatus::Exited { code }) =
            (instance_of(container), container.status)
        else {
            continue;
        };
        let Some(t) = tracked.get_mut(&id) else {
            continue;
        };
        if t.retry_at.is_some() {
            continue;
        }
        let stable = t
            .running_since
            .is_some_and(|since| now.saturating_duration_since(since) >= STABLE_RUN);
        if stable {
            t.crash_streak = 0;
        }
        t.last_exit_code = Some(code);
        t.retry_at = Some(now + crash_backoff(t.crash_streak));
        t.crash_streak += 1;
        t.running_since = None;
        t.ready = false;
        t.probe_failures = 0;
    }
}

/// The engine calls that bring the node closer to `desired`.
///
/// # Guarantees
/// - Only containers labelled for this node are passed in, so only those are ever removed.
/// - A desired instance whose container runs is left alone (no restart on reconnect).
/// - At most one container per instance survives: duplicates are removed, a running one kept.
/// - Containers in `stopping` are left to the stop under way, and their instance waits for it
///   (a new container of the same name could not be created before the old one is gone).
pub fn plan(
    desired: &[DesiredInstance],
    containers: &[ContainerInfo],
    tracked: &HashMap<Uuid, Tracked>,
    stopping: &HashSet<String>,
    now: Instant,
) -> Vec<Step> {
    let wanted: HashMap<Uuid, &DesiredInstance> = desired.iter().map(|d| (d.id, d)).collect();
    let mut steps = Vec::new();
    let mut by_instance: BTreeMap<Uuid, &ContainerInfo> = BTreeMap::new();
    let mut busy: HashSet<Uuid> = HashSet::new();
    for container in containers {
        if stopping.contains(&container.id) {
            busy.extend(instance_of(container));
            continue;
        }
        let keep = instance_of(container).and_then(|id| wanted.get(&id).map(|d| (id, d)));
        let Some((id, d)) = keep else {
            steps.push(Step::Stop {
                container: container.id.clone(),
                grace: ORPHAN_GRACE,
            });
            continue;
        };
        if d.stop {
            steps.push(Step::Stop {
                container: container.id.clone(),
                grace: Duration::from_secs(d.stop_grace_seconds.into()),
            });
            continue;
        }
        match by_instance.get(&id) {
            None => {
                by_instance.insert(id, container);
            }
            Some(kept) => {
                let new_is_better = container.status == ContainerStatus::Running
                    && kept.status != ContainerStatus::Running;
                let loser = if new_is_better {
                    by_instance.insert(id, container).map(|c| c.id.clone())
                } else {
                    Some(container.id.clone())
                };
                steps.extend(loser.map(|container| Step::Stop {
                    container,
                    grace: ORPHAN_GRACE,
                }));
            }
        }
    }
    let due = |id: &Uuid| {
        tracked
            .get(id)
            .and_then(|t| t.retry_at)
            .is_none_or(|at| at <= now)
    };
    for d in desired.iter().filter(|d| !d.stop && !busy.contains(&d.id)) {
        match by_instance.get(&d.id) {
            None if due(&d.id) => steps.push(Step::Create { instance: d.id }),
            None => {}
            Some(c) => match c.status {
                ContainerStatus::Created if due(&d.id) => steps.push(Step::Start {
                    instance: d.id,
                    container: c.id.clone(),
                }),
                ContainerStatus::Exited { .. } if due(&d.id) => steps.push(Step::Restart {
                    instance: d.id,
                    container: c.id.clone(),
                }),
                ContainerStatus::Running => {
                    if let Some(why) = tracked.get(&d.id).and_then(|t| unhealthy(d, t, now)) {
                        steps.push(Step::Replace {
                            instance: d.id,
                            container: c.id.clone(),
                            grace: Duration::from_secs(d.stop_grace_seconds.into()),
                            why,
                        });
                    }
                }
                ContainerStatus::Created
                | ContainerStatus::Exited { .. }
                | ContainerStatus::Other => {}
            },
        }
    }
    steps
}

/// Why a running instance must be replaced: its liveness probes fail after it was ready, or it
/// never became ready within its startup deadline (so an instance that stays unready is not
/// left alone forever).
fn unhealthy(d: &DesiredInstance, t: &Tracked, now: Instant) -> Option<String> {
    let probe = t.probe_error.as_deref().unwrap_or("no answer");
    if t.ever_ready && t.probe_failures >= LIVENESS_FAILURES {
        return Some(format!(
            "failed {} health checks in a row ({probe})",
            t.probe_failures
        ));
    }
    let deadline = Duration::from_secs(d.ready_timeout_seconds.into());
    let since = t.running_since?;
    if !t.ever_ready && now.saturating_duration_since(since) > deadline {
        return Some(format!(
            "not ready within {} s of starting ({probe})",
            deadline.as_secs()
        ));
    }
    None
}

/// The state a person sees for a desired instance, with the reason when there is one.
pub fn observed_state(
    container: Option<&ContainerInfo>,
    tracked: &Tracked,
    now: Instant,
) -> (InstanceState, Option<String>) {
    let replaced = || {
        tracked
            .replaced_because
            .as_ref()
            .map(|why| format!("replaced: {why}"))
    };
    match container.map(|c| c.status) {
        None => match &tracked.error {
            Some(CreateError::ImagePull(message)) => {
                (InstanceState::ImagePullError, Some(message.clone()))
            }
            Some(CreateError::Engine(message)) => (InstanceState::Creating, Some(message.clone())),
            None => (InstanceState::Creating, replaced()),
        },
        Some(ContainerStatus::Created) => match &tracked.error {
            Some(CreateError::Engine(message)) => (InstanceState::Creating, Some(message.clone())),
            _ => (InstanceState::Creating, replaced()),
        },
        Some(ContainerStatus::Running) if tracked.ready => (InstanceState::Ready, None),
        Some(ContainerStatus::Running) => (
            InstanceState::Running,
            tracked.probe_error.clone().or_else(replaced),
        ),
        Some(ContainerStatus::Exited { code }) => {
            let wait = tracked
                .retry_at
                .map(|at| at.saturating_duration_since(now).as_secs())
                .unwrap_or(0);
            (
                InstanceState::CrashLoop,
                Some(format!("exited with code {code}; restarting in {wait} s")),
            )
        }
        Some(ContainerStatus::Other) => (InstanceState::Stopped, None),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn desired(n: u128) -> DesiredInstance {
        DesiredInstance {
            id: Uuid::from_u128(n),
            team: "acme".into(),
            app: "web".into(),
            release: 1,
            image: "hello:1".into(),
            image_digest: None,
            port: Some(8888),
            cpu_millis: 100,
            memory_mib: 64,
            health_check_path: "/healthz".into(),
            env: Default::default(),
            ready_timeout_seconds: 300,
            stop_grace_seconds: 30,
            pull_secret: None,
            stop: false,
        }
    }

    fn none() -> HashSet<String> {
        HashSet::new()
    }

    fn container(id: &str, instance: Option<u128>, status: ContainerStatus) -> ContainerInfo {
        let mut labels = BTreeMap::from([(labels::NODE.to_owned(), "n1".to_owned())]);
        if let Some(n) = instance {
            labels.insert(labels::INSTANCE.into(), Uuid::from_u128(n).to_string());
        }
        ContainerInfo {
            id: id.into(),
            name: format!("gantry-{id}"),
            labels,
            status,
            host_port: (status == ContainerStatus::Running).then_some(40001),
            started_at: None,
            image_id: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn creates_missing_removes_unwanted_and_leaves_running_alone() {
        let now = Instant::now();
        let want = [desired(1), desired(2)];
        let have = [
            container("a", Some(1), ContainerStatus::Running),
            container("b", Some(9), ContainerStatus::Running),
            container("c", None, ContainerStatus::Running),
        ];
        let steps = plan(&want, &have, &HashMap::new(), &none(), now);
        assert_eq!(
            steps,
            vec![
                Step::Stop {
                    container: "b".into(),
                    grace: ORPHAN_GRACE
                },
                Step::Stop {
                    container: "c".into(),
                    grace: ORPHAN_GRACE
                },
                Step::Create {
                    instance: Uuid::from_u128(2)
                },
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reconnecting_with_everything_right_does_nothing() {
        let now = Instant::now();
        let want = [desired(1), desired(2)];
        let have = [
            container("a", Some(1), ContainerStatus::Running),
            container("b", Some(2), ContainerStatus::Running),
        ];
        assert_eq!(plan(&want, &have, &HashMap::new(), &none(), now), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_keep_the_running_container() {
        let now = Instant::now();
        let have = [
            container("old", Some(1), ContainerStatus::Exited { code: 1 }),
            container("new", Some(1), ContainerStatus::Running),
        ];
        let steps = plan(&[desired(1)], &have, &HashMap::new(), &none(), now);
        assert_eq!(
            steps,
            vec![Step::Stop {
                container: "old".into(),
                grace: ORPHAN_GRACE
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn crashes_back_off_exponentially_and_show_crash_loop() {
        let start = Instant::now();
        let want = [desired(1)];
        let mut tracked = HashMap::from([(Uuid::from_u128(1), Tracked::default())]);
        let exited = [container("a", Some(1), ContainerStatus::Exited { code: 3 })];

        observe_exits(&exited, &mut tracked, start);
        let t = &tracked[&Uuid::from_u128(1)];
        assert_eq!(t.last_exit_code, Some(3));
        assert_eq!(t.retry_at, Some(start + Duration::from_secs(1)));
        // Observing the same exit again does not extend the wait.
        observe_exits(&exited, &mut tracked, start + Duration::from_millis(500));
        assert_eq!(
            tracked[&Uuid::from_u128(1)].retry_at,
            Some(start + Duration::from_secs(1))
        );

        assert_eq!(plan(&want, &exited, &tracked, &none(), start), vec![]);
        let (state, reason) =
            observed_state(Some(&exited[0]), &tracked[&Uuid::from_u128(1)], start);
        assert_eq!(state, InstanceState::CrashLoop);
        assert_eq!(
            reason.as_deref(),
            Some("exited with code 3; restarting in 1 s")
        );

        let later = start + Duration::from_secs(1);
        assert_eq!(
            plan(&want, &exited, &tracked, &none(), later),
            vec![Step::Restart {
                instance: Uuid::from_u128(1),
                container: "a".into()
            }]
        );
        assert_eq!(crash_backoff(0), Duration::from_secs(1));
        assert_eq!(crash_backoff(3), Duration::from_secs(8));
        assert_eq!(crash_backoff(30), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_run_resets_the_crash_backoff() {
        let now = Instant::now();
        let mut tracked = HashMap::from([(
            Uuid::from_u128(1),
            Tracked {
                crash_streak: 5,
                running_since: Some(now),
                ..Tracked::default()
            },
        )]);
        let later = now + STABLE_RUN;
        let exited = [container("a", Some(1), ContainerStatus::Exited { code: 0 })];
        observe_exits(&exited, &mut tracked, later);
        assert_eq!(
            tracked[&Uuid::from_u128(1)].retry_at,
            Some(later + Duration::from_secs(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pull_errors_wait_for_their_backoff_and_show_the_message() {
        let now = Instant::now();
        let tracked = HashMap::from([(
            Uuid::from_u128(1),
            Tracked {
                create_failures: 1,
                retry_at: Some(now + create_backoff(1)),
                error: Some(CreateError::ImagePull("manifest unknown".into())),
                ..Tracked::default()
            },
        )]);
        assert_eq!(plan(&[desired(1)], &[], &tracked, &none(), now), vec![]);
        let (state, reason) = observed_state(None, &tracked[&Uuid::from_u128(1)], now);
        assert_eq!(state, InstanceState::ImagePullError);
        assert_eq!(reason.as_deref(), Some("manifest unknown"));
        assert_eq!(
            plan(
                &[desired(1)],
                &[],
                &tracked,
                &none(),
                now + Duration::from_secs(5)
            ),
            vec![Step::Create {
                instance: Uuid::from_u128(1)
            }]
        );
        assert_eq!(create_backoff(1), Duration::from_secs(5));
        assert_eq!(create_backoff(3), Duration::from_secs(20));
        assert_eq!(create_backoff(20), Duration::from_secs(120));
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_failures_after_ready_replace_the_container() {
        let now = Instant::now();
        let running = [container("a", Some(1), ContainerStatus::Running)];
        let mut t = Tracked {
            ever_ready: true,
            probe_failures: LIVENESS_FAILURES - 1,
            ..Tracked::default()
        };
        let tracked = HashMap::from([(Uuid::from_u128(1), t.clone())]);
        assert_eq!(
            plan(&[desired(1)], &running, &tracked, &none(), now),
            vec![]
        );
        t.probe_failures = LIVENESS_FAILURES;
        let tracked = HashMap::from([(Uuid::from_u128(1), t)]);
        assert_eq!(
            plan(&[desired(1)], &running, &tracked, &none(), now),
            vec![Step::Replace {
                instance: Uuid::from_u128(1),
                container: "a".into(),
                grace: Duration::from_secs(30),
                why: "failed 3 health checks in a row (no answer)".into(),
            }]
        );
        // Never ready yet: a slow start is not a liveness failure…
        let slow = Tracked {
            probe_failures: 10,
            running_since: Some(now),
            probe_error: Some("GET /healthz: 503".into()),
            ..Tracked::default()
        };
        let tracked = HashMap::from([(Uuid::from_u128(1), slow)]);
        assert_eq!(
            plan(&[desired(1)], &running, &tracked, &none(), now),
            vec![]
        );
        // …until its startup deadline passes: then it is replaced, not left unready forever.
        let late = now + Duration::from_secs(301);
        assert_eq!(
            plan(&[desired(1)], &running, &tracked, &none(), late),
            vec![Step::Replace {
                instance: Uuid::from_u128(1),
                container: "a".into(),
                grace: Duration::from_secs(30),
                why: "not ready within 300 s of starting (GET /healthz: 503)".into(),
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn why_an_instance_was_replaced_is_shown_until_its_new_container_is_ready() {
        let now = Instant::now();
        let t = Tracked {
            replaced_because: Some("not ready within 8 s of starting (GET /nope: 404)".into()),
            ..Tracked::default()
        };
        let (state, reason) = observed_state(None, &t, now);
        assert_eq!(state, InstanceState::Creating);
        assert_eq!(
            reason.as_deref(),
            Some("replaced: not ready within 8 s of starting (GET /nope: 404)")
        );
        let running = container("a", Some(1), ContainerStatus::Running);
        let (state, reason) = observed_state(Some(&running), &t, now);
        assert_eq!(state, InstanceState::Running);
        assert!(reason.unwrap().starts_with("replaced: "));
        let ready = Tracked { ready: true, ..t };
        assert_eq!(
            observed_state(Some(&running), &ready, now),
            (InstanceState::Ready, None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_orders_stop_with_the_instance_grace_and_nothing_is_created_for_them() {
        let now = Instant::now();
        let mut gone = desired(1);
        gone.stop = true;
        gone.stop_grace_seconds = 7;
        let mut never_started = desired(2);
        never_started.stop = true;
        let have = [container("a", Some(1), ContainerStatus::Running)];
        assert_eq!(
            plan(&[gone, never_started], &have, &HashMap::new(), &none(), now),
            vec![Step::Stop {
                container: "a".into(),
                grace: Duration::from_secs(7)
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_waits_while_its_old_container_is_being_stopped() {
        let now = Instant::now();
        let have = [container("a", Some(1), ContainerStatus::Running)];
        let stopping = HashSet::from(["a".to_owned()]);
        assert_eq!(
            plan(&[desired(1)], &have, &HashMap::new(), &stopping, now),
            vec![]
        );
        // Once it is gone, a fresh container is created.
        assert_eq!(
            plan(&[desired(1)], &[], &HashMap::new(), &stopping, now),
            vec![Step::Create {
                instance: Uuid::from_u128(1)
            }]
        );
    }
}
