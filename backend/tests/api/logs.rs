//! Apps' logs through the API: lines a (fake) node agent ships over the real websocket, stored
//! once each and only for the node's own instances, then read back page by page with filters;
//! the platform's events in the same log; bad queries; and other teams kept out.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use gantry_common::agent::{AgentMessage, LogCursor, ServerMessage, ShippedLine};
use gantry_common::logs::{LogFrame, LogItem, LogPage, LogStream};
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use crate::fake_agent::{deploy, hello, FakeAgent, WAIT};
use crate::support::{TestApp, TestUser};

// ---- helpers ----

/// A whole second some minutes ago: lines stamped from here on are in the past (never capped
/// to the server's "now") and well inside the retention window, and the platform's events of
/// the test (stamped when they happen) all come after them.
fn base() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - time::Duration::minutes(10)
}

fn line(
    instance: Uuid,
    seq: u64,
    ts: OffsetDateTime,
    stream: LogStream,
    text: &str,
) -> ShippedLine {
    ShippedLine {
        instance,
        seq,
        ts,
        stream,
        line: text.to_owned(),
    }
}

fn stdout(instance: Uuid, seq: u64, ts: OffsetDateTime, text: &str) -> ShippedLine {
    line(instance, seq, ts, LogStream::Stdout, text)
}

/// What the history should show of a shipped line.
fn item(l: &ShippedLine, release: u32) -> LogItem {
    LogItem {
        ts: l.ts,
        instance: Some(l.instance),
        release: Some(release),
        stream: l.stream,
        line: l.line.clone(),
        build: None,
    }
}

