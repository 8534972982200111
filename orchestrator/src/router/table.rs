//! The route table and every decision made from it, as plain data and functions: building the
//! table from a [`RouteSpec`], parsing a `Host` into an app (or its preview), turning weights into
//! effective percents and a set schedule, reading the sticky cookie, and choosing an endpoint.
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

use http::HeaderValue;
use uuid::Uuid;

use super::pool::Upstream;
use super::stats::Stats;
use super::{RouteSpec, SetSpec};

/// Schedules longer than this (possible only with large explicit weights) are built from the
/// effective percents instead, so a schedule never exceeds 1,000 slots.
const MAX_SCHEDULE: u64 = 1_000;

/// The cookie that keeps a client of a sticky app on one release set; its value is the set's
/// version.
pub(crate) const RELEASE_COOKIE: &str = "gantry_release";

/// The first label of an app's preview host, `preview.<app>.<team>.<apps-domain>`.
const PREVIEW_LABEL: &str = "preview";

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
    /// Index in `sets` of the set also served alone at `preview.<host>`; `None` when the spec
    /// names none, or names a release that is not one of the app's sets.
    pub(crate) preview: Option<usize>,
    /// The spec asks for sticky sets and more than one set receives traffic: a request's
    /// [`RELEASE_COOKIE`] is read and honoured, and its response may set it.
    pub(crate) sticky: bool,
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
    /// `Set-Cookie` naming this set, for the responses of a sticky app (`None` when the app is
    /// not sticky): formatted once per table, so a response costs a reference count, not a
    /// formatted string.
    set_cookie: Option<HeaderValue>,
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
    /// - `preview` names a set only when it is the release id of one of the app's sets (the
    ///   first, if two sets share it); stickiness is on only when the spec asks for it and more
    ///   than one set has an effective percent above 0.
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
                    set_cookie: None,
                    cursor: AtomicUsize::new(0),
                });
            }
            let preview = app
                .preview
                .and_then(|release| sets.iter().position(|s| s.release_id == release));
            // With one set (or none) receiving traffic there is nothing to stick to, and the
            // cookie would only pin clients to whatever set comes first once a canary starts.
            let sticky = app.sticky && sets.iter().filter(|s| s.percent > 0).count() > 1;
            if sticky {
                for set in &mut sets {
                    set.set_cookie = Some(set_cookie(set.version));
                }
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
                preview,
                sticky,
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

/// How a request's set was chosen, which decides where a retry may go and whether the response
/// sets [`RELEASE_COOKIE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// By weight: the usual request.
    Weight,
    /// The preview host: this release's set only, whatever the weights.
    Preview(Uuid),
    /// The main host of a sticky app; `cookie` is the version the request's cookie named (if it
    /// named one), whether or not it was honoured.
    Sticky { cookie: Option<u32> },
}

/// A request counted on an endpoint: chosen by [`AppEntry::pick`] and friends, it holds the
/// endpoint's in-flight count up until dropped.
#[derive(Debug)]
pub(crate) struct Picked {
    app: Arc<AppEntry>,
    set: usize,
    endpoint: usize,
    via: Via,
}

