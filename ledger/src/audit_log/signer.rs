//! Who signs checkpoints: an Ed25519 key in a local file (the embedded default), or an AWS KMS
//! asymmetric key (`ECC_NIST_P256`, `ECDSA_SHA_256`) whose private half never leaves KMS.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use audit::checkpoint::{Algorithm, Checkpoint, LocalSigner, PublicKey, SignedCheckpoint};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyState, MessageType, SigningAlgorithmSpec};

use crate::error::Error;

/// Signs checkpoints.
#[async_trait]
pub trait CheckpointSigner: Send + Sync + fmt::Debug + 'static {
    /// The id checkpoints name their key by.
    fn key_id(&self) -> &str;

    /// Signs a checkpoint.
    async fn sign(&self, checkpoint: &Checkpoint) -> Result<SignedCheckpoint, Error>;

    /// The public key that verifies its signatures.
    async fn public_key(&self) -> Result<PublicKey, Error>;
}

/// An Ed25519 key in a local file (`audit_signing_key_file`).
#[derive(Debug)]
pub struct LocalCheckpointSigner {
    key: LocalSigner,
}

impl LocalCheckpointSigner {
    /// Wraps a loaded key.
    pub fn new(key: LocalSigner) -> LocalCheckpointSigner {
        LocalCheckpointSigner { key }
    }

    /// A key that lives only as long as the process: for tests and tools that verify what they
    /// wrote themselves.
    pub fn ephemeral() -> Result<LocalCheckpointSigner, Error> {
        LocalSigner::generate()
            .map(LocalCheckpointSigner::new)
            .map_err(|e| Error::Corrupt(format!("audit signing key: {e}")))
    }
}

#[async_trait]
impl CheckpointSigner for LocalCheckpointSigner {
    fn key_id(&self) -> &str {
        self.key.key_id()
    }

    async fn sign(&self, checkpoint: &Checkpoint) -> Result<SignedCheckpoint, Error> {
        Ok(self.key.sign(checkpoint))
    }

    async fn public_key(&self) -> Result<PublicKey, Error> {
        Ok(self.key.public_key())
    }
}

/// A KMS asymmetric signing key (`ECC_NIST_P256`): checkpoints are signed with `Sign`
/// (`ECDSA_SHA_256` over the raw message, an ASN.1 DER signature); the public key comes from
/// `GetPublicKey` (a DER SubjectPublicKeyInfo). Both are named by the key's ARN.
#[derive(Clone)]
pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: Arc<str>,
    attempt_timeout: Duration,
}

impl fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Attempts of one KMS call before a checkpoint waits for the next round.
const KMS_SIGN_ATTEMPTS_MAX: u32 = 3;

