//! HighLevel marketplace-app webhook signatures (`shared/protocols/crm-calendar.md` A.5.2).
//!
//! HighLevel signs the **raw request body** (nothing else) with its own private key; every app
//! verifies with HighLevel's published public key:
//!
//! - `x-ghl-signature`: base64 Ed25519 signature. The current scheme (the official Node SDK
//!   checks it first).
//! - `x-wh-signature`: base64 RSASSA-PKCS1-v1_5 signature with SHA-256. The legacy scheme,
//!   announced to stop on 2026-07-01 (date unconfirmed), after which only `x-ghl-signature` is
//!   sent.
//!
//! Keys are configuration, not constants, because HighLevel rotates them; the published ones are
//! exported as [`HIGHLEVEL_RSA_PUBLIC_KEY_PEM`] and [`HIGHLEVEL_ED25519_PUBLIC_KEY_PEM`] for use
//! as defaults. The signature does not cover a time: freshness is the body's `timestamp`, checked
//! by the route with [`super::check_freshness`] after [`GoHighLevelKeys::verify`].

use axum::http::HeaderMap;
use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs1v15;
use rsa::signature::Verifier as _;
use sha2::Sha256;

use super::{BASE64, KeyError, VerifyError, header};

/// Header of the current Ed25519 signature.
pub const GHL_SIGNATURE_HEADER: &str = "x-ghl-signature";
/// Header of the legacy RSA-SHA256 signature.
pub const WH_SIGNATURE_HEADER: &str = "x-wh-signature";

/// HighLevel's published RSA public key (4096 bits) for `x-wh-signature`, from
/// `docs/oauth/WebhookAuthentication.md` of `GoHighLevel/highlevel-api-docs` (commit `0af86a4`).
pub const HIGHLEVEL_RSA_PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
";

/// HighLevel's Ed25519 public key for `x-ghl-signature`, as quoted by independent integrations
/// from the Webhook Integration Guide. **Unconfirmed** against the official page: check it
/// before relying on it.
pub const HIGHLEVEL_ED25519_PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=
-----END PUBLIC KEY-----
";

/// Which HighLevel signature authenticated a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoHighLevelSignature {
    /// `x-ghl-signature`, Ed25519: the current scheme.
    Ed25519,
    /// `x-wh-signature`, RSA-SHA256: the legacy scheme; worth a metric before its retirement.
    Rsa,
}

/// HighLevel's webhook public keys: Ed25519, RSA, or both during the transition.
#[derive(Clone, Debug)]
pub struct GoHighLevelKeys {
    rsa: Option<pkcs1v15::VerifyingKey<Sha256>>,
    ed25519: Option<ed25519_dalek::VerifyingKey>,
}

impl GoHighLevelKeys {
    /// Builds the keys from already-parsed public keys; at least one is required.
    pub fn new(
        rsa: Option<rsa::RsaPublicKey>,
        ed25519: Option<ed25519_dalek::VerifyingKey>,
    ) -> Result<Self, KeyError> {
        if rsa.is_none() && ed25519.is_none() {
            return Err(KeyError::NoPublicKeys);
        }
        Ok(Self {
            rsa: rsa.map(pkcs1v15::VerifyingKey::new),
            ed25519,
        })
    }

    /// Parses PEM public keys: SPKI (`BEGIN PUBLIC KEY`) for both, or PKCS#1
    /// (`BEGIN RSA PUBLIC KEY`) for RSA; at least one is required.
    ///
    /// NOTE(verify): a literal `\n` is read as a line break, because environment variables and
    /// one-line settings often carry PEM text that way.
    pub fn from_pem(rsa_pem: Option<&str>, ed25519_pem: Option<&str>) -> Result<Self, KeyError> {
        let rsa = rsa_pem.map(parse_rsa).transpose()?;
        let ed25519 = ed25519_pem.map(parse_ed25519).transpose()?;
        Self::new(rsa, ed25519)
    }

