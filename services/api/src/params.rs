//! Query-string parsing with errors that name the parameter. Unknown parameters are refused.

use std::collections::HashMap;

use hookline_domain::time;

use crate::problem::ApiProblem;

pub struct Params {
    map: HashMap<String, String>,
}

/// Default list window when `since` is absent.
pub const DEFAULT_WINDOW_MS: i64 = 7 * 86_400_000;
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
            .map(|v| v.parse::<i64>().map_err(|_| ApiProblem::invalid(k, "must be a Unix time in milliseconds")))
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
        let until = self.ms("until")?.unwrap_or_else(|| time::now_ms() + 60_000);
        let since = self.ms("since")?.unwrap_or(until - DEFAULT_WINDOW_MS);
        if since > until {
            return Err(ApiProblem::invalid("since", "must not be after until"));
        }
        Ok((since, until))
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
