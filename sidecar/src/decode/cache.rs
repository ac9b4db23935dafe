//! The schema cache: schemas by id, bounded, loaded once however many records ask at once.
//!
//! No I/O of its own: the caller passes the loader. A schema id always names the same schema, so
//! a *lasting* answer (a compiled schema) stays until the cache holds `capacity` ids and it is
//! the least recently used. A *passing* answer (the registry has no such schema, or it cannot be
//! used) is kept `error_ttl`, then asked again. A failed load (the registry unavailable) is not
//! kept at all: the next record asks again. Records that ask for an id while it loads wait for
//! that one load instead of each asking the registry.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::OnceCell;

/// A loaded answer and whether it lasts.
#[derive(Debug)]
struct Stamped<T> {
    value: T,
    lasting: bool,
    at: Instant,
}

#[derive(Debug)]
struct Slot<T> {
    cell: Arc<OnceCell<Stamped<T>>>,
    /// The cache's clock at the last use, for least-recently-used eviction.
    used: u64,
}

#[derive(Debug)]
struct Inner<T> {
    slots: HashMap<u32, Slot<T>>,
    clock: u64,
}

/// Bounded, single-flight, by schema id.
#[derive(Debug)]
pub struct SchemaCache<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
    error_ttl: Duration,
}

impl<T: Clone> SchemaCache<T> {
    pub fn new(capacity: usize, error_ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(1),
            error_ttl,
        }
    }

    /// Ids held (loaded or loading).
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner
            .lock()
            .expect("invariant: the schema cache lock is never poisoned")
    }

    /// The answer for `id`: cached, or from `load` (`Ok((answer, lasting))`). A load error is
    /// returned to every caller waiting on that load and not cached.
    pub async fn get<F, Fut, E>(&self, id: u32, load: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, bool), E>>,
    {
        let cell = self.cell(id);
        let stamped = cell
            .get_or_try_init(|| async {
                let (value, lasting) = load().await?;
                Ok(Stamped {
                    value,
                    lasting,
                    at: Instant::now(),
                })
            })
            .await?;
        Ok(stamped.value.clone())
    }

    /// The cell for `id`, made fresh when there is none or its passing answer expired; evicts
    /// the least recently used id when that makes the cache too large.
    fn cell(&self, id: u32) -> Arc<OnceCell<Stamped<T>>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let expired = |slot: &Slot<T>| {
            slot.cell
                .get()
                .is_some_and(|s| !s.lasting && s.at.elapsed() >= self.error_ttl)
        };
        if let Some(slot) = inner.slots.get_mut(&id)
            && !expired(slot)
        {
            slot.used = now;
            return Arc::clone(&slot.cell);
        }
        let cell = Arc::new(OnceCell::new());
        inner.slots.insert(
            id,
            Slot {
                cell: Arc::clone(&cell),
                used: now,
            },
        );
        while inner.slots.len() > self.capacity {
            let oldest = inner
                .slots
                .iter()
                .filter(|(k, _)| **k != id)
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => inner.slots.remove(&k),
                None => break,
            };
        }
        cell
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

    use super::*;

    fn counted(
        loads: &AtomicU32,
        answer: &'static str,
        lasting: bool,
    ) -> impl Future<Output = Result<(&'static str, bool), String>> {
        loads.fetch_add(1, SeqCst);
        async move { Ok((answer, lasting)) }
    }

    #[tokio::test]
    async fn concurrent_asks_for_one_id_load_it_once() {
        let cache = SchemaCache::new(10, Duration::from_secs(60));
        let loads = AtomicU32::new(0);
        let gate = tokio::sync::Notify::new();
        let asks = (0..8).map(|_| {
            cache.get(1, || async {
                loads.fetch_add(1, SeqCst);
                gate.notified().await;
                Ok::<_, String>(("schema", true))
            })
        });
        let all = futures::future::join_all(asks);
        tokio::pin!(all);
        // Let every ask reach the cache, then let the one load finish.
        tokio::select! { _ = &mut all => panic!("finished before the load"), _ = tokio::task::yield_now() => {} }
        gate.notify_waiters();
        gate.notify_one();
        let answers = all.await;
        assert!(answers.iter().all(|a| a == &Ok("schema")), "{answers:?}");
        assert_eq!(loads.load(SeqCst), 1);
    }

    #[tokio::test]
    async fn the_least_recently_used_id_leaves_a_full_cache() {
        let cache = SchemaCache::new(2, Duration::from_secs(60));
        let loads = AtomicU32::new(0);
        for id in [1, 2, 1, 3] {
            cache
                .get(id, || counted(&loads, "s", true))
                .await
                .expect("loads");
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(loads.load(SeqCst), 3, "1 was cached the second time");
        cache
            .get(1, || counted(&loads, "s", true))
            .await
            .expect("loads");
        assert_eq!(loads.load(SeqCst), 3, "1 was used more recently than 2");
        cache
            .get(2, || counted(&loads, "s", true))
            .await
            .expect("loads");
        assert_eq!(loads.load(SeqCst), 4, "2 was evicted");
    }

    #[tokio::test]
    async fn passing_answers_expire_lasting_ones_do_not_and_failures_are_not_kept() {
        let loads = AtomicU32::new(0);
        let expiring = SchemaCache::new(10, Duration::ZERO);
        expiring
            .get(1, || counted(&loads, "missing", false))
            .await
            .expect("loads");
        expiring
            .get(1, || counted(&loads, "missing", false))
            .await
            .expect("loads");
        assert_eq!(
            loads.load(SeqCst),
            2,
            "a passing answer past its ttl is asked again"
        );
        expiring
            .get(2, || counted(&loads, "schema", true))
            .await
            .expect("loads");
        expiring
            .get(2, || counted(&loads, "schema", true))
            .await
            .expect("loads");
        assert_eq!(loads.load(SeqCst), 3, "a lasting answer stays");

        let kept = SchemaCache::new(10, Duration::from_secs(3600));
        kept.get(1, || counted(&loads, "missing", false))
            .await
            .expect("loads");
        kept.get(1, || counted(&loads, "missing", false))
            .await
            .expect("loads");
        assert_eq!(
            loads.load(SeqCst),
            4,
            "within its ttl a passing answer stays"
        );

        let failing: SchemaCache<&str> = SchemaCache::new(10, Duration::from_secs(3600));
        for _ in 0..2 {
            let got = failing
                .get(1, || async {
                    loads.fetch_add(1, SeqCst);
                    Err::<(&str, bool), _>("registry down")
                })
                .await;
            assert_eq!(got, Err("registry down"));
        }
        assert_eq!(loads.load(SeqCst), 6, "a failed load is tried again");
        failing
            .get(1, || counted(&loads, "schema", true))
            .await
            .expect("loads");
    }
}
