//! How hard to push Graph: an adaptive concurrency limit (grow by one after a full round of
//! successes, halve on 429/503) and a resource-unit pacer that follows SharePoint's
//! `RateLimit-*` headers (graph-api.md §8.4–8.5): once they say the app's budget is nearly spent,
//! requests are spread over what remains of the window, and none is sent that the remaining
//! budget cannot pay for until the window resets.

use std::sync::Arc;
use std::sync::Mutex as SyncMutex;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Concurrency that adapts to the service: additive increase, multiplicative decrease.
#[derive(Debug)]
pub struct AdaptiveLimit {
    semaphore: Arc<Semaphore>,
    state: SyncMutex<LimitState>,
}

#[derive(Debug)]
struct LimitState {
    current: usize,
    max: usize,
    successes: usize,
    /// Permits to retire as they come back (the limit shrank while they were out).
    debt: usize,
    last_decrease: Option<Instant>,
}

/// A slot to send one request; returned to the limit when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    permit: Option<OwnedSemaphorePermit>,
    limit: &'a AdaptiveLimit,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.limit.state);
        if state.debt > 0
            && let Some(permit) = self.permit.take()
        {
            permit.forget();
            state.debt -= 1;
        }
    }
}

fn lock<T>(mutex: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AdaptiveLimit {
    /// Starts at `max` (the configured concurrency): a healthy service is used fully at once.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            state: SyncMutex::new(LimitState {
                current: max,
                max,
                successes: 0,
                debt: 0,
                last_decrease: None,
            }),
        }
    }

    pub async fn acquire(&self) -> Slot<'_> {
        let permit = self.semaphore.clone().acquire_owned().await.ok();
        Slot {
            permit,
            limit: self,
        }
    }

    /// The current limit.
    pub fn current(&self) -> usize {
        lock(&self.state).current
    }

    /// A request went through: after `current` successes in a row the limit grows by one.
    pub fn on_success(&self) {
        let mut state = lock(&self.state);
        state.successes += 1;
        if state.successes >= state.current && state.current < state.max {
            state.successes = 0;
            if state.debt > 0 {
                state.debt -= 1;
            } else {
                self.semaphore.add_permits(1);
            }
            state.current += 1;
        }
    }

    /// The service pushed back: halve the limit (at most once a second, so one burst of 429s
    /// from requests already in flight counts once).
    pub fn on_throttle(&self) {
        let mut state = lock(&self.state);
        let now = Instant::now();
        if state
            .last_decrease
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        state.last_decrease = Some(now);
        state.successes = 0;
        let target = (state.current / 2).max(1);
        let mut shrink = state.current - target;
        state.current = target;
        while shrink > 0 {
            match self.semaphore.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            }
            shrink -= 1;
        }
        state.debt += shrink;
        tracing::info!(
            concurrency = target,
            "Graph pushed back; lowering concurrency"
        );
    }
}

enum Wait {
    /// Send at this instant.
    Until(Instant),
    /// The budget cannot pay: try again when the window resets.
    Reset(Instant),
}

/// What the latest `RateLimit-*` headers said, minus what was sent since.
#[derive(Debug, Default)]
pub struct Pacer {
    state: SyncMutex<PacerState>,
}

#[derive(Debug, Default)]
struct PacerState {
    /// Resource units still spendable before `reset_at`, as far as we know.
    remaining: Option<u32>,
    reset_at: Option<Instant>,
    /// The earliest start of the next request while pacing.
    next_slot: Option<Instant>,
}

impl Pacer {
    /// Waits until a request costing `cost` resource units may go, and books it.
    pub async fn reserve(&self, cost: u32) {
        loop {
            let wait = {
                let mut state = lock(&self.state);
                let now = Instant::now();
                match (state.remaining, state.reset_at) {
                    (Some(remaining), Some(reset_at)) if reset_at > now => {
                        if remaining >= cost {
                            // Spread what is left evenly over the rest of the window.
                            let share = (reset_at - now)
                                .mul_f64(f64::from(cost) / f64::from(remaining.max(1)));
                            let start = state.next_slot.filter(|s| *s > now).unwrap_or(now);
                            state.next_slot = Some(start + share);
                            state.remaining = Some(remaining - cost);
                            Wait::Until(start)
                        } else {
                            Wait::Reset(reset_at)
                        }
                    }
                    _ => {
                        *state = PacerState::default();
                        Wait::Until(now)
                    }
                }
            };
            match wait {
                Wait::Until(start) => {
                    if start > Instant::now() {
                        tokio::time::sleep_until(start.into()).await;
                    }
                    return;
                }
                Wait::Reset(at) => {
                    tracing::debug!(
                        wait_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
                        "resource-unit budget spent; waiting for the window to reset"
                    );
                    tokio::time::sleep_until(at.into()).await;
                }
            }
        }
    }

