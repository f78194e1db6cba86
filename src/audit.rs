//! The audit writer: events are queued by the request that caused them and written in batches by
//! one background task, so a request does not pay for a separate insert (one statement per batch
//! instead of one per event). Reading events first waits until everything queued before is
//! written, so a user always sees their own events; shutdown drains the queue.
//!
//! Trade-off, stated: on a hard crash (not SIGTERM), events queued in the last few milliseconds
//! can be lost. State changes themselves are never queued.

use tokio::sync::{mpsc, oneshot};

use crate::store::{NewEvent, Store};

/// Events queued at most; beyond that, requests wait (back-pressure, bounded memory).
const QUEUE: usize = 8192;
/// Events written per statement at most.
const BATCH: usize = 512;

enum Message {
    Event(NewEvent),
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Message>,
}

impl AuditLog {
    /// Starts the writer task (needs a Tokio runtime).
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, rx));
        AuditLog { tx }
    }

    /// Queues one event.
    pub async fn record(&self, event: NewEvent) {
        if self.tx.send(Message::Event(event)).await.is_err() {
            tracing::error!("audit writer stopped; event dropped");
        }
    }

    /// Waits until every event queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_batches(store: Store, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(e) => batch.push(e),
                Message::Flush(done) => waiting.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let events = std::mem::take(&mut batch);
            if let Err(error) = store.add_events(events.clone()).await {
                tracing::warn!(%error, count = events.len(), "audit write failed; retrying once");
                if let Err(error) = store.add_events(events).await {
                    tracing::error!(%error, "audit events lost");
                }
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
