//! The vault's one error type.
//!
//! The variants tell apart what an operator does next: a key service that did not answer
//! (retry, page someone), a data key or value that does not belong where it was found
//! (tampering or a bug: investigate, never retry), a key the service does not have
//! (configuration), and a keyring file that is missing or too open (fix the file).

/// Everything a vault or key-service call can fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The key service could not be reached or failed (network, throttling, a server error,
    /// a disabled key, missing permissions).
    #[error("key service unavailable: {0}")]
    Unavailable(String),
    /// The data key did not unwrap: it was wrapped for another tenant or purpose, under another
    /// key, or altered.
    #[error(
        "the data key did not unwrap: it was wrapped for another tenant or purpose, under \
         another master key, or altered"
    )]
    KeyUnwrap,
    /// The value did not decrypt under its data key: the ciphertext or nonce was altered, or
    /// the value was moved from another record, or its wrapped key swapped for another's.
    #[error(
        "the value did not decrypt: it was altered, moved from another record, or stored with \
         another value's data key"
    )]
    Decrypt,
    /// The wrapped key names a master key or version this key service does not have: a blob
    /// from another keyring or KMS key, or a version newer than the keyring file holds.
    #[error("unknown master key {key_id} version {version}: not in this key service")]
    UnknownKey {
        /// The master key named.
        key_id: String,
        /// Its version.
        version: u32,
    },
    /// The local keyring file is missing, malformed, or readable by others than its owner;
    /// the message says which and what to do.
    #[error("keyring: {0}")]
    Keyring(String),
    /// An argument or setting out of its bounds.
    #[error("invalid: {0}")]
    Invalid(String),
}