    /// Records `RateLimit-Remaining` and `RateLimit-Reset` (seconds) from a response.
    pub fn observe(&self, remaining: u32, reset: Duration) {
        let mut state = lock(&self.state);
        let reset_at = Instant::now() + reset;
        // Several responses of one window: keep the most pessimistic view.
        let same_window = state
            .reset_at
            .is_some_and(|at| at + Duration::from_secs(1) >= reset_at);
        state.remaining = Some(match (same_window, state.remaining) {
            (true, Some(known)) => known.min(remaining),
            _ => remaining,
        });
        state.reset_at = Some(
            state
                .reset_at
                .filter(|_| same_window)
                .map_or(reset_at, |at| at.max(reset_at)),
        );
    }
}

/// Resource units a request will cost (§8.2): a single-item read 1, other reads and every
/// write 2; a `$batch` costs what its requests cost.
pub fn estimate_cost(
    method: &reqwest::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> u32 {
    if path.ends_with("/$batch") {
        return body
            .and_then(|b| b.get("requests"))
            .and_then(serde_json::Value::as_array)
            .map(|requests| {
                requests
                    .iter()
                    .map(|r| {
                        let method = r
                            .get("method")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("GET");
                        let url = r
                            .get("url")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("");
                        estimate_cost(&method.parse().unwrap_or(reqwest::Method::GET), url, None)
                    })
                    .sum()
            })
            .unwrap_or(2);
    }
    let path = path.split('?').next().unwrap_or(path);
    let single_item = path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.chars().all(|c| c.is_ascii_digit()));
    if *method == reqwest::Method::GET && (single_item || !path.contains("/items")) {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_limit_halves_on_throttling_and_grows_back_one_at_a_time() {
        let limit = AdaptiveLimit::new(8);
        assert_eq!(limit.current(), 8);
        limit.on_throttle();
        assert_eq!(limit.current(), 4);
        limit.on_throttle();
        assert_eq!(limit.current(), 4, "one burst of 429s counts once");
        for _ in 0..4 {
            limit.on_success();
        }
        assert_eq!(limit.current(), 5);
        // Only `current` slots can be held at once.
        let slots: Vec<Slot<'_>> = futures::future::join_all((0..5).map(|_| limit.acquire())).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), limit.acquire())
                .await
                .is_err()
        );
        drop(slots);
    }

    #[tokio::test]
    async fn a_shrink_while_slots_are_out_retires_them_on_return() {
        let limit = AdaptiveLimit::new(4);
        let slots: Vec<Slot<'_>> = futures::future::join_all((0..4).map(|_| limit.acquire())).await;
        limit.on_throttle();
        drop(slots);
        let held: Vec<Slot<'_>> = futures::future::join_all((0..2).map(|_| limit.acquire())).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), limit.acquire())
                .await
                .is_err(),
            "two slots after halving four"
        );
        drop(held);
    }

    #[tokio::test]
    async fn the_pacer_waits_for_the_reset_when_the_budget_is_spent() {
        let pacer = Pacer::default();
        pacer.reserve(40).await; // nothing known: no wait
        pacer.observe(10, Duration::from_millis(300));
        let started = Instant::now();
        pacer.reserve(40).await;
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn the_pacer_spreads_the_rest_of_the_budget() {
        let pacer = Pacer::default();
        pacer.observe(100, Duration::from_millis(400));
        let started = Instant::now();
        for _ in 0..5 {
            pacer.reserve(20).await; // 5 × 20 = the whole remainder, spread over 400 ms
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(450),
            "{elapsed:?}"
        );
    }

    #[test]
    fn costs_follow_the_resource_unit_table() {
        let get = reqwest::Method::GET;
        assert_eq!(estimate_cost(&get, "/sites/s/lists/l/items/7", None), 1);
        assert_eq!(
            estimate_cost(&get, "/sites/s/lists/l/items?$top=10", None),
            2
        );
        assert_eq!(estimate_cost(&get, "/sites/s/lists/l", None), 1);
        assert_eq!(
            estimate_cost(&reqwest::Method::POST, "/sites/s/lists/l/items", None),
            2
        );
        let batch = serde_json::json!({"requests": [
            {"method": "POST", "url": "/sites/s/lists/l/items"},
            {"method": "DELETE", "url": "/sites/s/lists/l/items/3"},
            {"method": "GET", "url": "/sites/s/lists/l/items/3"},
        ]});
        assert_eq!(
            estimate_cost(&reqwest::Method::POST, "/$batch", Some(&batch)),
            5
        );
    }
}
