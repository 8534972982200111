//! The autoscaler on an app's page: the replica count now, the policy it follows (or "off"),
//! its newest decisions, and for those who may change the app a form to set the policy
//! (`PUT …/autoscaling`, the server's 422 message shown in place) or turn it off
//! (`DELETE …/autoscaling`).

use gantry_common::autoscaling::Autoscaling;
use gantry_common::Permission;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::app_detail::utc_time;
use super::app_strategy::{decimal_text, field, number, optional_decimal, optional_number};
use crate::api::{self, AutoscalingView, DecisionView};
use crate::components::{text_table, Empty, ErrorBox, Loading};
use crate::session::use_session;

/// Decisions shown, newest first.
const DECISIONS_SHOWN: usize = 5;

/// The policy in a sentence.
fn policy_text(p: &Autoscaling) -> String {
    let mut targets = Vec::new();
    if let Some(cpu) = p.target_cpu_percent {
        targets.push(format!("{cpu} % CPU"));
    }
    if let Some(rps) = p.target_rps_per_instance {
        targets.push(format!("{} requests/s", decimal_text(rps)));
    }
    format!(
        "{} to {} replicas, aiming at {} per instance; scales down after {} s of lower load",
        p.min,
        p.max,
        targets.join(" and "),
        p.scale_down_stabilization_seconds
    )
}

fn decision_cells(d: DecisionView) -> Vec<String> {
    vec![utc_time(&d.at), format!("{} → {}", d.from, d.to), d.reason]
}

/// The form's values, as typed.
#[derive(Clone, Copy)]
struct Fields {
    min: RwSignal<String>,
    max: RwSignal<String>,
    cpu: RwSignal<String>,
    rps: RwSignal<String>,
    stabilization: RwSignal<String>,
}

impl Fields {
    /// A policy to start from while there is none: the server's example.
    fn new() -> Self {
        let text = |s: &str| RwSignal::new(s.to_owned());
        Self {
            min: text("1"),
            max: text("5"),
            cpu: text("50"),
            rps: text(""),
            stabilization: text("300"),
        }
    }

    fn fill(&self, p: &Autoscaling) {
        self.min.set(p.min.to_string());
        self.max.set(p.max.to_string());
        self.cpu.set(
            p.target_cpu_percent
                .map(|c| c.to_string())
                .unwrap_or_default(),
        );
        self.rps.set(
            p.target_rps_per_instance
                .map(decimal_text)
                .unwrap_or_default(),
        );
        self.stabilization
            .set(p.scale_down_stabilization_seconds.to_string());
    }

    fn policy(&self) -> Result<Autoscaling, String> {
        Ok(Autoscaling {
            min: number("min", &self.min.get_untracked())?,
            max: number("max", &self.max.get_untracked())?,
            target_cpu_percent: optional_number("the CPU target", &self.cpu.get_untracked())?,
            target_rps_per_instance: optional_decimal(
                "the requests target",
                &self.rps.get_untracked(),
            )?,
            scale_down_stabilization_seconds: number(
                "the scale-down wait",
                &self.stabilization.get_untracked(),
            )?,
        })
    }
}

