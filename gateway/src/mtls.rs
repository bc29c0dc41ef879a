//! Mutual TLS for partners, and tokens bound to a client certificate (RFC 8705).
//!
//! With `tls_client_ca_file` set, the TLS server asks every client for a certificate and
//! verifies it against that CA bundle (rustls' `WebPkiClientVerifier`: chain, validity, the
//! client-auth key usage). `mtls` says what happens without one: `optional` (the default)
//! lets the client in without a certificate, `required` ends the handshake. A certificate from
//! another CA ends the handshake in both modes.
//!
//! A verified certificate is the client's identity beside its token ([`ClientCert`], put into
//! each request's extensions by the server):
//! - It names its tenant by one URI subject alternative name
//!   `strongroom:tenant:<tenant id>` ([`TENANT_URI_PREFIX`]). A URI SAN, not the subject CN:
//!   SANs are typed and meant for machine identities, a CN is free text that CAs fill in for
//!   people; and a CA profile can constrain URIs. A certificate that names no tenant, several,
//!   or an invalid one, names none.
//! - A request over a connection with a certificate is served only when the certificate names
//!   the token's tenant: 403 `certificate-tenant` otherwise ([`Refusal::TenantMismatch`]).
//! - A token with `cnf: {"x5t#S256": thumbprint}` (the base64url SHA-256 of the DER
//!   certificate) is accepted only on a connection presenting that very certificate: 401
//!   `invalid_token` otherwise ([`Refusal::NotBound`]). The check runs on every request, after
//!   the (possibly cached) token verification, never inside it: the verified-token cache
//!   knows tokens, not connections.
//!
//! Without a certificate (optional mode), a request is served as before, except with a token
//! bound to a certificate, or for a tenant that `mtls_tenants` lists (403
//! `certificate-required`, [`Refusal::CertificateRequired`]): a partner moved to certificates
//! cannot be impersonated with a stolen token alone, while the others keep calling without.
//!
//! Deployment: `required` applies to every connection, health checks included, so a load
//! balancer's checks must present a certificate too (or use `optional`: the health routes
//! need no token). Client certificates reach the gateway only when it terminates TLS itself
//! (TLS passthrough, an NLB); behind a load balancer that terminates TLS they never arrive.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use ledger::TenantId;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use sha2::{Digest, Sha256};

use crate::auth::Identity;
use crate::tls::TlsError;

/// The URI SAN prefix that names a client certificate's tenant.
pub const TENANT_URI_PREFIX: &str = "strongroom:tenant:";

/// Whether clients must present a certificate when `tls_client_ca_file` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtlsMode {
    /// A client without a certificate connects, but cannot use certificate-bound tokens.
    Optional,
    /// A client without a certificate is refused in the handshake.
    Required,
}

/// The client certificate verifier: `ca_file`'s certificates are the roots.
pub fn client_verifier(
    ca_file: &Path,
    mode: MtlsMode,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(crate::tls::load_certs(ca_file)?);
    if added == 0 {
        return Err(TlsError::Pem {
            path: ca_file.to_owned(),
            reason: "no usable CA certificate".into(),
        });
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match mode {
        MtlsMode::Optional => builder.allow_unauthenticated(),
        MtlsMode::Required => builder,
    };
    builder
        .build()
        .map_err(|e| TlsError::Setup(format!("client certificates: {e}")))
}

/// A client certificate the TLS handshake verified: who the connection is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    /// SHA-256 of the DER certificate (RFC 8705 `x5t#S256`, before base64url).
    pub thumbprint: [u8; 32],
    /// The tenant its `strongroom:tenant:` URI SAN names; `None` when it names none, several,
    /// or an invalid one.
    pub tenant: Option<TenantId>,
}

impl ClientCert {
    /// The identity of a DER certificate (already verified by the handshake).
    pub fn from_der(der: &[u8]) -> ClientCert {
        let mut tenants = san_uris(der)
            .into_iter()
            .filter_map(|uri| uri.strip_prefix(TENANT_URI_PREFIX).map(str::to_owned));
        let tenant = match (tenants.next(), tenants.next()) {
            (Some(one), None) => TenantId::new(&one),
            _ => None,
        };
        ClientCert {
            thumbprint: Sha256::digest(der).into(),
            tenant,
        }
    }
}

/// The tenants whose requests need a client certificate, even in optional mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertTenants(HashSet<TenantId>);

impl CertTenants {
    /// These tenants.
    pub fn new(tenants: impl IntoIterator<Item = TenantId>) -> CertTenants {
        CertTenants(tenants.into_iter().collect())
    }

    /// Whether `tenant`'s requests need a client certificate.
    pub fn require(&self, tenant: &TenantId) -> bool {
        self.0.contains(tenant)
    }
}

/// Why a request's token and its connection's certificate do not go together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The token's tenant must present a client certificate (`mtls_tenants`); none came.
    #[error("this tenant must present a client certificate")]
    CertificateRequired,
    /// The token is bound to a certificate (`cnf`) the connection did not present.
    #[error("the token is bound to another client certificate")]
    NotBound,
    /// The certificate names another tenant than the token, or none.
    #[error("the client certificate does not belong to the token's tenant")]
    TenantMismatch,
}

/// Checks a verified token against the connection's client certificate, on every request.
pub fn check(
    identity: &Identity,
    cert: Option<&ClientCert>,
    tenants: &CertTenants,
) -> Result<(), Refusal> {
    if cert.is_none() && tenants.require(&identity.tenant) {
        return Err(Refusal::CertificateRequired);
    }
    if let Some(bound) = &identity.cert_thumbprint
        && cert.is_none_or(|c| c.thumbprint != *bound)
    {
        return Err(Refusal::NotBound);
    }
    if let Some(cert) = cert
        && cert.tenant.as_ref() != Some(&identity.tenant)
    {
        return Err(Refusal::TenantMismatch);
    }
    Ok(())
}

