//! The rollout section of an app's page, live over `…/rollouts/current/stream` (the server sends
//! the rollout when the stream opens and whenever it changes): the strategy and status, a
//! canary's steps with the current one marked, the traffic split, what the rollout waits for,
//! the canary analysis beside the stable release's figures, the blue-green preview URL and the
//! latest history. Those who may change the app get promote, pause/resume and abort, shown only
//! when they apply; the server decides (409) and the page shows its refusal.
//!
//! A new release also reloads the rest of the page (`tick`), so a release made elsewhere (the
//! CLI, a push) shows without "Refresh". A closed stream is opened again on the page's next
//! reload (its poll during a rollout, or "Refresh").

use gantry_common::releases::{CanaryStep, ReleaseStatus, WindowFigures};
use gantry_common::Permission;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::app_detail::{bump, utc_time};
use super::app_strategy::decimal_text;
use crate::api::{self, RolloutFrameView, RolloutView};
use crate::components::{text_table, Empty, ErrorBox, Loading};
use crate::session::use_session;

/// Transitions shown, newest first.
const HISTORY_SHOWN: usize = 10;

/// A canary step as the panel lists it.
fn step_text(step: &CanaryStep) -> String {
    match step {
        CanaryStep::SetWeight(w) => format!("{w} %"),
        CanaryStep::PauseSeconds(Some(s)) => format!("pause {s} s"),
        CanaryStep::PauseSeconds(None) => "pause until promoted".into(),
    }
}

/// `v7 10 % / v6 90 %`: the new release's share of the traffic, and the one it replaces.
fn split_text(r: &RolloutView) -> String {
    let new = format!("v{} {} %", r.release, r.weight);
    match r.from {
        Some(from) => format!("{new} / v{from} {} %", 100 - r.weight.min(100)),
        None => new,
    }
}

fn instances_text(r: &RolloutView) -> String {
    // A canary's new set is sized by its weight, not by the app's replica count.
    let target = if r.strategy.is_canary() && r.status.in_flight() {
        r.updated
    } else {
        r.desired
    };
    let mut text = format!("{} of {target} new ready", r.ready);
    if target != r.desired {
        text.push_str(&format!(" ({} at full size)", r.desired));
    }
    if r.old > 0 {
        text.push_str(&format!(", {} old", r.old));
    }
    text
}

/// What the buttons depend on, so that they are rebuilt only when one of these changes, not
/// on every new figure of the analysis.
#[derive(Clone, PartialEq)]
struct Controls {
    version: u32,
    /// Started (rolling out): promote, pause and resume apply; abort also while pending.
    started: bool,
    progressive: bool,
    canary: bool,
    paused: bool,
    /// Canary at a pause, or blue-green not yet promoted.
    promotable: bool,
}

fn controls(r: &RolloutView) -> Option<Controls> {
    if !r.status.in_flight() {
        return None;
    }
    let s = &r.strategy;
    let canary = s.is_canary();
    let promotable = if canary {
        matches!(
            s.steps.get(r.step as usize),
            Some(CanaryStep::PauseSeconds(_))
        )
    } else {
        s.is_blue_green() && r.step < 2
    };
    Some(Controls {
        version: r.release,
        started: r.status == ReleaseStatus::RollingOut,
        progressive: canary || s.is_blue_green(),
        canary,
        paused: r.paused,
        promotable,
    })
}

fn figure(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{} {unit}", decimal_text(v)))
}

fn figures_row(what: String, f: &WindowFigures) -> Vec<String> {
    vec![
        what,
        f.requests.to_string(),
        figure(f.error_percent, "%"),
        figure(f.p99_ms, "ms"),
    ]
}

