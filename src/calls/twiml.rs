//! The TwiML an answered outbound call runs (`protocols/telephony-voice.md` A7).
//!
//! `<Connect><Stream>` bridges the call's audio to our media endpoint, bidirectionally; the
//! `<Parameter>`s arrive in the stream's `start.customParameters`, which is how the media
//! gateway knows the tenant, call and attempt without a query string (Twilio drops those).
//! `<Connect>` blocks until the WebSocket closes; the `<Say>` and `<Hangup/>` after it run
//! only when our side could not take the call, so the callee hears an apology, not silence.

/// Escapes text for an XML attribute value or element content.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// What the callee hears when the media endpoint cannot take the call.
pub const FALLBACK_APOLOGY: &str =
    "We are sorry, our assistant is unavailable right now. We will call you back. Goodbye.";

/// Returns the TwiML that connects an answered call to `stream_url` with `parameters`, and
/// apologizes and hangs up if the stream cannot run.
#[must_use]
pub fn connect_stream(stream_url: &str, parameters: &[(&str, &str)]) -> String {
    let mut twiml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect>"#);
    twiml.push_str(&format!(r#"<Stream url="{}">"#, escape(stream_url)));
    for (name, value) in parameters {
        twiml.push_str(&format!(
            r#"<Parameter name="{}" value="{}"/>"#,
            escape(name),
            escape(value)
        ));
    }
    twiml.push_str("</Stream></Connect>");
    twiml.push_str(&format!(
        "<Say>{}</Say><Hangup/></Response>",
        escape(FALLBACK_APOLOGY)
    ));
    twiml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_the_stream_with_parameters_then_falls_back() {
        let twiml = connect_stream(
            "wss://media.example.com/media/twilio",
            &[("tenant_id", "t1"), ("call_id", "c&1")],
        );
        assert_eq!(
            twiml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect>\
             <Stream url=\"wss://media.example.com/media/twilio\">\
             <Parameter name=\"tenant_id\" value=\"t1\"/>\
             <Parameter name=\"call_id\" value=\"c&amp;1\"/></Stream></Connect>\
             <Say>We are sorry, our assistant is unavailable right now. We will call you back. \
             Goodbye.</Say><Hangup/></Response>"
        );
        // Twilio's limit for inline TwiML.
        assert!(twiml.len() < 4_000);
    }

    #[test]
    fn escapes_markup_in_urls_and_values() {
        let twiml = connect_stream("wss://x/\"><Hangup/>", &[("n", "<v>'")]);
        assert!(twiml.contains("url=\"wss://x/&quot;&gt;&lt;Hangup/&gt;\""));
        assert!(twiml.contains("value=\"&lt;v&gt;&apos;\""));
    }
}
