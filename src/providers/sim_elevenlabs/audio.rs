//! G.711 μ-law, an audible test tone, and the simulator's speech detector.
//!
//! The detector measures time in audio (8 bytes per millisecond), not by the wall clock, so
//! what counts as speech does not depend on how fast a test sends it.

/// 8 kHz μ-law: bytes per millisecond.
pub const BYTES_PER_MS: usize = 8;

/// μ-law silence (the encoding of a zero sample).
pub const SILENCE: u8 = 0xFF;

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// Returns the μ-law byte of a 16-bit linear sample.
#[must_use]
pub fn encode(sample: i16) -> u8 {
    let mut value = i32::from(sample);
    let sign = if value < 0 {
        value = -value;
        0x80
    } else {
        0
    };
    value = value.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && value & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (value >> (exponent + 3)) & 0x0F;
    // The masks keep the value within a byte.
    let byte = !(sign | (exponent << 4) | mantissa) & 0xFF;
    u8::try_from(byte).unwrap_or(SILENCE)
}

/// Returns the 16-bit linear sample of a μ-law byte.
#[must_use]
pub fn decode(byte: u8) -> i16 {
    let value = i32::from(!byte);
    let sign = value & 0x80;
    let exponent = (value >> 4) & 0x07;
    let mantissa = value & 0x0F;
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    let sample = if sign == 0 { magnitude } else { -magnitude };
    i16::try_from(sample).unwrap_or(0)
}

/// Returns `ms` milliseconds of a 440 Hz tone at about a third of full scale, as μ-law,
/// starting at sample `offset` (so consecutive chunks join without a click).
#[must_use]
pub fn tone(ms: u64, offset: u64) -> Vec<u8> {
    let samples = usize::try_from(ms).unwrap_or(0) * BYTES_PER_MS;
    (0..samples)
        .map(|index| {
            let sample_index = offset + index as u64;
            #[allow(clippy::cast_precision_loss)]
            let phase = sample_index as f64 * 440.0 * std::f64::consts::TAU / 8000.0;
            #[allow(clippy::cast_possible_truncation)]
            let linear = (phase.sin() * 10_000.0) as i16;
            encode(linear)
        })
        .collect()
}

/// Returns `ms` milliseconds of μ-law silence.
#[must_use]
pub fn silence(ms: u64) -> Vec<u8> {
    vec![SILENCE; usize::try_from(ms).unwrap_or(0) * BYTES_PER_MS]
}

/// What [`SpeechDetector::push`] noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speech {
    /// Enough speech to count as the caller talking.
    Started,
    /// The caller talked and then fell silent long enough: an utterance ended.
    Ended,
}

/// Thresholds of the speech detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechDetection {
    /// A 10 ms block whose mean absolute linear amplitude exceeds this is speech.
    pub threshold: u32,
    /// How much speech (audio time) makes the caller "talking".
    pub speech_ms: u64,
    /// How much silence after talking ends an utterance.
    pub silence_ms: u64,
}

impl Default for SpeechDetection {
    /// Returns 200 ms of speech above amplitude 500, ended by 400 ms of silence.
    fn default() -> Self {
        Self {
            threshold: 500,
            speech_ms: 200,
            silence_ms: 400,
        }
    }
}

/// Finds utterances in caller audio, 10 ms at a time.
#[derive(Debug, Clone)]
pub struct SpeechDetector {
    config: SpeechDetection,
    /// Bytes of the current, incomplete 10 ms block: (count, sum of absolute amplitudes).
    block: (usize, u64),
    speech_run_ms: u64,
    silence_run_ms: u64,
    talking: bool,
}

/// 10 ms of μ-law.
const BLOCK_BYTES: usize = 10 * BYTES_PER_MS;

impl SpeechDetector {
    /// Returns a detector with `config`.
    #[must_use]
    pub fn new(config: SpeechDetection) -> Self {
        Self {
            config,
            block: (0, 0),
            speech_run_ms: 0,
            silence_run_ms: 0,
            talking: false,
        }
    }

    /// Feeds caller audio; calls `on` for every start and end of speech it completes.
    pub fn push(&mut self, audio: &[u8], mut on: impl FnMut(Speech)) {
        for &byte in audio {
            let (count, sum) = &mut self.block;
            *count += 1;
            *sum += u64::from(decode(byte).unsigned_abs());
            if *count < BLOCK_BYTES {
                continue;
            }
            let loud = *sum / BLOCK_BYTES as u64 > u64::from(self.config.threshold);
            self.block = (0, 0);
            if loud {
                self.speech_run_ms += 10;
                self.silence_run_ms = 0;
                if !self.talking && self.speech_run_ms >= self.config.speech_ms {
                    self.talking = true;
                    on(Speech::Started);
                }
            } else {
                self.silence_run_ms += 10;
                if !self.talking {
                    self.speech_run_ms = 0;
                } else if self.silence_run_ms >= self.config.silence_ms {
                    self.talking = false;
                    self.speech_run_ms = 0;
                    on(Speech::Ended);
                }
            }
        }
    }
}