/// The canary's figures beside the stable release's and the limits, with the verdict; a
/// `text_table`, whose code every list of the dashboard shares.
fn analysis_view(r: &RolloutView) -> Option<impl IntoView> {
    let a = r.analysis.as_ref()?;
    let mut rows = vec![figures_row(format!("canary v{}", r.release), &a.canary)];
    if let Some(f) = &a.stable {
        let stable = r
            .from
            .map_or_else(|| "stable".into(), |v| format!("stable v{v}"));
        rows.push(figures_row(stable, f));
    }
    if let Some(l) = &r.strategy.analysis {
        rows.push(vec![
            "limits".into(),
            format!("≥ {} to judge", l.min_requests),
            figure(l.max_error_percent, "%"),
            figure(l.max_p99_ms.map(f64::from), "ms"),
        ]);
    }
    let empty = Empty {
        title: "",
        text: "",
        code: String::new(),
    };
    let heads = &["Release", "Requests", "5xx", "p99"];
    Some(view! {
        <p id="rollout-verdict">{format!("Analysis over the last {} s: {}", a.window_seconds, a.verdict)}</p>
        {text_table(Some(Ok(rows)), "rollout-analysis", heads, usize::MAX, empty, None)}
    })
}

/// A canary's steps in order, the current one marked, those done muted.
fn steps_view(r: &RolloutView) -> Option<impl IntoView> {
    if !r.strategy.is_canary() || r.strategy.steps.is_empty() {
        return None;
    }
    let in_flight = r.status.in_flight();
    let current = r.step as usize;
    let items = r
        .strategy
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let now = in_flight && i == current;
            view! {
                <li aria-current=now.then_some("step") class:done=in_flight && i < current>
                    {step_text(step)}
                </li>
            }
        })
        .collect_view();
    Some(view! { <ol class="steps" id="rollout-steps" aria-label="Canary steps">{items}</ol> })
}

/// A row of the facts: one view shape for all that are plain text (the wasm's size).
fn fact(label: &'static str, id: &'static str, value: String) -> impl IntoView {
    view! { <dt>{label}</dt><dd id=id>{value}</dd> }
}

fn rollout_view(r: RolloutView) -> impl IntoView {
    let status = r.status.as_str();
    let in_flight = r.status.in_flight();
    let progressive = r.strategy.is_canary() || r.strategy.is_blue_green();
    let mut release = format!("v{}", r.release);
    if let Some(from) = r.from {
        release.push_str(&format!(" (from v{from})"));
    }
    let note = match (&r.reason, &r.finished_at) {
        (Some(reason), _) => Some(reason.clone()),
        (None, Some(at)) if !in_flight => Some(format!("since {} UTC", utc_time(at))),
        _ => None,
    };
    let weight = r.weight.min(100);
    let traffic = (progressive && in_flight).then(|| {
        view! {
            <dt>"Traffic"</dt>
            <dd id="rollout-weight">
                <span class="split" aria-hidden="true">
                    <span style=format!("width: {weight}%")></span>
                </span>
                {split_text(&r)}
            </dd>
        }
    });
    let waiting = r.waiting.clone().map(|mut w| {
        if r.paused {
            w.push_str(" (paused)");
        }
        fact("Waiting for", "rollout-waiting", w)
    });
    let preview = r.preview_url.clone().map(|url| {
        view! {
            <dt>"Preview"</dt>
            <dd><a id="rollout-preview" href=url.clone() target="_blank" rel="noopener">{url.clone()}</a></dd>
        }
    });
    let history = r
        .history
        .iter()
        .rev()
        .take(HISTORY_SHOWN)
        .map(|t| view! { <li><span class="muted">{utc_time(&t.at)}</span> " " {t.text.clone()}</li> })
        .collect_view();
    view! {
        <dl class="facts">
            <dt>"Release"</dt>
            <dd id="rollout-status">
                {release} " " <span class="badge" data-s=status>{status}</span>
                {r.paused.then_some(" paused")} {note.map(|n| view! { " " <span class="muted">{n}</span> })}
            </dd>
            {fact("Strategy", "rollout-strategy", r.strategy.kind.replace('_', "-"))}
            {traffic}
            {fact("Instances", "rollout-instances", instances_text(&r))}
            {waiting}
            {preview}
        </dl>
        {steps_view(&r)}
        {analysis_view(&r)}
        <h3>"History"</h3>
        <ol class="history" id="rollout-history">{history}</ol>
    }
}

