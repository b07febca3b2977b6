//! Phone numbers of leads: E.164 normalization with reasons, and the time zone a number implies.
//!
//! CRMs send numbers as people typed them. [`parse`] reads one with Google's libphonenumber
//! metadata (the `phonenumber` crate), a national number in the tenant's region, and says in
//! words a tenant can act on why a number is refused. `resolve_tenant` uses it to normalize
//! numbers with the tenant's region, and uses [`timezone_of`] to attach a lead's time zone when
//! the CRM gave none, so calls respect the lead's local calling hours.
//!
//! Invariants: only plain dialable text of at most [`MAX_INPUT_LEN`] characters reaches the
//! parser, and no error message echoes more than that many characters of its input.

mod timezones;

use phonenumber::country;
use phonenumber::metadata::{DATABASE, Metadata};

use crate::ids::PhoneNumber;
use crate::normalize::DEFAULT_REGION;

pub use self::timezones::timezone_of;

/// The longest text [`parse`] hands to the parser, in characters; error messages echo at most
/// this many characters of their input.
pub const MAX_INPUT_LEN: usize = 64;

/// A reason a lead's phone number cannot be normalized to E.164.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// The text is empty or only whitespace.
    #[error("no phone number")]
    Empty,
    /// The text is longer than [`MAX_INPUT_LEN`] characters.
    #[error("`{shown}` is not a phone number: it is longer than 64 characters")]
    Oversized {
        /// The first [`MAX_INPUT_LEN`] characters of the input and `…`.
        shown: String,
    },
    /// The text has characters a written phone number never needs (`;`, `:`, `=`, non-ASCII…).
    #[error(
        "`{shown}` is not a phone number: it contains characters other than letters, digits, \
         spaces and + - . ( ) / # *"
    )]
    Unreadable {
        /// The input (its first [`MAX_INPUT_LEN`] characters), control characters escaped.
        shown: String,
    },
    /// The region to read national numbers in is not an ISO 3166 alpha-2 code.
    #[error("`{region}` is not a region code such as US or GB")]
    UnknownRegion {
        /// The region as given, at most [`MAX_INPUT_LEN`] characters, escaped.
        region: String,
    },
    /// The text starts with `+` or an international prefix but no known country code follows.
    #[error("`{shown}` does not start with a known country code")]
    InvalidCountryCode {
        /// The input.
        shown: String,
    },
    /// The text has fewer digits than any phone number.
    #[error("`{shown}` is too short to be a phone number")]
    TooShort {
        /// The input.
        shown: String,
    },
    /// The text has more digits than any phone number.
    #[error("`{shown}` has too many digits to be a phone number")]
    TooLong {
        /// The input.
        shown: String,
    },
    /// The text does not read as a phone number at all (fewer than three digits, say).
    #[error("`{shown}` is not a phone number")]
    NotANumber {
        /// The input.
        shown: String,
    },
    /// The text reads as a number with its country code, but that country assigns no such number.
    #[error("`{shown}` is not a valid number for country code +{country_code}")]
    Invalid {
        /// The input.
        shown: String,
        /// The country calling code written in the number (1 for the US and Canada).
        country_code: u16,
    },
    /// The text reads as a national number of `region`, but the region assigns no such number.
    #[error("`{shown}` is not a valid number in region {region}")]
    InvalidInRegion {
        /// The input.
        shown: String,
        /// The ISO 3166 alpha-2 region the number was read in (the tenant's, else US).
        region: String,
    },
}

