//! Drives the records of one batch to their ends (`delivery.batch`, docs/batch.md).
//!
//! The same per-record state machine as a single record's ([`Deliverer::settle`]) over a
//! request that carries several records: each entry keeps its own attempts, failures and end,
//! while what concerns the endpoint (the breaker's admission and verdicts, the concurrency
//! permit, `Retry-After`, load) is the request's: the outage breaker counts a failed batch as
//! one failed request, and a failure an entry got inside a 2xx reply as the entry's own. A
//! batch enters the window of uncommitted records whole (`Window::enter_many`).
//!
//! Order: in `partition` and `key` order the entries are settled in order, and the first one
//! to be sent again takes every entry after it along, their results unread and nothing counted
//! against them, so no entry ends before an earlier entry of its lane has; in `unordered` order
//! every entry is settled on its own, concurrently. The next request carries the entries still
//! waiting, after the longest wait any of them was given. An entry ends as soon as it is settled
//! (finished in the tracker, its window place kept for the commit), so commits need not wait for
//! the rest of its batch. Stopped (revoke, shutdown), the entries not ended stay unfinished and
//! are consumed again, as a single record is.

use std::{sync::Arc, time::Duration};

use super::{Deliverer, End, InFlight, Progress, Step, sleep_unless};
use crate::{commit::Slot, dispatch::Job, forward::Outcome, record::Record};

impl Deliverer {
    /// Runs the records of `jobs` (one lane's, in order, one partition's) to their ends.
    pub async fn process_batch(&self, jobs: &[Arc<Job>]) {
        let Some(first) = jobs.first() else { return };
        let stop = &first.partition.stop;
        let mut slots: Vec<Option<Slot<'_>>> = jobs.iter().map(|_| None).collect();
        let mut progress: Vec<Progress> = jobs.iter().map(|j| Progress::of(j)).collect();
        let mut live: Vec<usize> = (0..jobs.len()).collect();
        while !live.is_empty() {
            let rest = self.crash_loops(jobs, &progress, &mut live).await;
            if live.is_empty() {
                live = rest;
                continue;
            }
            let Some(outcomes) = self.attempt_batch(jobs, &live, &progress, &mut slots).await
            else {
                return;
            };
            let (mut waiting, wait) = if self.ordered {
                self.settle_in_order(jobs, &live, outcomes, &mut progress, &mut slots)
                    .await
            } else {
                self.settle_each(jobs, &live, outcomes, &mut progress, &mut slots)
                    .await
            };
            // Not sent, not ended: waiting for another attempt holds no place.
            for &i in &waiting {
                slots[i] = None;
            }
            waiting.extend(rest);
            live = waiting;
            if !live.is_empty() && !wait.is_zero() && !sleep_unless(stop, wait).await {
                return;
            }
        }
    }

    /// Dead-letters the records of a crash loop among `live` whose turn it is, taking them out:
    /// every one in `unordered` order; in the ordered modes those at the head, once the entries
    /// before them ended. Returns the entries that wait for a later request: in the ordered
    /// modes, from the next record of a crash loop on.
    async fn crash_loops(
        &self,
        jobs: &[Arc<Job>],
        progress: &[Progress],
        live: &mut Vec<usize>,
    ) -> Vec<usize> {
        let looping: Vec<usize> = if self.ordered {
            let head = live
                .iter()
                .take_while(|&&i| self.crash_looping(&jobs[i]))
                .count();
            live.drain(..head).collect()
        } else {
            live.extract_if(.., |i| self.crash_looping(&jobs[*i]))
                .collect()
        };
        for i in looping {
            let end = self.crash_looped(&jobs[i], &progress[i]).await;
            self.end(&jobs[i], end.unwrap_or(End::Abandoned), None);
        }
        let next = live
            .iter()
            .position(|&i| self.crash_looping(&jobs[i]))
            .unwrap_or(live.len());
        live.split_off(next)
    }

