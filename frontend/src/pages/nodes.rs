//! `/nodes`: the embedded cluster's worker nodes, for platform admins. Others see the server's
//! 403 message in place (the header links here only for admins). What each node's instances
//! use is live: the list reloads every [`LIVE`], the rate at which agents report it.

use gantry_common::cluster::Node;
use leptos::prelude::*;

use crate::api;
use crate::components::{rows_resource, text_table, Empty, Frame};

/// Millicores as cores with one decimal, in integers (float formatting costs wasm size).
fn cores(millis: u64) -> String {
    format!("{}.{}", millis / 1000, millis % 1000 / 100)
}

/// How often the list reloads.
const LIVE: std::time::Duration = std::time::Duration::from_secs(5);

fn cells(n: Node) -> Vec<String> {
    let (allocated, cap) = (n.allocated, n.capacity);
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // "–" until the node's agent reports its instances' usage.
    let (cpu_used, memory_used) = match n.used {
        Some(u) => (cores(u.cpu_millis), u.memory_mib.to_string()),
        None => ("–".to_owned(), "–".to_owned()),
    };
    vec![
        n.name,
        n.status.as_str().into(),
        format!(
            "{} / {}",
            cores(allocated.cpu_millis),
            cores(cap.cpu_millis)
        ),
        format!("{} / {}", allocated.memory_mib, cap.memory_mib),
        cpu_used,
        memory_used,
        n.instances.to_string(),
        labels.join(", "),
    ]
}

#[component]
pub fn Nodes() -> impl IntoView {
    let nodes = rows_resource(Box::new(|| {
        Box::pin(async { Ok(api::nodes().await?.into_iter().map(cells).collect()) })
    }));
    let heads = &[
        "Name",
        "Status",
        "CPU allocated (cores)",
        "Memory allocated (MiB)",
        "CPU used",
        "Memory used (MiB)",
        "Instances",
        "Labels",
    ];
    // In an effect: only the browser runs it (the server renders the page once).
    Effect::new(move |_| {
        if let Ok(timer) = set_interval_with_handle(move || nodes.refetch(), LIVE) {
            on_cleanup(move || timer.clear());
        }
    });
    let list = move || {
        let empty = Empty {
            title: "No nodes yet",
            text: "Create a join token with POST /api/v1/nodes/join-tokens, then on each machine \
                   with Docker run:",
            code: "gantry agent --server URL --token gjt_…".into(),
        };
        text_table(nodes.get(), "nodes-table", heads, 1, empty, None)
    };
    view! {
        <Frame team=String::new()>
            <div class="head">
                <h1>"Nodes"</h1>
                <button type="button" on:click=move |_| nodes.refetch()>"Refresh"</button>
            </div>
            {list}
        </Frame>
    }
}
