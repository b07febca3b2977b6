use super::*;

const KEY: [u8; 32] = [9u8; 32];

fn keys(id: &str) -> Option<[u8; 32]> {
    (id == "k1").then_some(KEY)
}

/// Writes `frames` frames (caller: a ramp, agent: its negation) in uneven chunks.
fn write(path: &Path, frames: usize) -> (Vec<i16>, Vec<i16>) {
    let caller: Vec<i16> = (0..frames).map(|i| (i % 30_000) as i16).collect();
    let agent: Vec<i16> = caller.iter().map(|sample| -sample).collect();
    let mut writer = SealedWavWriter::create(path, "k1", &KEY, b"tenant|call").unwrap();
    let mut start = 0;
    for chunk in [1usize, 159, 160, 7_000, 33_333].iter().cycle() {
        if start >= frames {
            break;
        }
        let end = (start + chunk).min(frames);
        writer
            .write_frames(&caller[start..end], &agent[start..end])
            .unwrap();
        start = end;
    }
    writer.finish().unwrap();
    (caller, agent)
}

/// Reads a WAV: checks the header, returns the two channels.
fn read_wav(wav: &[u8]) -> (Vec<i16>, Vec<i16>) {
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    let u16_at = |at: usize| u16::from_le_bytes([wav[at], wav[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(wav[at..at + 4].try_into().unwrap());
    assert_eq!(u16_at(20), 1, "PCM");
    assert_eq!(u16_at(22), 2, "stereo");
    assert_eq!(u32_at(24), 8_000);
    assert_eq!(u32_at(28), 32_000);
    assert_eq!(u16_at(32), 4);
    assert_eq!(u16_at(34), 16);
    assert_eq!(&wav[36..40], b"data");
    let data = u32_at(40) as usize;
    assert_eq!(u32_at(4) as usize, data + 36);
    assert_eq!(wav.len(), 44 + data);
    let samples: Vec<i16> = wav[44..]
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    (
        samples.iter().step_by(2).copied().collect(),
        samples.iter().skip(1).step_by(2).copied().collect(),
    )
}

#[test]
fn short_exact_and_long_recordings_open_as_the_wav_that_was_written() {
    let dir = tempfile::tempdir().unwrap();
    // Under one segment; header + data exactly one segment; exactly one more segment; many.
    let one_segment = (SEGMENT - WAV_HEADER) / 4;
    for frames in [0, 1, 8_000, one_segment, one_segment + SEGMENT / 4, 200_000] {
        let path = dir.path().join(format!("{frames}.crec"));
        let (caller, agent) = write(&path, frames);
        let wav = open(&path, keys, b"tenant|call").unwrap();
        let (left, right) = read_wav(&wav);
        assert_eq!(left, caller, "{frames} frames");
        assert_eq!(right, agent, "{frames} frames");
        // Sealed: the samples do not appear in the file.
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(4).any(|window| window == b"RIFF"));
    }
}

#[test]
fn tampered_truncated_or_foreign_recordings_never_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.crec");
    write(&path, 100_000);
    let original = std::fs::read(&path).unwrap();
    let header = MAGIC.len() + 1 + 2 + 7;

    let mut flipped = original.clone();
    flipped[header + SEGMENT + 100] ^= 1;
    std::fs::write(&path, &flipped).unwrap();
    assert!(matches!(
        open(&path, keys, b"tenant|call"),
        Err(SealedError::Tampered(_))
    ));

    // Cut at a segment boundary: the last remaining segment was not sealed as last.
    std::fs::write(&path, &original[..header + 2 * (SEGMENT + TAG)]).unwrap();
    assert!(matches!(
        open(&path, keys, b"tenant|call"),
        Err(SealedError::Tampered(1))
    ));

    std::fs::write(&path, &original).unwrap();
    assert!(open(&path, keys, b"tenant|call").is_ok());
    assert!(matches!(
        open(&path, keys, b"other-tenant|call"),
        Err(SealedError::Tampered(0))
    ));
    assert!(matches!(
        open(&path, |_| None, b"tenant|call"),
        Err(SealedError::UnknownKey(id)) if id == "k1"
    ));
    std::fs::write(&path, b"RIFF....WAVE").unwrap();
    assert!(matches!(
        open(&path, keys, b"tenant|call"),
        Err(SealedError::Malformed)
    ));
}

#[test]
fn an_existing_file_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.crec");
    std::fs::write(&path, b"keep").unwrap();
    assert!(matches!(
        SealedWavWriter::create(&path, "k1", &KEY, b""),
        Err(SealedError::Io(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), b"keep");
}
