//! Per-origin rate limits on federation requests: a token bucket per authenticated origin server
//! (`[limits] federation_per_second`, `federation_burst`). A request over the limit gets 429
//! `M_LIMIT_EXCEEDED` with `retry_after_ms`, which mxfed's own outbound queue (and Synapse's)
//! honour. The host's job: it is about our resources, not about the protocol.
//!
//! Time comes in as an argument, so the buckets are tested without sleeping.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before full (idle) ones are forgotten: bounds memory under many origins.
const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per origin.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second (0: no limit).
    per_second: f64,
    /// Bucket size: the burst an origin may send at once.
    burst: f64,
    buckets: Mutex<BTreeMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter refilling `per_second` tokens per second up to `burst`; `per_second == 0`
    /// turns limiting off.
    pub fn new(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes one token for `origin` at `now`: `Ok` when the request may go on, else
    /// `Err(milliseconds until a token is there)`.
    ///
    /// # Errors
    /// The wait in milliseconds (at least 1) when the origin is over its limit.
    pub fn check(&self, origin: &str, now: Instant) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(origin) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| refill(b, now, rate, burst) < burst);
        }
        let burst = self.burst;
        let b = buckets.entry(origin.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = refill(b, now, self.per_second, self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait_s = (1.0 - b.tokens) / self.per_second;
            // Rounded up to whole milliseconds; at most a day, so the cast cannot overflow.
            let ms = (wait_s * 1000.0).ceil().clamp(1.0, 86_400_000.0);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err(ms as u64)
        }
    }
}

/// The tokens of `b` at `now`.
fn refill(b: &Bucket, now: Instant, per_second: f64, burst: f64) -> f64 {
    let dt = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + dt * per_second).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_per_origin() {
        let l = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check("a.example", t0), Ok(()));
        }
        // Empty: the next token comes in half a second (2 per second).
        assert_eq!(l.check("a.example", t0), Err(500));
        // Another origin has its own bucket.
        assert_eq!(l.check("b.example", t0), Ok(()));
        // 250 ms later half a token is back: 250 ms to go.
        assert_eq!(
            l.check("a.example", t0 + Duration::from_millis(250)),
            Err(250)
        );
        assert_eq!(
            l.check("a.example", t0 + Duration::from_millis(500)),
            Ok(())
        );
        // Long idle: refilled up to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(l.check("a.example", later), Ok(()));
        }
        assert!(l.check("a.example", later).is_err());
    }

    #[test]
    fn zero_rate_is_off() {
        let l = RateLimiter::new(0, 1);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(l.check("a.example", t0), Ok(()));
        }
    }
}
