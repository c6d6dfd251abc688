//! Requests through a real proxy, measured: a background [`Load`] that runs all along a rollout
//! (so a test can say that not one request failed), and the share of the answers a version got,
//! checked against the weight the router carries within binomial noise.
//!
//! A share measured on `n` requests that the proxy splits with weight `p` is binomial: its
//! standard deviation is `sqrt(p (1 - p) / n)`. A share within [`SIGMAS`] of them is the weight
//! (a false alarm about once in 16 000 measurements); one further away is not.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::traefik::{Tally, Traefik};

/// How many binomial standard deviations a measured share may be from the weight.
pub const SIGMAS: f64 = 4.0;

/// Requests a share is measured on: at 25 %, a share within 4.5 % of the weight.
pub const REQUESTS: usize = 1500;

/// Requests a [`Load`] sends at a time.
const LOAD_BATCH: usize = 8;

/// Requests of a batch while waiting for the proxy to take up a weight.
const SETTLE_BATCH: usize = 200;

/// How long the proxy may take to apply a changed weight.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// Failing batches whose time a [`Load`] keeps, to set beside the controller's log.
const FAILURE_TIMES: usize = 10;

/// Requests sent through Traefik a few at a time, from start to [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    /// When the first failing batches ended.
    failed_at: Arc<Mutex<Vec<jiff::Timestamp>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts sending `GET /` through `traefik` in the background.
    pub fn start(traefik: Arc<Traefik>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let failed_at = Arc::new(Mutex::new(Vec::new()));
        let (s, t, f) = (stop.clone(), tally.clone(), failed_at.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let batch = traefik.send(LOAD_BATCH, "/", &[]).await;
                if batch.failures > 0 {
                    let mut times = f.lock().expect("the load's failure times");
                    if times.len() < FAILURE_TIMES {
                        times.push(jiff::Timestamp::now());
                    }
                }
                add(&mut t.lock().expect("the load's tally"), batch);
            }
        });
        Self {
            stop,
            tally,
            failed_at,
            task,
        }
    }

    /// Stops the load and returns what every request it sent got.
    pub async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load task");
        self.tally.lock().expect("the load's tally").clone()
    }

    /// Stops the load and asserts that it ran and that not one of its requests failed `during`
    /// what it names; returns its tally.
    pub async fn finish_none_failed(self, during: &str) -> Tally {
        let failed_at = self.failed_at.clone();
        let all = self.finish().await;
        eprintln!("during {during}: {all:?}");
        assert!(all.sent > 100, "the load ran during {during}: {all:?}");
        let failed_at = failed_at.lock().expect("the load's failure times");
        assert_eq!(
            all.failures, 0,
            "a request failed during {during}: {all:?}; failing batches ended at {failed_at:?}"
        );
        all
    }
}

/// Adds a batch's counts to `all`.
fn add(all: &mut Tally, batch: Tally) {
    all.sent += batch.sent;
    all.failures += batch.failures;
    if all.first_error.is_none() {
        all.first_error = batch.first_error;
    }
    for (image, n) in batch.by_image {
        *all.by_image.entry(image).or_default() += n;
    }
    for (hash, n) in batch.by_hash {
        *all.by_hash.entry(hash).or_default() += n;
    }
    for (pod, n) in batch.by_pod {
        *all.by_pod.entry(pod).or_default() += n;
    }
}

/// The standard deviation of a share measured on `sent` requests split with weight `expected`.
#[allow(clippy::cast_precision_loss)] // request counts are far below 2^52
pub fn sigma(sent: usize, expected: f64) -> f64 {
    (expected * (1.0 - expected) / sent.max(1) as f64).sqrt()
}

/// Whether pods of `image` answered `expected` of the requests, within [`SIGMAS`].
pub fn within(tally: &Tally, image: &str, expected: f64) -> bool {
    (tally.image_share(image) - expected).abs() <= SIGMAS * sigma(tally.sent, expected)
}

/// Asserts that pods of `image` answered `expected` of the requests, within [`SIGMAS`]; `step`
/// names the moment in the failure and in the line printed.
pub fn assert_share(step: &str, tally: &Tally, image: &str, expected: f64) {
    let margin = SIGMAS * sigma(tally.sent, expected);
    let share = tally.image_share(image);
    eprintln!(
        "{step}: {image} answered {share:.3} of {} requests (weight {expected}, ± {margin:.3} at \
         {SIGMAS}σ)",
        tally.sent
    );
    assert!(
        (share - expected).abs() <= margin,
        "{step}: {image} got {share:.4} of the requests, want {expected} ± {margin:.4}: {tally:?}"
    );
}

/// Waits until every request through Traefik is answered by a pod of `image` (a route taken up,
/// a version serving all of it), failing the test after a minute.
pub async fn wait_answered_by(traefik: &Traefik, image: &str) {
    traefik
        .wait_until(
            "/",
            &[],
            40,
            Duration::from_secs(60),
            &format!("{image} answering every request"),
            |t| t.failures == 0 && t.by_image.get(image) == Some(&t.sent),
        )
        .await;
}

/// Measures the share of `image` for requests with `headers`: once Traefik has taken up the
/// weight (it applies a change asynchronously, within about a second: batches until one is within
/// noise of `expected`), [`REQUESTS`] more, none failing.
pub async fn share_of(
    traefik: &Traefik,
    image: &str,
    headers: &[(&str, &str)],
    expected: f64,
) -> Tally {
    traefik
        .wait_until(
            "/",
            headers,
            SETTLE_BATCH,
            SETTLE_LIMIT,
            &format!("Traefik sending {expected} of the requests to {image}"),
            |t| t.failures == 0 && within(t, image, expected),
        )
        .await;
    let tally = traefik.send(REQUESTS, "/", headers).await;
    assert_eq!(tally.failures, 0, "failed requests: {tally:?}");
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(sent: usize, v2: usize) -> Tally {
        let mut t = Tally {
            sent,
            ..Tally::default()
        };
        t.by_image.insert("v2".into(), v2);
        t.by_image.insert("v1".into(), sent - v2);
        t
    }

    #[test]
    fn a_share_is_the_weight_within_four_binomial_deviations() {
        // 1500 requests at 25 %: σ ≈ 0.0112, so 25 % ± 4.5 %.
        assert!(within(&tally(1500, 375), "v2", 0.25));
        assert!(within(&tally(1500, 442), "v2", 0.25));
        assert!(!within(&tally(1500, 443), "v2", 0.25));
        assert!(!within(&tally(1500, 300), "v2", 0.25));
    }

    #[test]
    fn all_or_nothing_allows_no_stray_answer() {
        assert!(within(&tally(200, 200), "v2", 1.0));
        assert!(!within(&tally(200, 199), "v2", 1.0));
        assert!(within(&tally(200, 0), "v2", 0.0));
        assert!(!within(&tally(200, 1), "v2", 0.0));
    }

    #[test]
    fn batches_add_up() {
        let mut all = Tally::default();
        add(&mut all, tally(8, 2));
        let mut failed = tally(8, 1);
        failed.failures = 1;
        failed.first_error = Some("GET /: 502".into());
        add(&mut all, failed);
        assert_eq!((all.sent, all.failures), (16, 1));
        assert_eq!(all.by_image["v2"], 3);
        assert_eq!(all.first_error.as_deref(), Some("GET /: 502"));
    }
}
