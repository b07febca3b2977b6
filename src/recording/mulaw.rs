//! G.711 μ-law decoding: Twilio Media Streams and ElevenLabs `ulaw_8000` carry 8-bit μ-law.

/// Decodes one μ-law byte to a 16-bit linear sample (ITU-T G.711, the bias-33 expansion).
#[must_use]
pub const fn decode(byte: u8) -> i16 {
    let inverted = !byte;
    let sign = inverted & 0x80;
    let exponent = (inverted >> 4) & 0x07;
    let mantissa = inverted & 0x0F;
    // ((mantissa << 3) + bias) << exponent, minus the bias: at most 32,124, so it fits.
    let magnitude = ((((mantissa as i32) << 3) + 0x84) << exponent) - 0x84;
    if sign == 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Appends the linear samples of μ-law `bytes` to `out`.
pub fn decode_into(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|byte| decode(*byte)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_g711_table_at_its_corners() {
        // Both zero codes, the extremes, and a mid value of the standard table.
        assert_eq!(decode(0xFF), 0);
        assert_eq!(decode(0x7F), 0);
        assert_eq!(decode(0x80), 32_124);
        assert_eq!(decode(0x00), -32_124);
        assert_eq!(decode(0xF0), 120);
        assert_eq!(decode(0x70), -120);
        assert_eq!(decode(0xCF), 924);
    }

    #[test]
    fn is_monotonic_within_each_sign() {
        // 0x80..=0xFF: positive, decreasing magnitude as the byte grows.
        let positive: Vec<i16> = (0x80..=0xFFu8).map(decode).collect();
        assert!(positive.windows(2).all(|pair| pair[0] > pair[1]));
        let negative: Vec<i16> = (0x00..=0x7Fu8).map(decode).collect();
        assert!(negative.windows(2).all(|pair| pair[0] < pair[1]));
        let mut out = Vec::new();
        decode_into(&[0xFF, 0x80], &mut out);
        assert_eq!(out, [0, 32_124]);
    }
}