#[component]
pub fn Autoscaler(
    team: Signal<String>,
    name: Signal<String>,
    tick: RwSignal<u32>,
) -> impl IntoView {
    let session = use_session();
    let editable = Signal::derive(move || session.can(&team.get(), Permission::WriteApps));
    // Bumped after a change made here (the rest of the page need not reload).
    let reload = RwSignal::new(0u32);
    let status = LocalResource::new(move || {
        tick.track();
        reload.track();
        let (team, name) = (team.get(), name.get());
        async move { api::autoscaling(&team, &name).await }
    });
    let f = Fields::new();
    // The form shows the stored policy once, not on every reload (which would undo typing).
    let filled = StoredValue::new(false);
    Effect::new(move |_| {
        if let Some(Ok(AutoscalingView {
            policy: Some(p), ..
        })) = status.get()
        {
            if !filled.get_value() {
                filled.set_value(true);
                f.fill(&p);
            }
        }
    });
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(false);
    let done = move |result: api::ApiResult<()>| match result {
        Ok(()) => {
            saved.set(true);
            reload.update(|n| *n += 1);
        }
        Err(e) => error.set(Some(e.message)),
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        saved.set(false);
        let policy = match f.policy() {
            Ok(p) => p,
            Err(e) => return error.set(Some(e)),
        };
        error.set(None);
        spawn_local(async move {
            let result =
                api::set_autoscaling(&team.get_untracked(), &name.get_untracked(), &policy).await;
            done(result.map(|s| {
                if let Some(p) = &s.policy {
                    f.fill(p);
                }
            }));
        });
    };
    let turn_off = move |_| {
        saved.set(false);
        error.set(None);
        spawn_local(async move {
            done(api::autoscaling_off(&team.get_untracked(), &name.get_untracked()).await);
        });
    };
    let on = move || {
        matches!(
            status.get(),
            Some(Ok(AutoscalingView {
                policy: Some(_),
                ..
            }))
        )
    };
    let summary = move || match status.get() {
        None => view! { <Loading/> }.into_any(),
        Some(Err(e)) => view! { <ErrorBox message=Some(e.message)/> }.into_any(),
        Some(Ok(s)) => {
            let policy = s.policy.as_ref().map_or_else(
                || "off: the replica count is the one in the settings".into(),
                policy_text,
            );
            let rows: Vec<Vec<String>> = s
                .decisions
                .into_iter()
                .take(DECISIONS_SHOWN)
                .map(decision_cells)
                .collect();
            let decisions = if rows.is_empty() {
                view! { <p class="muted">"No decisions yet: each change of the replica count (or change held back) shows here."</p> }.into_any()
            } else {
                let empty = Empty {
                    title: "",
                    text: "",
                    code: String::new(),
                };
                text_table(
                    Some(Ok(rows)),
                    "autoscaling-decisions",
                    &["Time (UTC)", "Replicas", "Reason"],
                    usize::MAX,
                    empty,
                    None,
                )
            };
            view! {
                <dl class="facts">
                    <dt>"Replicas"</dt><dd id="autoscaling-replicas">{s.replicas}</dd>
                    <dt>"Autoscaling"</dt><dd id="autoscaling-policy">{policy}</dd>
                </dl>
                {decisions}
            }
            .into_any()
        }
    };
    view! {
        <section id="autoscaling" aria-labelledby="autoscaling-title">
            <h2 id="autoscaling-title">"Autoscaling"</h2>
            {summary}
            <Show when=move || editable.get()>
                <form class="grid" id="autoscaling-form" on:submit=submit>
                    {field("autoscaling-min", "Min", "replicas, at least 1", f.min, editable)}
                    {field("autoscaling-max", "Max", "replicas", f.max, editable)}
                    {field("autoscaling-cpu", "Target CPU", "% of each instance's CPU; empty: not by CPU", f.cpu, editable)}
                    {field("autoscaling-rps", "Target requests", "per second per instance; empty: not by requests", f.rps, editable)}
                    {field("autoscaling-stabilization", "Scale-down wait", "seconds a lower count must hold", f.stabilization, editable)}
                    <div class="actions">
                        <button type="submit" class="primary">"Save autoscaling"</button>
                        <Show when=on>
                            <button type="button" id="autoscaling-off" on:click=turn_off>"Turn off"</button>
                        </Show>
                        <Show when=move || saved.get()>
                            <span class="ok" role="status">"Saved"</span>
                        </Show>
                    </div>
                    <ErrorBox message=error/>
                </form>
            </Show>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_reads_as_a_sentence() {
        let mut p = Autoscaling {
            min: 1,
            max: 3,
            target_cpu_percent: Some(50),
            target_rps_per_instance: None,
            scale_down_stabilization_seconds: 300,
        };
        assert_eq!(
            policy_text(&p),
            "1 to 3 replicas, aiming at 50 % CPU per instance; scales down after 300 s of lower load"
        );
        p.target_rps_per_instance = Some(12.5);
        assert!(policy_text(&p).contains("aiming at 50 % CPU and 12.5 requests/s per instance"));
        let d = DecisionView {
            at: "2026-12-01T12:00:00Z".into(),
            from: 1,
            to: 2,
            reason: "cpu 90 %".into(),
        };
        assert_eq!(
            decision_cells(d),
            ["2026-12-01 12:00:00", "1 → 2", "cpu 90 %"]
        );
    }
}
