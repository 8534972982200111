//! The metrics section of an app's page: live charts of CPU, memory, requests/s, errors and
//! p99 latency per release over the last ten minutes, fed by `…/metrics/stream` (the server
//! replays ten minutes, then sends a point per release every five seconds). SVG, no library.

use leptos::prelude::*;

use crate::api::{self, MetricFrame, MetricPointView};

/// The time the charts span, in seconds.
const SPAN: i64 = 600;
/// Points kept (ten minutes of a few releases).
const KEPT: usize = 1000;
const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 70.0;
/// One colour per release, in turn.
const COLOURS: [&str; 4] = ["#2f5bd3", "#d9822b", "#1e7b34", "#b3261e"];

/// Seconds since midnight of an RFC 3339 UTC time (the charts span minutes, so the date does
/// not matter but at midnight, handled by the caller).
fn seconds_of_day(ts: &str) -> Option<i64> {
    let h: i64 = ts.get(11..13)?.parse().ok()?;
    let m: i64 = ts.get(14..16)?.parse().ok()?;
    let s: i64 = ts.get(17..19)?.parse().ok()?;
    Some(h * 3600 + m * 60 + s)
}

/// One chart: a series per release of (seconds before the newest point, value).
struct Chart {
    title: &'static str,
    test: &'static str,
    unit: &'static str,
    value: fn(&MetricPointView) -> Option<f64>,
}

const CHARTS: [Chart; 5] = [
    Chart {
        title: "CPU",
        test: "chart-cpu",
        unit: "cores",
        value: |p| p.cpu_millis.map(|m| f64::from(m) / 1000.0),
    },
    Chart {
        title: "Memory",
        test: "chart-memory",
        unit: "MiB",
        value: |p| p.memory_bytes.map(|b| b as f64 / 1_048_576.0),
    },
    Chart {
        title: "Requests",
        test: "chart-requests",
        unit: "/s",
        value: |p| Some(p.requests_per_second),
    },
    Chart {
        title: "Errors",
        test: "chart-errors",
        unit: "% 5xx",
        value: |p| p.error_percent,
    },
    Chart {
        title: "Latency p99",
        test: "chart-latency",
        unit: "ms",
        value: |p| p.p99_ms,
    },
];

/// A value with at most two decimals, without float formatting machinery.
pub(super) fn short(v: f64) -> String {
    let hundredths = (v * 100.0).round() as i64;
    if hundredths % 100 == 0 {
        format!("{}", hundredths / 100)
    } else {
        format!("{}.{:02}", hundredths / 100, (hundredths % 100).abs())
    }
}

fn chart_view(chart: &'static Chart, points: &[MetricPointView]) -> impl IntoView {
    let newest = points
        .iter()
        .filter_map(|p| seconds_of_day(&p.ts))
        .max()
        .unwrap_or(0);
    let mut releases: Vec<u32> = points.iter().map(|p| p.release).collect();
    releases.sort_unstable();
    releases.dedup();
    let series: Vec<(u32, Vec<(f64, f64)>)> = releases
        .iter()
        .map(|&r| {
            let values = points
                .iter()
                .filter(|p| p.release == r)
                .filter_map(|p| {
                    let age = (newest - seconds_of_day(&p.ts)?).rem_euclid(86_400);
                    let v = (chart.value)(p)?;
                    (age <= SPAN).then_some(((SPAN - age) as f64, v))
                })
                .collect();
            (r, values)
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|(_, v)| *v))
        .fold(0.0_f64, f64::max)
        .max(f64::EPSILON);
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, (release, s))| {
            let coords: Vec<String> = s
                .iter()
                .map(|(x, v)| {
                    let px = (x / SPAN as f64 * WIDTH).round() as i64;
                    let py = (HEIGHT - v / top * (HEIGHT - 4.0) - 2.0).round() as i64;
                    format!("{px},{py}")
                })
                .collect();
            view! {
                <polyline data-release=release.to_string() fill="none" stroke=COLOURS[i % COLOURS.len()]
                    stroke-width="1.5" points=coords.join(" ")/>
            }
        })
        .collect_view();
    let legend = series
        .iter()
        .enumerate()
        .map(|(i, (release, s))| {
            let last = s.last().map_or_else(|| "–".to_owned(), |(_, v)| short(*v));
            view! {
                <span class="legend" style=format!("color: {}", COLOURS[i % COLOURS.len()])>
                    {format!("v{release} {last}")}
                </span>
            }
        })
        .collect_view();
    view! {
        <figure class="chart" data-test=chart.test>
            <figcaption>{chart.title} " " <span class="muted">{chart.unit}</span> " " {legend}</figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") preserveAspectRatio="none" role="img"
                aria-label=format!("{} over the last ten minutes", chart.title)>
                {lines}
            </svg>
        </figure>
    }
}

#[component]
pub fn Metrics(team: Signal<String>, name: Signal<String>) -> impl IntoView {
    let points = RwSignal::new(Vec::<MetricPointView>::new());
    let status = RwSignal::new(String::from("connecting"));
    let path = Signal::derive(move || api::metrics_stream_path(&team.get(), &name.get()));
    let on_text = move |text: String| match serde_json::from_str::<MetricFrame>(&text) {
        Ok(MetricFrame::Points { points: new }) => points.update(|p| {
            p.extend(new);
            let extra = p.len().saturating_sub(KEPT);
            p.drain(..extra);
        }),
        Ok(MetricFrame::Live) => status.set("live".into()),
        Ok(MetricFrame::Dropped { .. }) | Err(_) => {}
    };
    let on_close = move |_code: u16, reason: String| {
        status.set(format!("stream closed {reason}"));
    };
    crate::live::follow(path, on_text, on_close);
    view! {
        <section aria-labelledby="metrics-title" data-test="metrics">
            <div class="head">
                <h2 id="metrics-title">"Metrics"</h2>
                <span class="muted" data-test="metrics-status">{move || status.get()}</span>
            </div>
            {move || {
                let p = points.read();
                if p.is_empty() {
                    view! { <p class="muted">"No points yet: they come every five seconds while the app runs."</p> }.into_any()
                } else {
                    view! { <div class="charts">{CHARTS.iter().map(|c| chart_view(c, &p)).collect_view()}</div> }.into_any()
                }
            }}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_values_read_without_a_date_library() {
        assert_eq!(seconds_of_day("2026-12-01T10:31:02.5Z"), Some(37862));
        assert_eq!(seconds_of_day("garbage"), None);
        assert_eq!(short(1.0), "1");
        assert_eq!(short(0.257), "0.26");
        assert_eq!(short(12.5), "12.50");
    }
}
