//! One task per invoker on each node: it claims due invocations (as many as the invoker's
//! concurrency leaves free), calls the service, and hands each answer to the engine. At most
//! one call per key is in flight: the store hands out one invocation per key, never one whose
//! key is running (a unique index fences nodes racing for a key).

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

/// Runs `invoker`'s invocations until `stop`; calls in flight then get the invoker's timeout
/// to finish (an unfinished one is resumed at the next start).
pub async fn run(
    engine: Arc<Engine>,
    invoker: InvokerPolicy,
    client: DeliveryClient,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let grace = invoker.timeout + Duration::from_secs(1);
    let wake = engine.invoker_wake(&invoker.name);
    let invoker = Arc::new(invoker);
    let mut calls: JoinSet<()> = JoinSet::new();
    let mut in_flight = 0usize;
    while !stop.is_cancelled() {
        let free = invoker.concurrency.saturating_sub(in_flight);
        let mut claimed_full = false;
        if free > 0 {
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            match engine.claim_invocations(&invoker.name, limit).await {
                Ok(batch) => {
                    claimed_full = batch.len() == free;
                    for record in batch {
                        in_flight += 1;
                        let (engine, invoker) = (engine.clone(), invoker.clone());
                        let (client, metrics) = (client.clone(), metrics.clone());
                        calls.spawn(async move {
                            call_once(&engine, &invoker, &client, &metrics, record).await;
                        });
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
            Some(_) = calls.join_next(), if !calls.is_empty() => {
                in_flight = in_flight.saturating_sub(1);
                // Answers recorded in one commit finish together: claim once for all of them
                // (each claim is a write of its own).
                while calls.try_join_next().is_some() {
                    in_flight = in_flight.saturating_sub(1);
                }
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
    // A store that fails for a moment must not leave the invocation running (and its key
    // blocked) until the next start: the answer is recorded again, with back-off.
    let mut recorded = engine
        .answered(record.clone(), answer.clone(), &InvokeMessages)
        .await;
    for delay in [1, 2, 4, 8, 16] {
        if recorded.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(delay)).await;
        recorded = engine
            .answered(record.clone(), answer.clone(), &InvokeMessages)
            .await;
    }
    match recorded {
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
            // Left running: it is called again when this node restarts or its lease lapses.
            tracing::error!(%id, error = %err, "recording an invocation's answer failed; it is called again at the next start");
        }
    }
}