/// A time as the query takes it.
fn rfc(ts: OffsetDateTime) -> String {
    ts.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn cursor(l: &ShippedLine) -> LogCursor {
    LogCursor {
        seq: l.seq,
        ts: l.ts,
    }
}

/// `?k=v&…`, percent-encoded (empty without parameters).
fn query(params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let mut url = reqwest::Url::parse("http://x/").unwrap();
    url.query_pairs_mut().extend_pairs(params);
    format!("?{}", url.query().unwrap())
}

/// `GET {app}/logs?…`, asserting a 200; the raw JSON.
async fn history_json(user: &TestUser, app_path: &str, params: &[(&str, &str)]) -> Value {
    let res = user.get(&format!("{app_path}/logs{}", query(params))).await;
    assert_eq!(res.status(), StatusCode::OK, "logs with {params:?}");
    res.json().await.unwrap()
}

/// `GET {app}/logs?…`, asserting a 200.
async fn history(user: &TestUser, app_path: &str, params: &[(&str, &str)]) -> LogPage {
    serde_json::from_value(history_json(user, app_path, params).await).unwrap()
}

/// The page's lines that are not platform events.
fn shipped(page: &LogPage) -> Vec<LogItem> {
    page.items
        .iter()
        .filter(|i| i.stream != LogStream::Event)
        .cloned()
        .collect()
}

fn texts(items: &[LogItem]) -> Vec<&str> {
    items.iter().map(|i| i.line.as_str()).collect()
}

/// `GET {app}/logs?…` expecting a 400 in the error shape; its message.
async fn bad_request(user: &TestUser, path: &str) -> String {
    let res = user.get(path).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
    let body: Value = res.json().await.expect("error bodies are JSON");
    assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{path}: no error.message in {body}"))
        .to_owned()
}

/// A server, its first user (the platform admin), node `node-a` connected, and app `web` with
/// `replicas` instances deployed and placed on that node (release v1).
struct Placed {
    app: TestApp,
    admin: TestUser,
    agent: FakeAgent,
    /// `/api/v1/teams/{team}/apps/web`
    web: String,
    instances: Vec<Uuid>,
}

async fn placed(replicas: u32) -> Placed {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let mut agent = FakeAgent::joined(&app, &admin, "node-a").await;
    let res = admin
        .post(
            &format!("/api/v1/teams/{}/apps", admin.team),
            json!({"name": "web", "replicas": replicas}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let web = format!("/api/v1/teams/{}/apps/web", admin.team);
    deploy(&admin, &web, "gantry-hello:latest").await;
    let (_, desired) = agent
        .desired_until("the app's instances", |list| {
            list.len() == replicas as usize && list.iter().all(|d| d.release == 1 && !d.stop)
        })
        .await;
    Placed {
        app,
        admin,
        agent,
        web,
        instances: desired.iter().map(|d| d.id).collect(),
    }
}

// ---- shipping and storing ----

#[tokio::test]
async fn shipped_lines_are_acknowledged_and_listed_oldest_first() {
    let Placed {
        admin,
        mut agent,
        web,
        instances,
        ..
    } = placed(1).await;
    let id = instances[0];
    let t = base();
    let batch = vec![
        stdout(id, 1, t, "listening on :8080"),
        line(
            id,
            2,
            t + Duration::from_millis(1500),
            LogStream::Stderr,
            "warning: slow start",
        ),
        stdout(id, 3, t + Duration::from_secs(3), "Hello, 世界"),
    ];

    let ack = agent.ship(batch.clone()).await;
    assert_eq!(ack, BTreeMap::from([(id, cursor(&batch[2]))]));

    let page = history_json(&admin, &web, &[]).await;
    let lines: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["stream"] != "event")
        .collect();
    let expected = [
        ("stdout", "listening on :8080", t),
        (
            "stderr",
            "warning: slow start",
            t + Duration::from_millis(1500),
        ),
        ("stdout", "Hello, 世界", t + Duration::from_secs(3)),
    ];
    assert_eq!(lines.len(), expected.len(), "{page:#}");
    for (got, (stream, text, ts)) in lines.iter().zip(expected) {
        assert_eq!(got["instance"], id.to_string().as_str(), "{got}");
        assert_eq!(got["release"], 1, "{got}");
        assert_eq!(got["stream"], stream, "{got}");
        assert_eq!(got["line"], text, "{got}");
        let got_ts = OffsetDateTime::parse(
            got["ts"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(got_ts, ts, "{got}");
    }
    assert_eq!(page["before"], Value::Null, "everything fits in one page");
}

#[tokio::test]
async fn a_resent_batch_stores_nothing_new_and_is_acknowledged_again() {
    let Placed {
        admin,
        mut agent,
        web,
        instances,
        ..
    } = placed(1).await;
    let id = instances[0];
    let t = base();
    let at = |s: u64| t + Duration::from_secs(s);
    let first: Vec<ShippedLine> = (1..=3)
        .map(|s| stdout(id, s, at(s), &format!("line {s}")))
        .collect();
    assert_eq!(agent.ship(first.clone()).await[&id], cursor(&first[2]));
    let stored = shipped(&history(&admin, &web, &[]).await);
    assert_eq!(texts(&stored), ["line 1", "line 2", "line 3"]);

    // The ack was lost: the agent sends the same batch again.
    let ack = agent.ship(first.clone()).await;
    assert_eq!(ack, BTreeMap::from([(id, cursor(&first[2]))]));
    assert_eq!(shipped(&history(&admin, &web, &[]).await), stored);

    // Part stored, part new: only the new lines are stored (a stored number keeps its text).
    let mixed = vec![
        stdout(id, 2, at(2), "line 2, but different"),
        stdout(id, 3, at(3), "line 3"),
        stdout(id, 4, at(4), "line 4"),
        stdout(id, 5, at(5), "line 5"),
    ];
    let ack = agent.ship(mixed.clone()).await;
    assert_eq!(ack, BTreeMap::from([(id, cursor(&mixed[3]))]));
    let after = shipped(&history(&admin, &web, &[]).await);
    assert_eq!(
        texts(&after),
        ["line 1", "line 2", "line 3", "line 4", "line 5"]
    );
    let expected: Vec<LogItem> = first
        .iter()
        .chain(&mixed[2..])
        .map(|l| item(l, 1))
        .collect();
    assert_eq!(after, expected);

    // An older line alone is acknowledged with where the server stands.
    let ack = agent.ship(vec![stdout(id, 1, at(1), "line 1")]).await;
    assert_eq!(ack[&id].seq, 5);
    assert_eq!(shipped(&history(&admin, &web, &[]).await), expected);
}

#[tokio::test]
async fn a_reconnected_agent_is_told_where_each_instances_log_stands() {
    let Placed {
        app,
        admin,
        mut agent,
        web,
        instances,
    } = placed(1).await;
    let id = instances[0];
    // Stamps to the nanosecond, as the engine's are (Postgres keeps microseconds): the cursor
    // must give the last one back exactly, or a restarted agent reads that line again.
    let t = base() + Duration::from_nanos(123_456_789);
    let batch: Vec<ShippedLine> = (1..=4)
        .map(|s| stdout(id, s, t + Duration::from_secs(s), &format!("line {s}")))
        .collect();
    agent.ship(batch.clone()).await;
    let credential = agent.credential.clone();
    drop(agent);

    let mut again = FakeAgent::connect(&app, Some(&credential), None)
        .await
        .expect("a registered node reconnects with its credential");
    again.send(&hello("node-a")).await;
    assert!(matches!(again.next().await, ServerMessage::Welcome { .. }));
    match again.next().await {
        ServerMessage::LogCursors { instances } => {
            assert_eq!(instances, BTreeMap::from([(id, cursor(&batch[3]))]));
        }
        other => panic!("expected the log cursors right after the welcome, got {other:?}"),
    }

    // Reading on from the cursor's line (the agent may repeat it): only what is new is stored.
    let next = vec![
        batch[3].clone(),
        stdout(id, 5, t + Duration::from_secs(5), "line 5"),
    ];
    assert_eq!(again.ship(next.clone()).await[&id], cursor(&next[1]));
    assert_eq!(
        texts(&shipped(&history(&admin, &web, &[]).await)),
        ["line 1", "line 2", "line 3", "line 4", "line 5"]
    );
}

#[tokio::test]
async fn an_agent_speaks_only_for_its_own_instances_and_never_for_the_platform() {
    let app = TestApp::spawn().await;
    let admin = app.signup("admin@example.com").await;
    let mut node_a = FakeAgent::joined(&app, &admin, "node-a").await;
    let mut node_b = FakeAgent::joined(&app, &admin, "node-b").await;
    let res = admin
        .post(
            &format!("/api/v1/teams/{}/apps", admin.team),
            json!({"name": "web", "replicas": 2}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let web = format!("/api/v1/teams/{}/apps/web", admin.team);
    deploy(&admin, &web, "gantry-hello:latest").await;
    // Replicas spread over nodes: one each.
    let (_, on_a) = node_a.desired_with_instances().await;
    let (_, on_b) = node_b.desired_with_instances().await;
    assert_eq!((on_a.len(), on_b.len()), (1, 1), "{on_a:?} {on_b:?}");
    let (mine, theirs) = (on_a[0].id, on_b[0].id);
    let stranger = Uuid::new_v4();
    let t = base();
    let at = |s: u64| t + Duration::from_secs(s);

    // Node A writes for node B's instance and for an instance that does not exist.
    let forged = vec![
        stdout(theirs, 1, at(1), "forged by node-a"),
        stdout(stranger, 1, at(1), "nobody's 1"),
        stdout(stranger, 2, at(2), "nobody's 2"),
    ];
    let ack = node_a.ship(forged.clone()).await;
    assert_eq!(
        ack,
        BTreeMap::from([(theirs, cursor(&forged[0])), (stranger, cursor(&forged[2]))]),
        "acknowledged, so a confused agent does not resend them forever"
    );
    // And an event, as if it were the platform.
    let fake_event = line(
        mine,
        1,
        at(3),
        LogStream::Event,
        "release v9 created by root: rolling out evil:latest",
    );
    let ack = node_a.ship(vec![fake_event.clone()]).await;
    assert_eq!(ack, BTreeMap::from([(mine, cursor(&fake_event))]));

    let page = history(&admin, &web, &[]).await;
    assert_eq!(shipped(&page), [], "{page:#?}");
    assert!(
        !page.items.iter().any(|i| i.line.contains("evil")),
        "{page:#?}"
    );
    for id in [theirs, stranger] {
        let cursors: i64 =
            sqlx::query_scalar("SELECT count(*) FROM log_cursors WHERE instance_id = $1")
                .bind(id)
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert_eq!(cursors, 0, "no cursor moved for {id}");
    }
    let nowhere: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM log_lines WHERE line LIKE 'forged%' OR line LIKE 'nobody%' OR line LIKE '%evil%'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(nowhere, 0, "stored under no app either");

    // The forgery moved nothing: node B's own first line is stored, and node A's next line.
    let genuine = stdout(theirs, 1, at(4), "from node-b");
    assert_eq!(
        node_b.ship(vec![genuine.clone()]).await[&theirs],
        cursor(&genuine)
    );
    let real = stdout(mine, 2, at(5), "from node-a");
    assert_eq!(node_a.ship(vec![real.clone()]).await[&mine], cursor(&real));
    let page = history(&admin, &web, &[]).await;
    assert_eq!(shipped(&page), [item(&genuine, 1), item(&real, 1)]);

    // Lines an agent had to drop: an event for its own instance, nothing for another node's or
    // an unknown one.
    node_a
        .send(&AgentMessage::Logs {
            lines: Vec::new(),
            dropped: BTreeMap::from([(mine, 7), (theirs, 11), (stranger, 13)]),
        })
        .await;
    assert_eq!(node_a.logs_ack().await, BTreeMap::new());
    let page = history_json(&admin, &web, &[("stream", "event"), ("q", "dropped")]).await;
    let dropped = page["items"].as_array().unwrap();
    assert_eq!(dropped.len(), 1, "{page:#}");
    assert_eq!(dropped[0]["instance"], mine.to_string().as_str());
    assert_eq!(dropped[0]["release"], 1);
    let text = dropped[0]["line"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("7 log lines of instance {mine} were dropped")),
        "{text}"
    );
}

#[tokio::test]
async fn a_nul_byte_in_a_line_is_stored_as_a_replacement_character() {
    let Placed {
        admin,
        mut agent,
        web,
        instances,
        ..
    } = placed(1).await;
    let id = instances[0];
    let t = base();
    let batch = vec![
        stdout(id, 1, t, "before\0after"),
        stdout(id, 2, t + Duration::from_secs(1), "\0"),
        stdout(id, 3, t + Duration::from_secs(2), "plain"),
    ];
    assert_eq!(agent.ship(batch).await[&id].seq, 3);
    let stored = shipped(&history(&admin, &web, &[]).await);
    assert_eq!(texts(&stored), ["before\u{FFFD}after", "\u{FFFD}", "plain"]);
    // And the next batch still goes through.
    let next = stdout(id, 4, t + Duration::from_secs(3), "after the NUL");
    assert_eq!(agent.ship(vec![next]).await[&id].seq, 4);
    let stored = shipped(&history(&admin, &web, &[("q", "\u{FFFD}")]).await);
    assert_eq!(texts(&stored), ["before\u{FFFD}after", "\u{FFFD}"]);
}

// ---- reading the history ----

#[tokio::test]
async fn history_pages_back_and_filters_by_text_instance_stream_and_time() {
    let Placed {
        admin,
        mut agent,
        web,
        instances,
        ..
    } = placed(2).await;
    let (one, two) = (instances[0], instances[1]);
    let t = base();
    // Instance one: 30 stdout lines, three to a second (so a page boundary falls between lines
    // of the same time), then 5 stderr lines; instance two: 3 stdout lines later on.
    let text = |i: u64| match i {
        5 => "progress 100% done".to_owned(),
        6 => "snake_case_name".to_owned(),
        8 => r"opened C:\temp\new".to_owned(),
        7 => "request 7 failed: ERROR timeout".to_owned(),
        14 => "request 14 failed: error timeout".to_owned(),
        21 => "request 21 failed: Error timeout".to_owned(),
        28 => "request 28 failed: eRrOr timeout".to_owned(),
        i => format!("request {i} ok"),
    };
    let out: Vec<ShippedLine> = (1..=30)
        .map(|i| stdout(one, i, t + Duration::from_secs(i / 3), &text(i)))
        .collect();
    let err: Vec<ShippedLine> = (31..=35)
        .map(|i| {
            line(
                one,
                i,
                t + Duration::from_secs(i - 11),
                LogStream::Stderr,
                &format!("warning {i}"),
            )
        })
        .collect();
    let other: Vec<ShippedLine> = (1..=3)
        .map(|i| {
            stdout(
                two,
                i,
                t + Duration::from_secs(100 + i),
                &format!("other {i}"),
            )
        })
        .collect();
    assert_eq!(agent.ship(out.clone()).await[&one].seq, 30);
    assert_eq!(agent.ship(err.clone()).await[&one].seq, 35);
    assert_eq!(agent.ship(other.clone()).await[&two].seq, 3);
    let all: Vec<LogItem> = out
        .iter()
        .chain(&err)
        .chain(&other)
        .map(|l| item(l, 1))
        .collect();

    // Paging: the newest 10 first, each page oldest first, back to the very first line.
    let only_out = [("instance", one.to_string()), ("stream", "stdout".into())];
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut params: Vec<(&str, &str)> =
            only_out.iter().map(|(k, v)| (*k, v.as_str())).collect();
        params.push(("limit", "10"));
        if let Some(b) = &before {
            params.push(("before", b));
        }
        let page = history(&admin, &web, &params).await;
        assert!(pages.len() < 3, "a fourth page: {page:#?}");
        before = page.before.clone();
        pages.push(page.items);
        if before.is_none() {
            break;
        }
    }
    let expected = |from: usize, to: usize| -> Vec<LogItem> {
        out[from - 1..to].iter().map(|l| item(l, 1)).collect()
    };
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0], expected(21, 30), "the newest 10, oldest first");
    assert_eq!(pages[1], expected(11, 20));
    assert_eq!(pages[2], expected(1, 10));
    let covered: Vec<LogItem> = pages.into_iter().rev().flatten().collect();
    assert_eq!(covered, expected(1, 30), "every line once, in order");

    // The whole log at once: everything shipped, in time order, events after it.
    let page = history(&admin, &web, &[("limit", "5000")]).await;
    assert_eq!(page.before, None);
    assert_eq!(shipped(&page), all);
    let mut sorted = page.items.clone();
    sorted.sort_by_key(|i| i.ts);
    assert_eq!(page.items, sorted, "oldest first");

    // Text search: whatever the case, from the beginning of a word; `%`, `_` and `\` are plain
    // characters.
    for q in [
        "error",
        "ERROR",
        "ErRoR",
        "err",
        "failed: err",
        "error timeout",
    ] {
        let page = history(&admin, &web, &[("q", q)]).await;
        assert_eq!(
            texts(&page.items),
            [
                "request 7 failed: ERROR timeout",
                "request 14 failed: error timeout",
                "request 21 failed: Error timeout",
                "request 28 failed: eRrOr timeout"
            ],
            "q={q}"
        );
    }
    for (q, only) in [
        ("%", "progress 100% done"),
        ("100%", "progress 100% done"),
        ("% done", "progress 100% done"),
        ("_", "snake_case_name"),
        ("case_n", "snake_case_name"),
        (r"\t", r"opened C:\temp\new"),
        (r"C:\TEMP\", r"opened C:\temp\new"),
    ] {
        let page = history(&admin, &web, &[("q", q)]).await;
        assert_eq!(texts(&page.items), [only], "q={q}");
    }
    // Not from inside a word, and never a line that holds the words apart.
    for q in [
        "no such text",
        "rror",
        "0%",
        "e_c",
        "error  timeout",
        "timeout failed",
    ] {
        let page = history(&admin, &web, &[("q", q)]).await;
        assert_eq!(page.items, [], "q={q}");
    }

    // Release.
    let page = history(&admin, &web, &[("release", "1"), ("limit", "5000")]).await;
    assert_eq!(shipped(&page), all);
    let page = history(&admin, &web, &[("release", "2")]).await;
    assert_eq!(page.items, []);

    // Instance and stream.
    let page = history(&admin, &web, &[("instance", &two.to_string())]).await;
    assert_eq!(page.items, all[35..].to_vec());
    let page = history(&admin, &web, &[("instance", &Uuid::new_v4().to_string())]).await;
    assert_eq!(page.items, []);
    let page = history(&admin, &web, &[("stream", "stderr")]).await;
    assert_eq!(page.items, all[30..35].to_vec());
    let page = history(
        &admin,
        &web,
        &[
            ("instance", &one.to_string()),
            ("stream", "stdout"),
            ("q", "request 2"),
        ],
    )
    .await;
    let wanted: Vec<LogItem> = out
        .iter()
        .filter(|l| l.line.contains("request 2"))
        .map(|l| item(l, 1))
        .collect();
    assert_eq!(wanted.len(), 11, "request 2 and 20 to 29");
    assert_eq!(page.items, wanted);

    // Time: `since` is inclusive, `until` exclusive.
    let (from, to) = (t + Duration::from_secs(3), t + Duration::from_secs(6));
    let page = history(&admin, &web, &[("since", &rfc(from)), ("until", &rfc(to))]).await;
    let window: Vec<LogItem> = all
        .iter()
        .filter(|i| i.ts >= from && i.ts < to)
        .cloned()
        .collect();
    assert_eq!(texts(&window).len(), 9, "lines 9 to 17");
    assert_eq!(page.items, window);
    let page = history(&admin, &web, &[("until", &rfc(t + Duration::from_secs(1)))]).await;
    assert_eq!(
        page.items,
        all[..2].to_vec(),
        "lines 1 and 2, before second 1"
    );
    let since = t + Duration::from_secs(102);
    let page = history(&admin, &web, &[("since", &rfc(since))]).await;
    assert_eq!(shipped(&page), all[36..].to_vec(), "the last two lines");
    assert!(page.items.iter().all(|i| i.ts >= since), "{page:#?}");
    // A time with an offset is the same instant.
    let offset =
        (t + Duration::from_secs(1)).to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
    let page = history(&admin, &web, &[("until", &rfc(offset))]).await;
    assert_eq!(page.items, all[..2].to_vec());
}

#[tokio::test]
async fn a_search_walks_many_stored_batches_newest_first_page_by_page() {
    let Placed {
        admin,
        mut agent,
        web,
        instances,
        ..
    } = placed(1).await;
    let id = instances[0];
    let t = base();
    // 60 batches (each its own search chunk), a second apart; every third holds a match among
    // hay. Then one batch of lines stamped long before the rest (a node whose clock lagged):
    // its chunk is the oldest by time though stored last.
    let mut seq = 0;
    let mut next = |at: OffsetDateTime, text: String| {
        seq += 1;
        stdout(id, seq, at, &text)
    };
    let mut matches: Vec<LogItem> = Vec::new();
    for b in 0..60u64 {
        let at = t + Duration::from_secs(b);
        let mut batch = vec![
            next(at, format!("hay {b} alpha")),
            next(at, format!("hay {b} beta")),
        ];
        if b % 3 == 0 {
            batch.push(next(at, format!("Needle {b} found")));
            matches.push(item(batch.last().unwrap(), 1));
        }
        agent.ship(batch).await;
    }
    let late = next(t - Duration::from_secs(30), "a late needle".into());
    matches.insert(0, item(&late, 1));
    agent.ship(vec![late]).await;
    assert_eq!(matches.len(), 21);

    // The newest 20 at once (three rounds of chunks), then the one left.
    let page = history(&admin, &web, &[("q", "needle"), ("limit", "20")]).await;
    assert_eq!(page.items, matches[1..].to_vec());
    let before = page.before.expect("one more page");
    let page = history(&admin, &web, &[("q", "needle"), ("before", &before)]).await;
    assert_eq!(page.items, matches[..1].to_vec());
    assert_eq!(page.before, None);

    // Three at a time, back to the first.
    let mut pages: Vec<Vec<LogItem>> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut params = vec![("q", "NEEDLE"), ("limit", "3")];
        if let Some(b) = &before {
            params.push(("before", b));
        }
        let page = history(&admin, &web, &params).await;
        assert!(pages.len() < 7, "an eighth page: {page:#?}");
        pages.push(page.items);
        before = page.before;
        if before.is_none() {
            break;
        }
    }
    let covered: Vec<LogItem> = pages.into_iter().rev().flatten().collect();
    assert_eq!(covered, matches, "every match once, in order");

    // A batch holds both words, no line holds the text: nothing. Words of one line: found.
    let page = history(&admin, &web, &[("q", "alpha beta")]).await;
    assert_eq!(page.items, []);
    let page = history(&admin, &web, &[("q", "hay 42 beta")]).await;
    assert_eq!(texts(&page.items), ["hay 42 beta"]);
    // Inside the time window only.
    let (from, to) = (t + Duration::from_secs(10), t + Duration::from_secs(20));
    let page = history(
        &admin,
        &web,
        &[("q", "needle"), ("since", &rfc(from)), ("until", &rfc(to))],
    )
    .await;
    assert_eq!(
        texts(&page.items),
        ["Needle 12 found", "Needle 15 found", "Needle 18 found"]
    );
}

#[tokio::test]
async fn a_deleted_apps_lines_and_cursors_go_with_it() {
    let Placed {
        app,
        admin,
        mut agent,
        web,
        instances,
    } = placed(1).await;
    let id = instances[0];
    let t = base();
    let lines: Vec<ShippedLine> = (1..=3)
        .map(|i| stdout(id, i, t + Duration::from_secs(i), "bye"))
        .collect();
    agent.ship(lines).await;
    let app_id: Uuid = sqlx::query_scalar("SELECT id FROM apps WHERE name = 'web'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let count = |sql: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(app_id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let lines_of_app = "SELECT count(*) FROM log_lines WHERE app_id = $1";
    let cursors_of_app = "SELECT count(*) FROM log_cursors WHERE app_id = $1";
    let chunks_of_app = "SELECT count(*) FROM log_chunks WHERE app_id = $1";
    assert!(count(lines_of_app).await >= 3, "stored with the app");
    assert_eq!(count(cursors_of_app).await, 1);
    assert!(count(chunks_of_app).await >= 1, "and searchable");

    let res = admin.delete(&web).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(count(lines_of_app).await, 0, "the lines went with the app");
    assert_eq!(count(cursors_of_app).await, 0, "and the cursors");
    assert_eq!(count(chunks_of_app).await, 0, "and the search chunks");
}

#[tokio::test]
async fn bad_history_queries_are_400s_that_say_what_is_wrong() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let logs = format!("/api/v1/teams/{}/apps/web/logs", alice.team);
    let long_q = "x".repeat(257);
    for (params, says) in [
        (vec![("since", "yesterday")], "RFC 3339"),
        (vec![("until", "2026-12-01")], "RFC 3339"),
        (vec![("limit", "0")], "between 1 and 5000"),
        (vec![("limit", "5001")], "between 1 and 5000"),
        (vec![("limit", "ten")], "limit"),
        (vec![("before", "garbage")], "before"),
        (vec![("before", "1.x")], "before"),
        (vec![("instance", "not-a-uuid")], "UUID"),
        (vec![("stream", "bogus")], "stdout, stderr, event"),
        (vec![("q", long_q.as_str())], "256"),
        (vec![("q", "a\0b")], "search text"),
        (vec![("colour", "red")], "unknown field"),
    ] {
        let path = format!("{logs}{}", query(&params));
        let message = bad_request(&alice, &path).await;
        assert!(message.contains(says), "{params:?}: {message}");
    }
    // The limits themselves are fine.
    let at_most = "x".repeat(256);
    for params in [
        vec![("limit", "1")],
        vec![("limit", "5000")],
        vec![("q", at_most.as_str())],
        vec![
            ("since", "2026-12-01T10:00:00Z"),
            ("until", "2026-12-01T11:00:00+02:00"),
        ],
    ] {
        history(
            &alice,
            &format!("/api/v1/teams/{}/apps/web", alice.team),
            &params,
        )
        .await;
    }

    // The live stream is a websocket: a plain GET is told so.
    let message = bad_request(&alice, &format!("{logs}/stream")).await;
    assert!(message.contains("websocket"), "{message}");
}

// ---- events ----

#[tokio::test]
async fn scaling_is_an_event_of_the_whole_app_in_its_log() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    alice.create_app(&alice.team, "web").await;
    let web = format!("/api/v1/teams/{}/apps/web", alice.team);
    let res = alice
        .post(&format!("{web}/scale"), json!({"replicas": 3}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    let page = history_json(&alice, &web, &[("stream", "event")]).await;
    let events = page["items"].as_array().unwrap();
    let scaled: Vec<&Value> = events
        .iter()
        .filter(|e| e["line"].as_str().unwrap().contains("scaled from"))
        .collect();
    assert_eq!(scaled.len(), 1, "{page:#}");
    let event = scaled[0];
    assert_eq!(
        event["line"],
        "scaled from 1 to 3 instances by alice@example.com"
    );
    assert_eq!(event["stream"], "event");
    assert_eq!(event["instance"], Value::Null, "an event of the whole app");
    assert_eq!(event["release"], Value::Null, "nothing deployed yet");
    assert!(event["ts"].is_string(), "{event}");
    // Only events with that filter.
    assert!(events.iter().all(|e| e["stream"] == "event"), "{page:#}");
    // And none of it shows with another stream.
    let page = history(&alice, &web, &[("stream", "stdout")]).await;
    assert_eq!(page.items, []);
}

// ---- who may read ----

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the live stream over a websocket with an API token; the refused upgrade's status, or
/// the socket and the frames up to and including `live`.
async fn open_stream(
    app: &TestApp,
    path: &str,
    token: &str,
) -> Result<(Socket, Vec<LogFrame>), u16> {
    let url = app.base.replacen("http://", "ws://", 1) + path;
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let mut ws = match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(res)) => return Err(res.status().as_u16()),
        Err(e) => panic!("the upgrade failed without an HTTP answer: {e}"),
    };
    let mut frames = Vec::new();
    loop {
        let frame = next_frame(&mut ws).await;
        let live = frame == LogFrame::Live;
        frames.push(frame);
        if live {
            return Ok((ws, frames));
        }
    }
}

/// The stream's next frame, for [`WAIT`] at most.
async fn next_frame(ws: &mut Socket) -> LogFrame {
    let deadline = Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no frame on the log stream in {WAIT:?}"));
        match frame {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("unreadable frame {text}: {e}"))
            }
            Some(Ok(_)) => continue,
            other => panic!("the log stream ended: {other:?}"),
        }
    }
}

