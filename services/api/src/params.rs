//! Query-string parsing with errors that name the parameter. Unknown parameters are refused.

use std::collections::HashMap;

use hookline_domain::time;

use crate::problem::ApiProblem;

pub struct Params {
    map: HashMap<String, String>,
}

/// Default list window when `since` is absent.
pub const DEFAULT_WINDOW_MS: i64 = 7 * 86_400_000;
/// Latest time a parameter may name: 9999-12-31T23:59:59.999Z. Times are `0..=MAX_TIME_MS`, which
/// also keeps window arithmetic far from overflow.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

impl Params {
    pub fn new(map: HashMap<String, String>, allowed: &[&str]) -> Result<Self, ApiProblem> {
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiProblem::invalid(k.clone(), format!("unknown parameter; allowed: {}", allowed.join(", "))));
        }
        Ok(Self { map })
    }

    /// Refuses every parameter `P` does not document, so parsing and the API document agree.
    pub fn documented<P: utoipa::IntoParams>(map: HashMap<String, String>) -> Result<Self, ApiProblem> {
        let names: Vec<String> = P::into_params(|| None).into_iter().map(|p| p.name).collect();
        let allowed: Vec<&str> = names.iter().map(String::as_str).collect();
        Self::new(map, &allowed)
    }

    pub fn str(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn ms(&self, k: &str) -> Result<Option<i64>, ApiProblem> {
        self.str(k)
            .map(|v| v.parse::<i64>().ok().filter(|t| (0..=MAX_TIME_MS).contains(t)).ok_or_else(|| time_problem(k)))
            .transpose()
    }

    pub fn limit(&self) -> Result<usize, ApiProblem> {
        match self.str("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| ApiProblem::invalid("limit", format!("must be between 1 and {MAX_LIMIT}"))),
        }
    }

    /// `since`/`until` with defaults, checked.
    pub fn window(&self) -> Result<(i64, i64), ApiProblem> {
        window(self.ms("since")?, self.ms("until")?)
    }

    pub fn cursor(&self) -> Result<Option<hookline_projector::query::Cursor>, ApiProblem> {
        self.str("cursor")
            .map(|c| {
                hookline_projector::query::Cursor::parse(c)
                    .ok_or_else(|| ApiProblem::invalid("cursor", "is not a cursor this API returned"))
            })
            .transpose()
    }
}

fn time_problem(field: &str) -> ApiProblem {
    ApiProblem::invalid(field, format!("must be a Unix time in milliseconds between 0 and {MAX_TIME_MS}"))
}

/// A time window from optional bounds: `until` defaults to a minute from now, `since` to
/// [`DEFAULT_WINDOW_MS`] before `until`. Bounds must be in `0..=MAX_TIME_MS` and in order.
pub fn window(since: Option<i64>, until: Option<i64>) -> Result<(i64, i64), ApiProblem> {
    for (field, t) in [("since", since), ("until", until)] {
        if t.is_some_and(|t| !(0..=MAX_TIME_MS).contains(&t)) {
            return Err(time_problem(field));
        }
    }
    let until = until.unwrap_or_else(|| time::now_ms() + 60_000);
    let since = since.unwrap_or((until - DEFAULT_WINDOW_MS).max(0));
    if since > until {
        return Err(ApiProblem::invalid("since", "must not be after until"));
    }
    Ok((since, until))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded_and_never_overflow() {
        assert!(window(None, Some(i64::MIN)).is_err());
        assert!(window(Some(-1), None).is_err());
        assert!(window(None, Some(MAX_TIME_MS + 1)).is_err());
        assert_eq!(window(None, Some(1000)).unwrap(), (0, 1000));
        assert_eq!(window(None, Some(MAX_TIME_MS)).unwrap(), (MAX_TIME_MS - DEFAULT_WINDOW_MS, MAX_TIME_MS));
        assert!(window(Some(2), Some(1)).is_err());
        let p = Params::new(HashMap::from([("until".to_string(), i64::MIN.to_string())]), &["until"]).unwrap();
        assert!(p.window().is_err());
    }
}
