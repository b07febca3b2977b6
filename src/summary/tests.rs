use super::*;

fn user(text: &str) -> Turn {
    Turn {
        role: Role::User,
        text: text.to_owned(),
    }
}

fn agent(text: &str) -> Turn {
    Turn {
        role: Role::Agent,
        text: text.to_owned(),
    }
}

fn tool(name: &str) -> ToolUse {
    ToolUse {
        name: name.to_owned(),
        is_error: false,
    }
}

fn said(turns: Vec<Turn>) -> Facts {
    Facts {
        turns,
        ..Facts::default()
    }
}

fn outcome_of(facts: &Facts) -> Outcome {
    outcome::classify(facts).0
}

fn booking_call() -> Vec<Turn> {
    vec![
        agent("Hi Jane, this is Acme Dental. Would you like to book a check-up?"),
        user("Yes, what times do you have tomorrow?"),
        agent("I have ten o'clock tomorrow. Shall I book it?"),
        user("Yes, ten works. Great, thank you!"),
        agent("You are booked for ten tomorrow. Goodbye!"),
    ]
}

#[test]
fn a_booked_appointment_is_booked_and_positive() {
    let facts = Facts {
        booked: true,
        tools: vec![tool("get_available_slots"), tool("book_appointment")],
        ..said(booking_call())
    };
    assert_eq!(outcome_of(&facts), Outcome::Booked);
    let score = sentiment::score(&facts.turns);
    assert_eq!(Sentiment::of(score), Sentiment::Positive, "{score}");
}

#[test]
fn a_booking_outranks_what_was_said() {
    let facts = Facts {
        booked: true,
        ..said(vec![user("No thanks. Actually, fine, book me in.")])
    };
    assert_eq!(outcome_of(&facts), Outcome::Booked);
}

#[test]
fn not_interested_is_not_interested_and_interested_is_not() {
    let declined = said(vec![
        agent("Would you like to book a check-up?"),
        user("No, I'm not interested."),
    ]);
    assert_eq!(outcome_of(&declined), Outcome::NotInterested);
    let score = sentiment::score(&declined.turns);
    assert_eq!(Sentiment::of(score), Sentiment::Negative, "{score}");

    let keen = said(vec![
        agent("Would you like to hear about our offer?"),
        user("Yes, I am interested, tell me more."),
    ]);
    assert_eq!(outcome_of(&keen), Outcome::Completed);
    let score = sentiment::score(&keen.turns);
    assert_eq!(Sentiment::of(score), Sentiment::Positive, "{score}");
}

#[test]
fn contractions_and_curly_apostrophes_match_the_same_rules() {
    for text in [
        "I don't want it.",
        "I do not want it.",
        "I don\u{2019}t want it.",
        "Not interested, sorry.",
    ] {
        assert_eq!(
            outcome_of(&said(vec![user(text)])),
            Outcome::NotInterested,
            "{text}"
        );
    }
}

#[test]
fn an_opt_out_outranks_a_refusal() {
    let facts = said(vec![user(
        "I'm not interested. Don't call me again, take me off your list.",
    )]);
    assert_eq!(outcome_of(&facts), Outcome::DoNotCall);
    assert_eq!(
        Sentiment::of(sentiment::score(&facts.turns)),
        Sentiment::Negative
    );
}

#[test]
fn a_wrong_number() {
    let facts = said(vec![
        agent("Hi, is this Jane?"),
        user("Sorry, you have the wrong number, there is nobody by that name."),
    ]);
    assert_eq!(outcome_of(&facts), Outcome::WrongNumber);
}

#[test]
fn a_callback_by_tool_by_job_and_by_words() {
    let by_tool = Facts {
        tools: vec![tool("schedule_callback")],
        ..said(vec![user("Can you try Thursday at three?")])
    };
    assert_eq!(outcome_of(&by_tool), Outcome::CallbackRequested);
    let by_job = Facts {
        callback_scheduled: true,
        ..Facts::default()
    };
    assert_eq!(outcome_of(&by_job), Outcome::CallbackRequested);
    let by_words = said(vec![user("I'm in a meeting, can you call me back later?")]);
    assert_eq!(outcome_of(&by_words), Outcome::CallbackRequested);
    // A failed tool call scheduled nothing.
    let failed = Facts {
        tools: vec![ToolUse {
            name: "schedule_callback".to_owned(),
            is_error: true,
        }],
        ..said(vec![user("Sure.")])
    };
    assert_eq!(outcome_of(&failed), Outcome::Completed);
}

