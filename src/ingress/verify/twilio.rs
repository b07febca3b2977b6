//! Twilio request signatures: `X-Twilio-Signature` (`shared/protocols/telephony-voice.md` A6).
//!
//! The algorithm as Twilio's "Webhooks security" guide describes it
//! (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>) and as the official validators
//! implement it: `twilio/twilio-node` `src/webhooks/webhooks.ts` (`validateRequest`,
//! `getExpectedTwilioSignature`, `toFormUrlEncodedParam`, `validateRequestWithBody`) and
//! `twilio/twilio-python` `twilio/request_validator.py` (`RequestValidator.validate`).
//!
//! - Signed content: the full URL Twilio requested (scheme, userinfo, host, port if any, path,
//!   query), then, for a form POST, every body parameter's name and value appended with no
//!   separators, sorted by name. A name sent several times appends name and value once per
//!   *distinct* value, values sorted: both official validators deduplicate and sort.
//! - Signature: base64 of HMAC-SHA1 keyed with the account's auth token.
//! - Ports: Twilio is not consistent about ports when it signs, so the validators accept the URL
//!   as given and the URL with its port toggled: an explicit port removed, or, when there is
//!   none, the scheme's default (`:443`, `:80`) added.
//! - Non-form bodies (JSON): Twilio adds `bodySHA256=<lowercase hex SHA-256 of the raw body>` to
//!   the query and signs the URL alone. The receiver checks the signature with no parameters,
//!   then checks the body against that hash.
//!
//! # The URL comes from our configuration
//!
//! `url` must be the public URL Twilio called: the public base URL we configured with Twilio,
//! followed by the request's path and query exactly as received (still percent-encoded). Never
//! build it from the `Host` header or `X-Forwarded-*`: the sender chooses those, and a proxy or
//! TLS terminator rewrites them. The URL is signed byte for byte, so nothing here normalises or
//! re-encodes it.
//!
//! # Replays
//!
//! The signature covers no time. A captured request verifies until the auth token is rotated.
//! The route must deduplicate on signed fields, for example `CallSid` with `SequenceNumber` for
//! status callbacks (see "Request authenticity" in [`super`]).

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::{Choice, ConstantTimeEq};

use super::{BASE64, KeyError, VerifyError, header};
use crate::secret::Secret;

/// Header carrying the base64 HMAC-SHA1 signature (Twilio spells it `X-Twilio-Signature`).
pub const TWILIO_SIGNATURE_HEADER: &str = "x-twilio-signature";
/// Query parameter in which Twilio sends the SHA-256 of a non-form body.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Verifies (and makes) Twilio request signatures with one or more auth tokens.
///
/// Several tokens exist while the account's secondary auth token is being promoted: a request
/// passes when it is signed with any of them.
#[derive(Clone, Debug)]
pub struct TwilioSignature {
    tokens: Vec<Secret<String>>,
}

impl TwilioSignature {
    /// Keeps the auth tokens, primary first, with surrounding whitespace removed (a token is
    /// hexadecimal, so whitespace can only come from how it was stored).
    ///
    /// An empty token is refused: anyone can compute an HMAC keyed with the empty string. The
    /// error names the position of the token, never its value.
    pub fn new(tokens: &[Secret<String>]) -> Result<Self, KeyError> {
        if tokens.is_empty() {
            return Err(KeyError::NoAuthTokens);
        }
        let mut kept = Vec::with_capacity(tokens.len());
        for (index, token) in tokens.iter().enumerate() {
            let text = token.expose().trim();
            if text.is_empty() {
                return Err(KeyError::EmptyAuthToken { index });
            }
            kept.push(Secret::new(text.to_owned()));
        }
        Ok(Self { tokens: kept })
    }

