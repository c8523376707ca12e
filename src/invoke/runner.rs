//! One task per invoker on each node: it claims due invocations (as many as the invoker's
//! concurrency leaves free), calls the service, and hands each answer to the engine. At most
//! one call per key is in flight: the store never hands out a key that is running, and keys
//! claimed together run one after the other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::message::{InvokeMessages, classify, request};
use crate::delivery::client::DeliveryClient;
use crate::domain::invocation::InvocationRecord;
use crate::engine::{Engine, Finished, InvokerPolicy};
use crate::metrics::{InvocationLabels, Metrics};

/// How often a runner looks for due invocations without being woken (retries coming due,
/// raises on other nodes, invocations of nodes that died).
const POLL: Duration = Duration::from_millis(250);

/// Runs `invoker`'s invocations until `stop`; calls in flight then get `grace` to finish (an
/// unfinished one is resumed at the next start).
pub async fn run(
    engine: Arc<Engine>,
    invoker: InvokerPolicy,
    client: DeliveryClient,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    grace: Duration,
) {
    let wake = engine.invoker_wake(&invoker.name);
    let invoker = Arc::new(invoker);
    let mut calls: JoinSet<usize> = JoinSet::new();
    let mut in_flight = 0usize;
    while !stop.is_cancelled() {
        let free = invoker.concurrency.saturating_sub(in_flight);
        let mut claimed_full = false;
        if free > 0 {
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            match engine.claim_invocations(&invoker.name, limit).await {
                Ok(batch) => {
                    claimed_full = batch.len() == free;
                    for chain in by_key(batch) {
                        in_flight += chain.len();
                        calls.spawn(run_chain(
                            engine.clone(),
                            invoker.clone(),
                            client.clone(),
                            metrics.clone(),
                            chain,
                        ));
                    }
                }
                Err(err) => {
                    tracing::warn!(invoker = %invoker.name, error = %err, "claiming invocations failed; retrying");
                }
            }
        }
        if claimed_full && in_flight < invoker.concurrency {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            Some(done) = calls.join_next(), if !calls.is_empty() => {
                in_flight = in_flight.saturating_sub(done.unwrap_or(0));
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let finishing = async { while calls.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, finishing).await.is_err() {
        tracing::warn!(invoker = %invoker.name, "calls still in flight at shutdown; they are resumed at the next start");
        calls.abort_all();
    }
}

/// Invocations grouped by key, each group in claim order.
fn by_key(batch: Vec<InvocationRecord>) -> Vec<Vec<InvocationRecord>> {
    let mut groups: BTreeMap<String, Vec<InvocationRecord>> = BTreeMap::new();
    for record in batch {
        groups
            .entry(record.invocation.key.clone())
            .or_default()
            .push(record);
    }
    groups.into_values().collect()
}

async fn run_chain(
    engine: Arc<Engine>,
    invoker: Arc<InvokerPolicy>,
    client: DeliveryClient,
    metrics: Arc<Metrics>,
    chain: Vec<InvocationRecord>,
) -> usize {
    let count = chain.len();
    for record in chain {
        call_once(&engine, &invoker, &client, &metrics, record).await;
    }
    count
}

async fn call_once(
    engine: &Engine,
    invoker: &InvokerPolicy,
    client: &DeliveryClient,
    metrics: &Metrics,
    record: InvocationRecord,
) {
    let id = record.invocation.id;
    let count = |outcome: &'static str| {
        metrics
            .invocations
            .get_or_create(&InvocationLabels {
                invoker: invoker.name.to_string(),
                outcome,
            })
            .inc();
    };
    let message = request(invoker, &record.invocation);
    let answer = classify(
        client
            .call(
                &message,
                invoker.timeout,
                invoker.max_payload_bytes.max(1 << 20),
            )
            .await,
    );
    let raised_at = record.invocation.raised_at;
    match engine.answered(record, answer, &InvokeMessages).await {
        Ok(finished) => {
            let outcome = match finished {
                Finished::Callback => "callback",
                Finished::Kept => "kept",
                Finished::Failed => "failed",
                Finished::Retried => "retried",
                Finished::NotOwned => "not_owned",
            };
            count(outcome);
            if matches!(
                finished,
                Finished::Callback | Finished::Kept | Finished::Failed
            ) {
                let latency = engine.now().duration_since(raised_at);
                metrics
                    .invocation_latency
                    .observe(latency.as_secs_f64().max(0.0));
            }
            if finished == Finished::Failed {
                tracing::warn!(%id, invoker = %invoker.name, "invocation failed; it is on the error agent");
            }
        }
        Err(err) => {
            // Left running: it is resumed when this node restarts or its lease lapses.
            tracing::error!(%id, error = %err, "recording an invocation's answer failed");
        }
    }
}
