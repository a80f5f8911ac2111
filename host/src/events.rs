//! Delivery of a site's events to its event handlers (`[[site.NAME.events]]`).
//!
//! The protocol never waits for a handler: [`EventBus::emit`] puts the event
//! in each handler's bounded queue and returns. One task per handler takes
//! events from its queue in order and hands them over one at a time; a handler
//! that fails, traps or hangs (bounded by its plugin's call deadline) loses that
//! event, never an FTP reply. When a queue is full the event is dropped for
//! that handler; drops and failures are counted and logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::backend::{Event, EventHandler};

/// Default queue length per handler (config `queue`).
pub const DEFAULT_QUEUE: usize = 1024;

/// A site's event handlers. Cheap to clone; the delivery tasks end when the
/// last clone is dropped (the site was replaced and its sessions ended).
#[derive(Clone, Default)]
pub struct EventBus {
    queues: Arc<Vec<Queue>>,
}

struct Queue {
    /// The handler's name for logs (its plugin).
    name: String,
    tx: mpsc::Sender<Event>,
    counters: Arc<EventCounters>,
}

/// What happened to one handler's events, for logs and tests.
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Handed over and handled.
    pub delivered: AtomicU64,
    /// Handed over; the handler failed, trapped or ran out of time.
    pub failed: AtomicU64,
    /// Never handed over: the queue was full.
    pub dropped: AtomicU64,
}

/// One handler to start: its name, the handler, and its queue length.
pub struct HandlerSpec {
    pub name: String,
    pub handler: Arc<dyn EventHandler>,
    pub queue: usize,
}

impl EventBus {
    /// Starts one delivery task per handler. Needs a tokio runtime.
    pub fn start(site: &str, handlers: Vec<HandlerSpec>) -> Self {
        let queues = handlers
            .into_iter()
            .map(|spec| {
                let (tx, rx) = mpsc::channel(spec.queue.max(1));
                let counters = Arc::new(EventCounters::default());
                tokio::spawn(deliver(
                    site.to_string(),
                    spec.name.clone(),
                    spec.handler,
                    rx,
                    counters.clone(),
                ));
                Queue {
                    name: spec.name,
                    tx,
                    counters,
                }
            })
            .collect();
        EventBus {
            queues: Arc::new(queues),
        }
    }

    /// Whether any handler listens: callers skip building events otherwise.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Queues an event for every handler, building it only if one listens.
    pub fn emit(&self, event: impl FnOnce() -> Event) {
        let Some((last, others)) = self.queues.split_last() else {
            return;
        };
        let event = event();
        for queue in others {
            queue.offer(event.clone());
        }
        last.offer(event);
    }

    /// Each handler's name and counters, in configuration order.
    pub fn counters(&self) -> Vec<(String, Arc<EventCounters>)> {
        self.queues
            .iter()
            .map(|q| (q.name.clone(), q.counters.clone()))
            .collect()
    }
}

impl Queue {
    fn offer(&self, event: Event) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.tx.try_send(event) {
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // The first drop, then one line per thousand: a stuck handler must
            // not flood the log.
            if dropped == 1 || dropped.is_multiple_of(1000) {
                tracing::warn!(
                    site = %event.site, handler = %self.name, dropped,
                    "event queue full: {} event dropped", event.kind.name()
                );
            }
        }
    }
}

async fn deliver(
    site: String,
    name: String,
    handler: Arc<dyn EventHandler>,
    mut rx: mpsc::Receiver<Event>,
    counters: Arc<EventCounters>,
) {
    while let Some(event) = rx.recv().await {
        match handler.handle(&event).await {
            Ok(()) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(why) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%site, handler = %name, event = event.kind.name(),
                    "event not delivered: {why}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::EventKind;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};

    fn event(path: &str) -> Event {
        Event {
            kind: EventKind::Delete,
            site: "s".into(),
            user: "u".into(),
            client_ip: "127.0.0.1".parse().unwrap(),
            path: Some(path.into()),
            target: None,
            size: None,
            duration: None,
            ok: true,
            time: SystemTime::now(),
        }
    }

    /// Records paths; blocks until released when `gate` is set.
    struct Recorder {
        seen: Mutex<Vec<String>>,
        gate: tokio::sync::Semaphore,
    }

    #[async_trait]
    impl EventHandler for Recorder {
        async fn handle(&self, event: &Event) -> Result<(), String> {
            let _permit = self.gate.acquire().await.map_err(|e| e.to_string())?;
            let path = event.path.clone().unwrap_or_default();
            self.seen.lock().unwrap().push(path.clone());
            if path == "/fail" {
                return Err("asked to fail".into());
            }
            Ok(())
        }
    }

    async fn settle(counters: &EventCounters, handled: u64) {
        for _ in 0..500 {
            let done = counters.delivered.load(Ordering::Relaxed)
                + counters.failed.load(Ordering::Relaxed);
            if done >= handled {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("handler never caught up");
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_a_full_queue_drops_without_waiting() {
        let recorder = Arc::new(Recorder {
            seen: Mutex::default(),
            gate: tokio::sync::Semaphore::new(0),
        });
        let bus = EventBus::start(
            "s",
            vec![HandlerSpec {
                name: "r".into(),
                handler: recorder.clone(),
                queue: 2,
            }],
        );
        // The handler is blocked: one event is taken, two wait, the rest drop.
        for i in 0..6 {
            bus.emit(|| event(&format!("/{i}")));
            tokio::task::yield_now().await;
        }
        let (_, counters) = bus.counters().remove(0);
        let dropped = counters.dropped.load(Ordering::Relaxed);
        assert!(dropped >= 3, "{dropped} dropped");
        recorder.gate.add_permits(100);
        settle(&counters, 6 - dropped).await;
        bus.emit(|| event("/fail"));
        settle(&counters, 6 - dropped + 1).await;
        let seen = recorder.seen.lock().unwrap().clone();
        assert_eq!(seen.first().map(String::as_str), Some("/0"));
        assert_eq!(seen.last().map(String::as_str), Some("/fail"));
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(
            seen[..seen.len() - 1],
            sorted[..sorted.len() - 1],
            "in order"
        );
        assert_eq!(counters.failed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn no_handlers_builds_no_event() {
        let bus = EventBus::default();
        assert!(bus.is_empty());
        bus.emit(|| panic!("must not be built"));
    }
}
