//! `/teams/:team/apps/:app/builds`: deploying with `git push` (like Heroku's `git push heroku
//! main`). The app's git remote with the commands to copy, its build settings (deploy branch,
//! Dockerfile path, build args: names only, their values are write-only), and its builds, newest
//! first, each linking to its live log (`app_build`).
//!
//! The list reloads every [`POLL`](super::app_detail::POLL) while a build is queued or running, and when a build it does
//! not know as running writes to the app's log (the `stream=build` lines of `…/logs/stream`),
//! so a push from a terminal shows up without "Refresh". Viewers see the settings read-only;
//! the server enforces the same rules.

use std::collections::BTreeMap;

use gantry_common::builds::{short_commit, BuildSettings};
use gantry_common::Permission;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::app_detail::{bump, poll_while, utc_time};
use super::param;
use crate::api::{self, BuildView, LogFrame, SetBuildSettingsBody};
use crate::components::{EmptyState, ErrorBox, Frame, Loading};
use crate::session::use_session;

/// `42 s`, `3 min 5 s`; `—` before it started.
pub(super) fn duration_text(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "—".into();
    };
    // Whole seconds: a cast, not float formatting.
    let s = s.max(0.0).round() as u64;
    if s < 60 {
        format!("{s} s")
    } else {
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// What to type in the repository, one command a line.
fn git_commands(s: &BuildSettings) -> String {
    format!(
        "git remote add gantry {}\ngit push gantry {}",
        s.remote_url, s.deploy_branch
    )
}

/// `NAME=value` lines (blank ones skipped; a value may hold `=`) as build args. Empty text:
/// `None`, keep the stored ones. Names and values are the server's to check.
fn parse_build_args(text: &str) -> Result<Option<BTreeMap<String, String>>, String> {
    let mut args = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!(
                "build args, line {}: write NAME=value, one a line",
                i + 1
            ));
        };
        args.insert(name.trim().to_owned(), value.to_owned());
    }
    Ok((!args.is_empty()).then_some(args))
}

/// The form's body. The server checks the values with the shared rules (`BranchName`,
/// `DockerfilePath`, `BuildArgs`) and its 422 says why; checking them here too would cost the
/// wasm their code.
fn settings_body(
    branch: &str,
    dockerfile: &str,
    args: &str,
) -> Result<SetBuildSettingsBody, String> {
    Ok(SetBuildSettingsBody {
        deploy_branch: Some(branch.trim().to_owned()),
        dockerfile: Some(dockerfile.trim().to_owned()),
        build_args: parse_build_args(args)?,
    })
}

#[component]
pub fn AppBuilds() -> impl IntoView {
    let team = param("team");
    let name = param("app");
    let tick = RwSignal::new(0u32);
    let builds = LocalResource::new(move || {
        tick.track();
        let (team, name) = (team.get(), name.get());
        async move { api::builds(&team, &name).await }
    });
    let active = move || {
        builds.with(|b| matches!(b, Some(Ok(list)) if list.iter().any(|b| b.status.is_active())))
    };
    poll_while(active, tick);
    // A build line of a build not known as running: a new push. Reload the list (its poll
    // then follows the build).
    let path = Signal::derive(move || api::builds_stream_path(&team.get(), &name.get()));
    let on_text = move |text: String| {
        let Ok(LogFrame::Lines { items }) = serde_json::from_str::<LogFrame>(&text) else {
            return;
        };
        let unknown = builds.with_untracked(|b| {
            let running: Vec<u32> = match b {
                Some(Ok(list)) => list
                    .iter()
                    .filter(|b| b.status.is_active())
                    .map(|b| b.number)
                    .collect(),
                _ => Vec::new(),
            };
            items
                .iter()
                .any(|i| i.build.is_some_and(|n| !running.contains(&n)))
        });
        if unknown {
            bump(tick);
        }
    };
    // The list still reloads on "Refresh" and while a build runs.
    crate::live::follow(path, on_text, |_, _| {});

    view! {
        <Frame team>
            <p class="crumbs">
                <a href=move || format!("/teams/{}/apps", team.get())>"Apps"</a> " / "
                <a href=move || format!("/teams/{}/apps/{}", team.get(), name.get())>{move || name.get()}</a> " / "
            </p>
            <div class="head">
                <h1>"Builds"</h1>
                <button type="button" data-test="refresh" on:click=move |_| bump(tick)>"Refresh"</button>
            </div>
            <GitRemote team name/>
            <section aria-labelledby="builds-title">
                <h2 id="builds-title">"Builds"</h2>
                {move || list_view(team.get(), name.get(), builds.get())}
            </section>
        </Frame>
    }
}

