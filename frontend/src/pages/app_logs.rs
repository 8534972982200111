//! `/teams/:team/apps/:app/logs`: the app's log, live (like `heroku logs --tail`).
//!
//! A websocket (`…/logs/stream`) sends the last lines, then new ones as they arrive. The view
//! follows the tail; "Pause" holds new lines back (counted) until "Resume". Filters (instance,
//! release, text) reopen the stream with them; "Search history" pages back through the stored
//! log. Platform events (deploys, instances changing state, scaling) are set apart. When the
//! browser falls behind, the server says how many lines it missed, and the view shows it.

use std::collections::VecDeque;

use leptos::prelude::*;

use super::param;
use crate::api::{self, LogFilter, LogFrame, LogLine};
use crate::components::{ErrorBox, Frame};

/// Lines kept on the page; older ones scroll away.
const KEPT: usize = 2000;
/// Lines the stream replays when it opens.
const TAIL: u32 = 200;

/// What the live view holds.
#[derive(Clone, Default)]
struct View {
    lines: VecDeque<LogLine>,
    /// Lines that arrived while paused.
    held: Vec<LogLine>,
    /// Lines the server could not deliver (this browser fell behind).
    dropped: u64,
}

impl View {
    fn push(&mut self, items: Vec<LogLine>, paused: bool) {
        if paused {
            self.held.extend(items);
            return;
        }
        self.lines.extend(items);
        while self.lines.len() > KEPT {
            self.lines.pop_front();
        }
    }

    fn resume(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.push(held, false);
    }
}

#[component]
pub fn AppLogs() -> impl IntoView {
    let team = param("team");
    let name = param("app");
    let filter = RwSignal::new(LogFilter::default());
    let view_state = RwSignal::new(View::default());
    let paused = RwSignal::new(false);
    // "connecting", "live", or why the stream closed.
    let status = RwSignal::new(String::from("connecting"));
    let scroller = NodeRef::<leptos::html::Div>::new();

    follow(team, name, filter, view_state, paused, status);
    // Follow the tail: after each change of the lines, scroll to the bottom (unless paused).
    Effect::new(move |_| {
        view_state.track();
        if !paused.get_untracked() {
            if let Some(div) = scroller.get() {
                div.set_scroll_top(div.scroll_height());
            }
        }
    });

    let (instance, release, text) = (
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
        RwSignal::new(String::new()),
    );
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        view_state.set(View::default());
        filter.set(LogFilter {
            instance: instance.get_untracked(),
            release: release.get_untracked(),
            q: text.get_untracked(),
        });
    };
    let toggle = move |_| {
        if paused.get_untracked() {
            view_state.update(View::resume);
            paused.set(false);
        } else {
            paused.set(true);
        }
    };

    view! {
        <Frame team>
            <p class="crumbs">
                <a href=move || format!("/teams/{}/apps", team.get())>"Apps"</a> " / "
                <a href=move || format!("/teams/{}/apps/{}", team.get(), name.get())>{move || name.get()}</a> " / "
            </p>
            <div class="head">
                <h1>"Logs"</h1>
                <span class="muted" data-test="stream-status">{move || status.get()}</span>
                <button type="button" data-test="pause" on:click=toggle>
                    {move || if paused.get() { "Resume" } else { "Pause" }}
                </button>
            </div>
            <form class="inline" data-test="log-filter" on:submit=apply>
                <input id="log-instance" placeholder="instance id" bind:value=instance/>
                <input id="log-release" placeholder="release (number)" inputmode="numeric" bind:value=release/>
                <input id="log-text" placeholder="text" title="Lines that contain this text, whatever its case; from the start of a word (err finds ERROR, rror does not)" bind:value=text/>
                <button type="submit">"Filter"</button>
            </form>
            {move || {
                let v = view_state.read();
                (v.dropped > 0).then(|| view! {
                    <p class="warn" role="status" data-test="dropped">
                        {format!("{} lines dropped: this browser fell behind the stream", v.dropped)}
                    </p>
                })
            }}
            {move || {
                let held = view_state.read().held.len();
                (paused.get() && held > 0).then(|| view! {
                    <p class="muted" data-test="held">{format!("{held} new lines held while paused")}</p>
                })
            }}
            <div class="log" node_ref=scroller data-test="log">
                {move || view_state.read().lines.iter().map(line_view).collect_view()}
            </div>
            <History team name/>
        </Frame>
    }
}

