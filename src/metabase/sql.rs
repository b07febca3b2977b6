//! Metabase's native-query variables, as Metabase substitutes them, so the cards' SQL can run
//! against PostgreSQL in tests exactly as Metabase would run it.
//!
//! Metabase's rules (its `native-query` parameter substitution, for text variables):
//! - `{{name}}` is a variable; its value is sent as a prepared-statement parameter (never
//!   spliced into the text), so here it becomes `$1`, `$2`, …;
//! - `[[ … ]]` is an optional clause: kept (without the brackets) when every variable in it
//!   has a value, dropped otherwise; clauses do not nest;
//! - a variable outside any optional clause must have a value, or the query is refused.

use std::collections::BTreeMap;

/// Why a card's SQL is not a valid Metabase native query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `[[` without `]]`, `]]` without `[[`, or `[[` inside `[[`.
    #[error("unbalanced optional clause `[[ … ]]` at byte {0}")]
    UnbalancedClause(usize),
    /// `{{` without `}}`, or a variable name that is not `[A-Za-z0-9_]+`.
    #[error("malformed variable at byte {0}")]
    MalformedVariable(usize),
    /// A variable outside every optional clause has no value.
    #[error("variable `{0}` is required and has no value")]
    MissingValue(String),
}

/// A query ready for a prepared statement: `$n` placeholders and their text values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The SQL with `$1…$n`.
    pub sql: String,
    /// The value of each placeholder, in order.
    pub params: Vec<String>,
}

enum Piece<'a> {
    Text(&'a str),
    Variable(&'a str),
    Optional(Vec<Piece<'a>>),
}

fn parse(sql: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut top = Vec::new();
    let mut optional: Option<(usize, Vec<Piece<'_>>)> = None;
    let mut rest = sql;
    let mut offset = 0;
    loop {
        let next = [rest.find("[["), rest.find("]]"), rest.find("{{")]
            .into_iter()
            .flatten()
            .min();
        let Some(at) = next else {
            if let Some((start, _)) = optional {
                return Err(TemplateError::UnbalancedClause(start));
            }
            if !rest.is_empty() {
                top.push(Piece::Text(rest));
            }
            return Ok(top);
        };
        let target = match optional.as_mut() {
            Some((_, pieces)) => pieces,
            None => &mut top,
        };
        if at > 0 {
            target.push(Piece::Text(&rest[..at]));
        }
        let position = offset + at;
        let token = &rest[at..at + 2];
        let consumed = match token {
            "[[" => {
                if optional.is_some() {
                    return Err(TemplateError::UnbalancedClause(position));
                }
                optional = Some((position, Vec::new()));
                2
            }
            "]]" => {
                let Some((_, pieces)) = optional.take() else {
                    return Err(TemplateError::UnbalancedClause(position));
                };
                top.push(Piece::Optional(pieces));
                2
            }
            _ => {
                let Some(end) = rest[at + 2..].find("}}") else {
                    return Err(TemplateError::MalformedVariable(position));
                };
                let name = rest[at + 2..at + 2 + end].trim();
                let valid =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(TemplateError::MalformedVariable(position));
                }
                target.push(Piece::Variable(name));
                end + 4
            }
        };
        rest = &rest[at + consumed..];
        offset += at + consumed;
    }
}

/// Returns the variables of `sql`, in order of first use.
pub fn variables(sql: &str) -> Result<Vec<String>, TemplateError> {
    fn collect(pieces: &[Piece<'_>], into: &mut Vec<String>) {
        for piece in pieces {
            match piece {
                Piece::Text(_) => {}
                Piece::Variable(name) => {
                    if !into.iter().any(|known| known == name) {
                        into.push((*name).to_owned());
                    }
                }
                Piece::Optional(inner) => collect(inner, into),
            }
        }
    }
    let mut names = Vec::new();
    collect(&parse(sql)?, &mut names);
    Ok(names)
}

/// Substitutes `values` into `sql` the way Metabase does for text variables.
pub fn prepare(sql: &str, values: &BTreeMap<String, String>) -> Result<Prepared, TemplateError> {
    let mut prepared = Prepared {
        sql: String::with_capacity(sql.len()),
        params: Vec::new(),
    };
    for piece in parse(sql)? {
        match piece {
            Piece::Text(text) => prepared.sql.push_str(text),
            Piece::Variable(name) => {
                let value = values
                    .get(name)
                    .ok_or_else(|| TemplateError::MissingValue(name.to_owned()))?;
                push_param(&mut prepared, value);
            }
            Piece::Optional(inner) => {
                let complete = inner.iter().all(|piece| match piece {
                    Piece::Variable(name) => values.contains_key(*name),
                    Piece::Text(_) | Piece::Optional(_) => true,
                });
                if !complete {
                    continue;
                }
                for piece in inner {
                    match piece {
                        Piece::Text(text) => prepared.sql.push_str(text),
                        Piece::Variable(name) => push_param(&mut prepared, &values[name]),
                        // `parse` never nests clauses.
                        Piece::Optional(_) => {}
                    }
                }
            }
        }
    }
    Ok(prepared)
}

fn push_param(prepared: &mut Prepared, value: &str) {
    prepared.params.push(value.to_owned());
    prepared.sql.push('$');
    prepared.sql.push_str(&prepared.params.len().to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_optional_clause_drops_out_without_its_value() {
        let sql = "SELECT 1 WHERE true [[AND slug = {{tenant}}]] ORDER BY 1";
        let prepared = prepare(sql, &values(&[])).unwrap();
        assert_eq!(prepared.sql, "SELECT 1 WHERE true  ORDER BY 1");
        assert!(prepared.params.is_empty());
        let prepared = prepare(sql, &values(&[("tenant", "acme")])).unwrap();
        assert_eq!(prepared.sql, "SELECT 1 WHERE true AND slug = $1 ORDER BY 1");
        assert_eq!(prepared.params, ["acme"]);
    }

    #[test]
    fn a_required_variable_needs_a_value() {
        let sql = "SELECT {{a}}, {{ b }}";
        assert_eq!(
            prepare(sql, &values(&[("a", "1")])),
            Err(TemplateError::MissingValue("b".to_owned()))
        );
        assert_eq!(variables(sql).unwrap(), ["a", "b"]);
    }

    #[test]
    fn broken_templates_are_refused() {
        assert_eq!(
            variables("x [[ y").unwrap_err(),
            TemplateError::UnbalancedClause(2)
        );
        assert_eq!(
            variables("x ]] y").unwrap_err(),
            TemplateError::UnbalancedClause(2)
        );
        assert_eq!(
            variables("[[ [[ ]] ]]").unwrap_err(),
            TemplateError::UnbalancedClause(3)
        );
        assert_eq!(
            variables("{{ bad name }}").unwrap_err(),
            TemplateError::MalformedVariable(0)
        );
        assert_eq!(
            variables("{{open").unwrap_err(),
            TemplateError::MalformedVariable(0)
        );
    }
}
