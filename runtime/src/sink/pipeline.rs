//! An action's run: the loop that takes the rule's chunks into batches, resends what is cached
//! when it is due and lets a new build take over while idle; the pool of instance workers when
//! the action has several; and the end of the run (drain the cache, close, persist).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::batch::Batch;
use super::batching::Batcher;
use super::delivery::{Deliverer, Delivery, StopSignals};
use super::{Chunk, ConnectorSpec, StartedAction};
use crate::checkpoint::ActionCheckpoint;

#[cfg(test)]
mod tests;

/// Runs an action until the rule's channel closes: transform, batch, deliver (resending what
/// is cached), then drain the cache, close the sink instances and keep what is left on disk.
pub async fn run(started: StartedAction, mut rx: mpsc::Receiver<Chunk>) {
    let StartedAction {
        action,
        connectors,
        cache,
        sequencer,
        dead_letter,
        stop,
        abort,
        barriers,
        drain_timeout,
        exactly_once,
        pending,
        cuts,
        replay,
    } = started;
    let metrics = Arc::clone(&action.metrics);
    let mut delivery = Delivery::new(
        Arc::clone(&action.rule),
        Arc::clone(&action.name),
        Arc::clone(&metrics),
        &action.common,
        cache,
        dead_letter,
        StopSignals { stop, abort },
    )
    .with_sequencer(Arc::clone(&sequencer));
    delivery.drain_timeout = drain_timeout;
    let shared = Arc::new(delivery);
    let mut deliverers: Vec<Deliverer> = connectors
        .into_iter()
        .map(|connector| Deliverer {
            connector,
            shared: Arc::clone(&shared),
        })
        .collect();

    // With several instances, batches are handed out to whichever instance is free.
    let (pool_tx, workers) = if deliverers.len() > 1 {
        let (tx, rx) = mpsc::channel::<Batch>(deliverers.len());
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let workers: Vec<_> = deliverers
            .drain(..)
            .map(|d| tokio::spawn(worker(d, Arc::clone(&rx))))
            .collect();
        (Some(tx), workers)
    } else {
        (None, Vec::new())
    };

    let mut out = Batcher::new(
        Arc::clone(&action.name),
        &action.common,
        action.send_nil,
        Arc::clone(&metrics),
        deliverers.pop(),
        pool_tx,
        (
            Arc::clone(&sequencer),
            match &action.spec {
                ConnectorSpec::Wasm(spec) => spec.dynamic.clone(),
                _ => Vec::new(),
            },
            (
                match &action.spec {
                    ConnectorSpec::Wasm(spec) => spec.checks.clone(),
                    _ => Vec::new(),
                },
                Arc::clone(&shared),
            ),
        ),
    );
    out.resume(pending, cuts, replay);
    loop {
        let deadline = out.deadline();
        let linger_until = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let resend_at = match &out.single {
            Some(single) => single.shared.next_resend().await,
            None => None,
        };
        let resend_due = async {
            match resend_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let single = &mut out.single;
        let idle_swap = async {
            match single.as_mut() {
                Some(single) => single.connector.next_swap().await,
                None => std::future::pending().await,
            }
        };
        let full = out.ahead.is_full();
        let next = tokio::select! {
            // While as many batches as it keeps wait for the sink (or, under qos 2, for their
            // records), the action takes no more.
            chunk = rx.recv(), if !full => chunk,
            // The sink took a batch, or (under qos 2) a record is durable.
            event = out.ahead.next() => {
                out.ahead_event(event).await;
                continue;
            }
            () = linger_until => {
                out.linger_ended().await;
                continue;
            }
            () = resend_due => {
                if let Some(single) = out.single.as_mut() {
                    single.resend_one().await;
                }
                continue;
            }
            // Idle, a new build that is ready takes over now (otherwise at the next batch),
            // outside the race: rows that arrive during the switch wait for it.
            () = idle_swap => {
                if let Some(single) = out.single.as_mut() {
                    single.connector.swap_to_ready().await;
                }
                continue;
            }
        };
        let Some(mut chunk) = next else { break };
        let mut barrier = chunk.is_empty();
        while !barrier {
            out.add(&chunk).await;
            if out.is_full() {
                break;
            }
            // No batch size: take whatever else is already waiting, then deliver it all.
            match rx.try_recv() {
                Ok(more) => {
                    barrier = more.is_empty();
                    chunk = more;
                }
                Err(_) => break,
            }
        }
        out.drained().await;
        if barrier {
            // A checkpoint: what came before the barrier is settled, and durable if cached.
            // Under qos 2 a batch being filled for a count stays (the checkpoint holds its
            // payloads), so that batches are cut where a replay cuts them.
            out.at_barrier().await;
            if let Some(state) = &shared.cache {
                let mut state = state.lock().await;
                if let Err(e) = state.cache.persist() {
                    tracing::error!(action = %action.name, "cached messages could not be written to disk: {e}");
                    metrics.exceptions.record(e.to_string());
                }
            }
            if let Some((index, acks)) = &barriers {
                let state = ActionCheckpoint {
                    action: action.name.to_string(),
                    exactly_once,
                    next_sequence: sequencer.next(),
                    delivered: sequencer.delivered(),
                    pending: out.pending(),
                };
                let _ = acks.send((*index, state));
            }
        }
    }
    out.finish().await;
    let mut finished: Vec<Deliverer> = out.single.take().into_iter().collect();
    drop(out.pool.take());
    for worker in workers {
        match worker.await {
            Ok(d) => finished.push(d),
            Err(e) => tracing::error!(action = %action.name, "a sink worker panicked: {e}"),
        }
    }
    if let Some(first) = finished.first_mut() {
        first.drain_cache().await;
    }
    for d in &mut finished {
        d.close().await;
    }
    if let Some(dead) = &shared.dead_letter {
        dead.lock().await.close().await;
    }
    if let Some(state) = &shared.cache {
        let mut state = state.lock().await;
        let cache = &mut state.cache;
        if cache.config().clean_at_stop {
            match cache.clear() {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(action = %action.name, messages = n, "cleanCacheAtStop: cached messages dropped");
                    metrics.failed.add(n);
                    metrics.exceptions.record(format!(
                        "{n} cached messages dropped at stop (cleanCacheAtStop)"
                    ));
                }
                Err(e) => tracing::error!(action = %action.name, "{e}"),
            }
        } else if let Err(e) = cache.persist() {
            tracing::error!(action = %action.name, "cached messages could not be written to disk: {e}");
            metrics.exceptions.record(e.to_string());
        }
        if let Err(e) = sequencer.save() {
            tracing::error!(action = %action.name, "the batch numbering could not be saved: {e}");
            metrics.exceptions.record(e);
        }
        metrics.set_cached(cache.len());
        if !cache.is_empty() {
            tracing::warn!(
                action = %action.name,
                messages = cache.len(),
                "messages stay in the disk cache; the next run of the rule resends them first"
            );
        }
    }
}

/// One instance worker of an action with several: takes the next batch whoever queued it,
/// resends what is cached when it is due, and lets a new build take over while idle. Gives its
/// deliverer back when the batches end.
async fn worker(mut d: Deliverer, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Batch>>>) -> Deliverer {
    loop {
        let resend_at = d.shared.next_resend().await;
        tokio::select! {
            next = async { rx.lock().await.recv().await } => {
                let Some(batch) = next else { break };
                d.deliver(&batch).await;
            }
            () = async {
                match resend_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                d.resend_one().await;
            }
            // Idle, a new build that is ready takes over now (outside the race).
            () = d.connector.next_swap() => d.connector.swap_to_ready().await,
        }
    }
    d
}