    /// Settles the entries in order up to the first to be sent again; returns it and every
    /// entry after it, and its wait.
    async fn settle_in_order<'a>(
        &'a self,
        jobs: &[Arc<Job>],
        live: &[usize],
        outcomes: Vec<(Outcome, u64)>,
        progress: &mut [Progress],
        slots: &mut [Option<Slot<'a>>],
    ) -> (Vec<usize>, Duration) {
        let mut waiting = Vec::new();
        let mut wait = Duration::ZERO;
        for (&i, (outcome, at)) in live.iter().zip(outcomes) {
            if !waiting.is_empty() {
                // After an entry to be sent again: sent again with it, whatever it got.
                waiting.push(i);
                continue;
            }
            match self.settle(&jobs[i], &mut progress[i], &outcome, at).await {
                Step::End(end) => self.end(&jobs[i], end, slots[i].take()),
                Step::Resend => waiting.push(i),
                Step::Wait(w) => {
                    wait = w;
                    waiting.push(i);
                }
            }
        }
        (waiting, wait)
    }

    /// Settles every entry on its own, concurrently; returns those to be sent again and the
    /// longest wait any was given.
    async fn settle_each<'a>(
        &'a self,
        jobs: &[Arc<Job>],
        live: &[usize],
        outcomes: Vec<(Outcome, u64)>,
        progress: &mut [Progress],
        slots: &mut [Option<Slot<'a>>],
    ) -> (Vec<usize>, Duration) {
        let settling = live.iter().zip(outcomes).map(|(&i, (outcome, at))| {
            let mut p = std::mem::take(&mut progress[i]);
            let slot = slots[i].take();
            async move {
                let step = self.settle(&jobs[i], &mut p, &outcome, at).await;
                if let Step::End(end) = step {
                    self.end(&jobs[i], end, slot);
                }
                (i, p, step)
            }
        });
        let mut waiting = Vec::new();
        let mut wait = Duration::ZERO;
        for (i, p, step) in futures::future::join_all(settling).await {
            progress[i] = p;
            match step {
                Step::End(_) => {}
                Step::Resend => waiting.push(i),
                Step::Wait(w) => {
                    wait = wait.max(w);
                    waiting.push(i);
                }
            }
        }
        (waiting, wait)
    }

    /// One request for the entries `live` of `jobs`, under the concurrency limit, once the
    /// breaker lets it go and the window has room for all of them; an outcome per entry (and
    /// when it ended, on the breaker's clock). `None` when stopped first.
    async fn attempt_batch<'a>(
        &'a self,
        jobs: &[Arc<Job>],
        live: &[usize],
        progress: &[Progress],
        slots: &mut [Option<Slot<'a>>],
    ) -> Option<Vec<(Outcome, u64)>> {
        let p = &jobs[live[0]].partition;
        self.admitted(&p.stop).await?;
        let entered = tokio::select! {
            biased;
            _ = p.stop.cancelled() => return None,
            entered = self.window.enter_many(live.len()) => entered,
        };
        for (&i, slot) in live.iter().zip(entered) {
            slots[i] = Some(slot);
        }
        let permit = tokio::select! {
            biased;
            _ = p.stop.cancelled() => return None,
            permit = self.limiter.acquire() => permit,
        };
        let _in_flight = InFlight::start(&self.stats);
        for &i in live {
            self.mark_in_flight(&jobs[i], true);
        }
        let records: Vec<(&Record, u32)> = live
            .iter()
            .map(|&i| (&jobs[i].record, progress[i].attempts + 1))
            .collect();
        let started = std::time::Instant::now();
        let sent_at = self.outage.clock();
        let batch = tokio::select! {
            biased;
            _ = p.abort.cancelled() => None,
            b = self.forwarder.attempt_batch(&records) => Some(b),
        };
        for &i in live {
            self.mark_in_flight(&jobs[i], false);
        }
        let batch = batch?;
        if batch.whole.is_some() {
            self.stats.metrics.batch_sent(batch.sent);
        }
        self.answered(started, permit, batch.whole.as_ref());
        // The breaker hears of the request once, as the attempt of its first record: it
        // counts requests failing alike, and one failed batch is one failure of the endpoint.
        let (at, answered_2xx) = match &batch.whole {
            Some(whole) => (
                self.report(&jobs[live[0]].record, sent_at, whole),
                matches!(whole, Outcome::Response { status, .. } if (200..300).contains(status)),
            ),
            None => (self.outage.clock(), false),
        };
        // A failure an entry got inside a 2xx reply is its own: the endpoint answered, which
        // the breaker saw as a success just after the failure (`Outage::verdict` then says so).
        let failed_at = if answered_2xx {
            at.saturating_sub(1)
        } else {
            at
        };
        Some(batch.entries.into_iter().map(|o| (o, failed_at)).collect())
    }
}

#[cfg(test)]
mod tests;