fn lines_of(frames: &[LogFrame]) -> Vec<LogItem> {
    frames
        .iter()
        .flat_map(|f| match f {
            LogFrame::Lines { items } => items.clone(),
            _ => Vec::new(),
        })
        .collect()
}

#[tokio::test]
async fn a_viewer_gets_the_recent_lines_then_new_ones_live_once_each() {
    let Placed {
        app,
        admin,
        mut agent,
        web,
        instances,
    } = placed(1).await;
    let id = instances[0];
    let t = base();
    let old: Vec<ShippedLine> = (1..=3)
        .map(|s| stdout(id, s, t + Duration::from_secs(s), &format!("old {s}")))
        .collect();
    agent.ship(old.clone()).await;
    let token = admin.token(&admin.team, "viewer").await;

    // The last 2 stdout lines, then `live`.
    let path = format!(
        "{web}/logs/stream{}",
        query(&[("tail", "2"), ("stream", "stdout")])
    );
    let (mut ws, frames) = open_stream(&app, &path, &token).await.unwrap();
    assert_eq!(frames.last(), Some(&LogFrame::Live));
    assert_eq!(
        lines_of(&frames),
        [item(&old[1], 1), item(&old[2], 1)],
        "{frames:?}"
    );

    // New lines arrive as they are stored; a resend of stored ones shows nothing again, and
    // lines the filter leaves out are not sent.
    let new = vec![
        old[2].clone(),
        stdout(id, 4, t + Duration::from_secs(4), "new 4"),
        line(
            id,
            5,
            t + Duration::from_secs(5),
            LogStream::Stderr,
            "new 5 on stderr",
        ),
        stdout(id, 6, t + Duration::from_secs(6), "new 6"),
    ];
    assert_eq!(agent.ship(new.clone()).await[&id].seq, 6);
    // The next batch is the marker: once it shows, everything before it has been sent.
    let marker = stdout(id, 7, t + Duration::from_secs(7), "marker");
    assert_eq!(agent.ship(vec![marker.clone()]).await[&id].seq, 7);
    let mut live = Vec::new();
    while !live.contains(&item(&marker, 1)) {
        match next_frame(&mut ws).await {
            LogFrame::Lines { items } => live.extend(items),
            other => panic!("unexpected frame {other:?} after {live:?}"),
        }
    }
    assert_eq!(live, [item(&new[1], 1), item(&new[3], 1), item(&marker, 1)]);
}

