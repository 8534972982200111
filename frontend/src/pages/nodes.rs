//! `/nodes`: the embedded cluster's worker nodes, for platform admins. Others see the server's
//! 403 message in place (the header links here only for admins).

use gantry_common::cluster::Node;
use leptos::prelude::*;

use crate::api;
use crate::components::{rows_resource, text_table, Empty, Frame};

/// Millicores as cores with one decimal, in integers (float formatting costs wasm size).
fn cores(millis: u64) -> String {
    format!("{}.{}", millis / 1000, millis % 1000 / 100)
}

fn cells(n: Node) -> Vec<String> {
    let (used, cap) = (n.allocated, n.capacity);
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    vec![
        n.name,
        n.status.as_str().into(),
        format!("{} / {}", cores(used.cpu_millis), cores(cap.cpu_millis)),
        format!("{} / {}", used.memory_mib, cap.memory_mib),
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
        "CPU (cores)",
        "Memory (MiB)",
        "Instances",
        "Labels",
    ];
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
