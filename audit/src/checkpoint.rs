//! Signed checkpoints: a stream's size and Merkle root at a moment, signed by its writer.
//!
//! A checkpoint commits its signer to every record of the stream up to its size: whoever later
//! changes, removes, adds or reorders one of them cannot make the records hash to the signed
//! root again (see [`crate::verify`]). Checkpoints are RFC 9162's signed tree heads, in a form
//! of our own.
//!
//! # What is signed
//!
//! The bytes [`message`] returns, a few lines of text rather than JSON, so that nothing depends
//! on a JSON encoder's choices and an auditor can rebuild them by hand:
//!
//! ```text
//! strongroom-audit-checkpoint/v1\n{stream}\n{size}\n{root as lowercase hex}\n{time}\n{key_id}\n
//! ```
//!
//! The key id is signed too, so a signature cannot be passed off under another key's name. No
//! field may hold a control character (a line break would make two checkpoints sign the same
//! bytes), which [`SignedCheckpoint::decode`] and [`PublicKeys::verify`] both check.
//!
//! # Algorithms and keys
//!
//! - [`Algorithm::Ed25519`]: the signature of the message itself; the public key is the raw
//!   32 bytes. [`LocalSigner`] signs this way with a key kept in an owner-only file.
//! - [`Algorithm::EcdsaP256Sha256`]: ECDSA P-256 over SHA-256 of the message, ASN.1 DER, which
//!   is what AWS KMS `Sign` returns for `ECDSA_SHA_256` with `MessageType=RAW`; the public key
//!   is the DER SubjectPublicKeyInfo that KMS `GetPublicKey` returns.
//!
//! # Encoding
//!
//! A [`SignedCheckpoint`] is one line of compact JSON, fields in this order:
//! `{"v":1,"stream":"..","size":N,"root":"<64 lowercase hex>","time":"..","algorithm":"ed25519",
//! "key_id":"..","signature":"<base64, standard alphabet, padded>"}`. Public keys are published as
//! `{"algorithm":"ed25519","key_id":"..","public_key":"<base64>"}`, one object or an array of
//! them ([`PublicKeys::from_json`]).

use std::borrow::Cow;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey,
    VerificationAlgorithm,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::merkle::Hash;
use crate::record::{FIELD_LEN_MAX, format_time, parse_time};

/// The checkpoint format this build writes and reads (`"v"`).
pub const CHECKPOINT_VERSION: u64 = 1;
/// Longest encoded signed checkpoint read, in bytes.
pub const CHECKPOINT_JSON_LEN_MAX: usize = 16 * 1024;
/// Longest stream name in a checkpoint, in bytes: a record's bound for it.
pub const STREAM_LEN_MAX: usize = FIELD_LEN_MAX;
/// Longest key id, in bytes (a KMS key ARN is about 100).
pub const KEY_ID_LEN_MAX: usize = 256;
/// Longest signature, in bytes (Ed25519's is 64, a DER ECDSA P-256 one at most 72).
pub const SIGNATURE_LEN_MAX: usize = 512;
/// Longest public key list read, in bytes.
pub const KEYS_JSON_LEN_MAX: usize = 256 * 1024;
/// Most public keys in one [`PublicKeys`].
pub const KEYS_MAX: usize = 1024;
/// Longest signing key file read, in bytes.
pub const KEY_FILE_LEN_MAX: usize = 4096;
/// The DER header of a P-256 SubjectPublicKeyInfo with an uncompressed point: SEQUENCE {
/// SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (65 bytes follow) }.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The first line of every signed message: the format and its version.
const MESSAGE_PREFIX: &str = "strongroom-audit-checkpoint/v1\n";
/// The `format` of a [`LocalSigner`] key file.
const KEY_FILE_FORMAT: &str = "strongroom-audit-signing-key/1";

/// A stream's size and Merkle root at a moment: what a signature commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The stream.
    pub stream: String,
    /// Records covered: the first `size` of the stream.
    pub size: u64,
    /// The Merkle root of those records ([`crate::merkle::Frontier::root`]).
    pub root: Hash,
    /// When it was made: RFC 3339 UTC with six fractional digits, as
    /// [`crate::record::format_time`] writes it.
    pub time: String,
}

/// A signature algorithm for checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// Ed25519 over the message (`"ed25519"`).
    #[serde(rename = "ed25519")]
    Ed25519,
    /// ECDSA P-256 over SHA-256 of the message, ASN.1 DER (`"ecdsa-p256-sha256"`).
    #[serde(rename = "ecdsa-p256-sha256")]
    EcdsaP256Sha256,
}