    /// Checks `X-Twilio-Signature` for a request to `url` with raw body `body`.
    ///
    /// `url` is the public URL rebuilt from configuration (see the module documentation). When
    /// its query has a `bodySHA256` parameter the body is not a form: the signature must cover
    /// the URL alone and the body must hash to that value. Otherwise the body is read as
    /// `application/x-www-form-urlencoded` (empty for a `GET`).
    pub fn verify(&self, url: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        let presented_text = header(headers, TWILIO_SIGNATURE_HEADER)?;
        if presented_text.is_empty() {
            return Err(VerifyError::MalformedHeader(TWILIO_SIGNATURE_HEADER));
        }
        // Not base64: an empty candidate, which matches nothing.
        let presented = BASE64.decode(presented_text).unwrap_or_default();
        let body_hash = query_param(url, BODY_SHA256_PARAM);
        let params = if body_hash.is_some() {
            Vec::new()
        } else {
            crate::http::form::parse(body)
        };

        // Every candidate is compared, so timing reveals neither which URL form nor which token
        // matched.
        let mut matched = Choice::from(0);
        for candidate in url_candidates(url) {
            let content = signed_content(&candidate, &params);
            for token in &self.tokens {
                matched |= mac(token, &content).as_slice().ct_eq(&presented);
            }
        }
        if !bool::from(matched) {
            return Err(VerifyError::BadSignature);
        }
        if let Some(expected) = body_hash {
            let actual = crate::hex::sha256(body);
            // The signature covers the hash, not this body: a mismatch means the body is not the
            // one Twilio signed.
            if !bool::from(actual.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(VerifyError::BadSignature);
            }
        }
        Ok(())
    }

    /// Returns the `X-Twilio-Signature` value for a form request to `url` with `params` (decoded
    /// names and values, in any order), signed with the primary (first) token.
    ///
    /// For simulators and tests. `url` is signed exactly as given; sign the URL the request is
    /// sent to, without a port, as Twilio does. For a JSON body, put `bodySHA256` in the query
    /// of `url` and pass no parameters.
    pub fn sign(&self, url: &str, params: &[(String, String)]) -> String {
        let content = signed_content(url, params);
        // `new` refuses an empty list, so the primary token exists.
        STANDARD.encode(mac(&self.tokens[0], &content))
    }
}

/// The URL followed by each distinct `(name, value)` pair, sorted by name and then value, with
/// no separators.
///
/// NOTE(verify): Rust orders strings by UTF-8 bytes, which is code-point order (twilio-python's
/// `sorted`). twilio-node's `Array.sort` orders by UTF-16 code units; the two differ only between
/// characters above U+FFFF and those from U+E000 to U+FFFF, which Twilio's ASCII parameter names
/// never contain.
fn signed_content(url: &str, params: &[(String, String)]) -> String {
    let mut pairs: Vec<&(String, String)> = params.iter().collect();
    pairs.sort_unstable();
    pairs.dedup();
    let length = pairs
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum::<usize>();
    let mut content = String::with_capacity(url.len() + length);
    content.push_str(url);
    for (name, value) in pairs {
        content.push_str(name);
        content.push_str(value);
    }
    content
}

/// HMAC-SHA1 of `content` under the token's UTF-8 bytes.
fn mac(token: &Secret<String>, content: &str) -> Vec<u8> {
    // NOTE(verify): HMAC takes keys of any length, so this constructor cannot fail.
    let mut hmac = <Hmac<Sha1> as Mac>::new_from_slice(token.expose().as_bytes())
        .expect("hmac accepts any key length");
    hmac.update(content.as_bytes());
    hmac.finalize().into_bytes().to_vec()
}

/// The URLs a valid signature may cover: `url` itself and, when it has an authority, `url` with
/// its port toggled.
fn url_candidates(url: &str) -> Vec<String> {
    let mut candidates = vec![url.to_owned()];
    candidates.extend(toggle_port(url));
    candidates
}

/// Returns `url` without its explicit port, or with its scheme's default port when it has none;
/// `None` when the URL has no authority or the scheme has no default port.
///
/// NOTE(verify): the official validators add `:80` for every scheme but `https`, `wss`
/// included. `wss` (Media Streams) defaults to 443 like `https`, so that is what is added here.
fn toggle_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let (userinfo, host_port) = authority.split_at(host_start);
    // The port is what follows the last `:`, unless that colon is inside an IPv6 literal.
    let port_colon = host_port
        .rfind(':')
        .filter(|&colon| !host_port[colon..].contains(']'));
    let host = match port_colon {
        Some(colon) => {
            if !host_port[colon + 1..].bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            host_port[..colon].to_owned()
        }
        None => format!("{host_port}:{}", default_port(scheme)?),
    };
    if host.starts_with(':') {
        return None;
    }
    Some(format!("{scheme}://{userinfo}{host}{tail}"))
}

/// The port a scheme implies when a URL names none.
fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else {
        None
    }
}

/// The decoded value of the first query parameter called `name`, if the URL's query has one.
fn query_param(url: &str, name: &str) -> Option<String> {
    let before_fragment = url.split('#').next().unwrap_or_default();
    let (_, query) = before_fragment.split_once('?')?;
    crate::http::form::parse(query.as_bytes())
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests;
