//! Tests of Twilio request signatures: published vectors, tampering, rotation, ports, JSON bodies.

use axum::http::HeaderValue;
use proptest::prelude::*;

use super::*;

/// The auth token of every published vector below.
const VECTOR_TOKEN: &str = "12345";
/// The URL of every published vector below.
const VECTOR_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
/// The signature of [`node_params`] to [`VECTOR_URL`], from `twilio/twilio-node`
/// `spec/validation.spec.js` (`defaultSignature`) and telephony-voice.md A6.
const NODE_SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
/// The JSON body of the twilio-node `validateRequestWithBody` vectors.
const JSON_BODY: &[u8] = br#"{"property": "value", "boolean": true}"#;
/// Lowercase hex SHA-256 of [`JSON_BODY`], from the same spec (`bodySignature`).
const JSON_BODY_SHA256: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
/// A second token, for rotation; 32 random hex digits like a real one.
const OTHER_TOKEN: &str = "9f86d081884c7d659a2feaa0c55ad015";

fn verifier(tokens: &[&str]) -> TwilioSignature {
    let tokens: Vec<_> = tokens
        .iter()
        .map(|token| Secret::new((*token).to_owned()))
        .collect();
    TwilioSignature::new(&tokens).unwrap()
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The parameters of the twilio-node vectors.
fn node_params() -> Vec<(String, String)> {
    params(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ])
}

/// [`node_params`] as Twilio posts them, written out of order on purpose: the signature
/// sorts them.
const NODE_FORM: &[u8] = b"To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE\
    &From=%2B14158675309&Caller=%2B14158675309";

fn signed(signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        TWILIO_SIGNATURE_HEADER,
        HeaderValue::from_str(signature).unwrap(),
    );
    headers
}