    /// Checks the request's HighLevel signature over the raw `body`, and says which one passed.
    ///
    /// `x-ghl-signature` (Ed25519) decides when it is present and an Ed25519 key is configured;
    /// otherwise `x-wh-signature` (RSA) decides when it is present and an RSA key is configured.
    /// A present header with no key to check it, and no alternative, is
    /// [`VerifyError::UncheckableHeader`]; no header at all is [`VerifyError::MissingHeader`] of
    /// the preferred configured one.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<GoHighLevelSignature, VerifyError> {
        let has_ed25519_header = headers.contains_key(GHL_SIGNATURE_HEADER);
        let has_rsa_header = headers.contains_key(WH_SIGNATURE_HEADER);
        match (&self.ed25519, &self.rsa) {
            (Some(key), _) if has_ed25519_header => verify_ed25519(key, headers, body),
            (_, Some(key)) if has_rsa_header => verify_rsa(key, headers, body),
            _ if has_ed25519_header => Err(VerifyError::UncheckableHeader(GHL_SIGNATURE_HEADER)),
            _ if has_rsa_header => Err(VerifyError::UncheckableHeader(WH_SIGNATURE_HEADER)),
            (Some(_), _) => Err(VerifyError::MissingHeader(GHL_SIGNATURE_HEADER)),
            (None, _) => Err(VerifyError::MissingHeader(WH_SIGNATURE_HEADER)),
        }
    }
}

/// Checks `x-ghl-signature`: 64 bytes of base64, verified strictly (no malleable encodings).
fn verify_ed25519(
    key: &ed25519_dalek::VerifyingKey,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<GoHighLevelSignature, VerifyError> {
    let malformed = VerifyError::MalformedHeader(GHL_SIGNATURE_HEADER);
    let encoded = header(headers, GHL_SIGNATURE_HEADER)?;
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|_| malformed.clone())?;
    let signature = ed25519_dalek::Signature::from_slice(&bytes).map_err(|_| malformed)?;
    key.verify_strict(body, &signature)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(GoHighLevelSignature::Ed25519)
}

/// Checks `x-wh-signature`: base64 RSASSA-PKCS1-v1_5 over SHA-256 of the body.
fn verify_rsa(
    key: &pkcs1v15::VerifyingKey<Sha256>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<GoHighLevelSignature, VerifyError> {
    let malformed = VerifyError::MalformedHeader(WH_SIGNATURE_HEADER);
    let encoded = header(headers, WH_SIGNATURE_HEADER)?;
    let bytes = BASE64
        .decode(encoded.trim())
        .map_err(|_| malformed.clone())?;
    let signature = pkcs1v15::Signature::try_from(bytes.as_slice()).map_err(|_| malformed)?;
    // A signature of the wrong length for the key fails here, as a bad signature.
    key.verify(body, &signature)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(GoHighLevelSignature::Rsa)
}

/// Parses an RSA public key from SPKI or PKCS#1 PEM.
fn parse_rsa(pem: &str) -> Result<rsa::RsaPublicKey, KeyError> {
    let pem = normalize_pem(pem);
    rsa::RsaPublicKey::from_public_key_pem(&pem)
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(&pem))
        .map_err(|_| KeyError::MalformedPublicKey("rsa"))
}

/// Parses an Ed25519 public key from SPKI PEM.
fn parse_ed25519(pem: &str) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
    ed25519_dalek::VerifyingKey::from_public_key_pem(&normalize_pem(pem))
        .map_err(|_| KeyError::MalformedPublicKey("ed25519"))
}

