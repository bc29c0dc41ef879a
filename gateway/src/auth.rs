//! Authentication: JWT bearer tokens, verified against known public keys.
//!
//! Keys come from a JWKS file (the identity provider's) and, in dev mode only, from the local
//! dev issuer ([`DevIssuer`]). Each key carries its own algorithm allow-list, derived from its
//! type (RSA: RS256 and PS256; P-256: ES256; Ed25519: EdDSA) or fixed by its `alg`; HMAC keys
//! are refused when loading, and `alg: none` cannot even be parsed. A token names its key by
//! `kid`. `iss` (per key), `aud`, `exp` and `sub` are required, `nbf` and `iat` (not in the
//! future) are checked when present, with a bounded leeway. The tenant, the scopes and the roles
//! (`roles`, granted scopes by the route policy) come from the claims, never from the request.
//!
//! Keys may also come from the identity provider's JWKS URL ([`crate::jwks`]): fetched at start,
//! refreshed in the background, and fetched again (at a bounded rate) when a token names a `kid`
//! no key has, which [`Verifier::verify_refreshing`] does; [`Verifier::verify`] only reads the
//! keys at hand.
//!
//! A successful verification is remembered, keyed by the token's SHA-256 and bounded in count,
//! until the token expires: signature checks are the most expensive thing on the request path.
//! When the remote key set drops or changes a key (a key revoked at the provider), everything
//! remembered is forgotten.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use ledger::TenantId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::jwks::RemoteJwks;

/// Largest token accepted, in bytes.
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;
/// Issuer of tokens from the dev issuer.
pub const DEV_ISSUER: &str = "strongroom-dev";
/// Most keys one JWKS may hold.
pub const JWKS_KEYS_MAX: usize = 100;
/// Longest `kid` that makes the remote JWKS be fetched again when no key has it.
pub const KID_BYTES_MAX: usize = 256;
/// Algorithms any key may use.
pub const ALGORITHMS_ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// Who is calling, as proven by a verified token. Only [`Verifier::verify`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`.
    pub subject: String,
    /// The tenant the caller acts for.
    pub tenant: TenantId,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Roles, whose scopes the route policy grants (`crate::policy`).
    pub roles: Vec<String>,
    /// The token's `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// The OAuth client the token was issued to: its `client_id` claim (RFC 9068), else `azp`.
    pub client_id: Option<String>,
    /// The client certificate the token is bound to (RFC 8705 `cnf.x5t#S256`, decoded): the
    /// token is good only on a connection presenting it (`crate::mtls::check`).
    pub cert_thumbprint: Option<[u8; 32]>,
}

impl Identity {
    /// Whether a scope was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a token was refused. The variant goes to logs; clients see a short description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Larger than [`TOKEN_BYTES_MAX`].
    #[error("token too large")]
    TooLarge,
    /// Not a JWT, or a header that cannot be parsed (including `alg: none`).
    #[error("malformed token")]
    Malformed,
    /// No `kid`, or a `kid` of no known key.
    #[error("unknown signing key")]
    UnknownKey,
    /// The header's algorithm is not allowed for the key.
    #[error("algorithm not allowed for this key")]
    AlgorithmNotAllowed,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future, beyond the leeway.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// A ledger run alone got a request without the gateway's internal assertion.
    #[error("no gateway assertion: this ledger takes requests only through its gateway")]
    NotThroughGateway,
    /// Wrong `iss` or `aud`, or a claim missing or malformed.
    #[error("invalid claims: {0}")]
    Claims(String),
}

/// A key-loading problem; the process refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct KeyError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    tenant: String,
    exp: u64,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    cnf: Option<Confirmation>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
}

/// RFC 7800 confirmation: of its methods, only RFC 8705's certificate thumbprint is known.
#[derive(Deserialize)]
struct Confirmation {
    #[serde(rename = "x5t#S256", default)]
    x5t_s256: Option<String>,
}

