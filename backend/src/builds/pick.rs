//! Which node builds: a pure choice among the nodes whose agents are connected.

use std::collections::BTreeMap;

use uuid::Uuid;

/// The label that marks a node as a builder: such nodes take builds first.
pub const BUILDER_LABEL: (&str, &str) = ("builder", "true");

/// A node as the choice sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: Uuid,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Up, not cordoned, draining or being removed, and its agent is connected now.
    pub available: bool,
    /// Builds it runs now.
    pub building: usize,
}

/// The node to build on: an available builder if there is one, else any available node; the
/// one with the fewest builds running, then by name (so the choice is stable). `None` when no
/// node is available.
pub fn pick(candidates: &[Candidate]) -> Option<&Candidate> {
    let is_builder =
        |c: &Candidate| c.labels.get(BUILDER_LABEL.0).map(String::as_str) == Some(BUILDER_LABEL.1);
    candidates.iter().filter(|c| c.available).min_by(|a, b| {
        (!is_builder(a), a.building, &a.name).cmp(&(!is_builder(b), b.building, &b.name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, builder: bool, available: bool, building: usize) -> Candidate {
        let mut labels = BTreeMap::from([("zone".to_owned(), "a".to_owned())]);
        if builder {
            labels.insert("builder".into(), "true".into());
        }
        Candidate {
            id: Uuid::new_v4(),
            name: name.into(),
            labels,
            available,
            building,
        }
    }

    #[test]
    fn builders_first_then_the_least_busy_then_by_name() {
        // (nodes, expected)
        let cases: Vec<(Vec<Candidate>, Option<&str>)> = vec![
            (vec![], None),
            (vec![node("a", false, false, 0)], None),
            (
                vec![node("b", false, true, 0), node("a", false, true, 0)],
                Some("a"),
            ),
            (
                vec![node("a", false, true, 0), node("b", true, true, 3)],
                Some("b"),
            ),
            (
                vec![node("a", false, true, 0), node("b", true, false, 0)],
                Some("a"),
            ),
            (
                vec![node("a", true, true, 2), node("b", true, true, 1)],
                Some("b"),
            ),
        ];
        for (nodes, want) in cases {
            assert_eq!(pick(&nodes).map(|c| c.name.as_str()), want, "{nodes:?}");
        }
    }
}
