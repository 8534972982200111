//! The route table and every decision made from it, as plain data and functions: building the
//! table from a [`RouteSpec`], parsing a `Host` into an app, turning weights into effective
//! percents and a set schedule, and choosing an endpoint.
//!
//! Nothing here does I/O, so all of it is unit tested here; the request path in `proxy.rs` only
//! calls [`AppEntry::pick`] and friends.
//!
//! A table is immutable once built; the router swaps whole tables. What must outlive a swap (an
//! endpoint's pool and in-flight count, an app's or set's counters) lives behind `Arc`s that
//! [`Table::build`] carries over from the previous table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use uuid::Uuid;

use super::pool::Upstream;
use super::stats::Stats;
use super::{RouteSpec, SetSpec};

/// Schedules longer than this (possible only with large explicit weights) are built from the
/// effective percents instead, so a schedule never exceeds 1,000 slots.
const MAX_SCHEDULE: u64 = 1_000;

/// One generation of the route table.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// `<app>.<team>` in lower case → app.
    by_host: HashMap<Box<str>, Arc<AppEntry>>,
    by_id: HashMap<Uuid, Arc<AppEntry>>,
    /// Every instance the table routes to.
    upstreams: HashMap<Uuid, Arc<Upstream>>,
}

/// An app in the table.
#[derive(Debug)]
pub(crate) struct AppEntry {
    pub(crate) id: Uuid,
    pub(crate) team: String,
    pub(crate) app: String,
    /// `<app>.<team>.<apps-domain>`, lower case.
    pub(crate) host: String,
    pub(crate) sets: Vec<SetEntry>,
    pub(crate) stats: Arc<Stats>,
    /// Set indices in smooth weighted round-robin order; empty when no set has an endpoint.
    schedule: Box<[u32]>,
    cursor: AtomicUsize,
}

/// A release set in the table.
#[derive(Debug)]
pub(crate) struct SetEntry {
    pub(crate) release_id: Uuid,
    pub(crate) version: u32,
    /// Effective percent of the app's traffic (after renormalisation), as the API shows it.
    pub(crate) percent: u32,
    pub(crate) endpoints: Vec<Arc<Upstream>>,
    pub(crate) stats: Arc<Stats>,
    cursor: AtomicUsize,
}

impl Table {
    /// Builds the table for `spec`, keeping the `Arc`s of `old` for every app, release and
    /// instance still present. `revive` may supply an instance that left an earlier table and is
    /// still alive (its requests still running), so that its in-flight count stays one number.
    ///
    /// # Guarantees
    /// - An app listed twice, or two apps with the same host, keep the first; an instance listed
    ///   twice (in two sets) is one upstream.
    /// - An instance whose address changed gets a fresh upstream (new pool, zero in flight).
    pub(crate) fn build(
        spec: &RouteSpec,
        domain: &str,
        old: &Table,
        revive: impl Fn(Uuid, SocketAddr) -> Option<Arc<Upstream>>,
    ) -> Table {
        let mut table = Table::default();
        for app in &spec.apps {
            let key = format!(
                "{}.{}",
                app.app.to_ascii_lowercase(),
                app.team.to_ascii_lowercase()
            );
            if table.by_id.contains_key(&app.app_id) || table.by_host.contains_key(key.as_str()) {
                tracing::warn!(app.id = %app.app_id, app.host = %key, "app listed twice in the route spec; keeping the first");
                continue;
            }
            let old_app = old.by_id.get(&app.app_id);
            let weights = set_weights(&app.sets);
            let percents = percents(&weights);
            let mut sets = Vec::with_capacity(app.sets.len());
            for (i, set) in app.sets.iter().enumerate() {
                let endpoints = set
                    .endpoints
                    .iter()
                    .map(|ep| {
                        let upstream = table
                            .upstreams
                            .get(&ep.instance)
                            .or_else(|| old.upstreams.get(&ep.instance))
                            .filter(|u| u.addr == ep.addr)
                            .cloned()
                            .or_else(|| revive(ep.instance, ep.addr))
                            .unwrap_or_else(|| Arc::new(Upstream::new(ep.instance, ep.addr)));
                        table.upstreams.insert(ep.instance, upstream.clone());
                        upstream
                    })
                    .collect();
                let stats = old_app
                    .and_then(|a| a.sets.iter().find(|s| s.release_id == set.release_id))
                    .map(|s| s.stats.clone())
                    .unwrap_or_default();
                sets.push(SetEntry {
                    release_id: set.release_id,
                    version: set.version,
                    percent: percents[i],
                    endpoints,
                    stats,
                    cursor: AtomicUsize::new(0),
                });
            }
            let host = if domain.is_empty() {
                key.clone()
            } else {
                format!("{key}.{domain}")
            };
            let entry = Arc::new(AppEntry {
                id: app.app_id,
                team: app.team.clone(),
                app: app.app.clone(),
                host,
                sets,
                stats: old_app.map(|a| a.stats.clone()).unwrap_or_default(),
                schedule: schedule(&weights),
                cursor: AtomicUsize::new(0),
            });
            table.by_host.insert(key.into_boxed_str(), entry.clone());
            table.by_id.insert(app.app_id, entry);
        }
        table
    }