/// The certificate thumbprint a `cnf` claim binds the token to. A `cnf` this gateway cannot
/// check (another method, a malformed thumbprint) refuses the token: ignoring it would accept
/// a token its issuer meant to be unusable without proof.
fn thumbprint(cnf: Option<Confirmation>) -> Result<Option<[u8; 32]>, AuthError> {
    use base64::Engine;
    let Some(cnf) = cnf else {
        return Ok(None);
    };
    let encoded = cnf
        .x5t_s256
        .ok_or_else(|| AuthError::Claims("cnf without x5t#S256 is not supported".into()))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.as_bytes())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(Some)
        .ok_or_else(|| AuthError::Claims("cnf x5t#S256 is not a base64url SHA-256".into()))
}

/// One verification key with what it checks.
pub(crate) struct VerifyKey {
    key: DecodingKey,
    validation: Validation,
    /// SHA-256 of the JWK the key came from (zero for the dev issuer): tells a key replaced
    /// under the same `kid` from the same key fetched again.
    pub(crate) digest: [u8; 32],
}

/// Keys by `kid`.
pub(crate) type KeyMap = HashMap<String, Arc<VerifyKey>>;

/// Verified tokens by digest, and the remote key generation they were verified under.
#[derive(Default)]
struct TokenCache {
    tokens: HashMap<[u8; 32], Arc<Identity>>,
    generation: u64,
}

/// Verifies bearer tokens.
pub struct Verifier {
    keys: KeyMap,
    remote: Option<Arc<RemoteJwks>>,
    cache: Mutex<TokenCache>,
    cache_len_max: usize,
    leeway_s: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("remote", &self.remote)
            .finish()
    }
}

