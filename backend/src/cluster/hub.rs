//! The agents connected to this server: one outbound queue per node, and the desired set last
//! sent on it, so the reconciler sends a node its set only when it changed.

use std::collections::HashMap;
use std::sync::Mutex;

use gantry_common::agent::{DesiredInstance, ServerMessage};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Messages waiting for a slow agent; a full queue drops the connection (the agent reconnects and
/// gets the whole desired set again, which is all it needs).
pub const QUEUE: usize = 16;

struct Link {
    session: u64,
    tx: mpsc::Sender<ServerMessage>,
    last_sent: Option<Vec<DesiredInstance>>,
}

#[derive(Default)]
pub struct Hub {
    links: Mutex<HashMap<Uuid, Link>>,
    next_session: Mutex<u64>,
}

impl Hub {
    /// Registers a node's connection and returns its session number. A newer connection of the
    /// same node replaces the older one (whose queue closes, ending its socket task).
    pub fn attach(&self, node: Uuid, tx: mpsc::Sender<ServerMessage>) -> u64 {
        let session = {
            let mut next = lock(&self.next_session);
            *next += 1;
            *next
        };
        let old = lock(&self.links).insert(
            node,
            Link {
                session,
                tx,
                last_sent: None,
            },
        );
        if old.is_some() {
            tracing::warn!(node.id = %node, "node {node} connected again; dropping its older connection");
        }
        session
    }

    /// Messages waiting to be sent to agents, all nodes together.
    pub fn queued(&self) -> usize {
        lock(&self.links)
            .values()
            .map(|l| l.tx.max_capacity() - l.tx.capacity())
            .sum()
    }

    /// Forgets a connection, unless a newer one of the same node replaced it already.
    pub fn detach(&self, node: Uuid, session: u64) {
        let mut links = lock(&self.links);
        if links.get(&node).is_some_and(|l| l.session == session) {
            links.remove(&node);
        }
    }

    /// Tells a node's agent why it is cut off, and drops its connection.
    pub fn close(&self, node: Uuid, reason: &str) {
        if let Some(link) = lock(&self.links).remove(&node) {
            let _ = link.tx.try_send(ServerMessage::Refused {
                reason: reason.to_owned(),
            });
        }
    }

    pub fn is_connected(&self, node: Uuid) -> bool {
        lock(&self.links).contains_key(&node)
    }

    pub fn connected(&self) -> Vec<Uuid> {
        lock(&self.links).keys().copied().collect()
    }

    /// Whether `desired` differs from what this node's connection was last sent.
    pub fn differs(&self, node: Uuid, desired: &[DesiredInstance]) -> bool {
        lock(&self.links)
            .get(&node)
            .is_some_and(|l| l.last_sent.as_deref() != Some(desired))
    }

    /// Queues a message for the node's agent; false when it is not connected or its queue is
    /// full (then the caller gives up: the message is not essential to the connection).
    pub fn send(&self, node: Uuid, message: ServerMessage) -> bool {
        lock(&self.links)
            .get(&node)
            .is_some_and(|link| link.tx.try_send(message).is_ok())
    }

    /// Queues the desired set for the node and remembers it as sent. A full or closed queue
    /// drops the connection.
    pub fn send_desired(&self, node: Uuid, generation: u64, desired: Vec<DesiredInstance>) {
        let mut links = lock(&self.links);
        let Some(link) = links.get_mut(&node) else {
            return;
        };
        let message = ServerMessage::Desired {
            generation,
            instances: desired.clone(),
        };
        if link.tx.try_send(message).is_ok() {
            link.last_sent = Some(desired);
        } else {
            tracing::warn!(node.id = %node, "node {node} is not reading its messages; dropping its connection");
            links.remove(&node);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_sent_once_and_again_after_a_reconnect() {
        let hub = Hub::default();
        let node = Uuid::from_u128(1);
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let first = hub.attach(node, tx);
        assert!(hub.differs(node, &[]));
        hub.send_desired(node, 1, vec![]);
        assert!(!hub.differs(node, &[]));
        assert!(matches!(
            rx.try_recv(),
            Ok(ServerMessage::Desired { generation: 1, .. })
        ));

        let (tx2, _rx2) = mpsc::channel(QUEUE);
        let second = hub.attach(node, tx2);
        assert!(
            hub.differs(node, &[]),
            "a new connection needs the set again"
        );
        // The old connection's cleanup must not remove the new one.
        hub.detach(node, first);
        assert!(hub.is_connected(node));
        hub.detach(node, second);
        assert!(!hub.is_connected(node));
    }
}