impl Picked {
    fn new(app: &Arc<AppEntry>, set: usize, endpoint: usize, via: Via) -> Self {
        // Counted here, in the same synchronous step as the choice.
        app.sets[set].endpoints[endpoint].acquire();
        Self {
            app: app.clone(),
            set,
            endpoint,
            via,
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

    pub(crate) fn via(&self) -> Via {
        self.via
    }

    /// The `Set-Cookie` the response of this set should carry: for a request to a sticky app's
    /// main host whose cookie did not already name this set (it had none, named a set that gets
    /// no traffic, or the retry moved it to another set). `None` for every other request.
    pub(crate) fn set_cookie(&self) -> Option<&HeaderValue> {
        match self.via {
            Via::Sticky { cookie } if cookie != Some(self.set().version) => {
                self.set().set_cookie.as_ref()
            }
            _ => None,
        }
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
        self.pick_by_weight(Via::Weight)
    }

    fn pick_by_weight(self: &Arc<Self>, via: Via) -> Option<Picked> {
        if self.schedule.is_empty() {
            return None;
        }
        let slot = self.cursor.fetch_add(1, Relaxed) % self.schedule.len();
        self.pick_in(self.schedule[slot] as usize, via)
    }

    /// The least loaded endpoint of set `set`, counted. `None` when the set has no endpoint.
    fn pick_in(self: &Arc<Self>, set: usize, via: Via) -> Option<Picked> {
        let endpoints = &self.sets[set].endpoints;
        let start = self.sets[set].cursor.fetch_add(1, Relaxed);
        let endpoint = least_loaded(endpoints.len(), start, |i| endpoints[i].in_flight())?;
        Some(Picked::new(self, set, endpoint, via))
    }

    /// For the main host of a sticky app: the set `cookie` names when it receives traffic,
    /// else a set by weight (as [`AppEntry::pick`]).
    ///
    /// # Guarantees
    /// - A request whose cookie is honoured does not advance the weighted schedule, so the
    ///   requests without one (new clients) still split exactly by the weights.
    /// - A cookie naming a set at 0 % (or without endpoints, or no set of the app) is ignored.
    pub(crate) fn pick_sticky(self: &Arc<Self>, cookie: Option<u32>) -> Option<Picked> {
        let via = Via::Sticky { cookie };
        let named = cookie.and_then(|version| {
            self.sets
                .iter()
                .position(|s| s.version == version && s.percent > 0)
        });
        named
            .and_then(|set| self.pick_in(set, via))
            .or_else(|| self.pick_by_weight(via))
    }

    /// For the preview host: the least loaded endpoint of the preview set, weights ignored.
    /// `None` when the set has no endpoint; the caller checks that there is a preview set.
    pub(crate) fn pick_preview(self: &Arc<Self>, set: usize) -> Option<Picked> {
        self.pick_in(set, Via::Preview(self.sets[set].release_id))
    }

    /// For a retry: the least loaded endpoint other than `exclude`, among those the request may
    /// go to: every set that receives traffic, or for the preview host only the set of that
    /// release (in this table, at whatever weight). `None` when there is no other.
    pub(crate) fn pick_other(self: &Arc<Self>, exclude: Uuid, via: Via) -> Option<Picked> {
        let allowed = |set: &SetEntry| match via {
            Via::Preview(release) => set.release_id == release,
            Via::Weight | Via::Sticky { .. } => set.percent > 0,
        };
        let candidates: Vec<(usize, usize)> = self
            .sets
            .iter()
            .enumerate()
            .filter(|(_, set)| allowed(set))
            .flat_map(|(s, set)| (0..set.endpoints.len()).map(move |e| (s, e)))
            .filter(|&(s, e)| self.sets[s].endpoints[e].instance != exclude)
            .collect();
        let start = self.cursor.fetch_add(1, Relaxed);
        let i = least_loaded(candidates.len(), start, |i| {
            let (s, e) = candidates[i];
            self.sets[s].endpoints[e].in_flight()
        })?;
        let (set, endpoint) = candidates[i];
        Some(Picked::new(self, set, endpoint, via))
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

/// What a `Host` names: an app, through its main host or its preview host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppHost<'a> {
    /// `<app>.<team>`, as the host spells it (any case).
    pub(crate) key: &'a str,
    /// Reached as `preview.<app>.<team>.<apps-domain>`: the app's preview set only.
    pub(crate) preview: bool,
}

/// The app a `Host` (header value or URI authority) under `domain` names, or `None` when the
/// host is not an app host: the bare domain, another domain, an IP literal, or not exactly
/// `<app>.<team>` or `preview.<app>.<team>` in front of the domain (every label non-empty; the
/// `preview` label in any case). The port and a trailing dot are ignored, the domain is matched
/// without regard to case; `domain` must be lower case without a trailing dot (as `Router::new`
/// stores it). Borrowed from `host`, so the usual request allocates nothing.
///
/// App names cannot contain dots, so a preview host never names another app's main host; and
/// `preview.<team>` is the main host of an app called `preview`, since it has two labels.
pub(crate) fn app_host<'a>(host: &'a str, domain: &str) -> Option<AppHost<'a>> {
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
    let is_app_key = |key: &str| {
        key.split_once('.')
            .is_some_and(|(app, team)| !app.is_empty() && !team.is_empty() && !team.contains('.'))
    };
    if is_app_key(prefix) {
        return Some(AppHost {
            key: prefix,
            preview: false,
        });
    }
    let (label, key) = prefix.split_once('.')?;
    if label.eq_ignore_ascii_case(PREVIEW_LABEL) && is_app_key(key) {
        return Some(AppHost { key, preview: true });
    }
    None
}

/// The version a request's [`RELEASE_COOKIE`] names, from its `Cookie` header values
/// (`a=b; gantry_release=3; c=d`, over one line or several). The first occurrence of the cookie
/// decides; its value must be a plain decimal `u32` (optionally in double quotes, which RFC 6265
/// allows), else the request has no usable cookie. Nothing of the value is kept but the number,
/// so a client cannot make the router echo anything back.
pub(crate) fn release_cookie<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<u32> {
    let value = values
        .into_iter()
        .flat_map(|line| line.split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (name, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            (name == RELEASE_COOKIE.as_bytes()).then_some(value)
        })?;
    let value = match value {
        [b'"', inner @ .., b'"'] => inner,
        value => value,
    };
    // `u32::from_str` would also take a leading `+`; a version is digits only.
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// `Set-Cookie` for a sticky app's set: the version, for the whole host, out of scripts' reach,
/// sent on top-level navigation from other sites (so a followed link stays on the set), and
/// with no expiry: a session cookie, since a rollout is short and the next one assigns anew.
fn set_cookie(version: u32) -> HeaderValue {
    HeaderValue::try_from(format!(
        "{RELEASE_COOKIE}={version}; Path=/; HttpOnly; SameSite=Lax"
    ))
    .expect("a number and fixed attributes are a valid header value")
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
                preview: None,
                sticky: false,
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
            let other = app.pick_other(Uuid::from_u128(1), Via::Weight).unwrap();
            assert_eq!(other.upstream().instance, Uuid::from_u128(2));
        }
        let lone = build(&spec(vec![set(1, None, &[1])]), &Table::default());
        let app = lone.app(Uuid::from_u128(7)).unwrap();
        assert!(app.pick_other(Uuid::from_u128(1), Via::Weight).is_none());
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
            preview: None,
            sticky: false,
        });
        let table = build(&s, &Table::default());
        let app = table.app_by_key("HeLLo.acme").unwrap();
        assert_eq!(app.id, Uuid::from_u128(7));
        assert_eq!(app.host, "hello.acme.localhost");
        assert!(table.app(Uuid::from_u128(8)).is_none());
        assert!(table.app_by_key("other.acme").is_none());
    }

    /// `app_host` as `(key, preview)`.
    fn parse<'a>(host: &'a str, domain: &str) -> Option<(&'a str, bool)> {
        app_host(host, domain).map(|h| (h.key, h.preview))
    }

    #[test]
    fn app_hosts_parse_with_port_case_and_trailing_dot() {
        let d = "localhost";
        let main = |key| Some((key, false));
        assert_eq!(parse("hello.acme.localhost", d), main("hello.acme"));
        assert_eq!(parse("hello.acme.localhost:8000", d), main("hello.acme"));
        assert_eq!(parse("hello.acme.localhost.", d), main("hello.acme"));
        assert_eq!(parse("hello.acme.localhost.:80", d), main("hello.acme"));
        assert_eq!(parse("Hello.ACME.LocalHost", d), main("Hello.ACME"));
        assert_eq!(
            parse("web.team-1.apps.example.com", "apps.example.com"),
            main("web.team-1")
        );
        assert_eq!(parse("web.team", ""), main("web.team"));
        // An app may be called `preview`: two labels are always a main host.
        assert_eq!(parse("preview.acme.localhost", d), main("preview.acme"));
    }

    #[test]
    fn preview_hosts_parse_with_port_case_and_trailing_dot() {
        let d = "localhost";
        let preview = |key| Some((key, true));
        assert_eq!(
            parse("preview.hello.acme.localhost", d),
            preview("hello.acme")
        );
        assert_eq!(
            parse("preview.hello.acme.localhost:8000", d),
            preview("hello.acme")
        );
        assert_eq!(
            parse("preview.hello.acme.localhost.:80", d),
            preview("hello.acme")
        );
        assert_eq!(
            parse("PreView.Hello.ACME.LOCALHOST", d),
            preview("Hello.ACME")
        );
        assert_eq!(
            parse("preview.web.team-1.apps.example.com", "apps.example.com"),
            preview("web.team-1")
        );
        assert_eq!(parse("preview.web.team", ""), preview("web.team"));
        assert_eq!(
            parse("preview.preview.acme.localhost", d),
            preview("preview.acme")
        );
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
            "x.hello.acme.localhost",
            "previewx.hello.acme.localhost",
            "preview.preview.hello.acme.localhost",
            "preview..acme.localhost",
            "preview.hello..localhost",
            ".hello.acme.localhost",
            "preview.hello.acme.example.com",
            "hello.acme.example.com",
            "hello.acmelocalhost",
            "hello.acme.notlocalhost",
            "127.0.0.1:8000",
            "[::1]:8000",
            "hello.acme.localhost:http",
            "",
        ] {
            assert_eq!(parse(host, d), None, "{host}");
        }
        assert_eq!(parse("a.b.c", ""), None);
    }

    /// `release_cookie` over `Cookie` header lines.
    fn cookie(lines: &[&str]) -> Option<u32> {
        release_cookie(lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn the_release_cookie_is_read_among_others_and_over_several_lines() {
        assert_eq!(cookie(&["gantry_release=3"]), Some(3));
        assert_eq!(cookie(&["a=b; gantry_release=3; c=d"]), Some(3));
        assert_eq!(cookie(&["a=b;gantry_release=12;c=d"]), Some(12));
        assert_eq!(cookie(&["  gantry_release = 7 ; a=b"]), Some(7));
        assert_eq!(cookie(&["gantry_release=\"4\""]), Some(4));
        assert_eq!(cookie(&["a=b", "c=d; gantry_release=5"]), Some(5));
        assert_eq!(cookie(&["x=1; gantry_release=0"]), Some(0));
        assert_eq!(cookie(&["gantry_release=4294967295"]), Some(u32::MAX));
        // The first occurrence decides.
        assert_eq!(cookie(&["gantry_release=2; gantry_release=3"]), Some(2));
        assert_eq!(cookie(&["gantry_release=2", "gantry_release=3"]), Some(2));
        // Names are matched exactly; a value is in the pair after `=`.
        assert_eq!(cookie(&["xgantry_release=3; gantry_releasex=4"]), None);
        assert_eq!(cookie(&["Gantry_Release=3"]), None);
        assert_eq!(cookie(&["a=gantry_release=3"]), None);
        assert_eq!(cookie(&["gantry_release; a=b"]), None);
        assert_eq!(cookie(&[]), None);
        assert_eq!(cookie(&[""]), None);
    }

    #[test]
    fn a_release_cookie_that_is_not_a_plain_u32_is_no_cookie() {
        for bad in [
            "gantry_release=",
            "gantry_release=v3",
            "gantry_release=+3",
            "gantry_release=-3",
            "gantry_release=3.0",
            "gantry_release=3 4",
            "gantry_release=0x10",
            "gantry_release=4294967296",
            "gantry_release=99999999999999999999999",
            "gantry_release=\"3",
            "gantry_release=\"\"",
            "gantry_release=<script>",
            "gantry_release=３",
        ] {
            assert_eq!(cookie(&[bad]), None, "{bad}");
        }
        // A bad first occurrence is not skipped for a later one.
        assert_eq!(cookie(&["gantry_release=x; gantry_release=3"]), None);
    }

    #[test]
    fn the_set_cookie_is_a_session_cookie_for_the_whole_host() {
        assert_eq!(
            set_cookie(42),
            "gantry_release=42; Path=/; HttpOnly; SameSite=Lax"
        );
    }

    fn sticky(sets: Vec<SetSpec>) -> Table {
        let mut s = spec(sets);
        s.apps[0].sticky = true;
        build(&s, &Table::default())
    }

    #[test]
    fn stickiness_needs_the_spec_and_two_sets_with_traffic() {
        let on = sticky(vec![set(1, Some(90), &[1]), set(2, Some(10), &[2])]);
        assert!(on.app(Uuid::from_u128(7)).unwrap().sticky);
        for table in [
            // One set with traffic: nothing to stick to.
            sticky(vec![set(1, Some(100), &[1]), set(2, Some(0), &[2])]),
            sticky(vec![set(1, Some(50), &[1]), set(2, Some(50), &[])]),
            sticky(vec![set(1, None, &[1])]),
            // Not asked for.
            build(
                &spec(vec![set(1, Some(50), &[1]), set(2, Some(50), &[2])]),
                &Table::default(),
            ),
        ] {
            let app = table.app(Uuid::from_u128(7)).unwrap();
            assert!(!app.sticky);
            assert!(app.sets.iter().all(|s| s.set_cookie.is_none()));
            // And so nothing is ever set.
            assert!(app.pick().unwrap().set_cookie().is_none());
        }
    }

    #[test]
    fn a_sticky_pick_honours_a_cookie_naming_a_set_with_traffic() {
        let table = sticky(vec![set(1, Some(90), &[1, 2]), set(2, Some(10), &[3])]);
        let app = table.app(Uuid::from_u128(7)).unwrap();
        for _ in 0..20 {
            let picked = app.pick_sticky(Some(2)).unwrap();
            assert_eq!(picked.set().version, 2);
            assert_eq!(picked.via(), Via::Sticky { cookie: Some(2) });
            // The cookie already says so: not set again.
            assert!(picked.set_cookie().is_none());
            let picked = app.pick_sticky(Some(1)).unwrap();
            assert_eq!(picked.set().version, 1);
            assert!(picked.set_cookie().is_none());
        }
    }

    #[test]
    fn a_sticky_pick_ignores_a_cookie_naming_a_set_without_traffic() {
        // v2 has weight 0, v3 has no endpoint, v9 is no set of the app.
        let table = sticky(vec![
            set(1, Some(50), &[1]),
            set(2, Some(0), &[2]),
            set(3, Some(25), &[]),
            set(4, Some(50), &[4]),
        ]);
        let app = table.app(Uuid::from_u128(7)).unwrap();
        assert!(app.sticky);
        for cookie in [Some(2), Some(3), Some(9), None] {
            let mut per_set = [0u32; 5];
            for _ in 0..100 {
                let picked = app.pick_sticky(cookie).unwrap();
                let version = picked.set().version;
                per_set[version as usize] += 1;
                // The response assigns the client to the set it got.
                let expected = format!("gantry_release={version}; Path=/; HttpOnly; SameSite=Lax");
                assert_eq!(picked.set_cookie().unwrap(), expected.as_str());
            }
            assert_eq!(per_set, [0, 50, 0, 0, 50], "cookie {cookie:?}");
        }
    }

    #[test]
    fn honoured_cookies_leave_the_weights_of_the_others_exact() {
        let table = sticky(vec![set(1, Some(90), &[1]), set(2, Some(10), &[2])]);
        let app = table.app(Uuid::from_u128(7)).unwrap();
        let mut per_set = [0u32; 2];
        for i in 0..1_000 {
            // Interleaved returning clients, stuck to the small set.
            if i % 3 == 0 {
                assert_eq!(app.pick_sticky(Some(2)).unwrap().set().version, 2);
            }
            let picked = app.pick_sticky(None).unwrap();
            per_set[picked.set().version as usize - 1] += 1;
        }
        assert_eq!(per_set, [900, 100]);
    }

    #[test]
    fn a_sticky_retry_in_another_set_sets_the_cookie_for_that_set() {
        let table = sticky(vec![set(1, Some(50), &[1]), set(2, Some(50), &[2])]);
        let app = table.app(Uuid::from_u128(7)).unwrap();
        let first = app.pick_sticky(Some(1)).unwrap();
        assert_eq!(first.upstream().instance, Uuid::from_u128(1));
        let retry = app
            .pick_other(first.upstream().instance, first.via())
            .unwrap();
        assert_eq!(retry.set().version, 2);
        assert_eq!(
            retry.set_cookie().unwrap(),
            "gantry_release=2; Path=/; HttpOnly; SameSite=Lax"
        );
    }

    fn with_preview(sets: Vec<SetSpec>, preview: u32) -> Table {
        let mut s = spec(sets);
        s.apps[0].preview = Some(Uuid::from_u128(1_000 + u128::from(preview)));
        build(&s, &Table::default())
    }

    #[test]
    fn the_preview_set_is_found_by_release_and_picked_alone() {
        let table = with_preview(vec![set(1, Some(100), &[1]), set(2, Some(0), &[2, 3])], 2);
        let app = table.app(Uuid::from_u128(7)).unwrap();
        assert_eq!(app.preview, Some(1));
        for _ in 0..10 {
            let picked = app.pick_preview(1).unwrap();
            assert_eq!(picked.set().version, 2);
            assert!(picked.set_cookie().is_none());
            // The main host still follows the weights.
            assert_eq!(app.pick().unwrap().set().version, 1);
        }
        // A release that is not a set of the app is no preview.
        let none = with_preview(vec![set(1, None, &[1])], 5);
        assert_eq!(none.app(Uuid::from_u128(7)).unwrap().preview, None);
        // A preview set without endpoints: nothing to pick.
        let empty = with_preview(vec![set(1, Some(100), &[1]), set(2, Some(0), &[])], 2);
        let app = empty.app(Uuid::from_u128(7)).unwrap();
        assert_eq!(app.preview, Some(1));
        assert!(app.pick_preview(1).is_none());
    }

    #[test]
    fn a_preview_retry_stays_in_the_preview_set() {
        let table = with_preview(
            vec![set(1, Some(100), &[1, 2]), set(2, Some(0), &[3, 4])],
            2,
        );
        let app = table.app(Uuid::from_u128(7)).unwrap();
        let via = Via::Preview(Uuid::from_u128(1_002));
        for _ in 0..10 {
            let other = app.pick_other(Uuid::from_u128(3), via).unwrap();
            assert_eq!(other.upstream().instance, Uuid::from_u128(4));
            assert_eq!(other.via(), via);
        }
        let lone = with_preview(vec![set(1, Some(100), &[1, 2]), set(2, Some(0), &[3])], 2);
        let app = lone.app(Uuid::from_u128(7)).unwrap();
        assert!(app.pick_other(Uuid::from_u128(3), via).is_none());
    }
}