fn list_view(team: String, app: String, builds: Option<api::ApiResult<Vec<BuildView>>>) -> AnyView {
    match builds {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(list)) if list.is_empty() => view! {
            <EmptyState title="No builds yet">
                <p>"A push to the deploy branch builds its Dockerfile and releases the image, as above."</p>
            </EmptyState>
        }
        .into_any(),
        Some(Ok(list)) => {
            let app_page = format!("/teams/{team}/apps/{app}");
            let rows = list
                .into_iter()
                .map(|b| {
                    let status = b.status.as_str();
                    let release = b.release.map(|v| {
                        view! { <a href=format!("{app_page}#releases-title")>{format!("v{v}")}</a> }
                    });
                    view! {
                        <tr data-build=b.number>
                            <td><a href=format!("{app_page}/builds/{}", b.number)>{format!("#{}", b.number)}</a></td>
                            <td><span class="badge" data-s=status>{status}</span></td>
                            <td><code>{short_commit(&b.commit).to_owned()}</code></td>
                            <td>{b.branch}</td>
                            <td>{b.created_by}</td>
                            <td>{utc_time(&b.created_at)}</td>
                            <td>{duration_text(b.duration_seconds)}</td>
                            <td>{release}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <table class="list" data-test="builds-table">
                    <thead><tr>
                        <th scope="col">"Build"</th><th scope="col">"Status"</th>
                        <th scope="col">"Commit"</th><th scope="col">"Branch"</th>
                        <th scope="col">"By"</th><th scope="col">"Created (UTC)"</th>
                        <th scope="col">"Duration"</th><th scope="col">"Release"</th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            }
            .into_any()
        }
    }
}

/// The app's git remote with the commands to copy, and its build settings.
#[component]
fn GitRemote(team: Signal<String>, name: Signal<String>) -> impl IntoView {
    let settings = LocalResource::new(move || {
        let (team, name) = (team.get(), name.get());
        async move { api::build_settings(&team, &name).await }
    });
    let copied = RwSignal::new(false);
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        if let (Some(Ok(s)), Some(window)) = (settings.get_untracked(), web_sys::window()) {
            let promise = window.navigator().clipboard().write_text(&git_commands(&s));
            spawn_local(async move {
                if wasm_bindgen_futures::JsFuture::from(promise).await.is_ok() {
                    copied.set(true);
                }
            });
        }
    };
    let body = move || {
        match settings.get() {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(s)) => view! {
            <p>"Git remote: " <code id="git-remote">{s.remote_url.clone()}</code></p>
            <p>"In your repository (its " <code>{s.dockerfile.clone()}</code>
                " is built, and the image released with the app's rollout strategy):"</p>
            <div class="commands">
                <pre id="git-commands">{git_commands(&s)}</pre>
                <button type="button" on:click=copy>{move || if copied.get() { "Copied" } else { "Copy" }}</button>
            </div>
            <p class="muted" id="git-credentials">
                "Git asks for a user name and a password: your e-mail, and an API token from the "
                <a href="/tokens">"API tokens"</a>
                " page (a member's or above: viewers may fetch, not push). A failed build rejects the push; its log streams to your terminal and shows below."
            </p>
            <BuildSettingsForm team name settings=s/>
        }
        .into_any(),
    }
    };
    view! {
        <section aria-labelledby="git-title">
            <h2 id="git-title">"Deploy with git"</h2>
            {body}
        </section>
    }
}