/// Returns the E.164 form of `raw`, reading a national number in `region` (an ISO 3166
/// alpha-2 code such as `US` or `GB`, any case; [`DEFAULT_REGION`] when `None`).
///
/// A number written with `+` or an international prefix keeps its own country whatever the
/// region. An extension (`x12`, `ext. 12`) is dropped, as E.164 has none.
///
/// # Errors
///
/// Returns a [`PhoneError`] saying why the text is not a valid phone number.
pub fn parse(raw: &str, region: Option<&str>) -> Result<PhoneNumber, PhoneError> {
    if raw.trim().is_empty() {
        return Err(PhoneError::Empty);
    }
    // NOTE(phone): the same guard as `to_e164` in src/normalize. Only plain dialable text
    // reaches the parser: its RFC 3966 path (`tel:…;phone-context=…`) has panicked on crafted
    // input, and nothing a CRM sends needs `;`, `=`, `:` or non-ASCII to be a phone number.
    let plain = raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " +-.()/#*".contains(c));
    if !plain {
        return Err(PhoneError::Unreadable { shown: shown(raw) });
    }
    // Plain text is ASCII: its length in bytes is its length in characters.
    if raw.len() > MAX_INPUT_LEN {
        return Err(PhoneError::Oversized { shown: shown(raw) });
    }
    let region_id = region_id(region.unwrap_or(DEFAULT_REGION))?;
    let number = read(raw, region_id).map_err(|error| refusal(raw, &error))?;
    let invalid = || {
        let shown = raw.to_owned();
        if number.code().source() == country::Source::Default {
            PhoneError::InvalidInRegion {
                shown,
                region: region_id.as_ref().to_owned(),
            }
        } else {
            PhoneError::Invalid {
                shown,
                country_code: number.code().value(),
            }
        }
    };
    if !number.is_valid() {
        return Err(invalid());
    }
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    // A number libphonenumber finds valid always has the E.164 shape `PhoneNumber` checks.
    PhoneNumber::parse(&e164).map_err(|_| invalid())
}

/// Returns libphonenumber's reading of `raw`, as a national number of `region` unless it is
/// written with a country code.
fn read(
    raw: &str,
    region: country::Id,
) -> Result<phonenumber::PhoneNumber, phonenumber::ParseError> {
    let number = phonenumber::parse(Some(region), raw)?;
    let region_code = DATABASE.by_id(region.as_ref()).map(Metadata::country_code);
    let source = number.code().source();
    let foreign = source != country::Source::Default && Some(number.code().value()) != region_code;
    if !foreign {
        return Ok(number);
    }
    // NOTE(phone): phonenumber 0.3.10 strips the *default region's* national prefix from a
    // number written with another country code: with region US, "+49 151 23456789" reads as
    // +495123456789 (the US prefix `1` removed), a different valid number. Reading the
    // international form again without a region uses the number's own country's rules, as
    // libphonenumber does.
    match source {
        country::Source::Plus => phonenumber::parse(None, raw),
        country::Source::Idd => match after_international_prefix(raw, region) {
            Some(rest) => phonenumber::parse(None, format!("+{rest}")),
            // The prefix is split by punctuation ("0 11 49…"): keep the first reading.
            None => Ok(number),
        },
        country::Source::Number | country::Source::Default => Ok(number),
    }
}

/// Returns what follows the international dialling prefix of `region` ("011" in the US, "00"
/// in most of Europe) at the start of `raw`, from its first digit.
fn after_international_prefix(raw: &str, region: country::Id) -> Option<&str> {
    let idd = DATABASE.by_id(region.as_ref())?.international_prefix()?;
    let digits = raw.trim_start_matches(|c: char| !c.is_ascii_digit());
    let found = idd.find(digits).filter(|found| found.start() == 0)?;
    let rest = digits.get(found.end()..)?;
    Some(rest.trim_start_matches(|c: char| !c.is_ascii_digit()))
}

/// Returns the [`PhoneError`] for a parser `error` on `raw`.
fn refusal(raw: &str, error: &phonenumber::ParseError) -> PhoneError {
    let shown = raw.to_owned();
    match error {
        phonenumber::ParseError::NoNumber | phonenumber::ParseError::MalformedInteger(_) => {
            PhoneError::NotANumber { shown }
        }
        phonenumber::ParseError::InvalidCountryCode => PhoneError::InvalidCountryCode { shown },
        phonenumber::ParseError::TooShortAfterIdd | phonenumber::ParseError::TooShortNsn => {
            PhoneError::TooShort { shown }
        }
        phonenumber::ParseError::TooLong => PhoneError::TooLong { shown },
    }
}

/// Returns the country a valid number belongs to, as libphonenumber decides it (for +1 numbers,
/// by area code: `CA` for +1 604, `US` for +1 212); `.as_ref()` gives the alpha-2 text.
///
/// Returns `None` for a number libphonenumber does not find valid, for numbers of
/// non-geographic services (+800 and the like), and, through a phonenumber 0.3.10 bug, for
/// numbers of a country code several regions share whose national number starts with 0
/// (+39 0…: Italy or the Vatican).
pub fn region_of(number: &PhoneNumber) -> Option<country::Id> {
    valid_number(number)?.country().id()
}

