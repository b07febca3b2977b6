//! Choosing the caller id of a call from the tenant's number pool.
//!
//! People answer local numbers more often, and carriers expect each number to start few calls
//! per second. So: prefer the pool's numbers with the callee's area code (North America: the
//! three digits after `+1`; elsewhere the same country), and among those the one whose pacing
//! slot comes first (the least recently used); with no local number, any number of the pool.

use chrono::{DateTime, Utc};

use crate::ids::PhoneNumber;

/// Returns the local prefix two numbers must share to count as "same area": `+1` and the
/// area code in North America, the country calling code elsewhere.
fn locality(number: &PhoneNumber) -> Option<String> {
    let digits = number.as_str().strip_prefix('+')?;
    if let Some(national) = digits.strip_prefix('1') {
        return national.get(..3).map(|area| format!("1{area}"));
    }
    phonenumber::parse(None, number.as_str())
        .ok()
        .map(|parsed| parsed.code().value().to_string())
}

/// Returns the pool number to call `to` from, given each number's next free pacing slot
/// (`None`: never used); `None` when the pool is empty.
pub fn choose<'a>(
    pool: &'a [PhoneNumber],
    to: &PhoneNumber,
    next_slot: impl Fn(&PhoneNumber) -> Option<DateTime<Utc>>,
) -> Option<&'a PhoneNumber> {
    let wanted = locality(to);
    let local: Vec<&PhoneNumber> = pool
        .iter()
        .filter(|number| wanted.is_some() && locality(number) == wanted)
        .collect();
    let candidates = if local.is_empty() {
        pool.iter().collect()
    } else {
        local
    };
    // min_by_key keeps the first of equal keys: pool order breaks ties.
    candidates
        .into_iter()
        .min_by_key(|number| next_slot(number).unwrap_or(DateTime::<Utc>::MIN_UTC))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> PhoneNumber {
        PhoneNumber::parse(text).unwrap()
    }

    #[test]
    fn prefers_the_callees_area_code_then_the_least_recently_used() {
        let pool = [
            number("+12125550100"),
            number("+15125550100"),
            number("+15125550101"),
        ];
        let to = number("+15125550199");
        let now = Utc::now();
        let busy = |n: &PhoneNumber| (n.as_str() == "+15125550100").then_some(now);
        assert_eq!(choose(&pool, &to, busy).unwrap().as_str(), "+15125550101");
        assert_eq!(
            choose(&pool, &to, |_| None).unwrap().as_str(),
            "+15125550100",
            "ties keep pool order"
        );
    }

    #[test]
    fn without_a_local_number_any_number_serves() {
        let pool = [number("+12125550100"), number("+13105550100")];
        let to = number("+15125550199");
        let now = Utc::now();
        let later = |n: &PhoneNumber| (n.as_str() == "+12125550100").then_some(now);
        assert_eq!(choose(&pool, &to, later).unwrap().as_str(), "+13105550100");
        assert!(choose(&[], &to, |_| None).is_none());
    }

    #[test]
    fn outside_north_america_the_country_counts() {
        let pool = [number("+12125550100"), number("+442071838750")];
        let to = number("+447911123456");
        assert_eq!(
            choose(&pool, &to, |_| None).unwrap().as_str(),
            "+442071838750"
        );
    }
}
