//! Live metric points: one bounded broadcast channel per app that someone watches (as for
//! logs, a slow viewer misses points rather than growing the server's memory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gantry_common::metrics::MetricPoint;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Points a viewer may be behind before it misses some.
const CAPACITY: usize = 64;

#[derive(Default)]
pub struct MetricsHub {
    apps: Mutex<HashMap<Uuid, broadcast::Sender<Arc<MetricPoint>>>>,
}

impl MetricsHub {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Uuid, broadcast::Sender<Arc<MetricPoint>>>> {
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self, app: Uuid) -> broadcast::Receiver<Arc<MetricPoint>> {
        self.lock()
            .entry(app)
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    pub fn publish(&self, app: Uuid, points: Vec<MetricPoint>) {
        let mut apps = self.lock();
        let Some(tx) = apps.get(&app) else {
            return;
        };
        if tx.receiver_count() == 0 {
            apps.remove(&app);
            return;
        }
        for point in points {
            let _ = tx.send(Arc::new(point));
        }
    }
}