#[tokio::test]
async fn another_teams_user_cannot_find_the_apps_logs() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let mallory = app.signup("mallory@example.com").await;
    alice.create_app(&alice.team, "web").await;
    alice.add_member(&alice.team, &bob, "viewer").await;
    let web = format!("/api/v1/teams/{}/apps/web", alice.team);
    let res = alice
        .post(&format!("{web}/scale"), json!({"replicas": 2}))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);

    for path in [format!("{web}/logs"), format!("{web}/logs/stream")] {
        let res = mallory.get(&path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
        assert!(
            !body.to_string().contains("scaled"),
            "{path}: nothing of the log leaks: {body}"
        );
    }
    let res = mallory
        .get(&format!("{web}/logs?stream=bogus&limit=0"))
        .await;
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "not even a 400 tells a stranger the app exists"
    );

    // A real websocket handshake too: a 404 for the stranger, the stream for a member.
    let stream = format!("{web}/logs/stream");
    let mallory_token = mallory.token(&mallory.team, "viewer").await;
    assert_eq!(
        open_stream(&app, &stream, &mallory_token).await.err(),
        Some(404)
    );
    let alice_token = alice.token(&alice.team, "viewer").await;
    let (_ws, frames) = open_stream(&app, &stream, &alice_token)
        .await
        .expect("a member opens the stream");
    let replayed = lines_of(&frames);
    assert!(
        replayed
            .iter()
            .any(|i| i.line.starts_with("scaled from 1 to 2")),
        "{frames:?}"
    );

    // Every role of the team reads the history.
    let page = history(&bob, &web, &[("stream", "event")]).await;
    assert!(
        page.items
            .iter()
            .any(|i| i.line.starts_with("scaled from 1 to 2")),
        "{page:#?}"
    );
}