/// A verification key for tokens from `issuer` signing with `algorithms`.
fn verify_key(
    settings: &VerifierSettings,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
    issuer: &str,
    digest: [u8; 32],
) -> VerifyKey {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.algorithms = algorithms;
    validation.leeway = settings.leeway_s;
    validation.validate_nbf = true;
    validation.set_audience(&[&settings.audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    VerifyKey {
        key,
        validation,
        digest,
    }
}

/// The keys of a JWKS document, for tokens from `issuer`. The whole document is refused if any
/// key is: no `kid`, a symmetric key, an algorithm not allowed or not fitting its key (see
/// [`jwk_algorithms`]), more than [`JWKS_KEYS_MAX`] keys, or none at all. The same rules hold
/// for a file and for a URL.
pub(crate) fn parse_jwks(
    bytes: &[u8],
    settings: &VerifierSettings,
    issuer: &str,
) -> Result<KeyMap, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    if set.keys.is_empty() {
        return Err("the JWKS holds no key".into());
    }
    if set.keys.len() > JWKS_KEYS_MAX {
        return Err(format!("the JWKS holds more than {JWKS_KEYS_MAX} keys"));
    }
    let mut keys = KeyMap::with_capacity(set.keys.len());
    for jwk in &set.keys {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| "every key needs a kid".to_owned())?;
        let algorithms = jwk_algorithms(jwk).map_err(|r| format!("key {kid}: {r}"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?;
        let digest = Sha256::digest(serde_json::to_vec(jwk).unwrap_or_default()).into();
        let verify = verify_key(settings, key, algorithms, issuer, digest);
        if keys.insert(kid.clone(), Arc::new(verify)).is_some() {
            return Err(format!("kid {kid} names two keys"));
        }
    }
    Ok(keys)
}

/// What a verifier checks besides signatures.
#[derive(Clone, Debug)]
pub struct VerifierSettings {
    /// Required `aud`.
    pub audience: String,
    /// Leeway for `exp` and `nbf`, seconds.
    pub leeway_s: u64,
    /// Most verified tokens remembered.
    pub cache_len_max: usize,
}

impl Verifier {
    /// A verifier with no keys yet.
    pub fn new(settings: &VerifierSettings) -> Verifier {
        Verifier {
            keys: HashMap::new(),
            remote: None,
            cache: Mutex::new(TokenCache::default()),
            cache_len_max: settings.cache_len_max,
            leeway_s: settings.leeway_s,
        }
    }

    /// Trusts the keys of a remote JWKS besides the fixed ones (which win on a shared `kid`).
    pub fn set_remote(&mut self, remote: Arc<RemoteJwks>) {
        self.remote = Some(remote);
    }

    /// The remote JWKS, if there is one (the server refreshes it in the background).
    pub fn remote(&self) -> Option<&Arc<RemoteJwks>> {
        self.remote.as_ref()
    }

    /// Adds every key of a JWKS file, for tokens from `issuer`.
    pub fn add_jwks_file(
        &mut self,
        settings: &VerifierSettings,
        path: &Path,
        issuer: &str,
    ) -> Result<usize, KeyError> {
        let err = |reason: String| KeyError {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let keys = parse_jwks(&text, settings, issuer).map_err(err)?;
        let count = keys.len();
        self.keys.extend(keys);
        Ok(count)
    }

    /// Trusts the dev issuer's key (dev mode only; the caller checks the mode).
    pub fn add_dev_issuer(&mut self, settings: &VerifierSettings, issuer: &DevIssuer) {
        let key = DecodingKey::from_ed_der(&issuer.public_key);
        let key = verify_key(settings, key, vec![Algorithm::EdDSA], DEV_ISSUER, [0; 32]);
        self.keys.insert(issuer.kid.clone(), Arc::new(key));
    }

    /// The key named `kid`: a fixed one, else one of the remote JWKS as last fetched.
    fn key(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        match self.keys.get(kid) {
            Some(key) => Some(key.clone()),
            None => self.remote.as_ref()?.key(kid),
        }
    }

    /// The remote key set's generation (zero without one): it changes when a key is dropped or
    /// replaced, which empties the token cache.
    fn generation(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.generation())
    }

    /// Like [`Verifier::verify`], but a token naming a `kid` that no key has makes the remote
    /// JWKS be fetched again before it is refused: at most once per
    /// `jwks_refetch_min_interval`, and callers arriving during a fetch wait for that one
    /// (see [`RemoteJwks::refetch_for`]). This is how a key the provider just rotated in is
    /// trusted before the next scheduled refresh.
    pub async fn verify_refreshing(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        let refused = match self.verify(token) {
            Err(AuthError::UnknownKey) => AuthError::UnknownKey,
            other => return other,
        };
        let Some(remote) = &self.remote else {
            return Err(refused);
        };
        // Only a token that could verify if its key were known is worth a fetch.
        let Some(kid) = decode_header(token)
            .ok()
            .filter(|h| ALGORITHMS_ALLOWED.contains(&h.alg))
            .and_then(|h| h.kid)
            .filter(|kid| !kid.is_empty() && kid.len() <= KID_BYTES_MAX)
        else {
            return Err(refused);
        };
        if remote.refetch_for(&kid).await {
            self.verify(token)
        } else {
            Err(refused)
        }
    }

    /// Verifies a token and returns the identity it proves.
    pub fn verify(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        // Read before the key: a key dropped meanwhile changes it, and the identity it
        // verified is then not remembered.
        let generation = self.generation();
        if let Some(identity) = self.cached(&digest, now) {
            return Ok(identity);
        }
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        let kid = header.kid.as_deref().ok_or(AuthError::UnknownKey)?;
        let key = self.key(kid).ok_or(AuthError::UnknownKey)?;
        if !key.validation.algorithms.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let data = decode::<Claims>(token, &key.key, &key.validation).map_err(map_jwt_error)?;
        let claims = data.claims;
        // jsonwebtoken checks `exp` and `nbf`; an `iat` must not be later than now either.
        if claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(self.leeway_s))
        {
            return Err(AuthError::IssuedInFuture);
        }
        let tenant = TenantId::new(&claims.tenant)
            .ok_or_else(|| AuthError::Claims(format!("invalid tenant {:?}", claims.tenant)))?;
        let mut scopes: Vec<String> = claims
            .scope
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_owned)
            .collect();
        scopes.extend(claims.scp.into_iter().flatten());
        let cert_thumbprint = thumbprint(claims.cnf)?;
        let identity = Arc::new(Identity {
            subject: claims.sub,
            tenant,
            scopes,
            roles: claims.roles.unwrap_or_default(),
            expires_at: claims.exp,
            client_id: claims.client_id.or(claims.azp),
            cert_thumbprint,
        });
        self.remember(digest, identity.clone(), now, generation);
        Ok(identity)
    }

    fn cached(&self, digest: &[u8; 32], now: u64) -> Option<Arc<Identity>> {
        let generation = self.generation();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.generation != generation {
            // A key was dropped or replaced: what it verified is verified again.
            cache.tokens.clear();
            cache.generation = generation;
            return None;
        }
        let identity = cache.tokens.get(digest)?;
        // The same expiry rule as a fresh verification: exp plus leeway.
        (identity.expires_at.saturating_add(self.leeway_s) > now).then(|| identity.clone())
    }

    fn remember(&self, digest: [u8; 32], identity: Arc<Identity>, now: u64, generation: u64) {
        if self.cache_len_max == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.generation != generation || self.generation() != generation {
            return;
        }
        if cache.tokens.len() >= self.cache_len_max {
            let leeway = self.leeway_s;
            cache
                .tokens
                .retain(|_, id| id.expires_at.saturating_add(leeway) > now);
            if cache.tokens.len() >= self.cache_len_max {
                cache.tokens.clear();
            }
        }
        cache.tokens.insert(digest, identity);
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => AuthError::BadSignature,
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::InvalidKeyFormat => {
            AuthError::AlgorithmNotAllowed
        }
        K::InvalidIssuer => AuthError::Claims("wrong issuer".into()),
        K::InvalidAudience => AuthError::Claims("wrong audience".into()),
        K::MissingRequiredClaim(c) => AuthError::Claims(format!("missing {c}")),
        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => AuthError::Malformed,
        other => AuthError::Claims(format!("{other:?}")),
    }
}

