//! The time zone a phone number implies: a longest-prefix match on libphonenumber's
//! prefix-to-zone map, committed as `timezones.txt` (regenerate with
//! `scripts/gen-phone-timezones.py`).
//!
//! Invariant: an answer is given only when it is unambiguous. A prefix whose numbers span
//! several zones is in the file with the zone `-`, so it stops the search instead of letting a
//! shorter single-zone prefix answer for it.

use std::sync::LazyLock;

use chrono_tz::Tz;
use phonenumber::Type;

use crate::ids::PhoneNumber;

/// The prefix map: `prefix<TAB>zone` lines sorted by prefix, `#` comments, `-` for several zones.
const DATA: &str = include_str!("timezones.txt");

/// The zone written for a prefix that spans several zones.
const AMBIGUOUS: &str = "-";

/// Country codes whose mobile numbers are tied to an area, as libphonenumber lists them
/// (`GEO_MOBILE_COUNTRIES`): China, Mexico, Argentina, Brazil, Indonesia.
const GEO_MOBILE_COUNTRY_CODES: [u16; 5] = [86, 52, 54, 55, 62];

/// Prefixes sorted for binary search, each with its zone, or `None` where it spans several.
static PREFIXES: LazyLock<Vec<(&'static str, Option<Tz>)>> = LazyLock::new(|| {
    let mut prefixes: Vec<(&'static str, Option<Tz>)> = entries()
        .map(|(prefix, zone)| {
            // A zone chrono-tz lacked would also give no answer (a unit test rules it out).
            let tz = if zone == AMBIGUOUS {
                None
            } else {
                zone.parse::<Tz>().ok()
            };
            (prefix, tz)
        })
        .collect();
    prefixes.sort_unstable_by_key(|(prefix, _)| *prefix);
    prefixes
});

/// Returns the IANA time zone of `number` when libphonenumber ties it to exactly one zone.
///
/// Returns `None` for a number libphonenumber does not find valid, and when its zone is
/// ambiguous: a country or area spanning several zones (+1 toll-free numbers, most of Russia),
/// or a mobile number in a country whose mobile numbers do not follow areas (+61 4…), which
/// is read at the country level, as libphonenumber does.
pub fn timezone_of(number: &PhoneNumber) -> Option<Tz> {
    let parsed = super::valid_number(number)?;
    let country_code = parsed.code().value();
    let geographic = match parsed.number_type(&phonenumber::metadata::DATABASE) {
        Type::FixedLine | Type::FixedLineOrMobile => true,
        Type::Mobile => GEO_MOBILE_COUNTRY_CODES.contains(&country_code),
        Type::TollFree
        | Type::PremiumRate
        | Type::SharedCost
        | Type::PersonalNumber
        | Type::Voip
        | Type::Pager
        | Type::Uan
        | Type::Emergency
        | Type::Voicemail
        | Type::ShortCode
        | Type::StandardRate
        | Type::Carrier
        | Type::NoInternational
        // A valid number of unknown type: phonenumber 0.3.10 cannot type +39 0… numbers.
        | Type::Unknown => false,
    };
    if geographic {
        let digits = number.as_str().trim_start_matches('+');
        longest_prefix_zone(digits)
    } else {
        longest_prefix_zone(&country_code.to_string())
    }
}

/// Returns the zone of the longest prefix of `digits` in the map: `None` when that prefix spans
/// several zones or no prefix matches.
fn longest_prefix_zone(digits: &str) -> Option<Tz> {
    let prefixes = &*PREFIXES;
    for end in (1..=digits.len()).rev() {
        let candidate = digits.get(..end)?;
        if let Ok(index) = prefixes.binary_search_by_key(&candidate, |(prefix, _)| *prefix) {
            return prefixes[index].1;
        }
    }
    None
}

/// Returns the `(prefix, zone)` pairs of the data file, skipping comments and blank lines.
fn entries() -> impl Iterator<Item = (&'static str, &'static str)> {
    DATA.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone_of(e164: &str) -> Option<Tz> {
        timezone_of(&PhoneNumber::parse(e164).unwrap())
    }

    #[test]
    fn every_zone_in_the_data_file_is_a_chrono_tz_zone() {
        let mut count = 0;
        for (prefix, zone) in entries() {
            assert!(
                !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()),
                "{prefix}"
            );
            assert!(
                zone == AMBIGUOUS || zone.parse::<Tz>().is_ok(),
                "{prefix}: {zone}"
            );
            count += 1;
        }
        assert_eq!(count, PREFIXES.len());
        assert!(count > 1000, "{count}");
    }

    #[test]
    fn the_data_file_is_sorted_without_duplicate_prefixes() {
        let prefixes: Vec<&str> = entries().map(|(prefix, _)| prefix).collect();
        assert!(prefixes.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn a_new_york_number_is_in_new_york_time() {
        assert_eq!(zone_of("+12127363100"), Some(Tz::America__New_York));
    }

    #[test]
    fn los_angeles_and_san_francisco_numbers_are_in_pacific_time() {
        for e164 in ["+12134735000", "+13102463000", "+14156920000"] {
            assert_eq!(zone_of(e164), Some(Tz::America__Los_Angeles), "{e164}");
        }
    }

    #[test]
    fn a_london_number_is_in_london_time() {
        assert_eq!(zone_of("+442079460000"), Some(Tz::Europe__London));
    }

    #[test]
    fn german_numbers_are_in_berlin_time() {
        assert_eq!(zone_of("+493012345678"), Some(Tz::Europe__Berlin));
        assert_eq!(zone_of("+4915123456789"), Some(Tz::Europe__Berlin));
    }

    #[test]
    fn a_longer_ambiguous_prefix_beats_a_shorter_single_zone_one() {
        // +1 208 2… spans Boise and Los Angeles although +1 208 201… is Denver alone.
        assert_eq!(longest_prefix_zone("12082000000"), None);
        assert_eq!(
            longest_prefix_zone("12082010000"),
            Some(Tz::America__Denver)
        );
    }

    #[test]
    fn numbers_spanning_several_zones_have_none() {
        // A toll-free number serves all of North America.
        assert_eq!(zone_of("+18002752273"), None);
        // A UK mobile may be in London, Jersey, Guernsey or the Isle of Man.
        assert_eq!(zone_of("+447400123456"), None);
        // An Australian mobile is not tied to a state, although +61 4 matches a Sydney prefix.
        assert_eq!(
            longest_prefix_zone("61412345678"),
            Some(Tz::Australia__Sydney)
        );
        assert_eq!(zone_of("+61412345678"), None);
    }

    #[test]
    fn a_number_libphonenumber_finds_invalid_has_no_zone() {
        assert_eq!(zone_of("+10000000000"), None);
    }
}
