//! One KMS request, retried when the failure is transient, every attempt counted; and what a
//! failure means for the vault.
//!
//! The SDK's own retries are off (as for DynamoDB, `store/dynamodb`), so every attempt is
//! counted in [`super::KmsKeyService::requests_total`] and no retry is hidden.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

use crate::aws::describe;
use crate::vault::VaultError;

/// How failed KMS requests are tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KmsRetry {
    /// Most attempts of one request, the first included.
    pub attempts_max: u32,
    /// Backoff cap of the first retry; it doubles with each retry.
    pub base: Duration,
    /// Largest backoff cap.
    pub cap: Duration,
    /// No retry starts after this much time since the first attempt.
    pub total_max: Duration,
}

/// Default of [`KmsRetry::attempts_max`].
pub const KMS_ATTEMPTS_DEFAULT: u32 = 4;
/// Largest setting of [`KmsRetry::attempts_max`].
pub const KMS_ATTEMPTS_MAX: u32 = 10;
/// Default of [`KmsRetry::base`].
pub const KMS_BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Default of [`KmsRetry::cap`].
pub const KMS_BACKOFF_CAP: Duration = Duration::from_secs(1);
/// Default of [`KmsRetry::total_max`].
pub const KMS_RETRY_TOTAL_MAX: Duration = Duration::from_secs(5);

impl Default for KmsRetry {
    fn default() -> Self {
        KmsRetry {
            attempts_max: KMS_ATTEMPTS_DEFAULT,
            base: KMS_BACKOFF_BASE,
            cap: KMS_BACKOFF_CAP,
            total_max: KMS_RETRY_TOTAL_MAX,
        }
    }
}

impl KmsRetry {
    fn pause(&self, started: Instant, retry: u32) -> Option<Duration> {
        let pause = crate::time::full_jitter(
            self.base
                .saturating_mul(1u32 << retry.min(16))
                .min(self.cap),
        );
        (retry.saturating_add(1) < self.attempts_max && started.elapsed() + pause <= self.total_max)
            .then_some(pause)
    }
}

/// What a failed request means.
enum Failure {
    /// Worth trying again: throttling, a server error, a lost connection, a timeout.
    Transient(String),
    /// Final.
    Fatal(VaultError),
}

/// Sends a request (built anew by `send` for each attempt) until it succeeds, fails for good,
/// or the retry policy is spent. `op` names the request in errors and logs.
pub(super) async fn with_retries<T, E, R, F, Fut>(
    op: &'static str,
    retry: &KmsRetry,
    requests: &AtomicU64,
    mut send: F,
) -> Result<T, VaultError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let started = Instant::now();
    let mut retries = 0u32;
    loop {
        requests.fetch_add(1, Ordering::Relaxed);
        let why = match send().await {
            Ok(answer) => return Ok(answer),
            Err(error) => match classify(op, &error) {
                Failure::Fatal(error) => return Err(error),
                Failure::Transient(why) => why,
            },
        };
        let Some(pause) = retry.pause(started, retries) else {
            return Err(VaultError::Unavailable(format!(
                "KMS {op}: {why} (gave up after {} attempts)",
                retries + 1
            )));
        };
        tracing::warn!(op, reason = %why, ?pause, "KMS request failed; retrying");
        tokio::time::sleep(pause).await;
        retries += 1;
    }
}

fn classify<E, R>(op: &'static str, error: &SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let why = describe(error);
    match error {
        SdkError::ServiceError(service) => match service.err().code().unwrap_or_default() {
            // The ciphertext is not one this key made under this encryption context: another
            // tenant's or purpose's, another key's, or altered.
            "InvalidCiphertextException" | "IncorrectKeyException" => {
                Failure::Fatal(VaultError::KeyUnwrap)
            }
            "ThrottlingException"
            | "KMSInternalException"
            | "DependencyTimeoutException"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "InternalFailure"
            | "" => Failure::Transient(why),
            // A disabled, pending-deletion or missing key, missing permissions, a key of the
            // wrong kind: nothing a retry changes; the operator must act.
            _ => Failure::Fatal(VaultError::Unavailable(format!("KMS {op}: {why}"))),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transient(why)
        }
        _ => Failure::Fatal(VaultError::Unavailable(format!("KMS {op}: {why}"))),
    }
}