    /// The app answering `key` (`<app>.<team>` as [`app_key`] returns it, any case).
    pub(crate) fn app_by_key(&self, key: &str) -> Option<&Arc<AppEntry>> {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            // Rare (clients send lower-case hosts), so the allocation stays off the usual path.
            self.by_host.get(key.to_ascii_lowercase().as_str())
        } else {
            self.by_host.get(key)
        }
    }

    pub(crate) fn app(&self, id: Uuid) -> Option<&Arc<AppEntry>> {
        self.by_id.get(&id)
    }

    pub(crate) fn apps(&self) -> impl Iterator<Item = &Arc<AppEntry>> {
        self.by_id.values()
    }

    pub(crate) fn upstream(&self, instance: Uuid) -> Option<&Arc<Upstream>> {
        self.upstreams.get(&instance)
    }

    pub(crate) fn upstreams(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }
}

/// A request counted on an endpoint: chosen by [`AppEntry::pick`], it holds the endpoint's
/// in-flight count up until dropped.
#[derive(Debug)]
pub(crate) struct Picked {
    app: Arc<AppEntry>,
    set: usize,
    endpoint: usize,
}

impl Picked {
    fn new(app: &Arc<AppEntry>, set: usize, endpoint: usize) -> Self {
        // Counted here, in the same synchronous step as the choice.
        app.sets[set].endpoints[endpoint].acquire();
        Self {
            app: app.clone(),
            set,
            endpoint,
        }
    }

    pub(crate) fn app(&self) -> &Arc<AppEntry> {
        &self.app
    }

    pub(crate) fn set(&self) -> &SetEntry {
        &self.app.sets[self.set]
    }

    pub(crate) fn upstream(&self) -> &Arc<Upstream> {
        &self.set().endpoints[self.endpoint]
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.upstream().release();
    }
}

impl AppEntry {
    /// Chooses a set by weight, then its endpoint with the fewest requests in flight (ties go
    /// round robin), and counts the request on it. `None` when no set has an endpoint.
    pub(crate) fn pick(self: &Arc<Self>) -> Option<Picked> {
        if self.schedule.is_empty() {
            return None;
        }
        let slot = self.cursor.fetch_add(1, Relaxed) % self.schedule.len();
        let set = self.schedule[slot] as usize;
        let endpoints = &self.sets[set].endpoints;
        let start = self.sets[set].cursor.fetch_add(1, Relaxed);
        let endpoint = least_loaded(endpoints.len(), start, |i| endpoints[i].in_flight())?;
        Some(Picked::new(self, set, endpoint))
    }

