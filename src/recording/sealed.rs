//! A stereo WAV sealed with AES-256-GCM as it is written (the STREAM construction).
//!
//! File layout: `CREC1\0` · key id length (1 byte) · key id · nonce prefix (7 random bytes) ·
//! segments. Each segment seals 64 KiB of WAV bytes (the last one fewer) and carries its
//! 16-byte tag. Segment `i`'s nonce is `prefix ‖ i (u32, big-endian) ‖ last (0 or 1)`, and
//! every segment's additional data is the file header plus a caller-given context (tenant
//! and call ids), so a segment cannot be moved to another file, reordered, or dropped from
//! the end without detection: a truncated file's final segment was sealed as "not last".
//!
//! The WAV header needs the data length, which is known only at the end. The writer therefore
//! keeps segment 0 (which starts with the header) in memory, writes the later segments after
//! a reserved slot of one full segment, and seals segment 0 into that slot at `finish`. Memory
//! stays at two segments whatever the call's length.
//!
//! Audio: 8 kHz, 16-bit little-endian PCM, two channels (left: the caller, right: the agent).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore as _;

/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;
const MAGIC: &[u8; 6] = b"CREC1\0";
const WAV_HEADER: usize = 44;
/// Sample rate of telephone audio.
pub const SAMPLE_RATE: u32 = 8_000;

/// Why a sealed recording could not be written or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    /// Reading or writing the file failed.
    #[error("recording file: {0}")]
    Io(#[from] std::io::Error),
    /// Not a sealed recording (bad magic or header).
    #[error("not a sealed recording")]
    Malformed,
    /// Sealed with a master key this process does not have.
    #[error("recording sealed with unknown key `{0}`")]
    UnknownKey(String),
    /// A segment does not authenticate: tampered, truncated, reordered or another context.
    #[error("recording segment {0} does not authenticate")]
    Tampered(u32),
}

/// Writes one sealed stereo WAV.
pub struct SealedWavWriter {
    file: File,
    cipher: Aes256Gcm,
    prefix: [u8; 7],
    aad: Vec<u8>,
    header_len: u64,
    /// Segment 0's plaintext (it starts with the WAV header), sealed at `finish`.
    first: Vec<u8>,
    /// The segment being filled once segment 0 is full, and its index.
    current: Option<(u32, Vec<u8>)>,
    data_bytes: u64,
}

impl std::fmt::Debug for SealedWavWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedWavWriter")
            .field("data_bytes", &self.data_bytes)
            .finish_non_exhaustive()
    }
}

impl SealedWavWriter {
    /// Creates `path` (failing if it exists), sealing with `key` (id `key_id`) and binding
    /// every segment to `context` (e.g. tenant and call ids).
    ///
    /// # Errors
    ///
    /// [`SealedError::Io`] when the file cannot be created; `Malformed` for a key id over 255
    /// bytes.
    pub fn create(
        path: &Path,
        key_id: &str,
        key: &[u8; 32],
        context: &[u8],
    ) -> Result<Self, SealedError> {
        let key_id_len = u8::try_from(key_id.len()).map_err(|_| SealedError::Malformed)?;
        let mut prefix = [0u8; 7];
        rand::thread_rng().fill_bytes(&mut prefix);
        let mut header = MAGIC.to_vec();
        header.push(key_id_len);
        header.extend_from_slice(key_id.as_bytes());
        header.extend_from_slice(&prefix);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        file.write_all(&header)?;
        let header_len = header.len() as u64;
        // Later segments go after segment 0's reserved slot.
        file.seek(SeekFrom::Start(header_len + (SEGMENT + TAG) as u64))?;
        let mut aad = header;
        aad.extend_from_slice(context);
        let mut first = Vec::with_capacity(SEGMENT);
        first.extend_from_slice(&[0u8; WAV_HEADER]);
        Ok(Self {
            file,
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
            prefix,
            aad,
            header_len,
            first,
            current: None,
            data_bytes: 0,
        })
    }

    /// Appends frames: `caller[i]` and `agent[i]` play together; the shorter side is padded
    /// with silence.
    ///
    /// # Errors
    ///
    /// [`SealedError::Io`] when a full segment cannot be written.
    pub fn write_frames(&mut self, caller: &[i16], agent: &[i16]) -> Result<(), SealedError> {
        let frames = caller.len().max(agent.len());
        let mut bytes = Vec::with_capacity(frames * 4);
        for index in 0..frames {
            let left = caller.get(index).copied().unwrap_or(0);
            let right = agent.get(index).copied().unwrap_or(0);
            bytes.extend_from_slice(&left.to_le_bytes());
            bytes.extend_from_slice(&right.to_le_bytes());
        }
        self.data_bytes += bytes.len() as u64;
        self.push(&bytes)
    }