/// The algorithms a JWK may sign with: its `alg` if it has one (which must be allowed), else
/// what its key type supports. Symmetric keys are refused outright.
fn jwk_algorithms(jwk: &jsonwebtoken::jwk::Jwk) -> Result<Vec<Algorithm>, String> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::PS256],
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            vec![Algorithm::ES256]
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are not accepted".into()),
        _ => return Err("unsupported key type or curve".into()),
    };
    match jwk.common.key_algorithm {
        None => Ok(by_type),
        Some(alg) => {
            let alg = match alg {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                other => return Err(format!("algorithm {other:?} is not allowed")),
            };
            if by_type.contains(&alg) {
                Ok(vec![alg])
            } else {
                Err(format!("{alg:?} does not fit the key type"))
            }
        }
    }
}

/// The development token issuer: an Ed25519 key generated on first run in the data directory.
/// The gateway trusts it only in dev mode, and `strongroom dev-token` signs with it.
pub struct DevIssuer {
    /// Key id, derived from the public key.
    pub kid: String,
    /// Raw Ed25519 public key.
    pub public_key: Vec<u8>,
    private_pem: Zeroizing<String>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The claims of a dev token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DevClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject.
    pub sub: String,
    /// Tenant.
    pub tenant: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Roles, whose scopes the route policy grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
}

impl DevIssuer {
    /// The file holding the dev issuer's private key.
    pub fn key_path(data_dir: &Path) -> PathBuf {
        data_dir.join("dev-issuer.key.pem")
    }

    /// Loads the dev issuer's key, generating it on first use.
    pub fn ensure(data_dir: &Path) -> Result<DevIssuer, KeyError> {
        let path = Self::key_path(data_dir);
        let err = |reason: String| KeyError {
            path: path.clone(),
            reason,
        };
        if !path.exists() {
            std::fs::create_dir_all(data_dir).map_err(|e| err(e.to_string()))?;
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
                .map_err(|e| err(e.to_string()))?;
            let pem = Zeroizing::new(key.serialize_pem());
            crate::tls::write_private(&path, pem.as_bytes()).map_err(|e| err(e.to_string()))?;
        }
        Self::load(&path)
    }