impl Algorithm {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The bytes a signature of `checkpoint` by `key_id` covers (see the module's documentation).
pub fn message(checkpoint: &Checkpoint, key_id: &str) -> Vec<u8> {
    format!(
        "{MESSAGE_PREFIX}{}\n{}\n{}\n{}\n{key_id}\n",
        checkpoint.stream,
        checkpoint.size,
        hex::encode(checkpoint.root),
        checkpoint.time
    )
    .into_bytes()
}

/// A record's inclusion proof: the record, its leaf, the audit path to the root of a tree of
/// its stream, and the signed checkpoint of that tree. From the store
/// (`ledger`'s `audit_inclusion`) or from an export ([`crate::export::prove`], which always
/// finds the checkpoint and has checked it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordProof {
    /// The stream.
    pub stream: String,
    /// The record's sequence (leaf index).
    pub seq: u64,
    /// The record's exact stored bytes.
    pub record: Vec<u8>,
    /// Its leaf hash ([`crate::merkle::leaf_hash`] of `record`).
    pub leaf: Hash,
    /// The size of the tree proven against.
    pub tree_size: u64,
    /// That tree's root.
    pub root: Hash,
    /// The audit path, deepest hash first (RFC 9162 section 2.1.3,
    /// [`crate::merkle::inclusion_proof`]'s order).
    pub proof: Vec<Hash>,
    /// The signed checkpoint of that tree (the first, when several were signed at its size);
    /// `None` when none was signed at its size.
    pub checkpoint: Option<SignedCheckpoint>,
}

/// A checkpoint with its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// What is signed.
    pub checkpoint: Checkpoint,
    /// How.
    pub algorithm: Algorithm,
    /// By which key: the id a [`PublicKey`] is found by.
    pub key_id: String,
    /// The signature of [`message`]`(checkpoint, key_id)`.
    pub signature: Vec<u8>,
}

/// The JSON form of a [`SignedCheckpoint`], fields in their written order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointJson<'a> {
    v: u64,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    size: u64,
    #[serde(borrow)]
    root: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    algorithm: Algorithm,
    #[serde(borrow)]
    key_id: Cow<'a, str>,
    #[serde(borrow)]
    signature: Cow<'a, str>,
}

impl SignedCheckpoint {
    /// The signed message ([`message`]).
    pub fn message(&self) -> Vec<u8> {
        message(&self.checkpoint, &self.key_id)
    }

    /// One line of compact JSON (without the line break).
    pub fn encode(&self) -> Vec<u8> {
        let json = CheckpointJson {
            v: CHECKPOINT_VERSION,
            stream: Cow::Borrowed(&self.checkpoint.stream),
            size: self.checkpoint.size,
            root: Cow::Owned(hex::encode(self.checkpoint.root)),
            time: Cow::Borrowed(&self.checkpoint.time),
            algorithm: self.algorithm,
            key_id: Cow::Borrowed(&self.key_id),
            signature: Cow::Owned(BASE64.encode(&self.signature)),
        };
        // Serializing strings and numbers into a Vec cannot fail.
        serde_json::to_vec(&json).unwrap_or_default()
    }

    /// Reads [`SignedCheckpoint::encode`]'s form, refusing anything longer than
    /// [`CHECKPOINT_JSON_LEN_MAX`], an unknown field, another version, a root that is not 64
    /// lowercase hex digits, a signature that is not base64, and fields [`PublicKeys::verify`]
    /// would refuse. The signature is not checked here.
    pub fn decode(bytes: &[u8]) -> Result<SignedCheckpoint, CheckpointError> {
        if bytes.len() > CHECKPOINT_JSON_LEN_MAX {
            return Err(CheckpointError::TooLong {
                len: bytes.len(),
                max: CHECKPOINT_JSON_LEN_MAX,
            });
        }
        let json: CheckpointJson<'_> =
            serde_json::from_slice(bytes).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        if json.v != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(json.v));
        }
        let root = parse_hash(&json.root).ok_or_else(|| CheckpointError::Field {
            field: "root",
            problem: "not 64 lowercase hex digits".to_owned(),
        })?;
        let signature = decode_base64(&json.signature, SIGNATURE_LEN_MAX, "signature")?;
        let signed = SignedCheckpoint {
            checkpoint: Checkpoint {
                stream: json.stream.into_owned(),
                size: json.size,
                root,
                time: json.time.into_owned(),
            },
            algorithm: json.algorithm,
            key_id: json.key_id.into_owned(),
            signature,
        };
        check_fields(&signed)?;
        Ok(signed)
    }
}

/// A hash written as 64 lowercase hex digits.
pub(crate) fn parse_hash(text: &str) -> Option<Hash> {
    parse_hash_bytes(text.as_bytes())
}

/// The value of each lowercase hex digit; 0xff for every other byte.
const HEX_VALUES: [u8; 256] = {
    let mut values = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        values[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    values
};

/// A hash written as 64 lowercase hex digits, from bytes. Branch-free by table: the export
/// verifier reads one per record, and this was a fifth of its hashing threads' time when it
/// checked digit by digit.
pub(crate) fn parse_hash_bytes(text: &[u8]) -> Option<Hash> {
    let text: &[u8; 64] = text.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (HEX_VALUES[pair[0] as usize], HEX_VALUES[pair[1] as usize]);
        invalid |= high | low;
        *byte = (high << 4) | low;
    }
    (invalid & 0xf0 == 0).then_some(out)
}

