//! `application/x-www-form-urlencoded` bodies: [`parse`] decodes leniently, for verifying what
//! a sender signed (Twilio) and for the simulators; [`decode`] is the byte decoder that the
//! strict normalizer (`normalize::zoho`, which names fields that are not UTF-8) shares.

/// Parses `application/x-www-form-urlencoded` bytes as browsers and web frameworks do (WHATWG URL
/// standard, "application/x-www-form-urlencoded parsing"): pairs split on `&`, empty pieces
/// skipped, name and value split at the first `=` (none means an empty value), `+` is a space,
/// `%XX` a byte, a `%` not followed by two hex digits stays as it is, and bytes that are not
/// UTF-8 become U+FFFD. Order and repeats are kept.
pub fn parse(bytes: &[u8]) -> Vec<(String, String)> {
    bytes
        .split(|&byte| byte == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = match piece.iter().position(|&byte| byte == b'=') {
                Some(equals) => (&piece[..equals], &piece[equals + 1..]),
                None => (piece, &[][..]),
            };
            (lossy(name), lossy(value))
        })
        .collect()
}

/// Encodes pairs as `application/x-www-form-urlencoded`: `A-Z a-z 0-9 * - . _` as they are,
/// space as `+`, every other byte as `%XX` (the WHATWG serializer, which reqwest also uses).
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut encoded = String::new();
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            encoded.push('&');
        }
        encode_component(name.as_ref(), &mut encoded);
        encoded.push('=');
        encode_component(value.as_ref(), &mut encoded);
    }
    encoded
}

fn encode_component(text: &str, out: &mut String) {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            other => {
                // Writing to a `String` cannot fail.
                let _infallible = std::fmt::Write::write_fmt(out, format_args!("%{other:02X}"));
            }
        }
    }
}

/// Decodes one form-encoded name or value, bytes that are not UTF-8 as U+FFFD.
fn lossy(encoded: &[u8]) -> String {
    String::from_utf8_lossy(&decode(encoded)).into_owned()
}

/// Decodes one form-encoded name or value into bytes: `+` is a space, `%XX` a byte, a `%` not
/// followed by two hex digits stays as it is.
pub fn decode(encoded: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some((&first, tail)) = rest.split_first() {
        match (first, tail) {
            (b'+', _) => {
                decoded.push(b' ');
                rest = tail;
            }
            (b'%', [high, low, after @ ..]) => match hex_byte(*high, *low) {
                Some(byte) => {
                    decoded.push(byte);
                    rest = after;
                }
                None => {
                    decoded.push(b'%');
                    rest = tail;
                }
            },
            (other, _) => {
                decoded.push(other);
                rest = tail;
            }
        }
    }
    decoded
}

/// The byte two hex digits spell, either case.
fn hex_byte(high: u8, low: u8) -> Option<u8> {
    let high = char::from(high).to_digit(16)?;
    let low = char::from(low).to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}
