//! `/teams/:team/apps/:app/builds/:number`: one build (its commit, branch, image, release,
//! who pushed, how long it took) and its log, live while it runs.
//!
//! While the build is queued or running, the log comes from the app's log stream filtered to the
//! build (`…/logs/stream?build=N&tail=1000`: its lines so far, then new ones), and the build's
//! fields reload every [`POLL`](super::app_detail::POLL). Once it has finished, the stream is closed and the stored log
//! of `GET …/builds/N` is shown instead: complete (up to 10,000 lines), and without the lines
//! the stream's replay and the stored log would otherwise both hold. Members and above may
//! cancel a build that has not finished.

use gantry_common::builds::short_commit;
use gantry_common::Permission;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::app_builds::duration_text;
use super::app_detail::poll_while;
use super::app_detail::{bump, utc_time};
use super::param;
use crate::api::{self, ApiError, BuildDetailView, BuildLineView, BuildView, LogFrame};
use crate::components::{ErrorBox, Frame, Loading};
use crate::session::use_session;

/// Lines the stream replays when it opens: the most it allows.
const TAIL: u32 = 1000;

/// A row of the facts: one view shape for all (the wasm's size).
fn fact(label: &'static str, id: &'static str, value: String) -> impl IntoView {
    view! { <dt>{label}</dt><dd id=id>{value}</dd> }
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "—".into())
}

/// `Build 3 failed: the Dockerfile …`: the build's outcome in a sentence.
fn outcome_text(b: &BuildView) -> String {
    let mut text = format!("Build {} {}", b.number, b.status.as_str());
    if let Some(m) = &b.message {
        text.push_str(": ");
        text.push_str(m);
    }
    text
}

fn build_view(team: &str, app: &str, b: BuildView) -> impl IntoView {
    let status = b.status.as_str();
    let release = b.release.map(|v| {
        view! { <a href=format!("/teams/{team}/apps/{app}#releases-title")>{format!("v{v}")}</a> }
    });
    view! {
        <dl class="facts">
            <dt>"Status"</dt>
            <dd id="build-status"><span class="badge" data-s=status>{status}</span></dd>
            <dt>"Commit"</dt>
            <dd id="build-commit"><code title=b.commit.clone()>{short_commit(&b.commit).to_owned()}</code></dd>
            {fact("Branch", "build-branch", b.branch)}
            {fact("Dockerfile", "build-dockerfile", b.dockerfile)}
            {fact("Image", "build-image", or_dash(b.image))}
            <dt>"Release"</dt><dd id="build-release">{release.map_or_else(|| "—".into_any(), IntoAny::into_any)}</dd>
            {fact("Node", "build-node", or_dash(b.node))}
            {fact("Pushed by", "build-by", b.created_by)}
            {fact("Created (UTC)", "build-created", utc_time(&b.created_at))}
            {fact("Started (UTC)", "build-started", or_dash(b.started_at.as_deref().map(utc_time)))}
            {fact("Finished (UTC)", "build-finished", or_dash(b.finished_at.as_deref().map(utc_time)))}
            {fact("Duration", "build-duration", duration_text(b.duration_seconds))}
        </dl>
    }
}

fn line_view(l: &BuildLineView) -> impl IntoView {
    view! {
        <div class="logline">
            <span class="ts">{l.ts.get(11..19).unwrap_or(&l.ts).to_owned()}</span>
            <span class="text">{l.line.clone()}</span>
        </div>
    }
}