/// Returns libphonenumber's reading of `number` when it finds it valid.
fn valid_number(number: &PhoneNumber) -> Option<phonenumber::PhoneNumber> {
    let parsed = phonenumber::parse(None, number.as_str()).ok()?;
    parsed.is_valid().then_some(parsed)
}

/// Returns the region `text` names, or why it names none.
fn region_id(text: &str) -> Result<country::Id, PhoneError> {
    text.trim()
        .to_ascii_uppercase()
        .parse::<country::Id>()
        .map_err(|_| PhoneError::UnknownRegion {
            region: shown(text),
        })
}

/// Returns `raw` to quote in a message: its first [`MAX_INPUT_LEN`] characters, then `…` if
/// there were more, with control characters escaped.
fn shown(raw: &str) -> String {
    let mut quoted = String::new();
    for (index, character) in raw.chars().enumerate() {
        if index == MAX_INPUT_LEN {
            quoted.push('…');
            break;
        }
        if character.is_control() {
            quoted.extend(character.escape_default());
        } else {
            quoted.push(character);
        }
    }
    quoted
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn e164(raw: &str, region: Option<&str>) -> String {
        match parse(raw, region) {
            Ok(number) => number.as_str().to_owned(),
            Err(error) => panic!("{raw:?} in {region:?}: {error}"),
        }
    }

    #[test]
    fn us_numbers_are_read_in_the_us_without_a_region() {
        for raw in [
            "(415) 692-0000",
            "415.692.0000",
            "415/692-0000",
            "1-415-692-0000",
            "+1 415 692 0000",
            "(415) 692-0000 ext. 12",
        ] {
            assert_eq!(e164(raw, None), "+14156920000", "{raw}");
        }
        assert_eq!(e164("212-736-3100", Some("US")), "+12127363100");
        assert_eq!(e164("1-800-FLOWERS", None), "+18003569377");
    }

    #[test]
    fn fictional_555_01xx_numbers_are_valid_in_this_metadata() {
        // Fixtures across the crate use them; if libphonenumber starts refusing them, they
        // need real-looking numbers instead.
        assert_eq!(e164("(415) 555-0100", None), "+14155550100");
        assert_eq!(e164("+1 212 555 0199", None), "+12125550199");
    }

    #[test]
    fn a_gb_national_number_is_read_with_region_gb() {
        assert_eq!(e164("020 7946 0000", Some("GB")), "+442079460000");
        assert_eq!(e164("020 7946 0000", Some(" gb ")), "+442079460000");
    }

    #[test]
    fn an_international_number_keeps_its_country_in_any_region() {
        assert_eq!(e164("+44 20 7946 0000", Some("US")), "+442079460000");
        assert_eq!(e164("011 44 20 7946 0000", None), "+442079460000");
        assert_eq!(e164("00 44 20 7946 0000", Some("DE")), "+442079460000");
    }

    #[test]
    fn the_default_regions_national_prefix_is_not_stripped_from_foreign_numbers() {
        // phonenumber 0.3.10 alone reads these as +495123456789, +441214960000 as invalid…
        assert_eq!(e164("+49 151 23456789", None), "+4915123456789");
        assert_eq!(e164("011 49 151 23456789", None), "+4915123456789");
        assert_eq!(e164("+44 121 496 0000", Some("US")), "+441214960000");
        assert_eq!(e164("+800 1234 5678", None), "+80012345678");
        // …and GB's prefix `0` from an Italian number, whose leading 0 is part of it.
        assert_eq!(e164("+39 06 6988 0000", Some("GB")), "+390669880000");
    }

    #[test]
    fn blank_text_is_no_phone_number() {
        for raw in ["", "   ", "\t"] {
            assert_eq!(parse(raw, None), Err(PhoneError::Empty), "{raw:?}");
        }
        assert_eq!(PhoneError::Empty.to_string(), "no phone number");
    }

    #[test]
    fn letters_are_not_a_phone_number() {
        let error = parse("call me", None).unwrap_err();
        assert_eq!(
            error,
            PhoneError::NotANumber {
                shown: "call me".to_owned()
            }
        );
        assert_eq!(error.to_string(), "`call me` is not a phone number");
    }

    #[test]
    fn text_outside_plain_dialable_characters_never_reaches_the_parser() {
        for raw in [
            "tel:+1-415-692-0000;phone-context=x",
            "+1 415 692 0000; ",
            "４１５６９２００００",
        ] {
            let error = parse(raw, None).unwrap_err();
            assert!(
                matches!(error, PhoneError::Unreadable { .. }),
                "{raw}: {error:?}"
            );
        }
        assert_eq!(
            parse("415\n692", None).unwrap_err().to_string(),
            "`415\\n692` is not a phone number: it contains characters other than letters, \
             digits, spaces and + - . ( ) / # *"
        );
    }

    #[test]
    fn text_longer_than_64_characters_is_refused_and_shown_cut() {
        let raw = format!("+1 415 692 0000{}", " ".repeat(50));
        let error = parse(&raw, None).unwrap_err();
        let PhoneError::Oversized { shown } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(shown.chars().count(), MAX_INPUT_LEN + 1);
        assert!(shown.ends_with('…'));
        assert!(
            error
                .to_string()
                .ends_with("it is longer than 64 characters")
        );
    }

    #[test]
    fn digit_counts_outside_any_numbering_plan_are_refused() {
        let too_long = "1234567890123456789012";
        assert_eq!(
            parse(too_long, None),
            Err(PhoneError::TooLong {
                shown: too_long.to_owned()
            })
        );
        assert_eq!(
            parse("12", None),
            Err(PhoneError::TooShort {
                shown: "12".to_owned()
            })
        );
        assert_eq!(
            parse("+999 1234 5678", None).unwrap_err().to_string(),
            "`+999 1234 5678` does not start with a known country code"
        );
    }

    #[test]
    fn a_number_no_plan_assigns_names_where_it_was_read() {
        assert_eq!(
            parse("(415) 123-4567", None).unwrap_err().to_string(),
            "`(415) 123-4567` is not a valid number in region US"
        );
        assert_eq!(
            parse("+44 99 1234 5678", Some("US"))
                .unwrap_err()
                .to_string(),
            "`+44 99 1234 5678` is not a valid number for country code +44"
        );
    }

    #[test]
    fn an_unknown_region_is_refused() {
        for region in ["XX", "USA", ""] {
            let error = parse("415 692 0000", Some(region)).unwrap_err();
            assert_eq!(
                error,
                PhoneError::UnknownRegion {
                    region: region.to_owned()
                }
            );
        }
    }

    #[test]
    fn region_of_follows_the_area_code_within_plus_1() {
        let region = |e164: &str| region_of(&PhoneNumber::parse(e164).unwrap());
        assert_eq!(region("+12127363100"), Some(country::Id::US));
        assert_eq!(region("+16046810000"), Some(country::Id::CA));
        assert_eq!(region("+442079460000"), Some(country::Id::GB));
        assert_eq!(region("+14151234567"), None);
        // NOTE(phone): phonenumber 0.3.10 drops the leading 0 an Italian number keeps before
        // choosing between Italy and the Vatican, and finds neither.
        assert_eq!(region("+390212345678"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_never_panics_on_any_text(raw in ".{0,80}", region in "[A-Za-z ]{0,3}") {
            let result = parse(&raw, Some(&region));
            if let Err(error) = result {
                // At most 64 characters of input, each escaped to at most 10 (`\u{10ffff}`).
                prop_assert!(error.to_string().chars().count() <= MAX_INPUT_LEN * 10 + 120);
            }
        }

        #[test]
        fn parse_never_panics_on_dialable_text_and_its_answer_is_stable(
            raw in "[+(]?[0-9a-zA-Z +\\-.()/#*]{0,66}",
            region in prop::option::of("(US|GB|DE|FR|IT|AU|IN|BR|MX|CA)"),
        ) {
            if let Ok(number) = parse(&raw, region.as_deref()) {
                prop_assert_eq!(parse(number.as_str(), None), Ok(number.clone()));
                prop_assert!(region_of(&number).is_some() || number.as_str().starts_with("+8"));
            }
        }
    }
}
