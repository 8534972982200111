//! Dashboard load performance in headless Chromium, for `bench/dashboard.sh`: first contentful
//! paint and time to interactive (the `gantry-hydrated` mark set after hydration) of the apps
//! page, from the browser's own Performance API. Not a test: it prints figures.
//!
//! Usage: `dashboard_bench [LOADS]` with `GANTRY_BIN` pointing at the binary to measure.
//! The cold figure is the login page's (a fresh browser cannot be signed in without loading a
//! page first); the apps page is then measured warm.

use gantry_e2e::browser::{Browser, Stack};
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let loads: usize = std::env::args().nth(1).map_or(Ok(10), |n| n.parse())?;
    anyhow::ensure!(loads >= 1, "at least one load");
    let stack = Stack::start().await?;
    let base = &stack.base;
    let b = Browser::start(1440, 900).await?;

    // An account with a few apps, so the page has a real list to show.
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&serde_json::json!({"email": "bench@example.com", "password": PASSWORD}))
        .send()
        .await?
        .error_for_status()?;
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    let info: Value = res.json().await?;
    let csrf = info["csrf_token"].as_str().unwrap_or_default().to_owned();
    for i in 0..10 {
        client
            .post(format!("{base}/api/v1/teams/bench/apps"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&serde_json::json!({"name": format!("app-{i}")}))
            .send()
            .await?
            .error_for_status()?;
    }
    // Cold: a fresh browser profile loads the login page, fetching every asset.
    let measure = || async {
        let m = b
            .client
            .execute(
                "const p = performance.getEntriesByName('first-contentful-paint')[0];
                 const h = performance.getEntriesByName('gantry-hydrated')[0];
                 return [p ? p.startTime : -1, h ? h.startTime : -1];",
                vec![],
            )
            .await?;
        anyhow::Ok((m[0].as_f64().unwrap_or(-1.0), m[1].as_f64().unwrap_or(-1.0)))
    };
    b.open(&format!("{base}/login")).await?;
    let (cold_fcp, cold_tti) = measure().await?;
    b.fill("#email", "bench@example.com").await?;
    b.fill("#password", PASSWORD).await?;
    b.click("form button[type=submit]").await?;
    b.wait_for_path(|p| p == "/teams/bench/apps").await?;

    // Warm: full loads of the apps page with the assets in the browser cache.
    let url = format!("{base}/teams/bench/apps");
    let mut fcp = Vec::new();
    let mut tti = Vec::new();
    for _ in 0..loads {
        b.open(&url).await?;
        b.wait_for_text("[data-test=apps-table]", "app-9").await?;
        let (f, t) = measure().await?;
        fcp.push(f);
        tti.push(t);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("headless Chromium over loopback:");
    println!("  login page, cold (fresh profile, every asset fetched): FCP {cold_fcp:.0} ms, interactive {cold_tti:.0} ms");
    println!(
        "  apps page (10 apps), warm, median of {loads} loads:    FCP {:.0} ms, interactive {:.0} ms",
        median(&mut fcp),
        median(&mut tti)
    );
    b.client.clone().close().await?;
    Ok(())
}
