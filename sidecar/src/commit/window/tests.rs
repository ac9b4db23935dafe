use std::{sync::Arc, time::Duration};

use super::*;

/// Whether `enter` would wait now.
async fn full(w: &Window) -> bool {
    tokio::time::timeout(Duration::from_millis(20), w.enter())
        .await
        .is_err()
}

#[tokio::test]
async fn a_record_in_an_attempt_holds_its_place_until_the_attempt_fails() {
    let w = Window::new(Some(2));
    let a = w.enter().await;
    let _b = w.enter().await;
    assert!(full(&w).await, "two open records fill a window of two");
    drop(a);
    assert_eq!(w.open(), 1, "a failed attempt frees its place at once");
    assert!(!full(&w).await);
}

#[tokio::test]
async fn an_ended_record_stays_open_until_a_commit_taken_after_its_end_is_acknowledged() {
    let w = Window::new(Some(2));
    let early = w.mark();
    let a = w.enter().await;
    let b = w.enter().await;
    a.finished();
    b.finished();
    assert_eq!(w.open(), 2, "ended, not yet committed");
    w.durable(early);
    assert_eq!(
        w.open(),
        2,
        "a commit taken before the ends does not carry them"
    );
    assert!(full(&w).await);
    let mark = w.mark();
    w.durable(mark);
    assert_eq!(w.open(), 0);
    w.durable(early);
    assert_eq!(
        w.open(),
        0,
        "a late answer to an older commit frees nothing twice"
    );
}

#[tokio::test]
async fn a_waiting_record_enters_when_a_commit_frees_room() {
    let w = Arc::new(Window::new(Some(1)));
    w.enter().await.finished();
    let waiter = {
        let w = Arc::clone(&w);
        tokio::spawn(async move {
            w.enter().await.finished();
        })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "no room until the commit");
    w.durable(w.mark());
    waiter.await.expect("entered once the commit freed room");
    assert_eq!(w.open(), 1);
}

#[tokio::test]
async fn a_commit_is_due_once_half_the_window_ended() {
    let w = Window::new(Some(4));
    assert_eq!(w.commit_threshold(), 2);
    w.enter().await.finished();
    assert!(
        !w.wait_due(Duration::from_millis(1)),
        "one ended record waits for the interval"
    );
    w.enter().await.finished();
    assert!(w.wait_due(Duration::from_secs(60)), "two are due at once");
    w.durable(w.mark());
    assert!(!w.wait_due(Duration::from_millis(1)));
}

#[tokio::test]
async fn without_a_bound_nothing_waits_or_is_counted() {
    let w = Window::new(None);
    let mut slots = Vec::new();
    for _ in 0..1000 {
        slots.push(w.enter().await);
    }
    assert_eq!(w.open(), 0);
    for s in slots {
        s.finished();
    }
    assert!(!w.wait_due(Duration::from_millis(1)));
}

#[test]
fn a_bound_of_zero_is_one() {
    assert_eq!(Window::new(Some(0)).max(), Some(1));
}

#[test]
fn the_committer_is_woken_for_good_even_when_nothing_is_due() {
    let w = Arc::new(Window::new(Some(4)));
    let waiter = {
        let w = Arc::clone(&w);
        std::thread::spawn(move || w.wait_due(Duration::from_secs(3600)))
    };
    w.wake_committer();
    assert!(!waiter.join().expect("woken"), "woken, not due");
    assert!(
        !w.wait_due(Duration::from_secs(3600)),
        "a wait after the wake-up does not block"
    );
}

#[tokio::test]
async fn a_batch_enters_whole_or_waits_holding_nothing() {
    let w = Window::new(Some(5));
    let one = w.enter().await;
    let two = w.enter().await;
    let batch = w.enter_many(3).await;
    assert_eq!(w.open(), 5);
    // Four places are needed, one is free: the batch waits and takes none.
    drop(one);
    let mut waiting = Box::pin(w.enter_many(4));
    assert!(futures::poll!(waiting.as_mut()).is_pending());
    assert_eq!(w.open(), 4, "a waiting batch holds no place");
    // A single record still gets the free place, so a batch never starves it.
    let single = tokio::time::timeout(Duration::from_secs(60), w.enter())
        .await
        .expect("the free place goes to a single record");
    drop(single);
    drop(two);
    for s in batch {
        drop(s);
    }
    let entered = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("freed places wake the batch");
    assert_eq!(entered.len(), 4);
    assert_eq!(w.open(), 4);
}

#[tokio::test]
async fn a_batch_waiting_for_room_is_woken_by_a_commit() {
    let w = Arc::new(Window::new(Some(4)));
    for s in w.enter_many(4).await {
        s.finished();
    }
    let waiter = {
        let w = Arc::clone(&w);
        tokio::spawn(async move { w.enter_many(3).await.len() })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    w.durable(w.mark());
    let entered = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the commit wakes the batch")
        .expect("no panic");
    assert_eq!(entered, 3);
}

#[tokio::test]
async fn a_batch_larger_than_the_window_counts_only_the_window() {
    let w = Window::new(Some(2));
    let slots = w.enter_many(3).await;
    assert_eq!(slots.len(), 3);
    assert_eq!(w.open(), 2);
    drop(slots);
    assert_eq!(w.open(), 0);
}