    /// For a retry: the least loaded endpoint of any set that receives traffic, other than
    /// `exclude`. `None` when there is no other.
    pub(crate) fn pick_other(self: &Arc<Self>, exclude: Uuid) -> Option<Picked> {
        let candidates: Vec<(usize, usize)> = self
            .sets
            .iter()
            .enumerate()
            .filter(|(_, set)| set.percent > 0)
            .flat_map(|(s, set)| (0..set.endpoints.len()).map(move |e| (s, e)))
            .filter(|&(s, e)| self.sets[s].endpoints[e].instance != exclude)
            .collect();
        let start = self.cursor.fetch_add(1, Relaxed);
        let i = least_loaded(candidates.len(), start, |i| {
            let (s, e) = candidates[i];
            self.sets[s].endpoints[e].in_flight()
        })?;
        let (set, endpoint) = candidates[i];
        Some(Picked::new(self, set, endpoint))
    }
}

/// Index of the smallest `load` among `0..n`, scanning from `start % n` so that ties go round
/// robin as `start` advances. Stops early at an idle endpoint, the common case.
pub(crate) fn least_loaded(n: usize, start: usize, load: impl Fn(usize) -> u32) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let first = start % n;
    let (mut best, mut best_load) = (first, load(first));
    let mut i = first;
    for _ in 1..n {
        if best_load == 0 {
            break;
        }
        i += 1;
        if i == n {
            i = 0;
        }
        let l = load(i);
        if l < best_load {
            (best, best_load) = (i, l);
        }
    }
    Some(best)
}

/// The weights used to choose between an app's sets. Sets without endpoints get 0. With no
/// explicit weight anywhere, a set weighs its number of endpoints (every ready instance an equal
/// share); with any explicit weight, those are used (`None` = 0). If explicit weights leave
/// nothing to the sets that have endpoints (say 100 % on a set whose instances all failed), the
/// proportional rule applies instead: serving the remaining instances beats answering 503.
pub(crate) fn set_weights(sets: &[SetSpec]) -> Vec<u64> {
    let proportional = || -> Vec<u64> { sets.iter().map(|s| s.endpoints.len() as u64).collect() };
    if sets.iter().all(|s| s.weight.is_none()) {
        return proportional();
    }
    let explicit: Vec<u64> = sets
        .iter()
        .map(|s| match s.endpoints.is_empty() {
            true => 0,
            false => u64::from(s.weight.unwrap_or(0)),
        })
        .collect();
    if explicit.iter().all(|&w| w == 0) {
        proportional()
    } else {
        explicit
    }
}

/// Integer percents proportional to `weights`, summing to exactly 100 unless every weight is 0
/// (largest remainder method; ties go to the earlier set).
pub(crate) fn percents(weights: &[u64]) -> Vec<u32> {
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if total == 0 {
        return vec![0; weights.len()];
    }
    let mut out: Vec<u32> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(weights.len());
    for (i, &w) in weights.iter().enumerate() {
        let scaled = u128::from(w) * 100;
        out.push((scaled / total) as u32);
        remainders.push((scaled % total, i));
    }
    let missing = 100 - out.iter().sum::<u32>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take(missing as usize) {
        out[i] += 1;
    }
    out
}

