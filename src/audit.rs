//! The audit writer: events are queued by the request that caused them and written in batches, so
//! a request does not wait for a separate insert. On SQLite they go into the store's
//! [`EventBuffer`], which the writer thread empties into every write batch it commits (under load
//! that costs no wake-up and no commit of its own); when no batch comes within [`LINGER`], a
//! small task asks for one. On PostgreSQL one background task gathers them and inserts each batch
//! in one transaction. Reading events first waits until everything queued before is written, so
//! a user always sees their own events; shutdown drains the queue.
//!
//! Trade-off, stated: on a hard crash (not SIGTERM), events queued in the last few milliseconds
//! can be lost. State changes themselves are never queued.

use tokio::sync::{mpsc, oneshot};

use std::time::Duration;

use crate::store::{EventBuffer, NewEvent, Store};

/// Events queued at most; beyond that, requests wait (back-pressure, bounded memory).
const QUEUE: usize = 8192;
/// Events written per statement at most.
const BATCH: usize = 512;
/// How long a buffered event may wait for a write batch that happens anyway (SQLite).
pub const LINGER: Duration = Duration::from_millis(5);

enum Message {
    Event(NewEvent),
    Flush(oneshot::Sender<()>),
}

/// Handle to the audit writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    sink: Sink,
}

#[derive(Clone)]
enum Sink {
    /// The SQLite writer's buffer, and the task that asks for a batch when none comes.
    Buffer { store: Store, buffer: EventBuffer, nudge: mpsc::Sender<()> },
    /// A batching task of ours (PostgreSQL).
    Task(mpsc::Sender<Message>),
}

impl AuditLog {
    /// Starts the writer task (needs a Tokio runtime).
    pub fn start(store: Store) -> Self {
        if let Some(buffer) = store.event_buffer().cloned() {
            // Capacity 1: one pending nudge is enough.
            let (nudge, nudged) = mpsc::channel(1);
            tokio::spawn(write_lingering(store.clone(), buffer.clone(), nudged));
            return AuditLog { sink: Sink::Buffer { store, buffer, nudge } };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, rx));
        AuditLog { sink: Sink::Task(tx) }
    }

    /// Queues one event.
    pub async fn record(&self, event: NewEvent) {
        match &self.sink {
            Sink::Buffer { buffer, nudge, .. } => {
                if buffer.push(event) {
                    // Full means a nudge is already pending.
                    let _ = nudge.try_send(());
                }
            }
            Sink::Task(tx) => {
                if tx.send(Message::Event(event)).await.is_err() {
                    tracing::error!("audit writer stopped; event dropped");
                }
            }
        }
    }

    /// Waits until every event queued before this call is written.
    pub async fn flush(&self) {
        match &self.sink {
            Sink::Buffer { store, .. } => {
                if let Err(error) = store.settle().await {
                    tracing::error!(%error, "audit flush failed");
                }
            }
            Sink::Task(tx) => {
                let (done, wait) = oneshot::channel();
                if tx.send(Message::Flush(done)).await.is_ok() {
                    let _ = wait.await;
                }
            }
        }
    }
}

/// SQLite: after an event lands in an empty buffer, waits [`LINGER`] for a write batch to take
/// it, and asks for an empty batch if none did. Ends when the last [`AuditLog`] is dropped.
async fn write_lingering(store: Store, buffer: EventBuffer, mut nudged: mpsc::Receiver<()>) {
    while nudged.recv().await.is_some() {
        tokio::time::sleep(LINGER).await;
        if !buffer.is_empty()
            && let Err(error) = store.settle().await
        {
            tracing::error!(%error, "audit events could not be written");
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