// ---- retention ----

#[tokio::test]
async fn a_team_keeps_its_logs_for_less_than_the_platform_and_older_lines_go() {
    let Placed {
        app,
        admin,
        mut agent,
        web,
        instances,
    } = placed(1).await;
    let retention = format!("/api/v1/teams/{}/logs/retention", admin.team);
    let body: Value = admin.get(&retention).await.json().await.unwrap();
    assert_eq!(
        body,
        json!({"days": null, "platform_days": 7, "effective_days": 7})
    );
    for bad in [json!({"days": 0}), json!({"days": 8}), json!({"days": -1})] {
        let res = admin.put(&retention, bad.clone()).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let res = admin.put(&retention, json!({"days": 2})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["effective_days"], 2);

    // A line from five days ago (within the platform's week) and one from now: the hourly
    // maintenance deletes the old one for this team.
    let now = OffsetDateTime::now_utc();
    let old = stdout(instances[0], 1, now - time::Duration::days(5), "old");
    let new = stdout(instances[0], 2, now - time::Duration::seconds(5), "new");
    agent.ship(vec![old]).await;
    agent.ship(vec![new]).await;
    let old_chunks = "SELECT count(*) FROM log_chunks WHERE max_ts < now() - interval '2 days'";
    let count = || sqlx::query_scalar::<_, i64>(old_chunks).fetch_one(&app.db);
    assert_eq!(count().await.unwrap(), 1, "the old line's search chunk");
    let before = texts(&shipped(
        &history(&admin, &web, &[("stream", "stdout")]).await,
    ))
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    assert_eq!(before, ["old", "new"]);
    gantry_backend::logs::partitions::maintain(&app.db, 7)
        .await
        .unwrap();
    let after = history(&admin, &web, &[("stream", "stdout")]).await;
    assert_eq!(texts(&shipped(&after)), ["new"]);
    assert_eq!(count().await.unwrap(), 0, "its search chunk went too");

    // Back to the platform's retention.
    let res = admin.put(&retention, json!({"days": null})).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"days": null, "platform_days": 7, "effective_days": 7})
    );
}