#[test]
fn voicemail_by_detection_and_by_greeting() {
    let detected = Facts {
        machine_answered: true,
        ..said(vec![user("Hello?")])
    };
    assert_eq!(outcome_of(&detected), Outcome::Voicemail);
    let greeting = said(vec![user(
        "You have reached Jane. Please leave a message after the tone.",
    )]);
    assert_eq!(outcome_of(&greeting), Outcome::Voicemail);
}

#[test]
fn silence_is_no_answer_and_a_transfer_is_transferred() {
    let silent = said(vec![agent("Hello? Is anyone there?")]);
    assert_eq!(outcome_of(&silent), Outcome::NoAnswer);
    let transferred = Facts {
        transferred: true,
        ..said(vec![user("Can I talk to a person?")])
    };
    assert_eq!(outcome_of(&transferred), Outcome::Transferred);
}

#[test]
fn negation_reverses_and_damps_sentiment() {
    let unhappy = sentiment::score(&[user("I am not happy with this.")]);
    assert!(unhappy < 0.0, "{unhappy}");
    let not_bad = sentiment::score(&[user("That's not bad at all.")]);
    assert!(not_bad > 0.0, "{not_bad}");
    let nothing = sentiment::score(&[agent("Terrible, awful, we hate this.")]);
    assert!(
        nothing.abs() < f32::EPSILON,
        "the agent's words do not count"
    );
    let furious = sentiment::score(&[user(&"This is a terrible, awful scam. ".repeat(20))]);
    assert!((-1.0..=-0.9).contains(&furious), "bounded: {furious}");
}

#[test]
fn the_extractive_summary_keeps_the_decisive_sentences_in_order() {
    let draft = extractive::summarize(&booking_call());
    assert_eq!(draft.source, Source::Extractive);
    assert!(
        draft.text.contains("ten o'clock tomorrow"),
        "{}",
        draft.text
    );
    assert!(!draft.text.contains("Goodbye"), "{}", draft.text);
    assert!(draft.text.chars().count() <= MAX_SUMMARY_CHARS);
    assert!(!draft.key_points.is_empty() && draft.key_points.len() <= 4);
    // In transcript order.
    let tomorrow = draft.text.find("what times").unwrap();
    let ten = draft.text.find("ten o'clock").unwrap();
    assert!(tomorrow < ten, "{}", draft.text);
    // Deterministic.
    assert_eq!(extractive::summarize(&booking_call()), draft);
}

#[test]
fn the_extractive_summary_is_bounded_and_never_empty() {
    let long = vec![user(
        &"Our quarterly numbers concern the clinic budget. ".repeat(400),
    )];
    let draft = extractive::summarize(&long);
    assert!(draft.text.chars().count() <= MAX_SUMMARY_CHARS);
    assert!(!draft.text.is_empty());
    assert!(!extractive::summarize(&[]).text.is_empty());
    assert!(!extractive::summarize(&[user("Hi.")]).text.is_empty());
}

#[test]
fn text_handles_any_input_without_panicking() {
    assert_eq!(text::truncate("ééééé", 3), "éé…");
    assert_eq!(
        text::sentences("One. Two?Three! 4.5 ok"),
        ["One.", "Two?Three!", "4.5 ok"]
    );
    assert!(text::words("").is_empty());
    assert_eq!(
        text::words("Don't WON'T I'm"),
        ["do", "not", "will", "not", "i", "am"]
    );
}

#[test]
fn the_provider_summary_wins_and_ours_is_kept() {
    let analysis = serde_json::json!({
        "transcript_summary": "  Jane booked a check-up for tomorrow at ten.  ",
        "call_successful": "success",
        "data_collection_results": {"preferred_time": {"value": "10:00"}},
        "evaluation_criteria_results": "not an object",
    });
    let provider = ProviderAnalysis::from_json(&analysis);
    assert_eq!(provider.evaluation, serde_json::json!({}));
    let facts = Facts {
        booked: true,
        ..said(booking_call())
    };
    let summary = merge(&facts, extractive::summarize(&facts.turns), Some(provider));
    assert_eq!(
        summary.summary,
        "Jane booked a check-up for tomorrow at ten."
    );
    assert!(summary.own.text.contains("ten o'clock"));
    assert_eq!(summary.outcome, Outcome::Booked);
    assert_eq!(summary.sentiment, Sentiment::Positive);

    let alone = merge(&facts, extractive::summarize(&facts.turns), None);
    assert_eq!(alone.summary, alone.own.text);
    let empty = ProviderAnalysis::from_json(&serde_json::json!({"transcript_summary": ""}));
    assert_eq!(empty.summary, None);
}