/// Base64 (standard, padded) of at most `max` bytes.
fn decode_base64(text: &str, max: usize, field: &'static str) -> Result<Vec<u8>, CheckpointError> {
    if text.len() > max.div_ceil(3) * 4 {
        return Err(CheckpointError::Field {
            field,
            problem: format!("longer than {max} bytes"),
        });
    }
    BASE64.decode(text).map_err(|e| CheckpointError::Field {
        field,
        problem: format!("not base64: {e}"),
    })
}

/// Checks what the signed message is built from: a stream and key id of bounded length
/// without control characters, and a time in [`format_time`]'s exact form.
fn check_fields(signed: &SignedCheckpoint) -> Result<(), CheckpointError> {
    check_text("stream", &signed.checkpoint.stream, STREAM_LEN_MAX)?;
    check_text("key_id", &signed.key_id, KEY_ID_LEN_MAX)?;
    let time = &signed.checkpoint.time;
    if parse_time(time).map(format_time).as_deref() != Some(time.as_str()) {
        return Err(CheckpointError::Field {
            field: "time",
            problem: "not RFC 3339 UTC with six fractional digits".to_owned(),
        });
    }
    Ok(())
}

fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), CheckpointError> {
    let problem = if text.is_empty() {
        "empty"
    } else if text.len() > max {
        "too long"
    } else if text.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(CheckpointError::Field {
        field,
        problem: problem.to_owned(),
    })
}

/// Why a checkpoint or a public key could not be read, or a signature did not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The input is longer than its bound.
    #[error("{len} bytes, more than the {max} allowed")]
    TooLong {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Not JSON of the expected shape (or an unknown field).
    #[error("not a signed checkpoint: {0}")]
    Malformed(String),
    /// Another format version.
    #[error("checkpoint format version {0}; this build reads 1")]
    Version(u64),
    /// A field does not hold what it must.
    #[error("its {field} is invalid: {problem}")]
    Field {
        /// The field's JSON name.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// No public key has this id and algorithm.
    #[error("signed by an unknown key: no {algorithm} public key {key_id}")]
    UnknownKey {
        /// The signer's key id.
        key_id: String,
        /// The signature's algorithm.
        algorithm: Algorithm,
    },
    /// The signature is not the key's signature of the checkpoint.
    #[error("the signature does not verify with public key {key_id}: forged or altered")]
    BadSignature {
        /// The key it was checked with.
        key_id: String,
    },
    /// A public key's bytes are not a key of its algorithm.
    #[error("public key {key_id} is invalid: {problem}")]
    BadPublicKey {
        /// Its id.
        key_id: String,
        /// What is wrong.
        problem: String,
    },
    /// Not a public key or list of them.
    #[error("not a public key list: {0}")]
    MalformedKeys(String),
    /// Two different keys with the same id and algorithm.
    #[error("two different {algorithm} public keys are named {key_id}")]
    DuplicateKey {
        /// The id.
        key_id: String,
        /// The algorithm.
        algorithm: Algorithm,
    },
    /// More than [`KEYS_MAX`] keys.
    #[error("more than {max} public keys")]
    TooManyKeys {
        /// The bound.
        max: usize,
    },
}

/// A public key that checkpoints are verified with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The id signatures name it by.
    pub key_id: String,
    /// Ed25519: the raw 32 bytes; P-256: the DER SubjectPublicKeyInfo (as KMS `GetPublicKey`
    /// returns it).
    pub key: Vec<u8>,
}

/// A public key's JSON form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyJson {
    algorithm: Algorithm,
    key_id: String,
    public_key: String,
}

impl PublicKey {
    /// Its JSON form, `{"algorithm":..,"key_id":..,"public_key":"<base64>"}`.
    pub fn to_json(&self) -> Vec<u8> {
        let json = PublicKeyJson {
            algorithm: self.algorithm,
            key_id: self.key_id.clone(),
            public_key: BASE64.encode(&self.key),
        };
        serde_json::to_vec(&json).unwrap_or_default()
    }

