//! Scenario 8: XML built to make a parser work for minutes, posted to the publish API, beside
//! a benign event of the same size posted in the same run. Each bomb is sent at several sizes:
//! a linear refusal takes time proportional to the size (the same microseconds per KiB at
//! every size), as the benign event does. Before the pre-scan, 80,000 attributes took 54 s.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};

use super::Context;
use super::load;
use super::process::{Herald, Launch};
use super::report::{Row, duration};

/// One element with `n` attributes.
fn many_attributes(n: usize) -> String {
    let attributes: String = (0..n).map(|i| format!(" a{i}=\"\"")).collect();
    format!("<o:e xmlns:o=\"urn:o\"{attributes}/>")
}

/// `root` namespace declarations on the root and `children` children declaring one each.
fn namespaces(root: usize, children: usize) -> String {
    let declarations: String = (0..root)
        .map(|i| format!(" xmlns:r{i}=\"urn:r{i}\""))
        .collect();
    let children: String = (0..children)
        .map(|i| format!("<c{i} xmlns:c=\"urn:c{i}\"/>"))
        .collect();
    format!("<o:e xmlns:o=\"urn:o\"{declarations}>{children}</o:e>")
}

/// A benign event of `bytes` bytes: one element holding text.
fn benign(bytes: usize) -> String {
    let text = "x".repeat(bytes.saturating_sub(40));
    format!("<o:e xmlns:o=\"urn:o\">{text}</o:e>")
}

/// Posts `body` to the publish API `times` times; the fastest time and the status.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    times: usize,
) -> anyhow::Result<(Duration, u16)> {
    let mut best = Duration::MAX;
    let mut status = 0;
    for _ in 0..times {
        let started = Instant::now();
        let response = client
            .post(url)
            .header("Content-Type", "application/xml")
            .header("Herald-Action", "urn:bench:hostile")
            .body(body.to_owned())
            .send()
            .await
            .context("posting to herald")?;
        status = response.status().as_u16();
        response.bytes().await.context("reading herald's answer")?;
        best = best.min(started.elapsed());
    }
    Ok((best, status))
}

/// Builds a bomb at a scale.
type Build = fn(usize) -> String;

/// Microseconds per KiB.
fn per_kib(time: Duration, bytes: usize) -> f64 {
    time.as_secs_f64() * 1e6 / (bytes as f64 / 1024.0)
}

pub async fn hostile(context: &Context) -> anyhow::Result<Vec<Row>> {
    let dir = context.scratch("hostile")?;
    let herald = Herald::start(&context.herald, dir.path(), &Launch::default()).await?;
    let client = load::client()?;
    let url = herald.url("/api/v1/sources/default/events");
    let times = if context.sizes.hostile_full { 5 } else { 2 };
    let scales: &[usize] = if context.sizes.hostile_full {
        &[10_000, 20_000, 40_000, 80_000]
    } else {
        &[10_000, 80_000]
    };
    let mut rows = Vec::new();
    let bombs: [(&str, Build); 2] = [
        ("attributes on one element", many_attributes),
        ("namespace declarations on the root", |n| {
            namespaces(n / 100, n / 10)
        }),
    ];
    for (what, build) in bombs {
        for &n in scales {
            let bomb = build(n);
            let (refused, status) = post(&client, &url, &bomb, times).await?;
            ensure!(
                status == 400,
                "{n} {what}: herald answered {status}, not 400"
            );
            let (accepted, status) = post(&client, &url, &benign(bomb.len()), times).await?;
            ensure!(
                status == 202,
                "a benign event: herald answered {status}, not 202"
            );
            let kib = bomb.len() / 1024;
            let size = if what.starts_with("namespace") {
                format!(
                    "{} {what}, {} children declaring one ({kib} KiB)",
                    n / 100,
                    n / 10
                )
            } else {
                format!("{n} {what} ({kib} KiB)")
            };
            rows.push(
                Row::new(
                    "8 hostile XML",
                    size,
                    format!(
                        "refused in {} ({:.1} µs/KiB); a benign event of the same size accepted in {} ({:.1} µs/KiB)",
                        duration(refused),
                        per_kib(refused, bomb.len()),
                        duration(accepted),
                        per_kib(accepted, bomb.len()),
                    ),
                )
                .target("linear: µs/KiB flat across sizes"),
            );
            eprintln!(
                "   {}: {}",
                rows.last().map_or("", |r| r.size.as_str()),
                rows.last().map_or("", |r| r.result.as_str())
            );
        }
    }
    // The costliest document the limits let through: 256 attributes on every element.
    let element: String = (0..256).map(|i| format!(" a{i}=\"\"")).collect();
    let widest = format!(
        "<o:e xmlns:o=\"urn:o\">{}</o:e>",
        format!("<o:w{element}/>").repeat(380)
    );
    let (accepted, status) = post(&client, &url, &widest, times).await?;
    ensure!(
        status == 202,
        "the widest accepted event: herald answered {status}"
    );
    let (baseline, _) = post(&client, &url, &benign(widest.len()), times).await?;
    rows.push(Row::new(
        "8 hostile XML",
        format!(
            "the widest accepted: 380 elements of 256 attributes ({} KiB)",
            widest.len() / 1024
        ),
        format!(
            "accepted in {} ({:.1} µs/KiB); a benign event of the same size in {} ({:.1} µs/KiB)",
            duration(accepted),
            per_kib(accepted, widest.len()),
            duration(baseline),
            per_kib(baseline, widest.len()),
        ),
    ));
    herald.terminate(Duration::from_secs(20)).await?;
    Ok(rows)
}