    /// Loads an existing dev issuer key.
    pub fn load(path: &Path) -> Result<DevIssuer, KeyError> {
        let err = |reason: String| KeyError {
            path: path.to_owned(),
            reason,
        };
        let private_pem =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
        let key = rcgen::KeyPair::from_pem(&private_pem).map_err(|e| err(e.to_string()))?;
        let public_key = key.public_key_raw().to_vec();
        let digest = Sha256::digest(&public_key);
        let kid = format!(
            "dev-{}",
            digest
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Ok(DevIssuer {
            kid,
            public_key,
            private_pem,
        })
    }

    /// Signs a token: [`DevClaims`], or any claims (a test's `cnf`, say).
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, String> {
        let key =
            EncodingKey::from_ed_pem(self.private_pem.as_bytes()).map_err(|e| e.to_string())?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &key).map_err(|e| e.to_string())
    }

    /// Claims for a token valid from now for `ttl_s` seconds.
    pub fn claims(
        audience: &str,
        subject: &str,
        tenant: &TenantId,
        scopes: &[String],
        ttl_s: u64,
    ) -> DevClaims {
        let now = jsonwebtoken::get_current_timestamp();
        DevClaims {
            iss: DEV_ISSUER.to_owned(),
            aud: audience.to_owned(),
            sub: subject.to_owned(),
            tenant: tenant.to_string(),
            scope: scopes.join(" "),
            roles: None,
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl_s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> VerifierSettings {
        VerifierSettings {
            audience: "strongroom".into(),
            leeway_s: 30,
            cache_len_max: 4,
        }
    }

    fn setup() -> (tempfile::TempDir, DevIssuer, Verifier) {
        let dir = tempfile::tempdir().expect("tempdir");
        let issuer = DevIssuer::ensure(dir.path()).expect("issuer");
        let mut verifier = Verifier::new(&settings());
        verifier.add_dev_issuer(&settings(), &issuer);
        (dir, issuer, verifier)
    }

    fn token(issuer: &DevIssuer, edit: impl FnOnce(&mut DevClaims)) -> String {
        let tenant = TenantId::new("acme").expect("tenant");
        let mut claims =
            DevIssuer::claims("strongroom", "u1", &tenant, &["ledger:read".into()], 600);
        edit(&mut claims);
        issuer.sign(&claims).expect("sign")
    }

    #[test]
    fn verifies_dev_tokens_and_checks_claims() {
        let (_dir, issuer, verifier) = setup();
        let id = verifier.verify(&token(&issuer, |_| {})).expect("valid");
        assert_eq!(id.tenant.as_str(), "acme");
        assert!(id.has_scope("ledger:read") && !id.has_scope("ledger:write"));
        let check = |edit: fn(&mut DevClaims), expected: AuthError| {
            assert_eq!(verifier.verify(&token(&issuer, edit)), Err(expected));
        };
        check(|c| c.exp -= 1000, AuthError::Expired);
        check(|c| c.nbf += 1000, AuthError::NotYetValid);
        check(|c| c.iat += 1000, AuthError::IssuedInFuture);
        // Within the leeway (30 s here), a clock slightly ahead is accepted.
        verifier
            .verify(&token(&issuer, |c| c.iat += 20))
            .expect("iat within the leeway");
        check(
            |c| c.aud = "other".into(),
            AuthError::Claims("wrong audience".into()),
        );
        check(
            |c| c.iss = "other".into(),
            AuthError::Claims("wrong issuer".into()),
        );
        check(
            |c| c.tenant = "Bad Tenant".into(),
            AuthError::Claims("invalid tenant \"Bad Tenant\"".into()),
        );
    }

    #[test]
    fn refuses_forgeries() {
        let (_dir, issuer, verifier) = setup();
        let good = token(&issuer, |_| {});
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        // alg: none
        parts[0] = base64_url(br#"{"alg":"none","kid":"x"}"#);
        assert_eq!(
            verifier.verify(&format!("{}.{}.", parts[0], parts[1])),
            Err(AuthError::Malformed)
        );
        // HS256 with the public key as the secret (key confusion)
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(issuer.kid.clone());
        let claims = DevIssuer::claims(
            "strongroom",
            "u",
            &TenantId::new("acme").expect("t"),
            &[],
            60,
        );
        let forged = encode(
            &header,
            &claims,
            &EncodingKey::from_secret(&issuer.public_key),
        )
        .expect("hs256");
        assert_eq!(
            verifier.verify(&forged),
            Err(AuthError::AlgorithmNotAllowed)
        );
        // tampered payload
        let tampered = format!(
            "{}.{}.{}",
            base64_url(br#"{"alg":"EdDSA","kid":"x"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(verifier.verify(&tampered), Err(AuthError::UnknownKey));
        let mut payload = parts[1].clone().into_bytes();
        payload[10] = if payload[10] == b'A' { b'B' } else { b'A' };
        let tampered = format!(
            "{}.{}.{}",
            good.split('.').next().expect("h"),
            String::from_utf8(payload).expect("utf8"),
            parts[2]
        );
        assert_eq!(verifier.verify(&tampered), Err(AuthError::BadSignature));
        // another issuer's key, same kid
        let other_dir = tempfile::tempdir().expect("tempdir");
        let mut other = DevIssuer::ensure(other_dir.path()).expect("other");
        other.kid = issuer.kid.clone();
        assert_eq!(
            verifier.verify(&token(&other, |_| {})),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verifier.verify(&"x".repeat(TOKEN_BYTES_MAX + 1)),
            Err(AuthError::TooLarge)
        );
        assert_eq!(verifier.verify("not-a-jwt"), Err(AuthError::Malformed));
    }

    #[test]
    fn cache_is_bounded_and_respects_expiry() {
        let (_dir, issuer, verifier) = setup();
        for i in 0..10 {
            verifier
                .verify(&token(&issuer, |c| c.sub = format!("u{i}")))
                .expect("valid");
            assert!(verifier.cache.lock().expect("lock").tokens.len() <= 4);
        }
        let short = token(&issuer, |c| {
            c.exp = jsonwebtoken::get_current_timestamp() + 1
        });
        verifier.verify(&short).expect("valid now");
        let digest: [u8; 32] = Sha256::digest(short.as_bytes()).into();
        let later = jsonwebtoken::get_current_timestamp() + 1 + 30;
        assert!(
            verifier.cached(&digest, later).is_none(),
            "an expired token is not served from cache"
        );
    }

    #[test]
    fn a_cnf_claim_binds_the_token_to_a_certificate_thumbprint() {
        let (_dir, issuer, verifier) = setup();
        let sign = |cnf: serde_json::Value| {
            let tenant = TenantId::new("acme").expect("tenant");
            let claims = DevIssuer::claims("strongroom", "u", &tenant, &[], 600);
            let mut claims = serde_json::to_value(claims).expect("json");
            claims["cnf"] = cnf;
            let key = EncodingKey::from_ed_pem(issuer.private_pem.as_bytes()).expect("key");
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(issuer.kid.clone());
            encode(&header, &claims, &key).expect("sign")
        };
        let thumbprint = [7u8; 32];
        let bound = sign(serde_json::json!({ "x5t#S256": base64_url(&thumbprint) }));
        let identity = verifier.verify(&bound).expect("valid");
        assert_eq!(identity.cert_thumbprint, Some(thumbprint));
        let unbound = verifier.verify(&token(&issuer, |_| {})).expect("valid");
        assert_eq!(unbound.cert_thumbprint, None);
        // A confirmation that cannot be checked refuses the token.
        for cnf in [
            serde_json::json!({ "jkt": base64_url(&thumbprint) }),
            serde_json::json!({ "x5t#S256": base64_url(&[7u8; 20]) }),
            serde_json::json!({ "x5t#S256": "not base64!" }),
        ] {
            assert!(
                matches!(
                    verifier.verify(&sign(cnf.clone())),
                    Err(AuthError::Claims(_))
                ),
                "{cnf}"
            );
        }
    }

    #[test]
    fn jwks_refuses_symmetric_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jwks.json");
        std::fs::write(
            &path,
            r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#,
        )
        .expect("write");
        let mut verifier = Verifier::new(&settings());
        assert!(
            verifier
                .add_jwks_file(&settings(), &path, "https://idp")
                .is_err()
        );
    }

    fn base64_url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