#[component]
pub fn Rollout(team: Signal<String>, name: Signal<String>, tick: RwSignal<u32>) -> impl IntoView {
    let session = use_session();
    // `None` until the first frame; then the rollout, or `None` before the first release.
    let rollout = RwSignal::new(None::<Option<RolloutView>>);
    let stream = RwSignal::new(String::from("connecting"));
    let closed = RwSignal::new(false);
    // Bumped to open a closed stream again: a new path (the server ignores the query).
    let reopen = RwSignal::new(0u32);
    Effect::new(move |_| {
        tick.track();
        if closed.get_untracked() {
            closed.set(false);
            reopen.update(|n| *n += 1);
        }
    });
    let path = Signal::derive(move || {
        let path = api::rollout_stream_path(&team.get(), &name.get());
        match reopen.get() {
            0 => path,
            n => format!("{path}?reopen={n}"),
        }
    });
    let on_text = move |text: String| {
        let Ok(frame) = serde_json::from_str::<RolloutFrameView>(&text) else {
            return;
        };
        // A new release made elsewhere (the CLI, a push): reload the rest of the page, whose
        // own poll then follows the rollout. Not on the first frame, which the page's first
        // load matches, nor on every change: each reload redraws the page's tables.
        let release = |r: &Option<RolloutView>| r.as_ref().map(|r| r.release);
        let changed = rollout.with_untracked(|old| {
            old.as_ref()
                .is_some_and(|old| release(old) != release(&frame.rollout))
        });
        stream.set("live".into());
        rollout.set(Some(frame.rollout));
        if changed {
            bump(tick);
        }
    };
    let on_close = move |_code: u16, reason: String| {
        closed.set(true);
        stream.set(format!("stream closed {reason}"));
    };
    crate::live::follow(path, on_text, on_close);

    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let confirm_abort = RwSignal::new(false);
    let act = move |version: u32, action: &'static str| {
        // Abort asks once more.
        if action == "abort" && !confirm_abort.get_untracked() {
            return confirm_abort.set(true);
        }
        busy.set(true);
        error.set(None);
        confirm_abort.set(false);
        let (team, name) = (team.get_untracked(), name.get_untracked());
        spawn_local(async move {
            let result = api::rollout_action(&team, &name, version, action).await;
            busy.set(false);
            match result {
                Ok(r) => {
                    rollout.set(Some(Some(r)));
                    bump(tick);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let may_act = move || session.can(&team.get(), Permission::WriteApps);
    let state = Memo::new(move |_| rollout.with(|r| r.as_ref()?.as_ref().and_then(controls)));
    let abort_label = Signal::derive(move || {
        if confirm_abort.get() {
            "Click again to abort"
        } else {
            "Abort"
        }
    });
    let buttons = move || {
        let c = state.get().filter(|_| may_act())?;
        let v = c.version;
        // One view shape for every button (the wasm's size).
        let button = move |on: bool, id, class, label: Signal<&'static str>, action| {
            on.then(|| {
                view! {
                    <button type="button" id=id class=class disabled=move || busy.get()
                        on:click=move |_| act(v, action)>{label}</button>
                }
            })
        };
        let started = c.started && c.progressive;
        Some(view! {
            <div class="actions" id="rollout-actions">
                {button(started && c.promotable, "rollout-promote", "primary", Signal::stored("Promote"), "promote")}
                {button(started && c.canary, "rollout-promote-full", "", Signal::stored("Promote fully"), "promote?full=true")}
                {button(started && !c.paused, "rollout-pause", "", Signal::stored("Pause"), "pause")}
                {button(started && c.paused, "rollout-resume", "", Signal::stored("Resume"), "resume")}
                {button(true, "rollout-abort", "danger", abort_label, "abort")}
            </div>
        })
    };
    let body = move || {
        match rollout.get() {
        None => view! { <Loading/> }.into_any(),
        Some(None) => view! {
            <p class="muted">"No release yet: the first deploy rolls out at once, whatever the strategy."</p>
        }
        .into_any(),
        Some(Some(r)) => rollout_view(r).into_any(),
    }
    };
    view! {
        <section id="rollout" aria-labelledby="rollout-title">
            <div class="head">
                <h2 id="rollout-title">"Rollout"</h2>
                <span class="muted" id="rollout-stream">{move || stream.get()}</span>
            </div>
            {body}
            {buttons}
            <ErrorBox message=error/>
        </section>
    }
}

#[cfg(test)]
pub(super) mod tests {
    use gantry_common::releases::Analysis;

    use super::*;
    use crate::api::{StrategyView, TransitionView};

    pub fn rollout(status: ReleaseStatus) -> RolloutView {
        RolloutView {
            release: 3,
            status,
            reason: None,
            from: Some(2),
            strategy: StrategyView {
                kind: "rolling".into(),
                max_surge: Some(1),
                max_unavailable: Some(0),
                ..StrategyView::default()
            },
            desired: 3,
            updated: 3,
            ready: 2,
            old: 1,
            step: 0,
            weight: 0,
            paused: false,
            waiting: None,
            analysis: None,
            preview_url: None,
            deadline_at: Some("2026-11-28T10:36:02.5Z".into()),
            finished_at: None,
            history: vec![TransitionView {
                at: "2026-11-28T10:30:00Z".into(),
                text: "started".into(),
            }],
        }
    }

    fn canary(step: u32) -> RolloutView {
        RolloutView {
            strategy: StrategyView {
                kind: "canary".into(),
                steps: vec![
                    CanaryStep::SetWeight(10),
                    CanaryStep::PauseSeconds(Some(30)),
                    CanaryStep::PauseSeconds(None),
                ],
                analysis: Some(Analysis {
                    max_error_percent: Some(5.0),
                    max_p99_ms: None,
                    window_seconds: 10,
                    min_requests: 20,
                }),
                ..StrategyView::default()
            },
            step,
            weight: 10,
            ..rollout(ReleaseStatus::RollingOut)
        }
    }

    #[test]
    fn steps_and_the_split_read_as_the_form_writes_them() {
        let r = canary(1);
        let steps: Vec<String> = r.strategy.steps.iter().map(step_text).collect();
        assert_eq!(steps, ["10 %", "pause 30 s", "pause until promoted"]);
        assert_eq!(split_text(&r), "v3 10 % / v2 90 %");
        let first = RolloutView {
            from: None,
            weight: 100,
            ..r
        };
        assert_eq!(split_text(&first), "v3 100 %");
        assert_eq!(
            instances_text(&rollout(ReleaseStatus::RollingOut)),
            "2 of 3 new ready, 1 old"
        );
        let canary = RolloutView {
            updated: 1,
            ready: 1,
            old: 3,
            ..canary(1)
        };
        assert_eq!(
            instances_text(&canary),
            "1 of 1 new ready (3 at full size), 3 old"
        );
    }

    #[test]
    fn actions_apply_only_while_a_progressive_rollout_can_take_them() {
        // A canary setting a weight cannot be promoted step-wise (the server's 409), at a
        // pause it can.
        assert!(!controls(&canary(0)).unwrap().promotable);
        assert!(controls(&canary(1)).unwrap().promotable);
        assert!(controls(&canary(2)).unwrap().promotable);
        // All steps done: the new release is taking over.
        assert!(!controls(&canary(3)).unwrap().promotable);
        let rolling = controls(&rollout(ReleaseStatus::RollingOut)).unwrap();
        assert!(!rolling.progressive && !rolling.promotable);
        let pending = controls(&rollout(ReleaseStatus::Pending)).unwrap();
        assert!(!pending.started);
        assert!(controls(&rollout(ReleaseStatus::Active)).is_none());
        let blue_green = |step| RolloutView {
            strategy: StrategyView {
                kind: "blue_green".into(),
                ..StrategyView::default()
            },
            step,
            ..rollout(ReleaseStatus::RollingOut)
        };
        assert!(controls(&blue_green(1)).unwrap().promotable);
        assert!(
            !controls(&blue_green(2)).unwrap().promotable,
            "already promoted"
        );
    }
}