#[component]
fn BuildSettingsForm(
    team: Signal<String>,
    name: Signal<String>,
    settings: BuildSettings,
) -> impl IntoView {
    let session = use_session();
    let editable = Signal::derive(move || session.can(&team.get(), Permission::WriteApps));
    let branch = RwSignal::new(settings.deploy_branch);
    let dockerfile = RwSignal::new(settings.dockerfile);
    let arg_names = RwSignal::new(settings.build_arg_names);
    let args = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(false);
    let save = move |body: Result<SetBuildSettingsBody, String>| {
        saved.set(false);
        let body = match body {
            Ok(body) => body,
            Err(e) => return error.set(Some(e)),
        };
        error.set(None);
        spawn_local(async move {
            match api::set_build_settings(&team.get_untracked(), &name.get_untracked(), &body).await
            {
                // Show what the server stored.
                Ok(s) => {
                    branch.set(s.deploy_branch);
                    dockerfile.set(s.dockerfile);
                    arg_names.set(s.build_arg_names);
                    args.set(String::new());
                    saved.set(true);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        save(settings_body(
            &branch.get_untracked(),
            &dockerfile.get_untracked(),
            &args.get_untracked(),
        ));
    };
    let clear_args = move |_| {
        save(Ok(SetBuildSettingsBody {
            build_args: Some(BTreeMap::new()),
            ..SetBuildSettingsBody::default()
        }))
    };
    let names = move || {
        let names = arg_names.get();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let text_field = |id: &'static str,
                      label: &'static str,
                      unit: &'static str,
                      value: RwSignal<String>| {
        view! {
            <div class="field">
                <label for=id>{label}</label>
                <input id=id autocomplete="off" prop:value=move || value.get()
                    on:input=move |ev| value.set(event_target_value(&ev)) readonly=move || !editable.get()/>
                <span class="unit">{unit}</span>
            </div>
        }
    };
    view! {
        <h3>"Build settings"</h3>
        <form class="grid" id="build-settings" on:submit=submit>
            {text_field("build-branch", "Deploy branch", "a push to it builds and releases; others are only stored", branch)}
            {text_field("build-dockerfile", "Dockerfile", "its path in the repository", dockerfile)}
            <div class="field wide">
                <span class="label">"Build args"</span>
                <span id="build-arg-names">{names}</span>
                <span class="unit">"names only: values are never shown. The image's history keeps them, so secrets belong in config vars."</span>
            </div>
            <Show when=move || editable.get()>
                <div class="field wide">
                    <label for="build-args">"Replace build args"</label>
                    <textarea id="build-args" rows="3" autocomplete="off" placeholder="NAME=value, one a line; empty keeps the current ones"
                        prop:value=move || args.get() on:input=move |ev| args.set(event_target_value(&ev))></textarea>
                </div>
                <div class="actions">
                    <button type="submit" class="primary">"Save build settings"</button>
                    <button type="button" id="build-args-clear" on:click=clear_args
                        disabled=move || arg_names.read().is_empty()>"Remove all build args"</button>
                    <Show when=move || saved.get()>
                        <span class="ok" role="status">"Saved"</span>
                    </Show>
                </div>
            </Show>
            <ErrorBox message=error/>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_seconds_then_minutes() {
        assert_eq!(duration_text(None), "—");
        assert_eq!(duration_text(Some(0.4)), "0 s");
        assert_eq!(duration_text(Some(42.6)), "43 s");
        assert_eq!(duration_text(Some(185.0)), "3 min 5 s");
    }

    #[test]
    fn the_commands_name_the_remote_and_the_deploy_branch() {
        let s = BuildSettings {
            remote_url: "http://127.0.0.1:8080/git/acme/web.git".into(),
            deploy_branch: "release".into(),
            dockerfile: "Dockerfile".into(),
            build_arg_names: vec![],
        };
        assert_eq!(
            git_commands(&s),
            "git remote add gantry http://127.0.0.1:8080/git/acme/web.git\n\
             git push gantry release"
        );
    }

    #[test]
    fn build_args_are_name_value_lines_and_empty_keeps_them() {
        assert_eq!(parse_build_args(" \n"), Ok(None));
        let args = parse_build_args("A=1\n\nB = x=y\n").unwrap().unwrap();
        assert_eq!(args.keys().collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(args["B"], " x=y");
        assert_eq!(
            parse_build_args("A=1\nnope").unwrap_err(),
            "build args, line 2: write NAME=value, one a line"
        );
        // The server's to refuse, with its rule.
        assert!(parse_build_args("1X=2").is_ok());
    }

    #[test]
    fn the_form_sends_what_the_server_reads() {
        let body = settings_body(" main ", "docker/web.Dockerfile", "").unwrap();
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"deploy_branch": "main", "dockerfile": "docker/web.Dockerfile"})
        );
        let shared: gantry_common::builds::SetBuildSettings = serde_json::from_value(json).unwrap();
        assert_eq!(shared.build_args, None, "absent: kept");
        let clear = SetBuildSettingsBody {
            build_args: Some(BTreeMap::new()),
            ..SetBuildSettingsBody::default()
        };
        let shared: gantry_common::builds::SetBuildSettings =
            serde_json::from_value(serde_json::to_value(&clear).unwrap()).unwrap();
        assert_eq!(shared.build_args.unwrap().names(), Vec::<String>::new());
    }
}
