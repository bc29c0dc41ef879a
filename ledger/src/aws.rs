//! What the DynamoDB store and the KMS key service share of the AWS SDK: the shared
//! configuration, and a one-line description of an SDK error.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
// The smithy runtime's error types, which every SDK crate re-exports (the same types).
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// The SDK configuration from the standard provider chain (credentials, and the region unless
/// `region` is given), with another `endpoint` when given (tests: moto), the SDK's own retries
/// off (the callers retry within their own bounds) and `attempt_timeout` on every attempt.
/// `None` when no region is configured anywhere.
pub(crate) async fn sdk_config(
    region: Option<&str>,
    endpoint: Option<&str>,
    attempt_timeout: Duration,
) -> Option<SdkConfig> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        );
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    shared.region().is_some().then_some(shared)
}

/// What went wrong, in one line, with the service's code and message when there are any.
pub(crate) fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            format!(
                "{}: {}",
                err.code().unwrap_or("unknown error"),
                err.message().unwrap_or("no message")
            )
        }
        other => {
            // The source chain carries the useful part (connection refused, timed out).
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}