#[component]
pub fn AppBuild() -> impl IntoView {
    let team = param("team");
    let name = param("app");
    let number_text = param("number");
    let number = Memo::new(move |_| number_text.get().parse::<u32>().ok());
    let tick = RwSignal::new(0u32);
    let detail = LocalResource::new(move || {
        tick.track();
        let (team, name, number) = (team.get(), name.get(), number.get());
        async move {
            match number {
                Some(n) => api::build(&team, &name, n).await,
                None => Err(ApiError {
                    status: 404,
                    message: "builds are numbered 1, 2, 3…".into(),
                }),
            }
        }
    });
    let is_active = move || detail.with(|d| matches!(d, Some(Ok(d)) if d.build.status.is_active()));
    let active = Memo::new(move |_| is_active());
    // From the resource, not the memo: the poll reschedules on every reload, which the memo
    // (unchanged while the build runs) would not signal.
    poll_while(is_active, tick);

    // The live log while it runs. A memo: the path changes (and the stream reopens) only when
    // the build starts or stops being active, not on every reload of its fields.
    let live = RwSignal::new(Vec::<BuildLineView>::new());
    let stream = RwSignal::new(String::new());
    let path = Memo::new(move |_| match (active.get(), number.get()) {
        (true, Some(n)) => api::build_log_stream_path(&team.get(), &name.get(), n, TAIL),
        _ => String::new(),
    });
    Effect::new(move |_| {
        path.track();
        live.set(Vec::new());
        stream.set(if path.read().is_empty() {
            String::new()
        } else {
            "connecting".into()
        });
    });
    let on_text = move |text: String| match serde_json::from_str::<LogFrame>(&text) {
        Ok(LogFrame::Lines { items }) => {
            let n = number.get_untracked();
            live.update(|lines| {
                lines.extend(
                    items
                        .into_iter()
                        .filter(|i| i.build.is_none() || i.build == n)
                        .map(|i| BuildLineView {
                            ts: i.ts,
                            line: i.line,
                        }),
                )
            });
        }
        Ok(LogFrame::Live) => stream.set("live".into()),
        Ok(LogFrame::Dropped { count }) => stream.set(format!(
            "live; {count} lines dropped: this browser fell behind"
        )),
        Err(_) => {}
    };
    let on_close = move |code: u16, reason: String| {
        stream.set(if reason.is_empty() {
            format!("stream closed ({code}); the log shows in full once the build ends")
        } else {
            format!("stream closed: {reason}")
        });
    };
    crate::live::follow(path.into(), on_text, on_close);

    // Follow the tail.
    let scroller = NodeRef::<leptos::html::Div>::new();
    Effect::new(move |_| {
        live.track();
        detail.track();
        if let Some(div) = scroller.get() {
            div.set_scroll_top(div.scroll_height());
        }
    });

    let session = use_session();
    let may_cancel = move || active.get() && session.can(&team.get(), Permission::WriteApps);
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let cancel = move |_| {
        let Some(n) = number.get_untracked() else {
            return;
        };
        busy.set(true);
        error.set(None);
        let (team, name) = (team.get_untracked(), name.get_untracked());
        spawn_local(async move {
            let result = api::cancel_build(&team, &name, n).await;
            busy.set(false);
            match result {
                Ok(_) => bump(tick),
                Err(e) => error.set(Some(e.message)),
            }
        });
    };

    let facts = move || match detail.get() {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(d)) => view! {
            <p class="muted" id="build-outcome">{outcome_text(&d.build)}</p>
            {build_view(&team.get(), &name.get(), d.build)}
        }
        .into_any(),
    };
    let lines = move || {
        if active.get() {
            return live.read().iter().map(line_view).collect_view();
        }
        detail.with(|d| match d {
            Some(Ok(BuildDetailView { log, .. })) => log.iter().map(line_view).collect_view(),
            _ => Vec::new(),
        })
    };
    let truncated = move || {
        detail.with(|d| {
            matches!(d, Some(Ok(d)) if d.truncated && !active.get()).then(|| {
                view! { <p class="muted">"Older lines were left out: the log shows its last 10,000."</p> }
            })
        })
    };
    view! {
        <Frame team>
            <p class="crumbs">
                <a href=move || format!("/teams/{}/apps", team.get())>"Apps"</a> " / "
                <a href=move || format!("/teams/{}/apps/{}", team.get(), name.get())>{move || name.get()}</a> " / "
                <a href=move || format!("/teams/{}/apps/{}/builds", team.get(), name.get())>"Builds"</a> " / "
            </p>
            <div class="head">
                <h1>{move || format!("Build {}", number_text.get())}</h1>
                {move || may_cancel().then(|| view! {
                    <button type="button" class="danger" id="build-cancel" disabled=move || busy.get()
                        on:click=cancel>"Cancel build"</button>
                })}
            </div>
            <ErrorBox message=error/>
            {facts}
            <div class="head">
                <h2 id="build-log-title">"Log"</h2>
                <span class="muted" id="build-stream">{move || stream.get()}</span>
            </div>
            {truncated}
            <div class="log" id="build-log" node_ref=scroller aria-labelledby="build-log-title">{lines}</div>
        </Frame>
    }
}

#[cfg(test)]
mod tests {
    use gantry_common::builds::BuildStatus;

    use super::*;

    #[test]
    fn the_outcome_reads_as_a_sentence() {
        let mut b = BuildView {
            number: 3,
            status: BuildStatus::Failed,
            commit: "ab".repeat(20),
            branch: "main".into(),
            dockerfile: "Dockerfile".into(),
            image: None,
            release: None,
            message: Some("the Dockerfile's RUN step exited with 1".into()),
            node: Some("n1".into()),
            created_by: "alice@example.com".into(),
            created_at: "2026-12-02T10:00:00Z".into(),
            started_at: None,
            finished_at: None,
            duration_seconds: Some(12.0),
        };
        assert_eq!(
            outcome_text(&b),
            "Build 3 failed: the Dockerfile's RUN step exited with 1"
        );
        b.status = BuildStatus::Running;
        b.message = None;
        assert_eq!(outcome_text(&b), "Build 3 running");
    }
}
