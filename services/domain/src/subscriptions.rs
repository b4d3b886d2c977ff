//! Which endpoints receive an event type: an index, so fan-out cost depends on the number of
//! matching endpoints, not on the number of endpoints.
//!
//! Patterns: an exact type (`invoice.paid`), a prefix wildcard (`invoice.*` matches every type
//! that starts with `invoice.`), or `*` (every type).

use std::collections::{BTreeSet, HashMap};

/// Checks a subscription pattern; the error says what is wrong.
pub fn validate_pattern(p: &str) -> Result<(), &'static str> {
    if p.is_empty() || p.len() > 200 {
        return Err("must be 1 to 200 characters");
    }
    if p == "*" {
        return Ok(());
    }
    let body = p.strip_suffix(".*").unwrap_or(p);
    if body.is_empty() || body.contains('*') {
        return Err("a wildcard may only be the whole pattern (*) or a final .* segment");
    }
    if !body.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/')) {
        return Err("use only letters, digits and . _ - : /");
    }
    if body.starts_with('.') || body.ends_with('.') || body.contains("..") {
        return Err("segments must not be empty");
    }
    Ok(())
}

/// Checks an event type (what a trigger carries).
pub fn validate_event_type(t: &str) -> Result<(), &'static str> {
    if t.contains('*') {
        return Err("an event type cannot contain *");
    }
    validate_pattern(t)
}

/// Subscriptions of every endpoint of every tenant.
#[derive(Debug, Default)]
pub struct SubscriptionIndex {
    exact: HashMap<(String, String), BTreeSet<String>>,
    prefix: HashMap<(String, String), BTreeSet<String>>,
    all: HashMap<String, BTreeSet<String>>,
    /// What each endpoint is indexed under, to remove it cheaply.
    by_endpoint: HashMap<String, (String, Vec<String>)>,
}

impl SubscriptionIndex {
    /// Indexes (or re-indexes) an endpoint's patterns; an empty list removes it.
    pub fn set(&mut self, tenant: &str, endpoint_id: &str, patterns: &[String]) {
        self.remove(endpoint_id);
        if patterns.is_empty() {
            return;
        }
        for p in patterns {
            let key = |s: &str| (tenant.to_string(), s.to_string());
            if p == "*" {
                self.all.entry(tenant.to_string()).or_default().insert(endpoint_id.to_string());
            } else if let Some(prefix) = p.strip_suffix('*') {
                self.prefix.entry(key(prefix)).or_default().insert(endpoint_id.to_string());
            } else {
                self.exact.entry(key(p)).or_default().insert(endpoint_id.to_string());
            }
        }
        self.by_endpoint.insert(endpoint_id.to_string(), (tenant.to_string(), patterns.to_vec()));
    }

    pub fn remove(&mut self, endpoint_id: &str) {
        let Some((tenant, patterns)) = self.by_endpoint.remove(endpoint_id) else { return };
        for p in patterns {
            let (map, k) = if p == "*" {
                if let Some(set) = self.all.get_mut(&tenant) {
                    set.remove(endpoint_id);
                    if set.is_empty() {
                        self.all.remove(&tenant);
                    }
                }
                continue;
            } else if let Some(prefix) = p.strip_suffix('*') {
                (&mut self.prefix, (tenant.clone(), prefix.to_string()))
            } else {
                (&mut self.exact, (tenant.clone(), p.clone()))
            };
            if let Some(set) = map.get_mut(&k) {
                set.remove(endpoint_id);
                if set.is_empty() {
                    map.remove(&k);
                }
            }
        }
    }

    /// Endpoint ids subscribed to `event_type` in `tenant`, each once, in id order.
    pub fn matching(&self, tenant: &str, event_type: &str) -> Vec<String> {
        let mut out = BTreeSet::new();
        let key = |s: &str| (tenant.to_string(), s.to_string());
        if let Some(s) = self.exact.get(&key(event_type)) {
            out.extend(s.iter().cloned());
        }
        // Every proper prefix ending in '.' may carry a wildcard.
        for (i, c) in event_type.char_indices() {
            if c == '.'
                && let Some(s) = self.prefix.get(&key(&event_type[..=i]))
            {
                out.extend(s.iter().cloned());
            }
        }
        if let Some(s) = self.all.get(tenant) {
            out.extend(s.iter().cloned());
        }
        out.into_iter().collect()
    }

    pub fn len(&self) -> usize {
        self.by_endpoint.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_endpoint.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_prefix_and_star() {
        let mut ix = SubscriptionIndex::default();
        ix.set("t", "e1", &v(&["invoice.paid"]));
        ix.set("t", "e2", &v(&["invoice.*"]));
        ix.set("t", "e3", &v(&["*"]));
        ix.set("t", "e4", &v(&["user.created", "invoice.paid"]));
        ix.set("other", "e5", &v(&["*"]));
        assert_eq!(ix.matching("t", "invoice.paid"), v(&["e1", "e2", "e3", "e4"]));
        assert_eq!(ix.matching("t", "invoice.paid.v2"), v(&["e2", "e3"]));
        assert_eq!(ix.matching("t", "invoice"), v(&["e3"]));
        assert_eq!(ix.matching("t", "user.created"), v(&["e3", "e4"]));
        assert_eq!(ix.matching("nobody", "user.created"), Vec::<String>::new());
        ix.set("t", "e4", &v(&["user.created"]));
        assert_eq!(ix.matching("t", "invoice.paid"), v(&["e1", "e2", "e3"]));
        ix.remove("e3");
        ix.remove("e2");
        assert_eq!(ix.matching("t", "invoice.paid"), v(&["e1"]));
        assert_eq!(ix.len(), 3);
    }

    #[test]
    fn patterns_are_validated() {
        for ok in ["*", "invoice.*", "invoice.paid", "a-b_c:d/e"] {
            assert!(validate_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", "inv*", "*.paid", "a..b", ".a", "a b", "invoice.*.x"] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
        assert!(validate_event_type("*").is_err());
    }

    #[test]
    fn ten_thousand_endpoints_match_fast() {
        let mut ix = SubscriptionIndex::default();
        for i in 0..10_000 {
            ix.set("t", &format!("e{i}"), &v(&[&format!("type.{i}")]));
        }
        assert_eq!(ix.matching("t", "type.4242"), v(&["e4242"]));
    }
}
