//! The named scenarios: which endpoints exist, how each answers, which event types the
//! triggers carry and how many deliveries each trigger should produce.
//!
//! Every scenario has full-size defaults; `--count`, `--endpoints`, `--rate`, `--duration` and
//! `--deadline` shrink it (a smoke run) or grow it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::sink::Behaviour;

/// Retry schedule given to every load-test endpoint: fast, so a retried message lands within a
/// run's deadline (the production default waits 5 s, then 5 min).
pub const FAST_RETRIES_MS: [i64; 6] = [0, 500, 1000, 2000, 5000, 10000];
/// Timeout of dead (hanging) endpoints, ms.
pub const DEAD_TIMEOUT_MS: i32 = 5000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Every trigger carries `load.x`; every endpoint subscribes to `load.*`.
    Broadcast,
    /// Trigger `seq` carries `load.k.{seq % n}`; endpoint `i` subscribes to `load.k.{i}` only.
    OnePerTrigger,
}

#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub key: &'static str,
    pub name: &'static str,
    pub title: &'static str,
    pub default_count: u64,
    pub default_endpoints: usize,
    pub routing: Routing,
    pub note: Option<&'static str>,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        key: "a",
        name: "steady",
        title: "steady load, one endpoint",
        default_count: 20_000,
        default_endpoints: 1,
        routing: Routing::Broadcast,
        note: None,
    },
    Scenario {
        key: "b",
        name: "fanout",
        title: "fan-out: every trigger to 1,000 endpoints",
        default_count: 100,
        default_endpoints: 1000,
        routing: Routing::Broadcast,
        note: None,
    },
    Scenario {
        key: "c",
        name: "dead",
        title: "100 healthy endpoints + 5 dead ones (connect, then hang)",
        default_count: 500,
        default_endpoints: 100,
        routing: Routing::Broadcast,
        note: Some("dead endpoints' deliveries are not expected; compare the healthy group's p99 with scenario a/b"),
    },
    Scenario {
        key: "d",
        name: "retry-storm",
        title: "retry storm: 20% of endpoints fail half their messages' first attempts (503)",
        default_count: 500,
        default_endpoints: 100,
        routing: Routing::Broadcast,
        note: None,
    },
    Scenario {
        key: "e",
        name: "burst",
        title: "burst: 100,000 triggers at once over 10 endpoints (one each)",
        default_count: 100_000,
        default_endpoints: 10,
        routing: Routing::OnePerTrigger,
        note: None,
    },
    Scenario {
        key: "f",
        name: "rate-limited",
        title: "rate-limited endpoints (10/s, burst 10): accuracy of the limit",
        default_count: 300,
        default_endpoints: 10,
        routing: Routing::Broadcast,
        note: Some(
            "limits are enforced by the dispatchers' shared token buckets; the burst allows a first second above the rate",
        ),
    },
    Scenario {
        key: "g",
        name: "many-endpoints",
        title: "10,000 endpoints with one subscription each",
        default_count: 20_000,
        default_endpoints: 10_000,
        routing: Routing::OnePerTrigger,
        note: None,
    },
];

pub const RATE_LIMIT_PER_S: f64 = 10.0;

pub fn find(name: &str) -> Option<Scenario> {
    SCENARIOS.iter().copied().find(|s| s.key == name || s.name == name)
}

/// One endpoint to create.
#[derive(Debug, Clone)]
pub struct PlannedEndpoint {
    pub group: usize,
    pub behaviour: Behaviour,
    pub event_types: Vec<String>,
    pub timeout_ms: Option<i32>,
    pub rate_limit: Option<(f64, i32)>,
}

/// Endpoint groups reported separately.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// Whether deliveries to this group count towards "expected" and "lost".
    pub expected: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub groups: Vec<Group>,
    pub endpoints: Vec<PlannedEndpoint>,
    pub routing: Routing,
}

