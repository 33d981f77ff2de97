//! Which Liqo generation the cluster runs (docs/behaviour.md, "Liqo v1.x"), and what that allows `serve` to do.
//!
//! Liqo v1.x serves NamespaceMaps in `offloading.liqo.io/v1beta1` and owns them, and the status of
//! NamespaceOffloadings, through its own controller-manager; v0.3 (the troubleshooting guide's API)
//! serves them in `virtualkubelet.liqo.io/v1alpha1`, and this project's reconcile loop plays its
//! controllers. Two writers of the same objects would undo each other's work, so on v1.x the loop
//! never starts.

use kube::Client;
use tracing::{info, warn};

use crate::cli::LiqoApi;
use crate::liqo::{Generation, Resource, v0_3, v1};

#[derive(Debug, thiserror::Error)]
pub enum LiqoApiError {
    #[error(
        "could not find out which Liqo API the cluster serves (API discovery of {group_version} \
         failed: {source}); retry, or give --liqo-api v1 or --liqo-api v0.3"
    )]
    Discovery { group_version: String, source: kube::Error },
    #[error(
        "--reconcile=true (or RECONCILE=true) on a Liqo v1.x cluster ({why}): Liqo's own \
         controller-manager writes NamespaceMaps and NamespaceOffloading status there, and two \
         writers would undo each other's work; drop --reconcile (the webhooks and diagnose work \
         without it), or give --liqo-api v0.3 if this cluster really runs Liqo v0.3"
    )]
    TwoWriters { why: String },
}

/// The generation found and why, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub generation: Generation,
    pub why: String,
}

/// Whether the API server serves a generation's NamespaceMaps (`maps`).
async fn serves_namespacemaps(client: &Client, maps: &Resource) -> Result<bool, LiqoApiError> {
    let group_version = maps.group_version();
    match client.list_api_group_resources(&group_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == maps.plural)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(source) => Err(LiqoApiError::Discovery { group_version, source }),
    }
}

/// Decides from what discovery found (pure, so that every case is tested).
pub fn decide(flag: LiqoApi, v1_served: Option<bool>, v0_3_served: Option<bool>) -> Found {
    let found = |generation, why: &str| Found { generation, why: why.to_owned() };
    match flag {
        LiqoApi::V1 => return found(Generation::V1, "--liqo-api v1"),
        LiqoApi::V0_3 => return found(Generation::V0_3, "--liqo-api v0.3"),
        LiqoApi::Auto => {}
    }
    match (v1_served.unwrap_or(false), v0_3_served.unwrap_or(false)) {
        (true, false) => found(Generation::V1, "NamespaceMaps are served in offloading.liqo.io/v1beta1"),
        (false, true) => {
            found(Generation::V0_3, "NamespaceMaps are served in virtualkubelet.liqo.io/v1alpha1")
        }
        // Liqo v1.x installed over leftovers of v0.3: v1.x is what runs, and choosing it never
        // starts a second writer.
        (true, true) => found(
            Generation::V1,
            "NamespaceMaps are served in both offloading.liqo.io/v1beta1 and \
             virtualkubelet.liqo.io/v1alpha1 (v0.3 leftovers?); choosing v1.x, which starts no \
             reconcile loop; give --liqo-api v0.3 to override",
        ),
        (false, false) => found(
            Generation::V0_3,
            "neither Liqo API is served: no CRD namespacemaps.offloading.liqo.io (Liqo v1.x: install \
             Liqo, or its CRDs from the chart's liqo-crds/crds with kubectl apply --server-side) and \
             no CRD namespacemaps.virtualkubelet.liqo.io (Liqo v0.3: offloading-webhook crds | \
             kubectl apply -f -); judging as v0.3 until then",
        ),
    }
}

/// Finds the generation (unless the flag names it) and logs which, and why.
pub async fn resolve(client: &Client, flag: LiqoApi) -> Result<Generation, LiqoApiError> {
    let (v1, v0_3) = if flag == LiqoApi::Auto {
        (
            Some(serves_namespacemaps(client, &v1::MAPS).await?),
            Some(serves_namespacemaps(client, &v0_3::MAPS).await?),
        )
    } else {
        (None, None)
    };
    let found = decide(flag, v1, v0_3);
    if flag == LiqoApi::Auto && v1 == v0_3 {
        warn!(liqo_api = found.generation.as_str(), why = %found.why, "Liqo API");
    } else {
        info!(liqo_api = found.generation.as_str(), why = %found.why, "Liqo API");
    }
    Ok(found.generation)
}

/// Whether the reconcile loop runs: on v0.3 unless `--reconcile=false`; never on v1.x, where asking
/// for it explicitly is an error.
pub fn reconcile_allowed(generation: Generation, flag: Option<bool>) -> Result<bool, LiqoApiError> {
    match (generation, flag) {
        (Generation::V0_3, flag) => Ok(flag.unwrap_or(true)),
        (Generation::V1, Some(true)) => {
            Err(LiqoApiError::TwoWriters { why: "found by discovery or --liqo-api".into() })
        }
        (Generation::V1, _) => {
            info!(
                "Liqo v1.x: the reconcile loop does not run (Liqo's controller-manager owns NamespaceMaps and NamespaceOffloading status); serving the webhooks, judging with v1.x facts"
            );
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_decides_unless_the_flag_does() {
        assert_eq!(decide(LiqoApi::Auto, Some(true), Some(false)).generation, Generation::V1);
        assert_eq!(decide(LiqoApi::Auto, Some(false), Some(true)).generation, Generation::V0_3);
        assert_eq!(decide(LiqoApi::Auto, Some(true), Some(true)).generation, Generation::V1);
        let none = decide(LiqoApi::Auto, Some(false), Some(false));
        assert_eq!(none.generation, Generation::V0_3);
        assert!(none.why.contains("no CRD namespacemaps.offloading.liqo.io"), "{}", none.why);
        assert!(none.why.contains("offloading-webhook crds | kubectl apply -f -"), "{}", none.why);
        assert_eq!(decide(LiqoApi::V1, None, None).why, "--liqo-api v1");
        assert_eq!(decide(LiqoApi::V0_3, None, None).generation, Generation::V0_3);
    }

    #[test]
    fn two_writers_are_never_possible_by_accident() {
        assert!(reconcile_allowed(Generation::V0_3, None).unwrap());
        assert!(!reconcile_allowed(Generation::V0_3, Some(false)).unwrap());
        assert!(!reconcile_allowed(Generation::V1, None).unwrap());
        assert!(!reconcile_allowed(Generation::V1, Some(false)).unwrap());
        let err = reconcile_allowed(Generation::V1, Some(true)).unwrap_err().to_string();
        assert!(err.starts_with("--reconcile=true (or RECONCILE=true) on a Liqo v1.x cluster"), "{err}");
    }
}
