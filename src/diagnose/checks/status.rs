//! The status and what the controller made of the object: is it up to date, is it there at all,
//! and is a failed phase explained by some other problem.

use super::{Finding, Subject};
use crate::diagnose::report::Problem;

/// Remote clusters that could not be asked because their kubeconfig cannot be used.
pub fn kubeconfigs_usable(s: &Subject<'_>, _: &[Problem]) -> Vec<Finding> {
    s.namespace.unusable_kubeconfigs.iter().cloned().map(Finding::Note).collect()
}

/// A status written for an older generation of the object.
pub fn status_up_to_date(s: &Subject<'_>, _: &[Problem]) -> Vec<Finding> {
    let (Some(seen), Some(generation)) = (s.status.observed_generation, s.offloading.metadata.generation)
    else {
        return Vec::new();
    };
    if seen == generation {
        return Vec::new();
    }
    vec![Finding::Note(format!(
        "the status describes generation {seen}, the object is at {generation}: {} has not caught up (or is not running)",
        s.wording.controller
    ))]
}

/// No status at all: the controller has not handled the object.
pub fn status_present(s: &Subject<'_>, _: &[Problem]) -> Vec<Finding> {
    match s.status.offloading_phase {
        Some(_) => Vec::new(),
        None => vec![Finding::Note(format!(
            "the NamespaceOffloading has no status: {} has not handled it",
            s.wording.controller
        ))],
    }
}

/// A failed phase that no other check explained.
pub fn phase_explained(s: &Subject<'_>, found: &[Problem]) -> Vec<Finding> {
    let Some(phase @ ("SomeFailed" | "AllFailed")) = s.phase() else { return Vec::new() };
    if !found.is_empty() {
        return Vec::new();
    }
    vec![Finding::problem(
        format!("phase {phase}: some remote namespaces could not be created"),
        "see the Ready=False conditions above and the NamespaceMap currentMapping of those clusters",
    )]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixtures::{causes, facts, offloading, subject};
    use super::*;
    use crate::liqo::Generation;

    #[test]
    fn a_status_behind_the_object_names_who_writes_it() {
        let mut f = facts(Generation::V1, "Ready", "Accepted");
        assert!(status_up_to_date(&subject(&f), &[]).is_empty());
        f.namespace.offloading.as_mut().unwrap().status.as_mut().unwrap().observed_generation = Some(0);
        assert_eq!(
            causes(status_up_to_date(&subject(&f), &[])),
            [
                "note: the status describes generation 0, the object is at 1: Liqo's controller-manager has not caught up (or is not running)"
            ]
        );
    }

    #[test]
    fn no_status_at_all() {
        let mut f = facts(Generation::V0_3, "Ready", "Accepted");
        f.namespace.offloading = Some(offloading(json!({}), json!(null)));
        assert_eq!(
            causes(status_present(&subject(&f), &[])),
            [
                "note: the NamespaceOffloading has no status: the reconcile loop (offloading-webhook serve, or Liqo) has not handled it"
            ]
        );
    }

    #[test]
    fn a_failed_phase_is_a_problem_only_when_nothing_else_explains_it() {
        let f = facts(Generation::V0_3, "SomeFailed", "Accepted");
        assert_eq!(
            causes(phase_explained(&subject(&f), &[])),
            ["phase SomeFailed: some remote namespaces could not be created"]
        );
        let other = Problem { cause: "c".into(), fix: "f".into(), cluster: None, check: "x" };
        assert!(phase_explained(&subject(&f), &[other]).is_empty());
        assert!(phase_explained(&subject(&facts(Generation::V0_3, "Ready", "Accepted")), &[]).is_empty());
    }

    #[test]
    fn unusable_kubeconfigs_are_notes() {
        let mut f = facts(Generation::V0_3, "Ready", "Accepted");
        f.namespace.unusable_kubeconfigs =
            vec!["the kubeconfig of remote cluster calm-sea (x) cannot be used: y".into()];
        assert_eq!(kubeconfigs_usable(&subject(&f), &[]).len(), 1);
    }
}