/// Trims the PEM text and turns literal `\n` sequences into line breaks.
fn normalize_pem(pem: &str) -> String {
    pem.trim().replace("\\n", "\n")
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use axum::http::HeaderValue;
    use ed25519_dalek::Signer as _;
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use rsa::pkcs8::LineEnding;
    use rsa::signature::SignatureEncoding as _;

    use super::*;

    /// A `ContactCreate` delivery shaped like the official example (`docs/webhook events/
    /// ContactCreate.md`) plus the `timestamp` and `webhookId` of every delivery
    /// (crm-calendar.md A.5.1).
    const CONTACT_CREATE: &[u8] = concat!(
        r#"{"type":"ContactCreate","locationId":"ve9EPM428h8vShlRW1KT","#,
        r#""id":"nmFmQEsNgz6AVpgLVUJ0","firstName":"Jane","lastName":"Doe","name":"Jane Doe","#,
        r#""email":"jane.doe@example.com","phone":"+15125550142","address1":"3535 1st St N","#,
        r#""city":"Springfield","state":"AL","country":"US","postalCode":"35601","#,
        r#""companyName":"Acme Dental","source":"web form","dnd":false,"tags":["lead","#,
        r#""ai-call"],"dateAdded":"2026-03-09T14:05:11.193Z","#,
        r#""assignedTo":"YlWd2wuCAZQzh2cH1fVZ","customFields":[{"id":"BcdmQEsNgz6AVpgLVUJ0","#,
        r#""value":"Morning"}],"timestamp":"2026-03-09T14:05:12.402Z","#,
        r#""webhookId":"3d6c1d1e-6f0b-4c59-9a4e-2b1f0f6f8a11"}"#,
    )
    .as_bytes();

    /// The same kind of delivery for another contact.
    const OTHER_BODY: &[u8] = concat!(
        r#"{"type":"ContactCreate","locationId":"ve9EPM428h8vShlRW1KT","#,
        r#""id":"Xq2fQEsNgz6AVpgLVUJ1","firstName":"Mallory"}"#,
    )
    .as_bytes();

    /// Our stand-in for HighLevel's Ed25519 signing key.
    static ED25519: LazyLock<ed25519_dalek::SigningKey> =
        LazyLock::new(|| ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>()));

    fn ed25519_pem() -> String {
        ED25519
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    /// Our Ed25519 key beside HighLevel's published RSA key: every path but a passing RSA
    /// signature, without the seconds an RSA key generation takes in a debug build.
    fn keys() -> GoHighLevelKeys {
        GoHighLevelKeys::from_pem(Some(HIGHLEVEL_RSA_PUBLIC_KEY_PEM), Some(&ed25519_pem())).unwrap()
    }

    fn published_keys() -> GoHighLevelKeys {
        GoHighLevelKeys::from_pem(
            Some(HIGHLEVEL_RSA_PUBLIC_KEY_PEM),
            Some(HIGHLEVEL_ED25519_PUBLIC_KEY_PEM),
        )
        .unwrap()
    }

    fn ed25519_signature(body: &[u8]) -> String {
        BASE64.encode(ED25519.sign(body).to_bytes())
    }

    fn header_map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_sample_body_is_a_contact_create_delivery() {
        let body: serde_json::Value = serde_json::from_slice(CONTACT_CREATE).unwrap();
        assert_eq!(body["type"], "ContactCreate");
        assert!(body["webhookId"].is_string() && body["timestamp"].is_string());
    }

    #[test]
    fn the_published_keys_parse() {
        let keys = published_keys();
        let rsa_key: &rsa::RsaPublicKey = keys.rsa.as_ref().unwrap().as_ref();
        assert_eq!(
            rsa::traits::PublicKeyParts::size(rsa_key),
            512,
            "4096-bit modulus"
        );
        assert!(keys.ed25519.is_some());
    }

    #[test]
    fn a_pem_with_literal_newlines_parses() {
        let one_line = HIGHLEVEL_ED25519_PUBLIC_KEY_PEM.trim().replace('\n', "\\n");
        assert!(GoHighLevelKeys::from_pem(None, Some(&one_line)).is_ok());
    }

    #[test]
    fn an_ed25519_signature_of_the_body_passes() {
        let headers = header_map(&[(GHL_SIGNATURE_HEADER, &ed25519_signature(CONTACT_CREATE))]);
        assert_eq!(
            keys().verify(&headers, CONTACT_CREATE),
            Ok(GoHighLevelSignature::Ed25519)
        );
    }

    #[test]
    fn an_ed25519_signature_of_another_body_fails() {
        let headers = header_map(&[(GHL_SIGNATURE_HEADER, &ed25519_signature(OTHER_BODY))]);
        assert_eq!(
            keys().verify(&headers, CONTACT_CREATE),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn the_published_ed25519_key_rejects_our_signature() {
        let headers = header_map(&[(GHL_SIGNATURE_HEADER, &ed25519_signature(CONTACT_CREATE))]);
        assert_eq!(
            published_keys().verify(&headers, CONTACT_CREATE),
            Err(VerifyError::BadSignature)
        );
    }

    /// Every RSA case in one test, so that the key pair is generated once.
    #[test]
    fn rsa_signatures_are_checked_over_the_raw_body() {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let rsa_pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
            &private.to_public_key(),
            LineEnding::LF,
        )
        .unwrap();
        let signer = pkcs1v15::SigningKey::<Sha256>::new(private);
        let rsa_signature = |body: &[u8]| BASE64.encode(signer.sign(body).to_bytes());
        let both = GoHighLevelKeys::from_pem(Some(&rsa_pem), Some(&ed25519_pem())).unwrap();
        let rsa_only = GoHighLevelKeys::from_pem(Some(&rsa_pem), None).unwrap();
        let good_rsa = rsa_signature(CONTACT_CREATE);
        let good_ed25519 = ed25519_signature(CONTACT_CREATE);

        let rsa_alone = header_map(&[(WH_SIGNATURE_HEADER, &good_rsa)]);
        assert_eq!(
            both.verify(&rsa_alone, CONTACT_CREATE),
            Ok(GoHighLevelSignature::Rsa)
        );

        let rsa_of_other_body = header_map(&[(WH_SIGNATURE_HEADER, &rsa_signature(OTHER_BODY))]);
        assert_eq!(
            both.verify(&rsa_of_other_body, CONTACT_CREATE),
            Err(VerifyError::BadSignature)
        );

        let both_good = header_map(&[
            (GHL_SIGNATURE_HEADER, &good_ed25519),
            (WH_SIGNATURE_HEADER, &good_rsa),
        ]);
        assert_eq!(
            both.verify(&both_good, CONTACT_CREATE),
            Ok(GoHighLevelSignature::Ed25519)
        );
        // Without an Ed25519 key, the RSA header decides.
        assert_eq!(
            rsa_only.verify(&both_good, CONTACT_CREATE),
            Ok(GoHighLevelSignature::Rsa)
        );

        // A valid RSA signature does not rescue a bad Ed25519 one.
        let bad_ed25519 = header_map(&[
            (GHL_SIGNATURE_HEADER, &ed25519_signature(OTHER_BODY)),
            (WH_SIGNATURE_HEADER, &good_rsa),
        ]);
        assert_eq!(
            both.verify(&bad_ed25519, CONTACT_CREATE),
            Err(VerifyError::BadSignature)
        );

        // HighLevel's published key does not accept a signature by another key.
        assert_eq!(
            published_keys().verify(&rsa_alone, CONTACT_CREATE),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn no_signature_header_names_the_preferred_one() {
        let empty = HeaderMap::new();
        assert_eq!(
            keys().verify(&empty, CONTACT_CREATE),
            Err(VerifyError::MissingHeader(GHL_SIGNATURE_HEADER))
        );
        let rsa_only = GoHighLevelKeys::from_pem(Some(HIGHLEVEL_RSA_PUBLIC_KEY_PEM), None).unwrap();
        assert_eq!(
            rsa_only.verify(&empty, CONTACT_CREATE),
            Err(VerifyError::MissingHeader(WH_SIGNATURE_HEADER))
        );
    }

    #[test]
    fn a_header_without_a_configured_key_is_uncheckable() {
        let rsa_only = GoHighLevelKeys::from_pem(Some(HIGHLEVEL_RSA_PUBLIC_KEY_PEM), None).unwrap();
        let ed25519_header =
            header_map(&[(GHL_SIGNATURE_HEADER, &ed25519_signature(CONTACT_CREATE))]);
        assert_eq!(
            rsa_only.verify(&ed25519_header, CONTACT_CREATE),
            Err(VerifyError::UncheckableHeader(GHL_SIGNATURE_HEADER))
        );
        let ed25519_only = GoHighLevelKeys::from_pem(None, Some(&ed25519_pem())).unwrap();
        let rsa_header = header_map(&[(WH_SIGNATURE_HEADER, "AAAA")]);
        assert_eq!(
            ed25519_only.verify(&rsa_header, CONTACT_CREATE),
            Err(VerifyError::UncheckableHeader(WH_SIGNATURE_HEADER))
        );
    }

    #[test]
    fn malformed_signature_headers_are_named() {
        let keys = keys();
        for (name, value) in [
            (GHL_SIGNATURE_HEADER, "not base64!"),
            (GHL_SIGNATURE_HEADER, "AAAA"), // 3 bytes, not 64
            (WH_SIGNATURE_HEADER, "not base64!"),
        ] {
            let headers = header_map(&[(name, value)]);
            assert_eq!(
                keys.verify(&headers, CONTACT_CREATE),
                Err(VerifyError::MalformedHeader(name)),
                "{name}: {value}"
            );
        }
        // RSA signatures of the wrong length are simply wrong.
        let short_rsa = header_map(&[(WH_SIGNATURE_HEADER, "AAAA")]);
        assert_eq!(
            keys.verify(&short_rsa, CONTACT_CREATE),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn unusable_keys_are_refused_at_construction() {
        assert_eq!(
            GoHighLevelKeys::from_pem(None, None).unwrap_err(),
            KeyError::NoPublicKeys
        );
        assert_eq!(
            GoHighLevelKeys::from_pem(Some("garbage"), None).unwrap_err(),
            KeyError::MalformedPublicKey("rsa")
        );
        // An RSA key where the Ed25519 one belongs, and the other way round.
        assert_eq!(
            GoHighLevelKeys::from_pem(None, Some(HIGHLEVEL_RSA_PUBLIC_KEY_PEM)).unwrap_err(),
            KeyError::MalformedPublicKey("ed25519")
        );
        assert_eq!(
            GoHighLevelKeys::from_pem(Some(HIGHLEVEL_ED25519_PUBLIC_KEY_PEM), None).unwrap_err(),
            KeyError::MalformedPublicKey("rsa")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn verify_never_panics_on_arbitrary_headers_and_bodies(
            ed25519_header in proptest::option::of(vec(any::<u8>(), 0..200)),
            rsa_header in proptest::option::of(vec(any::<u8>(), 0..900)),
            body in vec(any::<u8>(), 0..512),
        ) {
            let mut headers = HeaderMap::new();
            let pairs = [(GHL_SIGNATURE_HEADER, ed25519_header), (WH_SIGNATURE_HEADER, rsa_header)];
            for (name, value) in pairs {
                if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                    headers.insert(name, value);
                }
            }
            prop_assert!(keys().verify(&headers, &body).is_err());
        }

        #[test]
        fn base64_of_random_bytes_never_verifies(
            ed25519_bytes in vec(any::<u8>(), 64..=64),
            rsa_bytes in vec(any::<u8>(), 512..=512),
        ) {
            let keys = keys();
            let ed25519_encoded = BASE64.encode(&ed25519_bytes);
            let ed25519_header = header_map(&[(GHL_SIGNATURE_HEADER, &ed25519_encoded)]);
            let ed25519_result = keys.verify(&ed25519_header, CONTACT_CREATE);
            prop_assert_eq!(ed25519_result, Err(VerifyError::BadSignature));
            let rsa_encoded = BASE64.encode(&rsa_bytes);
            let rsa_header = header_map(&[(WH_SIGNATURE_HEADER, &rsa_encoded)]);
            let rsa_result = keys.verify(&rsa_header, CONTACT_CREATE);
            prop_assert_eq!(rsa_result, Err(VerifyError::BadSignature));
        }
    }
}