    fn push(&mut self, mut bytes: &[u8]) -> Result<(), SealedError> {
        while !bytes.is_empty() {
            if self.current.is_none() {
                let room = SEGMENT - self.first.len();
                if room > 0 {
                    let take = room.min(bytes.len());
                    self.first.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    continue;
                }
                self.current = Some((1, Vec::with_capacity(SEGMENT)));
            }
            let (index, segment) = self.current.as_mut().expect("set above");
            if segment.len() == SEGMENT {
                // Sealed only once more bytes arrive: the final segment must be marked last.
                let sealed = seal(
                    &self.cipher,
                    &self.prefix,
                    &self.aad,
                    *index,
                    false,
                    segment,
                );
                self.file.write_all(&sealed)?;
                *index += 1;
                segment.clear();
            }
            let take = (SEGMENT - segment.len()).min(bytes.len());
            segment.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Completes the WAV header, seals the last segment and segment 0, and syncs the file.
    /// Returns the audio's length in seconds.
    ///
    /// # Errors
    ///
    /// [`SealedError::Io`] when writing or syncing fails.
    pub fn finish(mut self) -> Result<f64, SealedError> {
        let data = u32::try_from(self.data_bytes).unwrap_or(u32::MAX);
        self.first[..WAV_HEADER].copy_from_slice(&wav_header(data));
        match self.current.take() {
            None => {
                let sealed = seal(&self.cipher, &self.prefix, &self.aad, 0, true, &self.first);
                self.file.seek(SeekFrom::Start(self.header_len))?;
                self.file.write_all(&sealed)?;
                self.file.set_len(self.header_len + sealed.len() as u64)?;
            }
            Some((index, segment)) => {
                let last = seal(&self.cipher, &self.prefix, &self.aad, index, true, &segment);
                self.file.write_all(&last)?;
                let first = seal(&self.cipher, &self.prefix, &self.aad, 0, false, &self.first);
                self.file.seek(SeekFrom::Start(self.header_len))?;
                self.file.write_all(&first)?;
            }
        }
        self.file.sync_all()?;
        #[allow(clippy::cast_precision_loss)]
        Ok(self.data_bytes as f64 / f64::from(SAMPLE_RATE * 4))
    }
}

/// Opens a sealed recording and returns its WAV bytes, checking every segment.
///
/// `key` returns the master key of a key id, `context` must be the writer's.
///
/// # Errors
///
/// [`SealedError`] names what failed; a truncated, reordered or altered file never opens.
pub fn open(
    path: &Path,
    key: impl Fn(&str) -> Option<[u8; 32]>,
    context: &[u8],
) -> Result<Vec<u8>, SealedError> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let magic_end = MAGIC.len();
    if bytes.get(..magic_end) != Some(MAGIC.as_slice()) {
        return Err(SealedError::Malformed);
    }
    let key_id_len = usize::from(*bytes.get(magic_end).ok_or(SealedError::Malformed)?);
    let key_id_start = magic_end + 1;
    let prefix_start = key_id_start + key_id_len;
    let header_len = prefix_start + 7;
    if bytes.len() < header_len + TAG {
        return Err(SealedError::Malformed);
    }
    let key_id = std::str::from_utf8(&bytes[key_id_start..prefix_start])
        .map_err(|_| SealedError::Malformed)?;
    let master = key(key_id).ok_or_else(|| SealedError::UnknownKey(key_id.to_owned()))?;
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&master));
    let mut prefix = [0u8; 7];
    prefix.copy_from_slice(&bytes[prefix_start..header_len]);
    let mut aad = bytes[..header_len].to_vec();
    aad.extend_from_slice(context);

    let mut wav = Vec::with_capacity(bytes.len());
    let mut rest = &bytes[header_len..];
    let mut index = 0u32;
    loop {
        let last = rest.len() <= SEGMENT + TAG;
        let take = rest.len().min(SEGMENT + TAG);
        let nonce = nonce(&prefix, index, last);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &rest[..take],
                    aad: &aad,
                },
            )
            .map_err(|_| SealedError::Tampered(index))?;
        wav.extend_from_slice(&plain);
        rest = &rest[take..];
        if last {
            return Ok(wav);
        }
        index = index.checked_add(1).ok_or(SealedError::Malformed)?;
    }
}

fn nonce(prefix: &[u8; 7], index: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..7].copy_from_slice(prefix);
    nonce[7..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

fn seal(
    cipher: &Aes256Gcm,
    prefix: &[u8; 7],
    aad: &[u8],
    index: u32,
    last: bool,
    plain: &[u8],
) -> Vec<u8> {
    let nonce = nonce(prefix, index, last);
    cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .expect("AES-GCM encryption of an in-memory buffer cannot fail")
}

/// The 44-byte header of a PCM WAV: 8 kHz, 16-bit, stereo, `data` bytes of samples.
fn wav_header(data: u32) -> [u8; WAV_HEADER] {
    let mut header = [0u8; WAV_HEADER];
    let channels: u16 = 2;
    let bits: u16 = 16;
    let block_align = channels * bits / 8;
    let byte_rate = SAMPLE_RATE * u32::from(block_align);
    header[0..4].copy_from_slice(b"RIFF");
    header[4..8].copy_from_slice(&data.saturating_add(36).to_le_bytes());
    header[8..12].copy_from_slice(b"WAVE");
    header[12..16].copy_from_slice(b"fmt ");
    header[16..20].copy_from_slice(&16u32.to_le_bytes());
    header[20..22].copy_from_slice(&1u16.to_le_bytes());
    header[22..24].copy_from_slice(&channels.to_le_bytes());
    header[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    header[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    header[32..34].copy_from_slice(&block_align.to_le_bytes());
    header[34..36].copy_from_slice(&bits.to_le_bytes());
    header[36..40].copy_from_slice(b"data");
    header[40..44].copy_from_slice(&data.to_le_bytes());
    header
}

#[cfg(test)]
mod tests;