/// Form-encodes pairs the way an HTTP client does, escaping every byte but `[A-Za-z0-9-._*]`.
fn form_encode(pairs: &[(String, String)]) -> Vec<u8> {
    fn escape(text: &str) -> String {
        text.bytes()
            .map(|byte| match byte {
                b' ' => "+".to_owned(),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    char::from(byte).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    }
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", escape(name), escape(value)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

#[test]
fn twilios_documented_example_signs_to_its_published_signature() {
    // The worked example of Twilio's "Security" guide
    // (https://www.twilio.com/docs/usage/security#validating-requests).
    let documented = params(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]);
    let signature = verifier(&[VECTOR_TOKEN]).sign(VECTOR_URL, &documented);
    assert_eq!(signature, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    let body = b"CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234\
        &From=%2B12349013030&To=%2B18005551212";
    let result = verifier(&[VECTOR_TOKEN]).verify(VECTOR_URL, &signed(&signature), body);
    assert_eq!(result, Ok(()));
}

#[test]
fn the_twilio_node_vector_signs_to_its_published_signature() {
    let signature = verifier(&[VECTOR_TOKEN]).sign(VECTOR_URL, &node_params());
    assert_eq!(signature, NODE_SIGNATURE);
    // The string telephony-voice.md A6 says is signed.
    assert_eq!(
        signed_content(VECTOR_URL, &node_params()),
        "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDE\
         Caller+14158675309Digits1234From+14158675309To+18005551212"
    );
}

#[test]
fn the_twilio_node_vector_verifies_as_a_form_post() {
    let result = verifier(&[VECTOR_TOKEN]).verify(VECTOR_URL, &signed(NODE_SIGNATURE), NODE_FORM);
    assert_eq!(result, Ok(()));
}

#[test]
fn a_tampered_parameter_is_a_bad_signature() {
    let wh = verifier(&[VECTOR_TOKEN]);
    let headers = signed(NODE_SIGNATURE);
    let tampered = b"To=%2B18005551212&Digits=1235&CallSid=CA1234567890ABCDE\
        &From=%2B14158675309&Caller=%2B14158675309";
    // `+` unescaped is a space, so this `From` is " 14158675309".
    let unescaped = b"To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE\
        &From=+14158675309&Caller=%2B14158675309";
    for body in [&tampered[..], &unescaped[..]] {
        assert_eq!(
            wh.verify(VECTOR_URL, &headers, body),
            Err(VerifyError::BadSignature)
        );
    }
}

#[test]
fn an_added_or_removed_parameter_is_a_bad_signature() {
    let wh = verifier(&[VECTOR_TOKEN]);
    let headers = signed(NODE_SIGNATURE);
    let added = [NODE_FORM, b"&CallStatus=completed"].concat();
    let removed = b"To=%2B18005551212&Digits=1234&CallSid=CA1234567890ABCDE\
        &From=%2B14158675309";
    for body in [&added[..], &removed[..], &b""[..]] {
        assert_eq!(
            wh.verify(VECTOR_URL, &headers, body),
            Err(VerifyError::BadSignature)
        );
    }
}

#[test]
fn a_tampered_url_is_a_bad_signature() {
    let wh = verifier(&[VECTOR_TOKEN]);
    let headers = signed(NODE_SIGNATURE);
    for url in [
        "https://mycompany.com/myapp.php?foo=1&bar=3",
        "https://mycompany.com/myapp.php?foo=1&bar=2&somethingUnexpected=true",
        "https://mycompany.com/myapp.php?bar=2&foo=1",
        "https://mycompany.com/myapp.php",
        "https://mycompany.com/other.php?foo=1&bar=2",
        "https://evil.example/myapp.php?foo=1&bar=2",
        "http://mycompany.com/myapp.php?foo=1&bar=2",
        "https://MYCOMPANY.com/myapp.php?foo=1&bar=2",
    ] {
        assert_eq!(
            wh.verify(url, &headers, NODE_FORM),
            Err(VerifyError::BadSignature),
            "{url}"
        );
    }
}

#[test]
fn the_wrong_token_is_a_bad_signature() {
    let result = verifier(&[OTHER_TOKEN]).verify(VECTOR_URL, &signed(NODE_SIGNATURE), NODE_FORM);
    assert_eq!(result, Err(VerifyError::BadSignature));
}

#[test]
fn a_missing_signature_header_is_named() {
    let result = verifier(&[VECTOR_TOKEN]).verify(VECTOR_URL, &HeaderMap::new(), NODE_FORM);
    assert_eq!(
        result,
        Err(VerifyError::MissingHeader(TWILIO_SIGNATURE_HEADER))
    );
    assert_eq!(TWILIO_SIGNATURE_HEADER, "x-twilio-signature");
}

#[test]
fn an_empty_or_non_ascii_signature_header_is_malformed() {
    let wh = verifier(&[VECTOR_TOKEN]);
    let mut headers = HeaderMap::new();
    for value in [&b""[..], &b"RSOYDt4T1cUTdK1PDd93/VVr8B8=\xff"[..]] {
        headers.insert(
            TWILIO_SIGNATURE_HEADER,
            HeaderValue::from_bytes(value).unwrap(),
        );
        assert_eq!(
            wh.verify(VECTOR_URL, &headers, NODE_FORM),
            Err(VerifyError::MalformedHeader(TWILIO_SIGNATURE_HEADER))
        );
    }
}

#[test]
fn garbled_or_truncated_signatures_never_match() {
    let wh = verifier(&[VECTOR_TOKEN]);
    let truncated = &NODE_SIGNATURE[..NODE_SIGNATURE.len() - 4];
    let extended = format!("{NODE_SIGNATURE}AAAA");
    // "WRONG_SIGNATURE" is twilio-node's own negative case.
    for signature in ["WRONG_SIGNATURE", truncated, extended.as_str(), "=", "Zm9v"] {
        assert_eq!(
            wh.verify(VECTOR_URL, &signed(signature), NODE_FORM),
            Err(VerifyError::BadSignature),
            "{signature}"
        );
    }
}

#[test]
fn a_signature_without_its_padding_is_the_same_signature() {
    let unpadded = NODE_SIGNATURE.trim_end_matches('=');
    let result = verifier(&[VECTOR_TOKEN]).verify(VECTOR_URL, &signed(unpadded), NODE_FORM);
    assert_eq!(result, Ok(()));
}

#[test]
fn during_rotation_either_token_passes() {
    let ours = verifier(&[OTHER_TOKEN, VECTOR_TOKEN]);
    for sender_token in [VECTOR_TOKEN, OTHER_TOKEN] {
        let signature = verifier(&[sender_token]).sign(VECTOR_URL, &node_params());
        assert_eq!(
            ours.verify(VECTOR_URL, &signed(&signature), NODE_FORM),
            Ok(()),
            "{sender_token}"
        );
    }
}

#[test]
fn sign_uses_the_primary_token() {
    let both = verifier(&[VECTOR_TOKEN, OTHER_TOKEN]);
    assert_eq!(both.sign(VECTOR_URL, &node_params()), NODE_SIGNATURE);
}

#[test]
fn an_explicit_port_is_also_tried_removed() {
    // twilio-node "should validate https urls with ports by stripping them" and "should
    // validate http urls with ports" (the latter signed with the port).
    let wh = verifier(&[VECTOR_TOKEN]);
    let cases = [
        (
            "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
            NODE_SIGNATURE,
        ),
        (
            "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        ),
        // Our configured URL spells out the default port; Twilio signed without it.
        (
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            NODE_SIGNATURE,
        ),
    ];
    for (url, signature) in cases {
        assert_eq!(
            wh.verify(url, &signed(signature), NODE_FORM),
            Ok(()),
            "{url}"
        );
    }
}

#[test]
fn the_default_port_is_also_tried_added() {
    // twilio-node "should validate https urls without ports by adding standard port 443"
    // and "... http urls without ports by adding standard port 80".
    let wh = verifier(&[VECTOR_TOKEN]);
    let cases = [
        (VECTOR_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        (
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            "0ZXoZLH/DfblKGATFgpif+LLRf4=",
        ),
    ];
    for (url, signature) in cases {
        assert_eq!(
            wh.verify(url, &signed(signature), NODE_FORM),
            Ok(()),
            "{url}"
        );
    }
    // Only the scheme's own default: `:80` on an https URL is another URL.
    let https_on_80 = verifier(&[VECTOR_TOKEN]).sign(
        "https://mycompany.com:80/myapp.php?foo=1&bar=2",
        &node_params(),
    );
    assert_eq!(
        wh.verify(VECTOR_URL, &signed(&https_on_80), NODE_FORM),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn urls_with_credentials_are_signed_with_them() {
    // twilio-node "should validate urls with credentials", "... with just username" and
    // "... with credentials by adding port".
    let wh = verifier(&[VECTOR_TOKEN]);
    let cases = [
        (
            "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
            "CukzLTc1tT5dXEDIHm/tKBanW10=",
        ),
        (
            "https://user@mycompany.com/myapp.php?foo=1&bar=2",
            "2YRLlVAflCqxaNicjMpJcSTgzSs=",
        ),
        (
            "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
            "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=",
        ),
    ];
    for (url, signature) in cases {
        assert_eq!(
            wh.verify(url, &signed(signature), NODE_FORM),
            Ok(()),
            "{url} {signature}"
        );
    }
}

#[test]
fn the_url_is_signed_verbatim_without_re_encoding() {
    // twilio-node "should validate urls with special characters": the signature is over
    // `It's+amazing` as written, not `It%27s+amazing` as a WHATWG parser would re-encode it.
    let url = format!("{VECTOR_URL}&Body=It's+amazing");
    let result =
        verifier(&[VECTOR_TOKEN]).verify(&url, &signed("dsq4Ehbj6cs+KdTkpF5sSSplOWw="), NODE_FORM);
    assert_eq!(result, Ok(()));
}

#[test]
fn a_json_body_verifies_against_its_body_sha256() {
    // twilio-node "should validate request body when given", "... when empty" (that one is
    // signed with `:443`) and "... with only sha param".
    let wh = verifier(&[VECTOR_TOKEN]);
    let empty_hash = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    let cases = [
        (
            format!("{VECTOR_URL}&bodySHA256={JSON_BODY_SHA256}"),
            "a9nBmqA0ju/hNViExpshrM61xv4=",
            JSON_BODY,
        ),
        (
            format!("{VECTOR_URL}&bodySHA256={empty_hash}"),
            "Ldidvp12m26NI7eqEvxnEpkd9Hc=",
            &b"{}"[..],
        ),
        (
            format!("https://mycompany.com/myapp.php?bodySHA256={JSON_BODY_SHA256}"),
            "y77kIzt2vzLz71DgmJGsen2scGs=",
            JSON_BODY,
        ),
    ];
    for (url, signature, body) in cases {
        assert_eq!(wh.verify(&url, &signed(signature), body), Ok(()), "{url}");
    }
    assert_eq!(crate::hex::sha256(JSON_BODY), JSON_BODY_SHA256);
}

#[test]
fn a_json_body_that_does_not_match_its_hash_is_a_bad_signature() {
    let url = format!("{VECTOR_URL}&bodySHA256={JSON_BODY_SHA256}");
    let headers = signed("a9nBmqA0ju/hNViExpshrM61xv4=");
    let wh = verifier(&[VECTOR_TOKEN]);
    for body in [
        &br#"{"property": "value", "boolean": false}"#[..],
        &br#"{"property":"value","boolean":true}"#[..],
        &b""[..],
    ] {
        assert_eq!(
            wh.verify(&url, &headers, body),
            Err(VerifyError::BadSignature)
        );
    }
}

#[test]
fn a_body_sha256_changed_to_match_another_body_is_a_bad_signature() {
    let other_body = br#"{"property": "evil"}"#;
    let other_hash = crate::hex::sha256(other_body);
    let url = format!("{VECTOR_URL}&bodySHA256={other_hash}");
    let result =
        verifier(&[VECTOR_TOKEN]).verify(&url, &signed("a9nBmqA0ju/hNViExpshrM61xv4="), other_body);
    assert_eq!(result, Err(VerifyError::BadSignature));
}

#[test]
fn with_body_sha256_the_signature_covers_no_form_parameters() {
    // A form body under a `bodySHA256` URL is not read as parameters: signing them in does
    // not help, the signature must be over the URL alone.
    let body = NODE_FORM;
    let url = format!("{VECTOR_URL}&bodySHA256={}", crate::hex::sha256(body));
    let wh = verifier(&[VECTOR_TOKEN]);
    let with_params = wh.sign(&url, &node_params());
    assert_eq!(
        wh.verify(&url, &signed(&with_params), body),
        Err(VerifyError::BadSignature)
    );
    let url_only = wh.sign(&url, &[]);
    assert_eq!(wh.verify(&url, &signed(&url_only), body), Ok(()));
}

#[test]
fn repeated_parameters_append_each_distinct_value_in_sorted_order() {
    // twilio-node "should validate request body with an array parameter" (values in either
    // order) and "... with multiple params and values" (a repeated value counts once).
    let wh = verifier(&[VECTOR_TOKEN]);
    let binding = "83O6e2vORAoJHUNzJjDWN1jz+BA=";
    for body in [
        &b"MessagingBinding.Address=%2B1325xxxxxxx&MessagingBinding.Address=%2B1415xxxxxxx"[..],
        &b"MessagingBinding.Address=%2B1415xxxxxxx&MessagingBinding.Address=%2B1325xxxxxxx"[..],
    ] {
        assert_eq!(wh.verify(VECTOR_URL, &signed(binding), body), Ok(()));
    }
    let digits = b"Digits=5678&Sid=CA123&Digits=1234&SidAccount=AC123&Digits=1234";
    assert_eq!(
        wh.verify(VECTOR_URL, &signed("IK+Dwps556ElfBT0I3Rgjkr1wJU="), digits),
        Ok(())
    );
}

#[test]
fn form_bodies_are_decoded_as_browsers_encode_them() {
    let decoded =
        crate::http::form::parse(b"a=1+2&b=%2B1%20x&c=&d&&e=%zz%4&f=caf%C3%A9&g=%ff&h=x=y&%41=B");
    assert_eq!(
        decoded,
        params(&[
            ("a", "1 2"),
            ("b", "+1 x"),
            ("c", ""),
            ("d", ""),
            ("e", "%zz%4"),
            ("f", "café"),
            ("g", "\u{fffd}"),
            ("h", "x=y"),
            ("A", "B"),
        ])
    );
    assert!(crate::http::form::parse(b"").is_empty());
}

#[test]
fn body_sha256_is_read_from_the_query_only() {
    assert_eq!(
        query_param(
            "https://h/p?a=1&bodySHA256=ab%63&bodySHA256=x",
            BODY_SHA256_PARAM
        ),
        Some("abc".to_owned())
    );
    for url in [
        "https://h/p",
        "https://h/p?xbodySHA256=1",
        "https://h/p#?bodySHA256=1",
        "https://h/bodySHA256=1",
    ] {
        assert_eq!(query_param(url, BODY_SHA256_PARAM), None, "{url}");
    }
}

#[test]
fn port_toggling_handles_userinfo_ipv6_and_websockets() {
    let cases = [
        (
            "https://h.example/a?b#c",
            Some("https://h.example:443/a?b#c"),
        ),
        ("https://h.example:443/a", Some("https://h.example/a")),
        ("HTTP://h.example?x=1", Some("HTTP://h.example:80?x=1")),
        (
            "https://u:p@h.example/a",
            Some("https://u:p@h.example:443/a"),
        ),
        ("https://u:p@h.example:8443", Some("https://u:p@h.example")),
        ("https://[::1]/a", Some("https://[::1]:443/a")),
        ("https://[::1]:8443/a", Some("https://[::1]/a")),
        ("wss://h.example/stream", Some("wss://h.example:443/stream")),
        ("ws://h.example/stream", Some("ws://h.example:80/stream")),
        ("ftp://h.example/a", None),
        ("https://h.example:x/a", None),
        ("https:///a", None),
        ("/relative/path?x=1", None),
    ];
    for (url, toggled) in cases {
        assert_eq!(toggle_port(url).as_deref(), toggled, "{url}");
    }
}

#[test]
fn unusable_tokens_are_named_by_position_without_their_value() {
    let tokens = |texts: &[&str]| -> Vec<Secret<String>> {
        texts.iter().map(|t| Secret::new((*t).to_owned())).collect()
    };
    assert_eq!(
        TwilioSignature::new(&[]).unwrap_err(),
        KeyError::NoAuthTokens
    );
    let empty = TwilioSignature::new(&tokens(&[OTHER_TOKEN, " \n"]));
    assert_eq!(empty.unwrap_err(), KeyError::EmptyAuthToken { index: 1 });
    // Whitespace around a stored token is not part of it.
    let padded = verifier(&[" 12345\n"]);
    assert_eq!(padded.sign(VECTOR_URL, &node_params()), NODE_SIGNATURE);
}

#[test]
fn debug_output_and_errors_never_show_a_token() {
    let wh = verifier(&[OTHER_TOKEN]);
    let debug = format!("{wh:?}");
    assert!(!debug.contains(OTHER_TOKEN), "{debug}");
    assert!(debug.contains("[REDACTED]"), "{debug}");
    let error = wh
        .verify(VECTOR_URL, &signed(NODE_SIGNATURE), NODE_FORM)
        .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(OTHER_TOKEN), "{shown}");
    assert!(!shown.contains(NODE_SIGNATURE), "{shown}");
}

/// Up to 8 parameters: printable-ASCII names and values, including the characters form
/// encoding must escape (`+`, `%`, `&`, `=`, space).
fn ascii_params() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("[ -~]{1,12}", "[ -~]{0,24}"), 0..8)
}

/// Up to 8 parameters of any non-control Unicode.
fn unicode_params() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("\\PC{0,12}", "\\PC{0,24}"), 0..8)
}

/// A plausible public URL of ours, with or without a port and a query.
fn our_url() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["https", "http", "wss"]),
        prop::sample::select(vec!["", ":443", ":80", ":8443"]),
        "(/[A-Za-z0-9_.-]{1,12}){1,3}",
        prop::option::of("[A-Za-z0-9]{1,8}=[A-Za-z0-9%+]{0,12}"),
    )
        .prop_map(|(scheme, port, path, query)| match query {
            Some(query) => format!("{scheme}://hooks.example.com{port}{path}?{query}"),
            None => format!("{scheme}://hooks.example.com{port}{path}"),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_signature_made_by_sign_verifies_as_a_form_post(
        url in our_url(),
        pairs in prop_oneof![ascii_params(), unicode_params()],
        rotated in any::<bool>(),
    ) {
        let sender = verifier(&[VECTOR_TOKEN]);
        let receiver = if rotated {
            verifier(&[OTHER_TOKEN, VECTOR_TOKEN])
        } else {
            verifier(&[VECTOR_TOKEN])
        };
        let signature = sender.sign(&url, &pairs);
        let body = form_encode(&pairs);
        prop_assert_eq!(receiver.verify(&url, &signed(&signature), &body), Ok(()));
    }

    #[test]
    fn changing_any_value_breaks_the_signature(
        url in our_url(),
        pairs in ascii_params().prop_filter("needs a parameter", |p| !p.is_empty()),
        position in any::<prop::sample::Index>(),
    ) {
        let wh = verifier(&[VECTOR_TOKEN]);
        let signature = wh.sign(&url, &pairs);
        let mut tampered = pairs.clone();
        // A non-ASCII suffix: the new value cannot already be among the ASCII ones, so
        // deduplication cannot hide the change.
        tampered[position.index(pairs.len())].1.push('é');
        let body = form_encode(&tampered);
        prop_assert_eq!(
            wh.verify(&url, &signed(&signature), &body),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn verify_never_panics_or_passes_on_arbitrary_input(
        url in prop_oneof![our_url(), "\\PC{0,64}"],
        signature in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut headers = HeaderMap::new();
        if let Some(value) = signature.and_then(|s| HeaderValue::from_bytes(&s).ok()) {
            headers.insert(TWILIO_SIGNATURE_HEADER, value);
        }
        let wh = verifier(&[VECTOR_TOKEN, OTHER_TOKEN]);
        // Arbitrary input must not pass, except by a 2^-160 accident.
        prop_assert!(wh.verify(&url, &headers, &body).is_err());
    }
}
