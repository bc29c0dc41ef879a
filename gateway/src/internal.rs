//! The internal assertion: how a ledger run alone (`strongroom ledger`) knows whom the gateway
//! in front of it authenticated.
//!
//! In a split deployment the gateway verifies the partner's bearer token, checks the route
//! policy, and forwards the request with a `strongroom-identity` header instead of the token:
//! the identity it proved, bound to this one request (method, path and query, request id) and
//! valid for [`ASSERTION_TTL_S`], authenticated with HMAC-SHA256 under a key both processes hold
//! (`internal_key_file`). The ledger accepts nothing else: a request without a valid assertion,
//! even one with a perfectly good bearer token, is refused with 401. So a caller that reaches
//! the ledger's port directly cannot act, and a captured assertion cannot be used for another
//! route or after its short life (a replay of the same request within it meets the ledger's
//! idempotency: a write needs the same `Idempotency-Key` and returns the first answer).
//!
//! The claims may also name the partner's address as the gateway established it, which the
//! ledger records as the audit record's `source_ip` (its own peer is the gateway).
//!
//! The wire form is `v1.<base64url(JSON claims)>.<base64url(HMAC-SHA256("v1." + claims))>`.
//! A MAC, not a signature: both sides are ours, it costs about a microsecond, and the key never
//! leaves the two processes. The key file holds at least [`INTERNAL_KEY_BYTES_MIN`] random bytes
//! as hex and must be readable by its owner only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use ledger::TenantId;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::auth::{AuthError, Identity, KeyError};

/// The header carrying the assertion, gateway to ledger.
pub const IDENTITY_HEADER: &str = "strongroom-identity";
/// How long an assertion is valid after the gateway made it, seconds. It is made just before
/// the request leaves, so this only needs to cover the network and clock skew between tasks.
pub const ASSERTION_TTL_S: u64 = 30;
/// Fewest key bytes accepted.
pub const INTERNAL_KEY_BYTES_MIN: usize = 32;
/// Most key bytes accepted.
pub const INTERNAL_KEY_BYTES_MAX: usize = 1024;
/// Largest assertion read, bytes (the identity is small; this bounds the work on a forged one).
pub const ASSERTION_BYTES_MAX: usize = 8 * 1024;
/// The version prefix, MACed with the claims.
const VERSION: &str = "v1";

/// The claims of an assertion.
#[derive(Debug, Serialize, Deserialize)]
struct Claims<'a> {
    sub: std::borrow::Cow<'a, str>,
    ten: std::borrow::Cow<'a, str>,
    scp: std::borrow::Cow<'a, [String]>,
    rol: std::borrow::Cow<'a, [String]>,
    /// The bearer token's expiry, kept as the identity's (checked by the gateway, with its
    /// leeway; not again here).
    exp: u64,
    /// When the gateway made the assertion.
    iat: u64,
    /// The request it is for.
    m: std::borrow::Cow<'a, str>,
    p: std::borrow::Cow<'a, str>,
    rid: std::borrow::Cow<'a, str>,
    /// The token's client id, for the audit record (absent from assertions of builds before
    /// the audit log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cid: Option<std::borrow::Cow<'a, str>>,
    /// The partner's address as the gateway established it (its peer, or the rightmost
    /// untrusted `X-Forwarded-For` entry), for the audit record: the ledger's own peer is the
    /// gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
}

/// The request an assertion is bound to.
#[derive(Clone, Copy, Debug)]
pub struct Bound<'a> {
    /// The method.
    pub method: &'a str,
    /// Path and query, as sent to the ledger.
    pub path_and_query: &'a str,
    /// The request id (`x-request-id`).
    pub request_id: &'a str,
}

/// The key shared by the gateway and the ledger. Zeroized on drop.
#[derive(Clone)]
pub struct InternalKey(Arc<Zeroizing<Vec<u8>>>);

impl std::fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalKey(<redacted>)")
    }
}

impl InternalKey {
    /// The default key file in a data directory (dev mode).
    pub fn default_path(data_dir: &Path) -> PathBuf {
        data_dir.join("internal.key")
    }

    /// Loads the key, generating it first if `generate` and the file does not exist (dev mode).
    pub fn load_or_generate(path: &Path, generate: bool) -> Result<InternalKey, KeyError> {
        if generate && !path.exists() {
            let err = |reason: String| KeyError {
                path: path.to_owned(),
                reason,
            };
            let mut bytes = Zeroizing::new([0u8; INTERNAL_KEY_BYTES_MIN]);
            rustls::crypto::aws_lc_rs::default_provider()
                .secure_random
                .fill(bytes.as_mut())
                .map_err(|_| err("no random numbers".into()))?;
            let hex = Zeroizing::new(hex(bytes.as_ref()));
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            crate::tls::write_private(path, hex.as_bytes()).map_err(|e| err(e.to_string()))?;
        }
        Self::load(path)
    }

