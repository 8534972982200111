//! `/nodes`: the embedded cluster's worker nodes, for platform admins. Others see the server's
//! 403 message in place (the header links here only for admins). Once the list has loaded, the
//! node stream keeps it live: statuses, and what each node's instances use as their agents
//! report it.

use gantry_common::cluster::{Node, NodeFrame};
use leptos::prelude::*;

use crate::api;
use crate::components::{rows_resource, text_table, Empty, Frame, Rows};

/// Millicores as cores with one decimal, in integers (float formatting costs wasm size).
fn cores(millis: u64) -> String {
    format!("{}.{}", millis / 1000, millis % 1000 / 100)
}

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
    // The first list over REST: a refusal comes with the server's message (a refused websocket
    // handshake says nothing to the page).
    let nodes = rows_resource(Box::new(|| {
        Box::pin(async { Ok(api::nodes().await?.into_iter().map(cells).collect()) })
    }));
    let streamed = RwSignal::new(None::<Rows>);
    let status = RwSignal::new(String::new());
    let path = Memo::new(move |_| match nodes.get() {
        Some(Ok(_)) => api::NODES_STREAM_PATH.to_owned(),
        _ => String::new(),
    });
    let on_text = move |text: String| {
        if let Ok(NodeFrame::Nodes { nodes }) = serde_json::from_str(&text) {
            streamed.set(Some(nodes.into_iter().map(cells).collect()));
            status.set("live".into());
        }
    };
    let on_close = move |_code: u16, reason: String| {
        status.set(format!(
            "stream closed {reason}; reload the page to follow again"
        ));
    };
    crate::live::follow(path.into(), on_text, on_close);
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
    let list = move || {
        let empty = Empty {
            title: "No nodes yet",
            text: "Create a join token with POST /api/v1/nodes/join-tokens, then on each machine \
                   with Docker run:",
            code: "gantry agent --server URL --token gjt_…".into(),
        };
        let rows = streamed.get().map(Ok).or_else(|| nodes.get());
        text_table(rows, "nodes-table", heads, 1, empty, None)
    };
    view! {
        <Frame team=String::new()>
            <div class="head">
                <h1>"Nodes"</h1>
                <span class="muted" data-test="nodes-status">{move || status.get()}</span>
            </div>
            {list}
        </Frame>
    }
}