impl KmsSigner {
    /// A signer with the key `key_id` (an ARN, id or alias), on the SDK configuration of the
    /// ledger's other AWS clients (`crate::aws::sdk_config`).
    ///
    /// The key is described once (`DescribeKey`): one that is not an enabled `ECC_NIST_P256`
    /// key for `SIGN_VERIFY` is refused. From then on the signer names, signs with and reads
    /// the public key of the key's ARN, not the id it was given: an alias may later point at
    /// another key, and checkpoints signed by two keys must not name the same one.
    pub async fn connect(
        key_id: &str,
        region: Option<&str>,
        endpoint: Option<&str>,
        attempt_timeout: Duration,
    ) -> Result<KmsSigner, Error> {
        let config = crate::aws::sdk_config(region, endpoint, attempt_timeout)
            .await
            .ok_or_else(|| {
                Error::Corrupt("no AWS region is configured for the KMS signing key".into())
            })?;
        let client = aws_sdk_kms::Client::new(&config);
        // Refuse at start a key that cannot sign checkpoints.
        let described = client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| kms_error("DescribeKey", &e))?;
        let meta = described
            .key_metadata()
            .ok_or_else(|| Error::Corrupt("DescribeKey returned no metadata".into()))?;
        let spec = meta.key_spec().map(|s| s.as_str().to_owned());
        let usage = meta.key_usage().map(|u| u.as_str().to_owned());
        if spec.as_deref() != Some("ECC_NIST_P256") || usage.as_deref() != Some("SIGN_VERIFY") {
            return Err(Error::Corrupt(format!(
                "KMS key {key_id} is {} for {}; checkpoints need an ECC_NIST_P256 key for SIGN_VERIFY",
                spec.as_deref().unwrap_or("of an unknown spec"),
                usage.as_deref().unwrap_or("an unknown usage")
            )));
        }
        if meta.key_state() != Some(&KeyState::Enabled) {
            return Err(Error::Corrupt(format!(
                "KMS key {key_id} is {}; checkpoints need an enabled key",
                meta.key_state()
                    .map_or("in an unknown state", KeyState::as_str)
            )));
        }
        let arn = meta.arn().unwrap_or(key_id);
        if arn.is_empty() || arn.len() > audit::checkpoint::KEY_ID_LEN_MAX {
            return Err(Error::Corrupt(format!(
                "KMS key {key_id}: its ARN {arn:?} cannot name checkpoints (1 to {} bytes)",
                audit::checkpoint::KEY_ID_LEN_MAX
            )));
        }
        Ok(KmsSigner {
            client,
            key_id: arn.into(),
            attempt_timeout,
        })
    }

    async fn with_retries<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match tokio::time::timeout(self.attempt_timeout, call()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if attempt >= KMS_SIGN_ATTEMPTS_MAX => return Err(e),
                Err(_) if attempt >= KMS_SIGN_ATTEMPTS_MAX => {
                    return Err(Error::Corrupt(format!("KMS {what}: no answer in time")));
                }
                _ => {
                    tokio::time::sleep(crate::time::full_jitter(Duration::from_millis(
                        50 << attempt,
                    )))
                    .await
                }
            }
        }
    }
}

fn kms_error<E, R>(what: &str, e: &aws_sdk_kms::error::SdkError<E, R>) -> Error
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    Error::Corrupt(format!("KMS {what}: {}", crate::aws::describe(e)))
}

#[async_trait]
impl CheckpointSigner for KmsSigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn sign(&self, checkpoint: &Checkpoint) -> Result<SignedCheckpoint, Error> {
        let message = audit::checkpoint::message(checkpoint, &self.key_id);
        let signature = self
            .with_retries("Sign", || async {
                self.client
                    .sign()
                    .key_id(&*self.key_id)
                    .message(Blob::new(message.clone()))
                    .message_type(MessageType::Raw)
                    .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                    .send()
                    .await
                    .map_err(|e| kms_error("Sign", &e))
            })
            .await?
            .signature
            .map(Blob::into_inner)
            .ok_or_else(|| Error::Corrupt("KMS Sign returned no signature".into()))?;
        Ok(SignedCheckpoint {
            checkpoint: checkpoint.clone(),
            algorithm: Algorithm::EcdsaP256Sha256,
            key_id: self.key_id.to_string(),
            signature,
        })
    }

    async fn public_key(&self) -> Result<PublicKey, Error> {
        let out = self
            .with_retries("GetPublicKey", || async {
                self.client
                    .get_public_key()
                    .key_id(&*self.key_id)
                    .send()
                    .await
                    .map_err(|e| kms_error("GetPublicKey", &e))
            })
            .await?;
        let key = out
            .public_key
            .map(Blob::into_inner)
            .ok_or_else(|| Error::Corrupt("KMS GetPublicKey returned no key".into()))?;
        let key = PublicKey {
            algorithm: Algorithm::EcdsaP256Sha256,
            key_id: self.key_id.to_string(),
            key,
        };
        // Never hand out a key that verifies nothing (another curve, a malformed answer).
        audit::checkpoint::PublicKeys::new()
            .add(key.clone())
            .map_err(|e| Error::Corrupt(format!("KMS GetPublicKey: {e}")))?;
        Ok(key)
    }
}