/// One cycle of smooth weighted round robin (nginx's algorithm) over `weights`: set `i` appears
/// `w_i / gcd` times, spread out rather than in runs, so that even short bursts follow the
/// weights. Empty when every weight is 0.
pub(crate) fn schedule(weights: &[u64]) -> Box<[u32]> {
    let mut weights: Vec<u64> = weights.to_vec();
    let reduce = |w: &mut Vec<u64>| {
        let g = w.iter().fold(0, |g, &x| gcd(g, x));
        if g > 1 {
            w.iter_mut().for_each(|x| *x /= g);
        }
    };
    reduce(&mut weights);
    if weights.iter().sum::<u64>() > MAX_SCHEDULE {
        weights = percents(&weights).into_iter().map(u64::from).collect();
        reduce(&mut weights);
    }
    let total: u64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(&weights) {
            *c += w as i64;
        }
        let best = (0..current.len())
            .max_by(|&a, &b| current[a].cmp(&current[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        current[best] -= total as i64;
        out.push(best as u32);
    }
    out.into_boxed_slice()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The `<app>.<team>` part of a `Host` (header value or URI authority) under `domain`, or `None`
/// when the host is not an app host: the bare domain, another domain, an IP literal, or not
/// exactly two labels in front of the domain. The port and a trailing dot are ignored, the
/// domain is matched without regard to case; `domain` must be lower case without a trailing dot
/// (as `Router::new` stores it). Borrowed from `host`, so the usual request allocates nothing.
pub(crate) fn app_key<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    if host.starts_with('[') {
        return None;
    }
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let prefix = if domain.is_empty() {
        host
    } else {
        let cut = host.len().checked_sub(domain.len() + 1)?;
        let (prefix, suffix) = (host.get(..cut)?, host.get(cut..)?);
        let suffix = suffix.strip_prefix('.')?;
        if !suffix.eq_ignore_ascii_case(domain) {
            return None;
        }
        prefix
    };
    let (app, team) = prefix.split_once('.')?;
    if app.is_empty() || team.is_empty() || team.contains('.') {
        return None;
    }
    Some(prefix)
}

#[cfg(test)]
mod tests {
    use super::super::{AppSpec, EndpointSpec};
    use super::*;

    fn ep(n: u8) -> EndpointSpec {
        EndpointSpec {
            instance: Uuid::from_u128(u128::from(n)),
            addr: SocketAddr::from(([127, 0, 0, 1], 10_000 + u16::from(n))),
        }
    }

    fn set(version: u32, weight: Option<u32>, endpoints: &[u8]) -> SetSpec {
        SetSpec {
            release_id: Uuid::from_u128(1_000 + u128::from(version)),
            version,
            weight,
            endpoints: endpoints.iter().map(|&n| ep(n)).collect(),
        }
    }

    fn spec(sets: Vec<SetSpec>) -> RouteSpec {
        RouteSpec {
            apps: vec![AppSpec {
                app_id: Uuid::from_u128(7),
                team: "acme".into(),
                app: "hello".into(),
                sets,
            }],
        }
    }

    fn build(spec: &RouteSpec, old: &Table) -> Table {
        Table::build(spec, "localhost", old, |_, _| None)
    }

    fn effective(sets: Vec<SetSpec>) -> Vec<u32> {
        let table = build(&spec(sets), &Table::default());
        let app = table.app(Uuid::from_u128(7)).unwrap();
        app.sets.iter().map(|s| s.percent).collect()
    }

    #[test]
    fn without_weights_sets_share_by_ready_endpoints() {
        assert_eq!(
            effective(vec![set(1, None, &[1, 2, 3]), set(2, None, &[4])]),
            [75, 25]
        );
        assert_eq!(
            effective(vec![set(1, None, &[1]), set(2, None, &[2, 3])]),
            [33, 67]
        );
    }

    #[test]
    fn explicit_weights_are_used_and_none_counts_as_zero() {
        assert_eq!(
            effective(vec![set(1, Some(80), &[1]), set(2, Some(20), &[2, 3, 4])]),
            [80, 20]
        );
        assert_eq!(
            effective(vec![set(1, None, &[1]), set(2, Some(10), &[2])]),
            [0, 100]
        );
    }

    #[test]
    fn sets_without_endpoints_get_nothing_and_the_rest_is_renormalised() {
        assert_eq!(
            effective(vec![
                set(1, Some(50), &[1]),
                set(2, Some(25), &[]),
                set(3, Some(25), &[2])
            ]),
            [67, 0, 33]
        );
        assert_eq!(
            effective(vec![set(1, None, &[]), set(2, None, &[2])]),
            [0, 100]
        );
    }

    #[test]
    fn explicit_weights_leaving_nothing_fall_back_to_endpoints() {
        // The canary holds 100 % but has no ready instance; the stable set still serves.
        assert_eq!(
            effective(vec![set(1, Some(0), &[1, 2]), set(2, Some(100), &[])]),
            [100, 0]
        );
    }

    #[test]
    fn no_endpoints_anywhere_means_no_weights_and_no_pick() {
        assert_eq!(
            effective(vec![set(1, Some(100), &[]), set(2, None, &[])]),
            [0, 0]
        );
        let table = build(&spec(vec![set(1, None, &[])]), &Table::default());
        let app = table.app(Uuid::from_u128(7)).unwrap();
        assert!(app.pick().is_none());
    }

    #[test]
    fn percents_always_sum_to_100() {
        for weights in [
            vec![1, 1, 1],
            vec![1, 2, 3, 4, 5, 6, 7],
            vec![u64::MAX, 1],
            vec![3],
        ] {
            let p = percents(&weights);
            assert_eq!(p.iter().sum::<u32>(), 100, "{weights:?} → {p:?}");
        }
        assert_eq!(percents(&[1, 1, 1]), [34, 33, 33]);
        assert_eq!(percents(&[0, 0]), [0, 0]);
    }

    #[test]
    fn the_schedule_is_smooth_and_reduced() {
        assert_eq!(&*schedule(&[80, 20]), &[0, 0, 1, 0, 0]);
        assert_eq!(&*schedule(&[2, 0, 2]), &[0, 2]);
        assert!(schedule(&[0, 0]).is_empty());
        // Huge explicit weights fall back to percents: at most 100 slots.
        let s = schedule(&[1_000_003, 2_000_000]);
        assert_eq!(s.len(), 100);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 33);
    }

    #[test]
    fn picks_follow_the_weights_over_many_requests() {
        let table = build(
            &spec(vec![
                set(1, Some(70), &[1, 2]),
                set(2, Some(20), &[3]),
                set(3, Some(10), &[4]),
            ]),
            &Table::default(),
        );
        let app = table.app(Uuid::from_u128(7)).unwrap();
        let mut per_set = [0u32; 3];
        for _ in 0..1_000 {
            let picked = app.pick().unwrap();
            per_set[picked.set().version as usize - 1] += 1;
        }
        assert_eq!(per_set, [700, 200, 100]);
    }

    #[test]
    fn least_loaded_prefers_fewer_in_flight_and_rotates_ties() {
        let loads = [3, 1, 1, 5];
        assert_eq!(least_loaded(4, 0, |i| loads[i]), Some(1));
        assert_eq!(least_loaded(4, 2, |i| loads[i]), Some(2));
        assert_eq!(least_loaded(4, 3, |i| loads[i]), Some(1));
        assert_eq!(least_loaded(0, 0, |_| 0), None);
        let idle = [0, 0, 0];
        let picks: Vec<_> = (0..6)
            .map(|s| least_loaded(3, s, |i| idle[i]).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_pick_counts_in_flight_until_dropped_and_steers_the_next() {
        let table = build(&spec(vec![set(1, None, &[1, 2])]), &Table::default());
        let app = table.app(Uuid::from_u128(7)).unwrap();
        let first = app.pick().unwrap();
        assert_eq!(first.upstream().in_flight(), 1);
        // The busy endpoint is avoided whatever the round-robin position.
        for _ in 0..4 {
            let other = app.pick().unwrap();
            assert_ne!(other.upstream().instance, first.upstream().instance);
        }
        let busy = first.upstream().clone();
        drop(first);
        assert_eq!(busy.in_flight(), 0);
    }

    #[test]
    fn pick_other_excludes_the_failed_instance_and_zero_weight_sets() {
        let table = build(
            &spec(vec![set(1, Some(100), &[1, 2]), set(2, Some(0), &[3])]),
            &Table::default(),
        );
        let app = table.app(Uuid::from_u128(7)).unwrap();
        for _ in 0..5 {
            let other = app.pick_other(Uuid::from_u128(1)).unwrap();
            assert_eq!(other.upstream().instance, Uuid::from_u128(2));
        }
        let lone = build(&spec(vec![set(1, None, &[1])]), &Table::default());
        let app = lone.app(Uuid::from_u128(7)).unwrap();
        assert!(app.pick_other(Uuid::from_u128(1)).is_none());
    }

    #[test]
    fn state_survives_a_rebuild_for_what_is_still_there() {
        let old = build(&spec(vec![set(1, None, &[1, 2])]), &Table::default());
        let app = old.app(Uuid::from_u128(7)).unwrap();
        app.stats.record(200, std::time::Duration::ZERO);
        app.sets[0].stats.record(200, std::time::Duration::ZERO);
        let held = app.pick().unwrap();
        let held_instance = held.upstream().instance;

        let new = build(&spec(vec![set(1, None, &[1]), set(2, None, &[3])]), &old);
        let app2 = new.app(Uuid::from_u128(7)).unwrap();
        assert!(Arc::ptr_eq(&app.stats, &app2.stats));
        assert!(Arc::ptr_eq(&app.sets[0].stats, &app2.sets[0].stats));
        assert_eq!(app2.sets[1].stats.snapshot().requests, 0);
        assert!(Arc::ptr_eq(
            old.upstream(Uuid::from_u128(1)).unwrap(),
            new.upstream(Uuid::from_u128(1)).unwrap()
        ));
        assert!(new.upstream(Uuid::from_u128(2)).is_none());
        assert_eq!(
            new.upstream(held_instance).map_or(0, |u| u.in_flight()),
            u32::from(held_instance == Uuid::from_u128(1))
        );

        // A moved instance (same id, new address) starts afresh.
        let mut moved = spec(vec![set(1, None, &[1])]);
        moved.apps[0].sets[0].endpoints[0].addr = SocketAddr::from(([127, 0, 0, 2], 1));
        let moved = build(&moved, &new);
        assert!(!Arc::ptr_eq(
            new.upstream(Uuid::from_u128(1)).unwrap(),
            moved.upstream(Uuid::from_u128(1)).unwrap()
        ));
        drop(held);
    }

    #[test]
    fn the_table_answers_hosts_in_any_case_and_keeps_the_first_duplicate() {
        let mut s = spec(vec![set(1, None, &[1])]);
        s.apps.push(AppSpec {
            app_id: Uuid::from_u128(8),
            team: "ACME".into(),
            app: "Hello".into(),
            sets: vec![],
        });
        let table = build(&s, &Table::default());
        let app = table.app_by_key("HeLLo.acme").unwrap();
        assert_eq!(app.id, Uuid::from_u128(7));
        assert_eq!(app.host, "hello.acme.localhost");
        assert!(table.app(Uuid::from_u128(8)).is_none());
        assert!(table.app_by_key("other.acme").is_none());
    }

    #[test]
    fn app_hosts_parse_with_port_case_and_trailing_dot() {
        let d = "localhost";
        assert_eq!(app_key("hello.acme.localhost", d), Some("hello.acme"));
        assert_eq!(app_key("hello.acme.localhost:8000", d), Some("hello.acme"));
        assert_eq!(app_key("hello.acme.localhost.", d), Some("hello.acme"));
        assert_eq!(app_key("hello.acme.localhost.:80", d), Some("hello.acme"));
        assert_eq!(app_key("Hello.ACME.LocalHost", d), Some("Hello.ACME"));
        assert_eq!(
            app_key("web.team-1.apps.example.com", "apps.example.com"),
            Some("web.team-1")
        );
        assert_eq!(app_key("web.team", ""), Some("web.team"));
    }

    #[test]
    fn other_hosts_are_not_app_hosts() {
        let d = "localhost";
        for host in [
            "localhost",
            "localhost:8000",
            "acme.localhost",
            ".acme.localhost",
            "hello..localhost",
            "a.hello.acme.localhost",
            "hello.acme.example.com",
            "hello.acmelocalhost",
            "hello.acme.notlocalhost",
            "127.0.0.1:8000",
            "[::1]:8000",
            "hello.acme.localhost:http",
            "",
        ] {
            assert_eq!(app_key(host, d), None, "{host}");
        }
    }
}
