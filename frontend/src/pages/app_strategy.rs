//! The strategy form of an app's page: how its next releases roll out (`PUT …/strategy`).
//! Plain inputs; a canary's steps are one text field in the syntax `10, pause 30, 50, pause`
//! (a number is a weight in percent, `pause` alone waits for promote).
//!
//! The values are checked by the server, whose 422 message is shown in place: the shared
//! `Strategy::validate` is left out of the wasm, which has a size budget.

use gantry_common::releases::{Analysis, CanaryStep, Strategy};
use gantry_common::Permission;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::app_metrics::short;
use crate::api::{self, StrategyView};
use crate::components::ErrorBox;
use crate::session::use_session;

/// The steps a canary starts with in the form when the app has none yet.
const DEFAULT_STEPS: &str = "10, pause";

/// `10, pause 30, 50, pause`: the steps as the form shows them.
pub(super) fn steps_text(steps: &[CanaryStep]) -> String {
    steps
        .iter()
        .map(|step| match step {
            CanaryStep::SetWeight(w) => w.to_string(),
            CanaryStep::PauseSeconds(Some(s)) => format!("pause {s}"),
            CanaryStep::PauseSeconds(None) => "pause".into(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads [`steps_text`]'s syntax, also with `%` after a weight and `s` after a pause. Values
/// out of range are the server's to refuse (with the step's number).
pub(super) fn parse_steps(text: &str) -> Result<Vec<CanaryStep>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .enumerate()
        .map(|(i, part)| {
            let bad = || {
                format!(
                    "step {}: {part:?} is neither a weight (e.g. 10) nor a pause (pause 30, or \
                     pause alone to wait for promote)",
                    i + 1
                )
            };
            let words = part.to_ascii_lowercase().replace('%', " ");
            let seconds = |s: &str| s.trim_end_matches('s').parse().map_err(|_| bad());
            match words.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["pause"] => Ok(CanaryStep::PauseSeconds(None)),
                ["pause", s] | ["pause", s, "s"] => Ok(CanaryStep::PauseSeconds(Some(seconds(s)?))),
                [w] => w.parse().map(CanaryStep::SetWeight).map_err(|_| bad()),
                _ => Err(bad()),
            }
        })
        .collect()
}

pub(super) fn number(what: &str, s: &str) -> Result<u32, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{what} must be a whole number"))
}

/// Empty is `None`.
pub(super) fn optional_number(what: &str, s: &str) -> Result<Option<u32>, String> {
    match s.trim() {
        "" => Ok(None),
        s => number(what, s).map(Some),
    }
}

/// Empty is `None`. Read by serde_json, whose float parser the wasm has anyway (core's would
/// add its own).
pub(super) fn optional_decimal(what: &str, s: &str) -> Result<Option<f64>, String> {
    match s.trim() {
        "" => Ok(None),
        s => serde_json::from_str(s)
            .map(Some)
            .map_err(|_| format!("{what} must be a number")),
    }
}

/// `2.5`, `5`: a decimal as typed, with at most two decimals.
pub(super) fn decimal_text(v: f64) -> String {
    let s = short(v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A field of a number (whole or decimal; empty where that means "none"). Plain text with a
/// numeric keyboard: `type=number` would refuse a decimal in a field stepped by one.
pub(super) fn field(
    id: &'static str,
    label: &'static str,
    unit: &'static str,
    value: RwSignal<String>,
    editable: Signal<bool>,
) -> impl IntoView {
    view! {
        <div class="field">
            <label for=id>{label}</label>
            <input
                id=id
                inputmode="decimal"
                autocomplete="off"
                prop:value=move || value.get()
                on:input=move |ev| value.set(event_target_value(&ev))
                readonly=move || !editable.get()
            />
            <span class="unit">{unit}</span>
        </div>
    }
}

/// The form's values, as typed.
#[derive(Clone, Copy)]
struct Fields {
    kind: RwSignal<String>,
    max_surge: RwSignal<String>,
    max_unavailable: RwSignal<String>,
    steps: RwSignal<String>,
    max_error_percent: RwSignal<String>,
    max_p99_ms: RwSignal<String>,
    window_seconds: RwSignal<String>,
    min_requests: RwSignal<String>,
    sticky: RwSignal<bool>,
    auto_promote_seconds: RwSignal<String>,
    scale_down_delay_seconds: RwSignal<String>,
}

impl Fields {
    fn new(s: &StrategyView) -> Self {
        let text = || RwSignal::new(String::new());
        let fields = Self {
            kind: text(),
            max_surge: text(),
            max_unavailable: text(),
            steps: text(),
            max_error_percent: text(),
            max_p99_ms: text(),
            window_seconds: text(),
            min_requests: text(),
            sticky: RwSignal::new(false),
            auto_promote_seconds: text(),
            scale_down_delay_seconds: text(),
        };
        fields.fill(s);
        fields
    }

    /// Shows `s`, with the server's defaults in the fields of the other kinds.
    fn fill(&self, s: &StrategyView) {
        let n = |v: Option<u32>, default: u32| v.unwrap_or(default).to_string();
        let a = s.analysis.as_ref();
        self.kind.set(s.kind.clone());
        self.max_surge.set(n(s.max_surge, 1));
        self.max_unavailable.set(n(s.max_unavailable, 0));
        self.steps.set(if s.steps.is_empty() {
            DEFAULT_STEPS.into()
        } else {
            steps_text(&s.steps)
        });
        self.max_error_percent.set(
            a.and_then(|a| a.max_error_percent)
                .map(decimal_text)
                .unwrap_or_default(),
        );
        self.max_p99_ms.set(
            a.and_then(|a| a.max_p99_ms)
                .map(|ms| ms.to_string())
                .unwrap_or_default(),
        );
        self.window_seconds.set(n(a.map(|a| a.window_seconds), 10));
        self.min_requests.set(n(a.map(|a| a.min_requests), 20));
        self.sticky.set(s.sticky);
        self.auto_promote_seconds.set(
            s.auto_promote_seconds
                .map(|s| s.to_string())
                .unwrap_or_default(),
        );
        self.scale_down_delay_seconds
            .set(n(s.scale_down_delay_seconds, 300));
    }

    fn strategy(&self) -> Result<Strategy, String> {
        let get = |s: RwSignal<String>| s.get_untracked();
        Ok(match get(self.kind).as_str() {
            "canary" => {
                let max_error_percent =
                    optional_decimal("the 5xx limit", &get(self.max_error_percent))?;
                let max_p99_ms = optional_number("the p99 limit", &get(self.max_p99_ms))?;
                // No limit at all: no analysis.
                let analysis = (max_error_percent.is_some() || max_p99_ms.is_some())
                    .then(|| -> Result<Analysis, String> {
                        Ok(Analysis {
                            max_error_percent,
                            max_p99_ms,
                            window_seconds: number(
                                "the analysis window",
                                &get(self.window_seconds),
                            )?,
                            min_requests: number("the requests", &get(self.min_requests))?,
                        })
                    })
                    .transpose()?;
                Strategy::Canary {
                    steps: parse_steps(&get(self.steps))?,
                    analysis,
                    sticky: self.sticky.get_untracked(),
                }
            }
            "blue_green" => Strategy::BlueGreen {
                auto_promote_seconds: optional_number(
                    "auto-promote",
                    &get(self.auto_promote_seconds),
                )?,
                scale_down_delay_seconds: number(
                    "the scale-down delay",
                    &get(self.scale_down_delay_seconds),
                )?,
            },
            _ => Strategy::Rolling {
                max_surge: number("max surge", &get(self.max_surge))?,
                max_unavailable: number("max unavailable", &get(self.max_unavailable))?,
            },
        })
    }
}

const KINDS: [(&str, &str); 3] = [
    ("rolling", "rolling"),
    ("canary", "canary"),
    ("blue_green", "blue-green"),
];

#[component]
pub fn StrategyForm(
    team: Signal<String>,
    name: Signal<String>,
    strategy: StrategyView,
) -> impl IntoView {
    let session = use_session();
    let editable = Signal::derive(move || session.can(&team.get(), Permission::WriteApps));
    let f = Fields::new(&strategy);
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        saved.set(false);
        let body = match f.strategy() {
            Ok(body) => body,
            Err(e) => return error.set(Some(e)),
        };
        error.set(None);
        spawn_local(async move {
            match api::set_strategy(&team.get_untracked(), &name.get_untracked(), &body).await {
                // Show what the server stored.
                Ok(s) => {
                    f.fill(&s);
                    saved.set(true);
                }
                Err(e) => error.set(Some(e.message)),
            }
        });
    };
    let kind_fields = move || {
        match f.kind.get().as_str() {
        "canary" => view! {
            <div class="field wide">
                <label for="strategy-steps">"Steps"</label>
                <input id="strategy-steps" autocomplete="off" prop:value=move || f.steps.get()
                    on:input=move |ev| f.steps.set(event_target_value(&ev)) readonly=move || !editable.get()/>
                <span class="unit">"weights in percent and pauses in seconds, in order; a pause without seconds waits for promote"</span>
            </div>
            {field("strategy-max-errors", "Abort above 5xx", "% of the canary's answers; empty: no limit", f.max_error_percent, editable)}
            {field("strategy-max-p99", "Abort above p99", "ms; empty: no limit", f.max_p99_ms, editable)}
            {field("strategy-window", "Analysis window", "seconds", f.window_seconds, editable)}
            {field("strategy-min-requests", "Judge from", "canary requests in the window", f.min_requests, editable)}
            <div class="field">
                <label><input type="checkbox" id="strategy-sticky" prop:checked=move || f.sticky.get()
                    on:change=move |ev| f.sticky.set(event_target_checked(&ev)) disabled=move || !editable.get()/>
                    " Sticky"</label>
                <span class="unit">"a client stays on the release it first got"</span>
            </div>
        }
        .into_any(),
        "blue_green" => view! {
            {field("strategy-auto-promote", "Auto-promote after", "seconds ready; empty: wait for Promote", f.auto_promote_seconds, editable)}
            {field("strategy-scale-down-delay", "Scale-down delay", "seconds the old release stays up after promote", f.scale_down_delay_seconds, editable)}
        }
        .into_any(),
        _ => view! {
            {field("strategy-max-surge", "Max surge", "instances above the replica count", f.max_surge, editable)}
            {field("strategy-max-unavailable", "Max unavailable", "instances below it", f.max_unavailable, editable)}
        }
        .into_any(),
    }
    };
    view! {
        <section aria-labelledby="strategy-title">
            <h2 id="strategy-title">"Rollout strategy"</h2>
            <p class="muted">"Applies to the next release (a deploy, a config or settings change, a rollback); a rollout under way keeps its own."</p>
            <form class="grid" id="strategy-form" on:submit=submit>
                <div class="field">
                    <label for="strategy-kind">"Kind"</label>
                    <select id="strategy-kind" disabled=move || !editable.get()
                        on:change=move |ev| f.kind.set(event_target_value(&ev))>
                        {KINDS.into_iter().map(|(value, label)| view! {
                            <option value=value selected=move || f.kind.get() == value>{label}</option>
                        }).collect_view()}
                    </select>
                </div>
                {kind_fields}
                <Show when=move || editable.get()>
                    <div class="actions">
                        <button type="submit" class="primary">"Save strategy"</button>
                        <Show when=move || saved.get()>
                            <span class="ok" role="status">"Saved"</span>
                        </Show>
                    </div>
                </Show>
                <ErrorBox message=error/>
            </form>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_back_as_they_are_written() {
        let steps = parse_steps("10, pause 30, 50 %, pause 5s, weight, pause").unwrap_err();
        assert!(
            steps.starts_with("step 5: \"weight\" is neither"),
            "{steps}"
        );
        let steps = parse_steps(" 10, pause 30,50%, pause 5s, pause 7 s, pause ,").unwrap();
        assert_eq!(
            steps,
            [
                CanaryStep::SetWeight(10),
                CanaryStep::PauseSeconds(Some(30)),
                CanaryStep::SetWeight(50),
                CanaryStep::PauseSeconds(Some(5)),
                CanaryStep::PauseSeconds(Some(7)),
                CanaryStep::PauseSeconds(None),
            ]
        );
        assert_eq!(
            steps_text(&steps),
            "10, pause 30, 50, pause 5, pause 7, pause"
        );
        assert_eq!(parse_steps(&steps_text(&steps)).unwrap(), steps);
        // The server's to refuse, with its rule.
        assert_eq!(parse_steps("150").unwrap(), [CanaryStep::SetWeight(150)]);
        assert!(parse_steps("").unwrap().is_empty());
        assert!(parse_steps("pause -1").is_err());
    }

    #[test]
    fn numbers_read_empty_as_none() {
        assert_eq!(optional_number("x", " "), Ok(None));
        assert_eq!(optional_number("x", "30"), Ok(Some(30)));
        assert_eq!(
            optional_number("x", "3.5"),
            Err("x must be a whole number".into())
        );
        assert_eq!(optional_decimal("x", "2.5"), Ok(Some(2.5)));
        assert_eq!(optional_decimal("x", ""), Ok(None));
        assert!(optional_decimal("x", "lots").is_err());
        assert_eq!(decimal_text(2.5), "2.5");
        assert_eq!(decimal_text(5.0), "5");
        assert_eq!(decimal_text(0.25), "0.25");
    }

    #[test]
    fn the_form_sends_what_it_shows() {
        let owner = Owner::new();
        owner.with(|| {
            let canary = StrategyView {
                kind: "canary".into(),
                steps: vec![CanaryStep::SetWeight(50), CanaryStep::PauseSeconds(None)],
                ..StrategyView::default()
            };
            let f = Fields::new(&canary);
            assert_eq!(f.steps.get_untracked(), "50, pause");
            assert_eq!(
                serde_json::to_value(f.strategy().unwrap()).unwrap(),
                serde_json::json!({"kind": "canary", "steps": [{"set_weight": 50},
                    {"pause_seconds": null}], "analysis": null, "sticky": false})
            );
            f.max_error_percent.set("5".into());
            let Strategy::Canary { analysis, .. } = f.strategy().unwrap() else {
                panic!("a canary")
            };
            assert_eq!(
                analysis,
                Some(Analysis {
                    max_error_percent: Some(5.0),
                    max_p99_ms: None,
                    window_seconds: 10,
                    min_requests: 20,
                })
            );
            f.kind.set("blue_green".into());
            assert_eq!(
                f.strategy().unwrap(),
                Strategy::BlueGreen {
                    auto_promote_seconds: None,
                    scale_down_delay_seconds: 300
                }
            );
            f.kind.set("rolling".into());
            f.max_surge.set("two".into());
            assert_eq!(
                f.strategy().unwrap_err(),
                "max surge must be a whole number"
            );
        });
    }
}