    /// Loads the key: hex text, owner-only permissions.
    pub fn load(path: &Path) -> Result<InternalKey, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let err = |reason: String| KeyError {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(err(
                "readable by others than its owner (chmod 600 it)".into()
            ));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
        let bytes = unhex(text.trim()).ok_or_else(|| err("not hex".into()))?;
        if !(INTERNAL_KEY_BYTES_MIN..=INTERNAL_KEY_BYTES_MAX).contains(&bytes.len()) {
            return Err(err(format!(
                "{} bytes; the key must have {INTERNAL_KEY_BYTES_MIN} to {INTERNAL_KEY_BYTES_MAX}",
                bytes.len()
            )));
        }
        Ok(InternalKey(Arc::new(bytes)))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; ours are 32 to 1024 bytes.
        <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_slice())
            .expect("HMAC takes keys of any length")
    }

    /// The assertion for `identity` on request `bound`, made at `now` (seconds since the epoch).
    pub fn assert(&self, identity: &Identity, bound: Bound<'_>, now: u64) -> String {
        self.assert_from(identity, None, bound, now)
    }

    /// [`InternalKey::assert`], also naming the partner's address (`client`).
    pub fn assert_from(
        &self,
        identity: &Identity,
        client: Option<std::net::IpAddr>,
        bound: Bound<'_>,
        now: u64,
    ) -> String {
        let claims = Claims {
            sub: identity.subject.as_str().into(),
            ten: identity.tenant.as_str().into(),
            scp: identity.scopes.as_slice().into(),
            rol: identity.roles.as_slice().into(),
            exp: identity.expires_at,
            iat: now,
            m: bound.method.into(),
            p: bound.path_and_query.into(),
            rid: bound.request_id.into(),
            cid: identity.client_id.as_deref().map(Into::into),
            ip: client.map(|ip| ip.to_string()),
        };
        // Serializing strings and numbers cannot fail.
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let mut out = String::with_capacity(json.len() * 4 / 3 + 64);
        out.push_str(VERSION);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut out);
        let mut mac = self.mac();
        mac.update(out.as_bytes());
        let tag = mac.finalize().into_bytes();
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut out);
        out
    }

    /// The identity an assertion proves for request `bound` at `now`, or why it proves none.
    pub fn verify(&self, value: &str, bound: Bound<'_>, now: u64) -> Result<Identity, AuthError> {
        self.verify_from(value, bound, now)
            .map(|(identity, _)| identity)
    }

    /// [`InternalKey::verify`], with the partner's address the assertion names, if it names
    /// one.
    pub fn verify_from(
        &self,
        value: &str,
        bound: Bound<'_>,
        now: u64,
    ) -> Result<(Identity, Option<std::net::IpAddr>), AuthError> {
        if value.len() > ASSERTION_BYTES_MAX {
            return Err(AuthError::TooLarge);
        }
        let (signed, tag) = value.rsplit_once('.').ok_or(AuthError::Malformed)?;
        let (version, payload) = signed.split_once('.').ok_or(AuthError::Malformed)?;
        if version != VERSION {
            return Err(AuthError::Malformed);
        }
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| AuthError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&tag)
            .map_err(|_| AuthError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthError::Malformed)?;
        let claims: Claims<'_> = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
        if claims.iat.saturating_add(ASSERTION_TTL_S) < now {
            return Err(AuthError::Expired);
        }
        if claims.iat > now.saturating_add(ASSERTION_TTL_S) {
            return Err(AuthError::IssuedInFuture);
        }
        if claims.m != bound.method
            || claims.p != bound.path_and_query
            || claims.rid != bound.request_id
        {
            return Err(AuthError::Claims(
                "the assertion is for another request".into(),
            ));
        }
        let tenant = TenantId::new(&claims.ten)
            .ok_or_else(|| AuthError::Claims(format!("invalid tenant {:?}", claims.ten)))?;
        let client = match &claims.ip {
            Some(ip) => Some(
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| AuthError::Claims(format!("invalid address {ip:?}")))?,
            ),
            None => None,
        };
        let identity = Identity {
            subject: claims.sub.into_owned(),
            tenant,
            scopes: claims.scp.into_owned(),
            roles: claims.rol.into_owned(),
            expires_at: claims.exp,
            client_id: claims.cid.map(std::borrow::Cow::into_owned),
            // A certificate binding was checked by the gateway, on the partner's connection;
            // this connection is the gateway's.
            cert_thumbprint: None,
        };
        Ok((identity, client))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digits = text.as_bytes();
    let value = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Zeroizing::new(Vec::with_capacity(digits.len() / 2));
    for pair in digits.chunks_exact(2) {
        out.push(value(pair[0])? << 4 | value(pair[1])?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            client_id: None,
            subject: "svc".into(),
            tenant: TenantId::new("acme").expect("tenant"),
            scopes: vec!["ledger:read".into()],
            roles: vec!["partner".into()],
            expires_at: 2_000_000_000,
            cert_thumbprint: None,
        }
    }

    const NOW: u64 = 1_900_000_000;

    fn bound() -> Bound<'static> {
        Bound {
            method: "GET",
            path_and_query: "/v1/accounts?limit=2",
            request_id: "r1",
        }
    }

    fn key(dir: &Path, name: &str) -> InternalKey {
        InternalKey::load_or_generate(&dir.join(name), true).expect("key")
    }

    #[test]
    fn round_trip_and_every_refusal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key(dir.path(), "a.key");
        let other = key(dir.path(), "b.key");
        let a = k.assert(&identity(), bound(), NOW);
        assert_eq!(k.verify(&a, bound(), NOW), Ok(identity()));
        assert_eq!(k.verify(&a, bound(), NOW + ASSERTION_TTL_S), Ok(identity()));
        let check = |value: &str, b: Bound<'_>, now: u64, expected: AuthError| {
            assert_eq!(k.verify(value, b, now), Err(expected), "{value}");
        };
        check(&a, bound(), NOW + ASSERTION_TTL_S + 1, AuthError::Expired);
        check(
            &a,
            bound(),
            NOW - ASSERTION_TTL_S - 1,
            AuthError::IssuedInFuture,
        );
        let wrong = AuthError::Claims("the assertion is for another request".into());
        for b in [
            Bound {
                method: "POST",
                ..bound()
            },
            Bound {
                path_and_query: "/v1/accounts?limit=3",
                ..bound()
            },
            Bound {
                request_id: "r2",
                ..bound()
            },
        ] {
            check(&a, b, NOW, wrong.clone());
        }
        check(
            &other.assert(&identity(), bound(), NOW),
            bound(),
            NOW,
            AuthError::BadSignature,
        );
        // Another tenant in the claims, the tag unchanged.
        let (head, tag) = a.rsplit_once('.').expect("tag");
        let json = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(head.trim_start_matches("v1."))
                .expect("b64"),
        )
        .expect("utf8")
        .replace("acme", "evil");
        let forged = format!("v1.{}.{tag}", URL_SAFE_NO_PAD.encode(json));
        check(&forged, bound(), NOW, AuthError::BadSignature);
        // The token's expiry was the gateway's to check (with its leeway): a token it accepted
        // a few seconds past `exp` is not refused again here; the assertion's own life is what
        // bounds its use.
        let mut late = identity();
        late.expires_at = NOW - 5;
        assert_eq!(
            k.verify(&k.assert(&late, bound(), NOW), bound(), NOW),
            Ok(late)
        );
        // The partner's address rides along, under the MAC.
        let ip: std::net::IpAddr = "203.0.113.9".parse().expect("ip");
        let from = k.assert_from(&identity(), Some(ip), bound(), NOW);
        assert_eq!(
            k.verify_from(&from, bound(), NOW),
            Ok((identity(), Some(ip)))
        );
        assert_eq!(k.verify_from(&a, bound(), NOW), Ok((identity(), None)));
        let (head, tag) = from.rsplit_once('.').expect("tag");
        let moved = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(head.trim_start_matches("v1."))
                .expect("b64"),
        )
        .expect("utf8")
        .replace("203.0.113.9", "198.51.100.1");
        let moved = format!("v1.{}.{tag}", URL_SAFE_NO_PAD.encode(moved));
        check(&moved, bound(), NOW, AuthError::BadSignature);
        for garbage in ["", "v1", "v1.x", "v2.e30.AAAA", "v1.e30.!!", "v1.e30.AAAA"] {
            assert!(k.verify(garbage, bound(), NOW).is_err(), "{garbage}");
        }
        check(
            &"a".repeat(ASSERTION_BYTES_MAX + 1),
            bound(),
            NOW,
            AuthError::TooLarge,
        );
    }

    #[test]
    fn key_files_are_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k");
        key(dir.path(), "k");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read").len(),
            2 * INTERNAL_KEY_BYTES_MIN
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(InternalKey::load(&path).is_err(), "world-readable");
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            crate::tls::write_private(&p, text.as_bytes()).expect("write");
            InternalKey::load(&p)
        };
        assert!(write("short", &"ab".repeat(31)).is_err());
        assert!(write("odd", &"a".repeat(65)).is_err());
        assert!(write("nothex", &"zz".repeat(32)).is_err());
        assert!(write("ok", &format!("{}\n", "AB".repeat(32))).is_ok());
    }
}