/// One line: its time, instance (short), release and text; events stand apart.
fn line_view(l: &LogLine) -> impl IntoView {
    let time = l.ts.get(11..23).unwrap_or(&l.ts).to_owned();
    let source = match (&l.instance, l.release) {
        _ if l.stream == "event" => "gantry".to_owned(),
        _ if l.stream == "build" => l
            .build
            .map_or_else(|| "build".into(), |n| format!("build {n}")),
        (Some(i), Some(r)) => format!("v{r} {}", i.get(..8).unwrap_or(i)),
        (Some(i), None) => i.get(..8).unwrap_or(i).to_owned(),
        (None, _) => String::new(),
    };
    view! {
        <div class="logline" data-s=l.stream.clone()>
            <span class="ts">{time}</span>
            <span class="src">{source}</span>
            <span class="text">{l.line.clone()}</span>
        </div>
    }
}

/// Searches the stored log: the newest matches first page, "Older" pages back.
#[component]
fn History(team: Signal<String>, name: Signal<String>) -> impl IntoView {
    let text = RwSignal::new(String::new());
    let found = RwSignal::new(Vec::<LogLine>::new());
    let before = RwSignal::new(None::<String>);
    let error = RwSignal::new(None::<String>);
    let searched = RwSignal::new(false);
    let search = move |older: bool| {
        let filter = LogFilter {
            q: text.get_untracked(),
            ..LogFilter::default()
        };
        let (team, name) = (team.get_untracked(), name.get_untracked());
        let cursor = if older { before.get_untracked() } else { None };
        leptos::task::spawn_local(async move {
            match api::log_history(&team, &name, &filter, cursor.as_deref()).await {
                Ok(page) => {
                    error.set(None);
                    searched.set(true);
                    before.set(page.before);
                    found.update(|f| {
                        if older {
                            let mut page = page.items;
                            page.append(f);
                            *f = page;
                        } else {
                            *f = page.items;
                        }
                    });
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    view! {
        <h2>"Search history"</h2>
        <form class="inline" data-test="log-search" on:submit=move |ev| { ev.prevent_default(); search(false); }>
            <input id="log-search" placeholder="words to find" title="Lines that contain this text, whatever its case; from the start of a word (err finds ERROR, rror does not)" bind:value=text/>
            <button type="submit">"Search"</button>
        </form>
        <ErrorBox message=error/>
        {move || (searched.get() && found.read().is_empty()).then(|| view! { <p class="muted">"No line matches."</p> })}
        <div class="log" data-test="log-found">
            {move || found.read().iter().map(line_view).collect_view()}
        </div>
        {move || before.get().is_some().then(|| view! {
            <button type="button" data-test="older" on:click=move |_| search(true)>"Older"</button>
        })}
    }
}

/// Opens the stream for the current filter, again when it changes, and closes it when the
/// page goes.
fn follow(
    team: Signal<String>,
    name: Signal<String>,
    filter: RwSignal<LogFilter>,
    view: RwSignal<View>,
    paused: RwSignal<bool>,
    status: RwSignal<String>,
) {
    let path = Signal::derive(move || {
        status.set("connecting".into());
        api::log_stream_path(&team.get(), &name.get(), &filter.get(), TAIL)
    });
    let on_text = move |text: String| match serde_json::from_str::<LogFrame>(&text) {
        Ok(LogFrame::Lines { items }) => {
            let paused = paused.get_untracked();
            view.update(|v| v.push(items, paused));
        }
        Ok(LogFrame::Live) => status.set("live".into()),
        Ok(LogFrame::Dropped { count }) => view.update(|v| v.dropped += count),
        Err(_) => {}
    };
    let on_close = move |code: u16, reason: String| {
        status.set(if reason.is_empty() {
            format!("stream closed ({code}); reload to reconnect")
        } else {
            format!("stream closed: {reason}")
        });
    };
    crate::live::follow(path, on_text, on_close);
}