/// One DER element: (tag, contents, what follows). Single-byte tags, definite lengths up to
/// four length bytes; anything else is `None`.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// The elements of a constructed value, in order (stops at the first malformed one).
fn elements(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, contents, rest) = element(input)?;
        input = rest;
        Some((tag, contents))
    })
}

const SEQUENCE: u8 = 0x30;
const EXTENSIONS: u8 = 0xa3;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const URI_NAME: u8 = 0x86;
/// 2.5.29.17, subjectAltName.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// The URIs among a certificate's subject alternative names. rustls has verified the
/// certificate; this only reads it, and a part it cannot read names nothing.
fn san_uris(der: &[u8]) -> Vec<String> {
    let Some((SEQUENCE, certificate, _)) = element(der) else {
        return Vec::new();
    };
    let Some((SEQUENCE, tbs, _)) = element(certificate) else {
        return Vec::new();
    };
    let Some((_, extensions)) = elements(tbs).find(|(tag, _)| *tag == EXTENSIONS) else {
        return Vec::new();
    };
    let Some((SEQUENCE, extensions, _)) = element(extensions) else {
        return Vec::new();
    };
    let mut uris = Vec::new();
    for (tag, extension) in elements(extensions) {
        if tag != SEQUENCE {
            continue;
        }
        let mut parts = elements(extension);
        if parts.next() != Some((OID, SUBJECT_ALT_NAME)) {
            continue;
        }
        // An optional `critical` BOOLEAN, then the OCTET STRING holding GeneralNames.
        let Some((_, value)) = parts.find(|(tag, _)| *tag == OCTET_STRING) else {
            continue;
        };
        let Some((SEQUENCE, names, _)) = element(value) else {
            continue;
        };
        uris.extend(
            elements(names)
                .filter(|(tag, _)| *tag == URI_NAME)
                .filter_map(|(_, uri)| std::str::from_utf8(uri).ok().map(str::to_owned)),
        );
    }
    uris
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "partner");
        params.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    fn uri(s: &str) -> rcgen::SanType {
        rcgen::SanType::URI(s.try_into().expect("ia5"))
    }

    fn dns(s: &str) -> rcgen::SanType {
        rcgen::SanType::DnsName(s.try_into().expect("ia5"))
    }

    #[test]
    fn a_certificate_names_its_tenant_by_one_uri() {
        let check = |sans: Vec<rcgen::SanType>, expected: Option<&str>| {
            let der = cert(sans);
            let identity = ClientCert::from_der(&der);
            assert_eq!(identity.tenant.as_ref().map(TenantId::as_str), expected);
            assert_eq!(identity.thumbprint, <[u8; 32]>::from(Sha256::digest(&der)));
        };
        check(vec![uri("strongroom:tenant:acme")], Some("acme"));
        check(
            vec![
                dns("partner.example"),
                uri("https://partner.example"),
                uri("strongroom:tenant:acme"),
            ],
            Some("acme"),
        );
        check(vec![], None);
        check(vec![dns("acme")], None);
        check(vec![uri("strongroom:tenant:Not A Tenant")], None);
        check(
            vec![
                uri("strongroom:tenant:acme"),
                uri("strongroom:tenant:globex"),
            ],
            None,
        );
        // Garbage names nothing, and does not panic.
        for bad in [
            &[][..],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x03, 0x30],
        ] {
            assert_eq!(ClientCert::from_der(bad).tenant, None);
        }
    }

    #[test]
    fn tokens_and_certificates_must_agree() {
        let tenant = |t: &str| TenantId::new(t).expect("tenant");
        let identity = |bound: Option<[u8; 32]>| Identity {
            client_id: None,
            subject: "s".into(),
            tenant: tenant("acme"),
            scopes: vec![],
            roles: vec![],
            expires_at: 0,
            cert_thumbprint: bound,
        };
        let acme = ClientCert {
            thumbprint: [1; 32],
            tenant: Some(tenant("acme")),
        };
        let globex = ClientCert {
            thumbprint: [2; 32],
            tenant: Some(tenant("globex")),
        };
        let nameless = ClientCert {
            thumbprint: [3; 32],
            tenant: None,
        };
        let none = CertTenants::default();
        let check_ = |identity: &Identity, cert: Option<&ClientCert>| check(identity, cert, &none);
        assert_eq!(check_(&identity(None), None), Ok(()));
        assert_eq!(check_(&identity(None), Some(&acme)), Ok(()));
        assert_eq!(check_(&identity(Some([1; 32])), Some(&acme)), Ok(()));
        assert_eq!(
            check_(&identity(Some([1; 32])), None),
            Err(Refusal::NotBound)
        );
        let other_acme = ClientCert {
            thumbprint: [4; 32],
            ..acme.clone()
        };
        assert_eq!(
            check_(&identity(Some([1; 32])), Some(&other_acme)),
            Err(Refusal::NotBound)
        );
        assert_eq!(
            check_(&identity(None), Some(&globex)),
            Err(Refusal::TenantMismatch)
        );
        assert_eq!(
            check_(&identity(None), Some(&nameless)),
            Err(Refusal::TenantMismatch)
        );
        // A tenant that must present a certificate.
        let acme_only = CertTenants::new([tenant("acme")]);
        assert_eq!(
            check(&identity(None), None, &acme_only),
            Err(Refusal::CertificateRequired)
        );
        assert_eq!(check(&identity(None), Some(&acme), &acme_only), Ok(()));
        let globex_identity = Identity {
            client_id: None,
            tenant: tenant("globex"),
            ..identity(None)
        };
        assert_eq!(check(&globex_identity, None, &acme_only), Ok(()));
    }
}
