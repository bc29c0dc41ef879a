//! Tokens: valid ones signed by an instance's dev issuer, and every kind of forgery.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway::auth::{DevClaims, DevIssuer};
use ledger::TenantId;
use serde_json::{Value, json};

use super::READ_WRITE;

/// Mints tokens signed by an instance's dev issuer, and forgeries of them.
#[derive(Debug)]
pub struct Tokens {
    issuer: DevIssuer,
}

/// The kinds of bad token the gateway must refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadToken {
    /// `exp` an hour ago (far beyond the leeway).
    Expired,
    /// `nbf` an hour ahead.
    NotYetValid,
    /// `iat` an hour ahead (with `nbf` now: only `iat` is wrong).
    IssuedInFuture,
    /// `aud` of another service.
    WrongAudience,
    /// `iss` of another issuer, signed by the right key.
    WrongIssuer,
    /// Signed by another Ed25519 key that claims the instance's `kid`.
    WrongIssuerKey,
    /// A `kid` nobody knows.
    UnknownKid,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 with the issuer's public key as the HMAC secret (key confusion).
    Hs256PublicKey,
    /// A valid token with one signature character changed.
    TamperedSignature,
    /// A valid token whose payload now names another tenant; signature unchanged.
    TamperedPayload,
    /// A tenant id the ledger does not accept.
    InvalidTenant,
    /// Not a JWT at all.
    Garbage,
    /// Longer than the gateway reads.
    Huge,
}

impl BadToken {
    /// Every kind.
    pub const ALL: &'static [BadToken] = &[
        BadToken::Expired,
        BadToken::NotYetValid,
        BadToken::IssuedInFuture,
        BadToken::WrongAudience,
        BadToken::WrongIssuer,
        BadToken::WrongIssuerKey,
        BadToken::UnknownKid,
        BadToken::AlgNone,
        BadToken::Hs256PublicKey,
        BadToken::TamperedSignature,
        BadToken::TamperedPayload,
        BadToken::InvalidTenant,
        BadToken::Garbage,
        BadToken::Huge,
    ];
}

/// The audience instances expect (the default).
pub const AUDIENCE: &str = gateway::config::DEFAULT_JWT_AUDIENCE;

impl Tokens {
    /// The tokens of the instance whose data directory this is.
    pub fn new(data_dir: &Path) -> Tokens {
        Tokens {
            issuer: DevIssuer::ensure(data_dir).unwrap(),
        }
    }

    fn issuer(&self) -> &DevIssuer {
        &self.issuer
    }

    /// Claims of a token for `tenant` with `scopes`, valid for ten minutes.
    pub fn claims(tenant: &str, scopes: &[&str]) -> DevClaims {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let tenant = TenantId::new(tenant).unwrap();
        DevIssuer::claims(AUDIENCE, "e2e", &tenant, &scopes, 600)
    }

    /// A valid token.
    pub fn mint(&self, tenant: &str, scopes: &[&str]) -> String {
        self.sign(&Tokens::claims(tenant, scopes))
    }

    /// A valid token bound (RFC 8705 `cnf.x5t#S256`) to the client certificate whose
    /// thumbprint this is.
    pub fn mint_bound(&self, tenant: &str, scopes: &[&str], thumbprint: &str) -> String {
        let mut claims = claims_json(&Tokens::claims(tenant, scopes));
        claims["cnf"] = json!({ "x5t#S256": thumbprint });
        self.issuer().sign(&claims).unwrap()
    }

    /// Signs any claims with the instance's key.
    pub fn sign(&self, claims: &DevClaims) -> String {
        self.issuer().sign(claims).unwrap()
    }

    /// A token of the given bad kind, for tenant `acme` with both scopes.
    pub fn bad(&self, kind: BadToken) -> String {
        let claims = Tokens::claims("acme", READ_WRITE);
        let edited = |edit: fn(&mut DevClaims)| {
            let mut c = claims.clone();
            edit(&mut c);
            self.sign(&c)
        };
        match kind {
            BadToken::Expired => edited(|c| {
                c.iat -= 7200;
                c.nbf -= 7200;
                c.exp = c.iat + 3600;
            }),
            BadToken::NotYetValid => edited(|c| c.nbf += 3600),
            BadToken::IssuedInFuture => edited(|c| c.iat += 3600),
            BadToken::WrongAudience => edited(|c| c.aud = "someone-else".into()),
            BadToken::WrongIssuer => edited(|c| c.iss = "https://idp.example".into()),
            BadToken::InvalidTenant => edited(|c| c.tenant = "Not A Tenant".into()),
            BadToken::WrongIssuerKey | BadToken::UnknownKid => {
                let dir = tempfile::tempdir().unwrap();
                let mut other = DevIssuer::ensure(dir.path()).unwrap();
                if kind == BadToken::WrongIssuerKey {
                    other.kid = self.issuer().kid.clone();
                }
                other.sign(&claims).unwrap()
            }
            BadToken::AlgNone => {
                let header = json!({ "alg": "none", "typ": "JWT", "kid": self.issuer().kid });
                format!("{}.{}.", b64_json(&header), b64_json(&claims_json(&claims)))
            }
            BadToken::Hs256PublicKey => {
                let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                header.kid = Some(self.issuer().kid.clone());
                let key = jsonwebtoken::EncodingKey::from_secret(&self.issuer().public_key);
                jsonwebtoken::encode(&header, &claims, &key).unwrap()
            }
            BadToken::TamperedSignature => {
                let good = self.sign(&claims);
                let (rest, signature) = good.rsplit_once('.').unwrap();
                let mut sig = signature.as_bytes().to_vec();
                // A middle character: every bit of it carries signature bits.
                let i = sig.len() / 2;
                sig[i] = if sig[i] == b'A' { b'B' } else { b'A' };
                format!("{rest}.{}", String::from_utf8(sig).unwrap())
            }
            BadToken::TamperedPayload => {
                let good = self.sign(&claims);
                let parts: Vec<&str> = good.split('.').collect();
                let mut other = claims_json(&claims);
                other["tenant"] = json!("globex");
                format!("{}.{}.{}", parts[0], b64_json(&other), parts[2])
            }
            BadToken::Garbage => "not-a-jwt".into(),
            BadToken::Huge => format!("{}.{}.", "a".repeat(9000), "b".repeat(10)),
        }
    }
}

fn claims_json(claims: &DevClaims) -> Value {
    serde_json::to_value(claims).unwrap()
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}
