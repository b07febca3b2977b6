//! What a simulated agent does: a [`Script`] of steps, or echo.
//!
//! Scripts deserialize from JSON (`caller simulate elevenlabs --script file.json`), e.g.
//! `{"steps":[{"say":{"text":"Hi","audio_ms":800}},{"listen":{"transcript":"Hello"}},"end"]}`.

use serde::{Deserialize, Serialize};

/// A tool parameter value the simulator replaces with the `start` of the first slot offered
/// by the latest tool result (`slots`, else `alternatives`): "book what you were offered".
pub const FIRST_SLOT: &str = "{{first_slot}}";

/// One thing the agent does, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Sends `agent_response` with `text`, then `audio_ms` of tone as `audio` events.
    Say {
        /// What the agent says.
        text: String,
        /// How much audio to send.
        #[serde(default = "default_audio_ms")]
        audio_ms: u64,
    },
    /// Waits for the caller to speak and fall silent (or a timeout), then sends
    /// `user_transcript` with `transcript`.
    Listen {
        /// What the caller "said".
        transcript: String,
    },
    /// Sends `client_tool_call`; when `wait`, waits for the matching `client_tool_result`.
    Tool {
        /// The tool's name.
        name: String,
        /// Its parameters (a JSON object).
        #[serde(default = "empty_object")]
        parameters: serde_json::Value,
        /// Whether the agent waits for the result.
        #[serde(default = "yes")]
        wait: bool,
    },
    /// Does nothing for `ms` milliseconds.
    Pause {
        /// How long.
        ms: u64,
    },
    /// Closes with 1000 once the audio sent so far has played out.
    End,
    /// Breaks the connection without a close frame, as a network failure does; a new
    /// connection for the same call goes on after this step.
    Drop,
}

fn default_audio_ms() -> u64 {
    1000
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn yes() -> bool {
    true
}

/// The agent's steps, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Script {
    /// Returns an empty script.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a [`Step::Say`].
    #[must_use]
    pub fn say(mut self, text: &str, audio_ms: u64) -> Self {
        self.steps.push(Step::Say {
            text: text.to_owned(),
            audio_ms,
        });
        self
    }

    /// Adds a [`Step::Listen`].
    #[must_use]
    pub fn listen(mut self, transcript: &str) -> Self {
        self.steps.push(Step::Listen {
            transcript: transcript.to_owned(),
        });
        self
    }

    /// Adds a [`Step::Tool`].
    #[must_use]
    pub fn tool(mut self, name: &str, parameters: serde_json::Value, wait: bool) -> Self {
        self.steps.push(Step::Tool {
            name: name.to_owned(),
            parameters,
            wait,
        });
        self
    }

    /// Adds a [`Step::Pause`].
    #[must_use]
    pub fn pause(mut self, ms: u64) -> Self {
        self.steps.push(Step::Pause { ms });
        self
    }

    /// Adds [`Step::End`].
    #[must_use]
    pub fn end(mut self) -> Self {
        self.steps.push(Step::End);
        self
    }

    /// Appends [`Step::Drop`].
    #[must_use]
    pub fn drop_connection(mut self) -> Self {
        self.steps.push(Step::Drop);
        self
    }

    /// Returns the demo appointment-setting call: greet, listen, look up the free slots of
    /// the coming week, offer them, listen, book the first one offered ([`FIRST_SLOT`]),
    /// confirm, end. The tools and parameters are the platform's (`get_available_slots`,
    /// `book_appointment`).
    ///
    /// NOTE: it books the first *offered* slot rather than a fixed time, so it books in any
    /// lead zone, on any day, and again after earlier calls took the earliest slots.
    #[must_use]
    pub fn demo() -> Self {
        Self::new()
            .say(
                "Hi, this is Alex from Demo Dental. Do you have a minute to book your check-up?",
                2500,
            )
            .listen("Yes, sure. When are you free?")
            .tool(
                "get_available_slots",
                serde_json::json!({"days": 7, "limit": 3}),
                true,
            )
            .say(
                "The earliest I have is the first one. Does that work?",
                2500,
            )
            .listen("That works.")
            .tool(
                "book_appointment",
                serde_json::json!({"start": FIRST_SLOT, "notes": "check-up"}),
                true,
            )
            .say("You are booked. See you then!", 1800)
            .end()
    }
}

/// How an agent behaves.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentBehaviour {
    /// It follows a script.
    Script(Script),
    /// It sends every `user_audio_chunk` straight back as an `audio` event (benchmarks).
    Echo,
}