impl Plan {
    pub fn build(s: &Scenario, endpoints: usize) -> Self {
        let n = endpoints.max(1);
        let ok = |g: usize, i: usize| PlannedEndpoint {
            group: g,
            behaviour: Behaviour::Ok,
            event_types: vec![match s.routing {
                Routing::Broadcast => "load.*".into(),
                Routing::OnePerTrigger => format!("load.k.{i}"),
            }],
            timeout_ms: None,
            rate_limit: None,
        };
        let group = |name: &str, expected: bool| Group { name: name.into(), expected };
        match s.key {
            "c" => {
                let mut eps: Vec<_> = (0..n).map(|i| ok(0, i)).collect();
                let dead = (n / 20).max(1);
                eps.extend((0..dead).map(|i| PlannedEndpoint {
                    group: 1,
                    behaviour: Behaviour::Hang,
                    timeout_ms: Some(DEAD_TIMEOUT_MS),
                    ..ok(1, n + i)
                }));
                Plan { groups: vec![group("healthy", true), group("dead", false)], endpoints: eps, routing: s.routing }
            }
            "d" => {
                let failing = (n / 5).max(1).min(n);
                let eps = (0..n)
                    .map(|i| {
                        if i < failing {
                            PlannedEndpoint { behaviour: Behaviour::FailFirst { ratio: 0.5, status: 503 }, ..ok(1, i) }
                        } else {
                            ok(0, i)
                        }
                    })
                    .collect();
                Plan {
                    groups: vec![group("healthy", true), group("failing", true)],
                    endpoints: eps,
                    routing: s.routing,
                }
            }
            "f" => {
                let eps = (0..n)
                    .map(|i| PlannedEndpoint {
                        rate_limit: Some((RATE_LIMIT_PER_S, RATE_LIMIT_PER_S as i32)),
                        ..ok(0, i)
                    })
                    .collect();
                Plan { groups: vec![group("limited", true)], endpoints: eps, routing: s.routing }
            }
            _ => Plan {
                groups: vec![group("all", true)],
                endpoints: (0..n).map(|i| ok(0, i)).collect(),
                routing: s.routing,
            },
        }
    }

    /// The number of endpoints that receive triggers in `OnePerTrigger` routing.
    fn targets(&self) -> usize {
        self.endpoints.len().max(1)
    }

    pub fn event_type(&self, seq: u64) -> String {
        match self.routing {
            Routing::Broadcast => "load.x".into(),
            Routing::OnePerTrigger => format!("load.k.{}", seq % self.targets() as u64),
        }
    }

    /// Deliveries expected per group once `accepted` triggers (seq 0..accepted, roughly) went in.
    pub fn expected(&self, accepted: u64) -> Vec<u64> {
        let mut per_group = vec![0u64; self.groups.len()];
        match self.routing {
            Routing::Broadcast => {
                for e in &self.endpoints {
                    per_group[e.group] += accepted;
                }
            }
            Routing::OnePerTrigger => {
                let n = self.targets() as u64;
                for (i, e) in self.endpoints.iter().enumerate() {
                    let i = i as u64;
                    per_group[e.group] += accepted / n + u64::from(i < accepted % n);
                }
            }
        }
        per_group
    }

    /// Total expected deliveries (groups marked expected only).
    pub fn expected_total(&self, accepted: u64) -> u64 {
        self.expected(accepted).iter().zip(&self.groups).filter(|(_, g)| g.expected).map(|(n, _)| n).sum()
    }

    /// The `POST /api/endpoints` body of endpoint `i`.
    pub fn endpoint_body(&self, i: usize, tenant: &str, sink_port: u16, secret: &str) -> Value {
        let e = &self.endpoints[i];
        let mut body = json!({
            "tenant_id": tenant,
            "url": format!("http://127.0.0.1:{sink_port}/ep/{i}"),
            "description": format!("loadtest endpoint {i}"),
            "event_types": e.event_types,
            "secret": secret,
            "retry_schedule_ms": FAST_RETRIES_MS,
        });
        if let Some(t) = e.timeout_ms {
            body["timeout_ms"] = json!(t);
        }
        if let Some((per_second, burst)) = e.rate_limit {
            body["rate_limit"] = json!({"per_second": per_second, "burst": burst});
        }
        body
    }
}

/// Bounds every run: the tool refuses anything larger.
pub const MAX_COUNT: u64 = 10_000_000;
pub const MAX_ENDPOINTS: usize = 20_000;
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_builds_and_expects_deliveries() {
        for s in SCENARIOS {
            let plan = Plan::build(s, 20);
            assert!(plan.expected_total(10) > 0, "{}", s.name);
        }
    }

    #[test]
    fn one_per_trigger_spreads_triggers_over_endpoints() {
        let s = find("g").unwrap();
        let plan = Plan::build(&s, 3);
        assert_eq!(plan.event_type(4), "load.k.1");
        assert_eq!(plan.expected(7), vec![7]);
        assert_eq!(plan.expected_total(7), 7);
    }

    #[test]
    fn dead_endpoints_are_not_expected() {
        let plan = Plan::build(&find("dead").unwrap(), 100);
        assert_eq!(plan.endpoints.len(), 105);
        assert_eq!(plan.expected_total(10), 1000);
    }
}
