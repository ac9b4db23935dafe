//! The app model's worker pool: `capacity` requests served at once, up to as many again
//! waiting in a first-in first-out queue, the rest shed.
//!
//! Pure: the shell ([`super::app`]) says when requests arrive, finish or give up and when the
//! capacity changes; this decides which request is served, waits or is shed, and which waiting
//! requests start. Requests are named by ids the shell chooses.
//!
//! The model is a thread-per-request server (a servlet container's `maxThreads` with an
//! `acceptCount` queue, a gunicorn worker pool with a backlog) or a load-shedding proxy in front
//! of one (Envoy's `max_requests` and `max_pending_requests`): past capacity, requests first
//! wait, so latency rises (up to twice the service time with a full queue); past the queue they
//! are refused at once with 503. The queue is as long as the pool, as when an app scales by
//! replicas that each bring their workers and their backlog. When the capacity drops, requests
//! already served or queued keep their place; new ones wait or are shed by the new numbers.

use std::collections::VecDeque;

/// What happens to an arriving request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// A worker is free: served now.
    Serve,
    /// Every worker is busy: waits in the queue until [`Pool::finish`] or
    /// [`Pool::set_capacity`] starts it.
    Queued,
    /// The queue is full: refused at once (503).
    Shed,
}

/// Workers and queue.
#[derive(Clone, Debug)]
pub struct Pool {
    capacity: usize,
    in_service: usize,
    waiting: VecDeque<u64>,
}

impl Pool {
    /// `capacity` workers (at least 1) and a queue as long.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            in_service: 0,
            waiting: VecDeque::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Requests being served now.
    pub fn in_service(&self) -> usize {
        self.in_service
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Request `id` arrives.
    pub fn arrive(&mut self, id: u64) -> Arrival {
        if self.in_service < self.capacity && self.waiting.is_empty() {
            self.in_service += 1;
            Arrival::Serve
        } else if self.waiting.len() < self.capacity {
            self.waiting.push_back(id);
            Arrival::Queued
        } else {
            Arrival::Shed
        }
    }

    /// A served request finished; returns the waiting requests that start now.
    pub fn finish(&mut self) -> Vec<u64> {
        self.in_service = self.in_service.saturating_sub(1);
        self.start_waiting()
    }

    /// Waiting request `id` gave up (its connection closed). `false` when it was not waiting:
    /// it had started, and must [`Pool::finish`] instead.
    pub fn leave(&mut self, id: u64) -> bool {
        match self.waiting.iter().position(|&w| w == id) {
            Some(i) => {
                self.waiting.remove(i);
                true
            }
            None => false,
        }
    }

    /// The app gained or lost workers; returns the waiting requests that start now.
    pub fn set_capacity(&mut self, capacity: usize) -> Vec<u64> {
        self.capacity = capacity.max(1);
        self.start_waiting()
    }

    fn start_waiting(&mut self) -> Vec<u64> {
        let mut started = Vec::new();
        while self.in_service < self.capacity {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            self.in_service += 1;
            started.push(id);
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_up_to_capacity_queues_as_many_then_sheds() {
        let mut p = Pool::new(2);
        let arrivals: Vec<Arrival> = (0..6).map(|id| p.arrive(id)).collect();
        assert_eq!(
            arrivals,
            [
                Arrival::Serve,
                Arrival::Serve,
                Arrival::Queued,
                Arrival::Queued,
                Arrival::Shed,
                Arrival::Shed
            ]
        );
        assert_eq!((p.in_service(), p.waiting()), (2, 2));
    }

    #[test]
    fn a_finished_request_starts_the_oldest_waiting_one() {
        let mut p = Pool::new(1);
        p.arrive(10);
        p.arrive(11);
        assert_eq!(p.finish(), [11]);
        assert_eq!((p.in_service(), p.waiting()), (1, 0));
        assert_eq!(p.finish(), Vec::<u64>::new());
        assert_eq!(p.in_service(), 0);
        assert_eq!(p.arrive(12), Arrival::Serve);
    }

    #[test]
    fn growth_serves_the_waiting_before_new_arrivals() {
        let mut p = Pool::new(2);
        p.arrive(1);
        p.arrive(2);
        p.arrive(3);
        // Capacity grows by one while 3 waits: 3 starts, and a new arrival is served too.
        assert_eq!(p.set_capacity(3), [3]);
        assert_eq!(p.arrive(4), Arrival::Queued, "all three workers busy");
        assert_eq!(p.set_capacity(4), [4]);
    }

    #[test]
    fn growing_capacity_starts_waiting_requests_in_order() {
        let mut p = Pool::new(2);
        for id in 0..4 {
            p.arrive(id);
        }
        assert_eq!(p.set_capacity(8), [2, 3]);
        assert_eq!((p.in_service(), p.waiting()), (4, 0));
    }

    #[test]
    fn a_drop_keeps_what_was_taken_and_sheds_by_the_new_numbers() {
        let mut p = Pool::new(4);
        for id in 0..6 {
            p.arrive(id);
        }
        assert_eq!(p.set_capacity(1), Vec::<u64>::new());
        assert_eq!(
            (p.in_service(), p.waiting()),
            (4, 2),
            "nothing already taken is dropped"
        );
        assert_eq!(
            p.arrive(6),
            Arrival::Shed,
            "the queue is over its new length"
        );
        // Three finish without starting anyone: four in service is over the new capacity.
        for _ in 0..3 {
            assert_eq!(p.finish(), Vec::<u64>::new());
        }
        assert_eq!(
            p.finish(),
            [4],
            "the first waiting starts once a worker is free"
        );
        assert_eq!(
            p.arrive(7),
            Arrival::Shed,
            "one serving, one waiting: full at 1"
        );
    }

    #[test]
    fn a_waiting_request_that_gives_up_leaves_the_queue() {
        let mut p = Pool::new(2);
        for id in 1..=4 {
            p.arrive(id);
        }
        assert!(p.leave(3));
        assert!(!p.leave(1), "1 is being served, not waiting");
        assert_eq!(p.waiting(), 1);
        assert_eq!(p.finish(), [4]);
    }

    #[test]
    fn capacity_is_at_least_one() {
        let mut p = Pool::new(0);
        assert_eq!(p.capacity(), 1);
        assert_eq!(p.arrive(1), Arrival::Serve);
        p.set_capacity(0);
        assert_eq!(p.capacity(), 1);
    }
}