    /// The bytes `aws_lc_rs` verifies with: the key itself, or the point inside the SPKI.
    fn verifying_bytes(&self) -> Result<&[u8], CheckpointError> {
        let bad = |problem: &str| CheckpointError::BadPublicKey {
            key_id: self.key_id.clone(),
            problem: problem.to_owned(),
        };
        check_text("key_id", &self.key_id, KEY_ID_LEN_MAX)
            .map_err(|_| bad("its id is empty, too long or holds a control character"))?;
        match self.algorithm {
            Algorithm::Ed25519 if self.key.len() == 32 => Ok(&self.key),
            Algorithm::Ed25519 => Err(bad("an Ed25519 public key is 32 bytes")),
            Algorithm::EcdsaP256Sha256 => match self.key.strip_prefix(&P256_SPKI_PREFIX) {
                Some(point) if point.len() == 65 && point[0] == 0x04 => Ok(point),
                _ => Err(bad(
                    "not a DER SubjectPublicKeyInfo of a P-256 key with an uncompressed point",
                )),
            },
        }
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CheckpointError> {
        let key = self.verifying_bytes()?;
        let algorithm: &'static dyn VerificationAlgorithm = match self.algorithm {
            Algorithm::Ed25519 => &ED25519,
            Algorithm::EcdsaP256Sha256 => &ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(algorithm, key)
            .verify(message, signature)
            .map_err(|_| CheckpointError::BadSignature {
                key_id: self.key_id.clone(),
            })
    }
}

/// The public keys checkpoints may be signed with, found by key id and algorithm.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicKeys {
    keys: Vec<PublicKey>,
}

impl PublicKeys {
    /// No key.
    pub fn new() -> PublicKeys {
        PublicKeys::default()
    }

    /// Adds a key, refusing one that is not a key of its algorithm, a second key under the
    /// same id and algorithm, and more than [`KEYS_MAX`]. The same key twice is kept once.
    pub fn add(&mut self, key: PublicKey) -> Result<(), CheckpointError> {
        key.verifying_bytes()?;
        if let Some(known) = self.find(&key.key_id, key.algorithm) {
            if known.key == key.key {
                return Ok(());
            }
            return Err(CheckpointError::DuplicateKey {
                key_id: key.key_id,
                algorithm: key.algorithm,
            });
        }
        if self.keys.len() >= KEYS_MAX {
            return Err(CheckpointError::TooManyKeys { max: KEYS_MAX });
        }
        self.keys.push(key);
        Ok(())
    }

    /// Reads one public key object or an array of them (see the module's documentation).
    pub fn from_json(bytes: &[u8]) -> Result<PublicKeys, CheckpointError> {
        if bytes.len() > KEYS_JSON_LEN_MAX {
            return Err(CheckpointError::TooLong {
                len: bytes.len(),
                max: KEYS_JSON_LEN_MAX,
            });
        }
        let malformed = |e: serde_json::Error| CheckpointError::MalformedKeys(e.to_string());
        let list: Vec<PublicKeyJson> = if bytes.trim_ascii_start().starts_with(b"[") {
            serde_json::from_slice(bytes).map_err(malformed)?
        } else {
            vec![serde_json::from_slice(bytes).map_err(malformed)?]
        };
        let mut keys = PublicKeys::new();
        for json in list {
            let key = decode_base64(&json.public_key, 1024, "public_key").map_err(|e| {
                CheckpointError::BadPublicKey {
                    key_id: json.key_id.clone(),
                    problem: e.to_string(),
                }
            })?;
            keys.add(PublicKey {
                algorithm: json.algorithm,
                key_id: json.key_id,
                key,
            })?;
        }
        Ok(keys)
    }

    /// The key of this id and algorithm.
    pub fn find(&self, key_id: &str, algorithm: Algorithm) -> Option<&PublicKey> {
        self.keys
            .iter()
            .find(|k| k.algorithm == algorithm && k.key_id == key_id)
    }

    /// Checks the checkpoint's fields and its signature by the key it names.
    pub fn verify(&self, signed: &SignedCheckpoint) -> Result<(), CheckpointError> {
        check_fields(signed)?;
        let key = self.find(&signed.key_id, signed.algorithm).ok_or_else(|| {
            CheckpointError::UnknownKey {
                key_id: signed.key_id.clone(),
                algorithm: signed.algorithm,
            }
        })?;
        key.verify(&signed.message(), &signed.signature)
    }

    /// The keys.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why a signing key file could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing it failed.
    #[error("signing key file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Its mode lets others than its owner read, write or run it.
    #[error(
        "signing key file {} has mode {mode:03o}, which lets other users at it: run chmod 600 {}",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The directory to create it in does not exist.
    #[error("cannot create signing key file {}: its directory does not exist", path.display())]
    MissingDirectory {
        /// The file.
        path: PathBuf,
    },
    /// Its content is not a signing key.
    #[error("{} is not a signing key file: {problem}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The crypto library failed to make or encode a key.
    #[error("the crypto library could not generate or encode an Ed25519 key")]
    Crypto,
}

/// A key file's content: one line of JSON.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    format: String,
    algorithm: Algorithm,
    key_id: String,
    pkcs8: String,
}

