//! Many API calls, a bounded number at once.
//!
//! The one place the operator scenario fans out: creating and annotating every resource. No
//! client here; the caller's closure makes the call.

use std::future::Future;

use anyhow::Context;
use tokio::task::JoinSet;

/// Runs `f(item)` for every item, at most `limit` at once (at least one), each as its own task.
/// Returns how many ran; the first error (or panic) stops the rest and is returned.
pub async fn for_each<T, F, Fut>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    f: F,
) -> anyhow::Result<usize>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let limit = limit.max(1);
    let mut running = JoinSet::new();
    let mut done = 0;
    for item in items {
        if running.len() >= limit
            && let Some(joined) = running.join_next().await
        {
            joined.context("a bounded task panicked")??;
            done += 1;
        }
        running.spawn(f(item));
    }
    while let Some(joined) = running.join_next().await {
        joined.context("a bounded task panicked")??;
        done += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Duration,
    };

    #[tokio::test]
    async fn runs_everything_never_more_than_the_limit_at_once() {
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (n, m) = (now.clone(), most.clone());
        let ran = for_each(0..100, 16, move |_| {
            let (now, most) = (n.clone(), m.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .await
        .expect("all succeed");
        assert_eq!(ran, 100);
        let most = most.load(Ordering::SeqCst);
        assert!(most <= 16, "{most} at once");
        assert!(most > 1, "they do run side by side");
        assert_eq!(now.load(Ordering::SeqCst), 0, "every one finished");
        // A limit of 0 still makes progress.
        assert_eq!(for_each(0..3, 0, |_| async { Ok(()) }).await.ok(), Some(3));
    }

    #[tokio::test]
    async fn the_first_error_stops_the_rest() {
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let result = for_each(0..1000, 4, move |i| {
            let started = s.clone();
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                if i == 5 {
                    anyhow::bail!("creating bench-{i}: refused");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(())
            }
        })
        .await;
        let err = result.expect_err("one failed");
        assert!(format!("{err:#}").contains("bench-5: refused"), "{err:#}");
        assert!(
            started.load(Ordering::SeqCst) < 1000,
            "the rest were not started"
        );
    }
}
