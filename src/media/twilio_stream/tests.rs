use serde_json::Value;

use super::{Inbound, Outbound, Track, WireError, parse};
use crate::schema_check::{fixture, fixtures, validate_at, vendor_schema};

const STREAM_SID: &str = "MZaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn schema() -> Value {
    vendor_schema("twilio.media-streams.messages.schema.json")
}

fn assert_valid(schema: &Value, pointer: &str, name: &str, frame: &Value) {
    if let Err(errors) = validate_at(schema, pointer, frame) {
        panic!("{name} does not match {pointer}:\n{}", errors.join("\n"));
    }
}

#[test]
fn every_inbound_example_parses_matches_the_schema_and_round_trips() {
    let schema = schema();
    let examples = fixtures("twilio-media", "inbound.");
    assert_eq!(
        examples.len(),
        super::KNOWN_EVENTS.len(),
        "one fixture per known event"
    );
    for (name, text) in examples {
        let frame = parse(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
        let wire: Value = serde_json::from_str(&text).unwrap();
        assert_valid(&schema, "#/$defs/FromTwilio", &name, &wire);
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            wire,
            "{name} round-trips"
        );
        assert_eq!(
            format!("inbound.{}.json", wire["event"].as_str().unwrap()),
            name
        );
    }
}

#[test]
fn every_outbound_example_reads_as_outbound_and_matches_the_schema() {
    let schema = schema();
    let examples = fixtures("twilio-media", "outbound.");
    assert_eq!(examples.len(), 3);
    for (name, text) in examples {
        let frame: Outbound =
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("{name}: {err}"));
        let wire: Value = serde_json::from_str(&text).unwrap();
        assert_valid(&schema, "#/$defs/ToTwilio", &name, &wire);
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            wire,
            "{name} round-trips"
        );
    }
}

#[test]
fn every_frame_we_build_matches_the_schema() {
    let schema = schema();
    let frames = [
        Outbound::media(STREAM_SID, &[0xff; 160]),
        Outbound::media(STREAM_SID, &[]),
        Outbound::mark(STREAM_SID, "utt-17"),
        Outbound::clear(STREAM_SID),
    ];
    for frame in frames {
        let wire = serde_json::to_value(&frame).unwrap();
        assert_valid(&schema, "#/$defs/ToTwilio", &format!("{frame:?}"), &wire);
        let back: Outbound = serde_json::from_value(wire).unwrap();
        assert_eq!(back, frame);
    }
}

#[test]
fn the_validator_rejects_frames_that_break_the_schema() {
    let schema = schema();
    let bad = [
        serde_json::json!({"event": "clear", "streamSid": "MZ…"}),
        serde_json::json!({"event": "mark", "streamSid": STREAM_SID}),
        serde_json::json!({"event": "media", "streamSid": STREAM_SID, "media": {"payload": 7}}),
        serde_json::json!({"event": "hangup", "streamSid": STREAM_SID}),
    ];
    for frame in bad {
        assert!(
            validate_at(&schema, "#/$defs/ToTwilio", &frame).is_err(),
            "{frame}"
        );
    }
}

#[test]
fn media_payload_round_trips_through_base64() {
    let audio: Vec<u8> = (0..=255).collect();
    let Outbound::Media { media, .. } = Outbound::media(STREAM_SID, &audio) else {
        panic!("media builds a media frame");
    };
    assert_eq!(media.decode_payload().unwrap(), audio);

    // 160 bytes (20 ms) of μ-law silence, as Twilio sends it.
    let text = format!(
        r#"{{"event":"media","sequenceNumber":"3","media":{{"track":"outbound","chunk":"2","timestamp":"20","payload":"{}"}},"streamSid":"{STREAM_SID}"}}"#,
        "/".repeat(212) + "/w=="
    );
    let Inbound::Media(frame) = parse(&text).unwrap() else {
        panic!("a media frame")
    };
    assert_eq!(frame.media.track, Track::Outbound);
    assert_eq!(frame.media.decode_payload().unwrap(), vec![0xff; 160]);
    assert_eq!(frame.media.chunk_number(), Some(2));
    assert_eq!(frame.media.timestamp_ms(), Some(20));
}

#[test]
fn a_truncated_payload_is_an_error_not_a_panic() {
    let text = fixture("twilio-media", "inbound.media.json");
    let Inbound::Media(frame) = parse(&text).unwrap() else {
        panic!("a media frame")
    };
    assert!(matches!(
        frame.media.decode_payload(),
        Err(WireError::Payload(_))
    ));
}

#[test]
fn counters_parse_from_their_wire_strings() {
    let text = fixture("twilio-media", "inbound.start.json");
    let frame = parse(&text).unwrap();
    assert_eq!(frame.sequence(), Some(1));
    assert_eq!(frame.stream_sid(), Some(STREAM_SID));
    let Inbound::Start(start) = frame else {
        panic!("a start frame")
    };
    assert_eq!(start.start.custom_parameters["tenantId"], "t1");
    assert_eq!(start.start.media_format.sample_rate, 8000);

    let connected = parse(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#).unwrap();
    assert_eq!(connected.sequence(), None);
    assert_eq!(connected.stream_sid(), None);

    let odd = format!(r#"{{"event":"clear","streamSid":"{STREAM_SID}"}}"#);
    assert!(matches!(parse(&odd), Err(WireError::UnknownEvent(event)) if event == "clear"));
    for (raw, expected) in [
        ("\"7\"", Some(7)),
        ("\"+7\"", None),
        ("\"\"", None),
        ("\"x\"", None),
    ] {
        let text = format!(
            r#"{{"event":"mark","sequenceNumber":{raw},"streamSid":"{STREAM_SID}","mark":{{"name":"m"}}}}"#
        );
        assert_eq!(parse(&text).unwrap().sequence(), expected, "{raw}");
    }
}

#[test]
fn bad_input_is_classified_without_panicking() {
    assert!(matches!(parse(""), Err(WireError::Malformed(_))));
    assert!(matches!(parse("{not json"), Err(WireError::Malformed(_))));
    assert!(matches!(parse("[1,2]"), Err(WireError::Malformed(_))));
    assert!(matches!(
        parse(r#"{"protocol":"Call"}"#),
        Err(WireError::Malformed(_))
    ));
    assert!(matches!(
        parse(r#"{"event":7}"#),
        Err(WireError::Malformed(_))
    ));
    assert!(matches!(
        parse(r#"{"event":"transcript","streamSid":"MZ"}"#),
        Err(WireError::UnknownEvent(event)) if event == "transcript"
    ));
    assert!(matches!(
        parse(r#"{"event":"media","sequenceNumber":4,"streamSid":"MZ"}"#),
        Err(WireError::Invalid { event, .. }) if event == "media"
    ));
    assert!(matches!(
        parse(r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ","start":{}}"#),
        Err(WireError::Invalid { event, .. }) if event == "start"
    ));
}

#[test]
fn fields_twilio_adds_later_are_ignored() {
    let text = format!(
        r#"{{"event":"mark","sequenceNumber":"9","streamSid":"{STREAM_SID}","mark":{{"name":"m","extra":1}},"new":true}}"#
    );
    assert!(matches!(parse(&text), Ok(Inbound::Mark(mark)) if mark.mark.name == "m"));
}