/// An Ed25519 checkpoint signer whose private key lives in this process (and, from
/// [`LocalSigner::load_or_create`], in an owner-only file): for a deployment without a key
/// service. Its [`fmt::Debug`] shows only the key id.
pub struct LocalSigner {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl LocalSigner {
    /// A new random key, kept in memory only.
    pub fn generate() -> Result<LocalSigner, KeyFileError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| KeyFileError::Crypto)?;
        Ok(LocalSigner::from_pair(pair))
    }

    fn from_pair(pair: Ed25519KeyPair) -> LocalSigner {
        let raw = pair.public_key().as_ref();
        let fingerprint = digest::digest(&digest::SHA256, raw);
        let key_id = format!("ed25519:{}", &hex::encode(fingerprint.as_ref())[..16]);
        LocalSigner { pair, key_id }
    }

    /// Loads the key file at `path`, or creates it with a new key when there is none.
    ///
    /// The file is created with mode 0600 from the start (`O_CREAT | O_EXCL`, never readable by
    /// others in between) in a directory that must exist. When another process creates it at
    /// the same moment, its key is loaded instead.
    pub fn load_or_create(path: &Path) -> Result<LocalSigner, KeyFileError> {
        match LocalSigner::load(path) {
            Err(KeyFileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                LocalSigner::create(path)
            }
            loaded => loaded,
        }
    }

    fn create(path: &Path) -> Result<LocalSigner, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let pair = Ed25519KeyPair::generate().map_err(|_| KeyFileError::Crypto)?;
        let pkcs8 = pair.to_pkcs8().map_err(|_| KeyFileError::Crypto)?;
        let signer = LocalSigner::from_pair(pair);
        let json = KeyFileJson {
            format: KEY_FILE_FORMAT.to_owned(),
            algorithm: Algorithm::Ed25519,
            key_id: signer.key_id.clone(),
            pkcs8: BASE64.encode(pkcs8.as_ref()),
        };
        let mut content = serde_json::to_vec(&json).unwrap_or_default();
        content.push(b'\n');
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        let mut file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return LocalSigner::load(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyFileError::MissingDirectory {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(io(e)),
        };
        if let Err(e) = file.write_all(&content).and_then(|()| file.sync_all()) {
            // A half-written file would be refused by every later start: leave none.
            let _ = std::fs::remove_file(path);
            return Err(io(e));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(signer)
    }

    /// Loads the key file at `path`, which must exist, be a regular file and grant no
    /// permission to group or others.
    pub fn load(path: &Path) -> Result<LocalSigner, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let format = |problem: &str| KeyFileError::Format {
            path: path.to_owned(),
            problem: problem.to_owned(),
        };
        // Before opening: opening a FIFO would wait for a writer.
        if !std::fs::metadata(path).map_err(io)?.is_file() {
            return Err(format("not a regular file"));
        }
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let mut content = Vec::new();
        file.take(KEY_FILE_LEN_MAX as u64 + 1)
            .read_to_end(&mut content)
            .map_err(io)?;
        if content.len() > KEY_FILE_LEN_MAX {
            return Err(format("longer than a key file can be"));
        }
        let json: KeyFileJson =
            serde_json::from_slice(&content).map_err(|e| format(&e.to_string()))?;
        if json.format != KEY_FILE_FORMAT || json.algorithm != Algorithm::Ed25519 {
            return Err(format(&format!(
                "format {} and algorithm {}; this build reads {KEY_FILE_FORMAT} and ed25519",
                json.format, json.algorithm
            )));
        }
        let pkcs8 = BASE64
            .decode(&json.pkcs8)
            .map_err(|_| format("pkcs8 is not base64"))?;
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| format(&format!("pkcs8 is not an Ed25519 key: {e}")))?;
        let signer = LocalSigner::from_pair(pair);
        if signer.key_id != json.key_id {
            return Err(format(&format!(
                "key_id {} is not the key's, {}",
                json.key_id, signer.key_id
            )));
        }
        Ok(signer)
    }

    /// `ed25519:` and the first 16 hex digits of SHA-256 of the raw public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> SignedCheckpoint {
        let signature = self.pair.sign(&message(checkpoint, &self.key_id));
        SignedCheckpoint {
            checkpoint: checkpoint.clone(),
            algorithm: Algorithm::Ed25519,
            key_id: self.key_id.clone(),
            signature: signature.as_ref().to_vec(),
        }
    }

    /// The public key that verifies its signatures.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            algorithm: Algorithm::Ed25519,
            key_id: self.key_id.clone(),
            key: self.pair.public_key().as_ref().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    use proptest::prelude::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            stream: "gateway-1".to_owned(),
            size: 1000,
            root: crate::merkle::leaf_hash(b"root"),
            time: format_time(1_764_000_000_123_456),
        }
    }

    fn keys_of(signers: &[&LocalSigner]) -> PublicKeys {
        let mut keys = PublicKeys::new();
        for signer in signers {
            keys.add(signer.public_key()).expect("key");
        }
        keys
    }

    #[test]
    fn a_signed_checkpoint_encodes_reads_back_and_verifies() {
        let signer = LocalSigner::generate().expect("key");
        let signed = signer.sign(&checkpoint());
        let text = String::from_utf8(signed.encode()).expect("utf-8");
        let expected_start = format!(
            r#"{{"v":1,"stream":"gateway-1","size":1000,"root":"{}","time":"2025-11-24T16:00:00.123456Z","algorithm":"ed25519","key_id":"{}","signature":""#,
            hex::encode(checkpoint().root),
            signer.key_id()
        );
        assert!(text.starts_with(&expected_start), "{text}");
        assert!(!text.contains('\n'));
        let read = SignedCheckpoint::decode(text.as_bytes()).expect("decode");
        assert_eq!(read, signed);
        // Published keys read back and verify.
        let keys = PublicKeys::from_json(&signer.public_key().to_json()).expect("keys");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.verify(&read), Ok(()));
        assert_eq!(
            signed.message(),
            format!(
                "strongroom-audit-checkpoint/v1\ngateway-1\n1000\n{}\n2025-11-24T16:00:00.123456Z\n{}\n",
                hex::encode(checkpoint().root),
                signer.key_id()
            )
            .into_bytes()
        );
        assert!(signer.key_id().starts_with("ed25519:") && signer.key_id().len() == 24);
    }

    /// Any change of a signed field or of the signature is caught.
    #[test]
    fn a_change_of_any_field_or_of_the_signature_fails_verification() {
        let signer = LocalSigner::generate().expect("key");
        let other = LocalSigner::generate().expect("key");
        let keys = keys_of(&[&signer, &other]);
        let signed = signer.sign(&checkpoint());
        let bad_signature = |key_id: &str| {
            Err(CheckpointError::BadSignature {
                key_id: key_id.to_owned(),
            })
        };
        let check = |change: &dyn Fn(&mut SignedCheckpoint), expected| {
            let mut changed = signed.clone();
            change(&mut changed);
            assert_eq!(keys.verify(&changed), expected);
        };
        check(&|s| s.checkpoint.size += 1, bad_signature(signer.key_id()));
        check(
            &|s| s.checkpoint.size ^= 1 << 40,
            bad_signature(signer.key_id()),
        );
        check(
            &|s| s.checkpoint.root[31] ^= 1,
            bad_signature(signer.key_id()),
        );
        check(
            &|s| s.checkpoint.root[0] ^= 0x80,
            bad_signature(signer.key_id()),
        );
        check(
            &|s| s.checkpoint.time = format_time(1_764_000_000_123_457),
            bad_signature(signer.key_id()),
        );
        check(
            &|s| s.checkpoint.stream.push('x'),
            bad_signature(signer.key_id()),
        );
        check(
            &|s| s.checkpoint.stream = "gateway-2".into(),
            bad_signature(signer.key_id()),
        );
        check(&|s| s.signature[10] ^= 4, bad_signature(signer.key_id()));
        check(
            &|s| s.signature.truncate(63),
            bad_signature(signer.key_id()),
        );
        // Signed by one key, named as the other: the other's key refuses it.
        check(
            &|s| s.key_id = other.key_id().to_owned(),
            bad_signature(other.key_id()),
        );
        check(
            &|s| s.key_id.push('0'),
            Err(CheckpointError::UnknownKey {
                key_id: format!("{}0", signer.key_id()),
                algorithm: Algorithm::Ed25519,
            }),
        );
        check(
            &|s| s.algorithm = Algorithm::EcdsaP256Sha256,
            Err(CheckpointError::UnknownKey {
                key_id: signer.key_id().to_owned(),
                algorithm: Algorithm::EcdsaP256Sha256,
            }),
        );
        check(
            &|s| s.checkpoint.stream.push('\n'),
            Err(field_error("stream")),
        );
        check(
            &|s| s.checkpoint.time = "2025-11-24T16:00:00Z".into(),
            Err(field_error("time")),
        );
        check(&|_| {}, Ok(()));
    }

    fn field_error(field: &'static str) -> CheckpointError {
        let problem = match field {
            "time" => "not RFC 3339 UTC with six fractional digits",
            _ => "holds a control character",
        };
        CheckpointError::Field {
            field,
            problem: problem.to_owned(),
        }
    }

    #[test]
    fn an_unknown_key_id_is_its_own_error() {
        let signer = LocalSigner::generate().expect("key");
        let stranger = LocalSigner::generate().expect("key");
        let signed = signer.sign(&checkpoint());
        assert_eq!(
            keys_of(&[&stranger]).verify(&signed),
            Err(CheckpointError::UnknownKey {
                key_id: signer.key_id().to_owned(),
                algorithm: Algorithm::Ed25519
            })
        );
        assert!(matches!(
            PublicKeys::new().verify(&signed),
            Err(CheckpointError::UnknownKey { .. })
        ));
    }

    /// A P-256 key as AWS KMS holds it: the SPKI is what `GetPublicKey` returns, the DER
    /// signature over SHA-256 of the message what `Sign` (`ECDSA_SHA_256`, `RAW`) returns.
    #[test]
    fn ecdsa_p256_signatures_verify_with_the_spki_of_the_key() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("key");
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        assert_eq!(spki.len(), 91);
        let key_id = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let cp = checkpoint();
        let signature = pair
            .sign(&SystemRandom::new(), &message(&cp, key_id))
            .expect("sign");
        let signed = SignedCheckpoint {
            checkpoint: cp,
            algorithm: Algorithm::EcdsaP256Sha256,
            key_id: key_id.to_owned(),
            signature: signature.as_ref().to_vec(),
        };
        let ed = LocalSigner::generate().expect("key");
        let list = format!(
            r#"[{}, {{"algorithm":"ecdsa-p256-sha256","key_id":"{key_id}","public_key":"{}"}}]"#,
            String::from_utf8(ed.public_key().to_json()).expect("utf-8"),
            BASE64.encode(&spki)
        );
        let keys = PublicKeys::from_json(list.as_bytes()).expect("keys");
        assert_eq!(keys.len(), 2);
        let read = SignedCheckpoint::decode(&signed.encode()).expect("decode");
        assert_eq!(keys.verify(&read), Ok(()));
        let mut changed = read.clone();
        changed.checkpoint.size -= 1;
        assert!(matches!(
            keys.verify(&changed),
            Err(CheckpointError::BadSignature { .. })
        ));
        assert_eq!(keys.verify(&ed.sign(&checkpoint())), Ok(()));

        // The raw point, or an SPKI of another curve, is not taken as a P-256 key.
        let check_refused = |key: Vec<u8>| {
            let mut keys = PublicKeys::new();
            let added = keys.add(PublicKey {
                algorithm: Algorithm::EcdsaP256Sha256,
                key_id: "k".into(),
                key,
            });
            assert!(matches!(added, Err(CheckpointError::BadPublicKey { .. })));
        };
        check_refused(pair.public_key().as_ref().to_vec());
        let mut other_curve = spki.clone();
        other_curve[20] ^= 1;
        check_refused(other_curve);
        check_refused(spki[..90].to_vec());
    }

    #[test]
    fn public_key_lists_are_checked() {
        let signer = LocalSigner::generate().expect("key");
        let other = LocalSigner::generate().expect("key");
        let check = |json: String, expected: &str| {
            let got = PublicKeys::from_json(json.as_bytes()).map(|k| k.len());
            let got = match got {
                Ok(n) => format!("{n} keys"),
                Err(e) => e.to_string(),
            };
            assert!(got.contains(expected), "{json}: {got}");
        };
        let key = |s: &LocalSigner| String::from_utf8(s.public_key().to_json()).expect("utf-8");
        check(key(&signer), "1 keys");
        check(format!("[{},{}]", key(&signer), key(&other)), "2 keys");
        check(format!("[{},{}]", key(&signer), key(&signer)), "1 keys");
        let same_id = key(&other).replace(other.key_id(), signer.key_id());
        check(
            format!("[{},{same_id}]", key(&signer)),
            "two different ed25519 public keys",
        );
        check("[]".into(), "0 keys");
        check("{}".into(), "missing field");
        check(key(&signer).replace("}", r#","extra":1}"#), "unknown field");
        check(
            key(&signer).replace("ed25519\"", "rsa\""),
            "unknown variant",
        );
        check(
            r#"{"algorithm":"ed25519","key_id":"k","public_key":"AAAA"}"#.into(),
            "32 bytes",
        );
        check(
            r#"{"algorithm":"ed25519","key_id":"k","public_key":"!"}"#.into(),
            "not base64",
        );
        check(" ".repeat(KEYS_JSON_LEN_MAX + 1), "more than the");
        check("\u{0}garbage".into(), "not a public key list");
    }

    #[test]
    fn decoding_refuses_what_is_not_a_signed_checkpoint() {
        let signer = LocalSigner::generate().expect("key");
        let good = String::from_utf8(signer.sign(&checkpoint()).encode()).expect("utf-8");
        let check = |input: &[u8], expected: &str| match SignedCheckpoint::decode(input) {
            Ok(_) => panic!("{} was read", String::from_utf8_lossy(input)),
            Err(e) => assert!(e.to_string().contains(expected), "{e}"),
        };
        let root = hex::encode(checkpoint().root);
        check(b"", "EOF");
        check(b"garbage", "not a signed checkpoint");
        check(b"[1,2,3]", "not a signed checkpoint");
        check(
            &vec![b' '; CHECKPOINT_JSON_LEN_MAX + 1],
            "more than the 16384 allowed",
        );
        check(good.replace("\"v\":1", "\"v\":2").as_bytes(), "version 2");
        check(
            good.replacen("{", r#"{"x":1,"#, 1).as_bytes(),
            "unknown field",
        );
        check(
            good.replace(&root, &root.to_uppercase()).as_bytes(),
            "root is invalid",
        );
        check(
            good.replace(&root, &root[1..]).as_bytes(),
            "root is invalid",
        );
        check(
            good.replace(&root, &format!("g{}", &root[1..])).as_bytes(),
            "root is invalid",
        );
        check(
            good.replace("\"signature\":\"", "\"signature\":\"!")
                .as_bytes(),
            "signature is invalid",
        );
        check(
            good.replace("gateway-1", "gateway\\n1").as_bytes(),
            "stream is invalid",
        );
        check(
            good.replace("gateway-1", "").as_bytes(),
            "stream is invalid",
        );
        check(good.replace(".123456Z", "Z").as_bytes(), "time is invalid");
        check(
            good.replace(".123456Z", ".123456+01:00").as_bytes(),
            "time is invalid",
        );
        check(
            good.replace("\"size\":1000", "\"size\":-1").as_bytes(),
            "not a signed checkpoint",
        );
        check(
            good.replace("ed25519\"", "rsa\"").as_bytes(),
            "unknown variant",
        );
        let long_signature = format!("\"signature\":\"{}", "A".repeat(4 * SIGNATURE_LEN_MAX));
        check(
            good.replace("\"signature\":\"", &long_signature).as_bytes(),
            "signature is invalid",
        );
    }

    proptest! {
        /// Any bytes changed in an encoded checkpoint: an error or a checkpoint that verifies
        /// or not, never a panic.
        #[test]
        fn flipped_bytes_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let signer = LocalSigner::generate().expect("key");
            let keys = keys_of(&[&signer]);
            let mut bytes = signer.sign(&checkpoint()).encode();
            for (at, value) in flips {
                let at = at % bytes.len();
                bytes[at] = value;
            }
            if let Ok(read) = SignedCheckpoint::decode(&bytes) {
                let _ = keys.verify(&read);
            }
        }
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn the_key_file_is_created_owner_only_and_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit-signing.key");
        let created = LocalSigner::load_or_create(&path).expect("create");
        assert_eq!(mode_of(&path), 0o600);
        let loaded = LocalSigner::load_or_create(&path).expect("load");
        assert_eq!(loaded.key_id(), created.key_id());
        assert_eq!(
            LocalSigner::load(&path).expect("load").public_key(),
            created.public_key()
        );
        // A signature by the loaded key verifies with the created key's public key.
        let keys = keys_of(&[&created]);
        assert_eq!(keys.verify(&loaded.sign(&checkpoint())), Ok(()));
        // Debug shows the key id, not the key.
        let content = std::fs::read_to_string(&path).expect("read");
        let json: KeyFileJson = serde_json::from_str(&content).expect("json");
        let debug = format!("{created:?}");
        assert!(debug.contains(created.key_id()), "{debug}");
        assert!(
            !debug.contains(&json.pkcs8) && !debug.contains(&json.pkcs8[..16]),
            "{debug}"
        );
    }

    #[test]
    fn key_files_others_can_read_or_that_are_not_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit-signing.key");
        LocalSigner::load_or_create(&path).expect("create");
        let check = |mode: u32, expected: Option<&str>| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            match (LocalSigner::load_or_create(&path), expected) {
                (Ok(_), None) => {}
                (Err(e), Some(expected)) => assert!(e.to_string().contains(expected), "{e}"),
                (got, _) => panic!("mode {mode:o}: {got:?}"),
            }
        };
        let advice = format!("run chmod 600 {}", path.display());
        check(0o644, Some(&advice));
        check(0o640, Some(&advice));
        check(0o604, Some(&advice));
        check(0o601, Some(&advice));
        check(0o400, None);
        check(0o600, None);

        let check_content = |content: &str, expected: &str| {
            let path = dir.path().join("other.key");
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, content).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            let e = LocalSigner::load(&path).expect_err("refused");
            assert!(e.to_string().contains(expected), "{e}");
        };
        let good = std::fs::read_to_string(&path).expect("read");
        check_content("", "is not a signing key file");
        check_content("garbage", "is not a signing key file");
        check_content(&good.replace("\"pkcs8\":\"", "\"pkcs8\":\"AAAA"), "pkcs8");
        check_content(&good.replace("ed25519:", "ed25519:0"), "is not the key's");
        check_content(&good.replace("/1\"", "/2\""), "this build reads");
        check_content(&" ".repeat(KEY_FILE_LEN_MAX + 1), "longer than");

        let missing = LocalSigner::load(&dir.path().join("none.key")).expect_err("missing");
        assert!(
            matches!(missing, KeyFileError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        let no_dir = LocalSigner::load_or_create(&dir.path().join("no/such/dir/k.key"));
        assert!(
            matches!(no_dir, Err(KeyFileError::MissingDirectory { .. })),
            "{no_dir:?}"
        );
        let a_dir = LocalSigner::load_or_create(dir.path()).expect_err("a directory");
        assert!(a_dir.to_string().contains("not a regular file"), "{a_dir}");
    }
}
