//! `offloading-webhook diagnose -n NAMESPACE`: the troubleshooting guide's whole path as one
//! command (and `diagnose -A`, every namespace at once: [`fleet`]), in four steps that follow the
//! data:
//!
//! 1. [`gather`] reads the facts, through one [`Adapter`] per Liqo generation (IO only);
//! 2. [`facts`] are plain data: what the cluster says to every namespace, and what one holds;
//! 3. [`checks`] judge them: a list of named checks, each a small pure function returning what it
//!    found (problems with a cause and a fix, and notes), with the same pure code as the webhook
//!    (`crate::offloading`); what differs per generation is in [`wording`] and `crate::liqo`;
//! 4. [`render`] prints the [`Report`] as text or JSON.
//!
//! Many namespaces are judged against one reading of the cluster: [`gather::cluster`] and
//! [`gather::leases`] once, then per namespace [`gather::offloadings`] and
//! [`gather::around_offloading`], and [`judge`] borrows the same [`facts::ClusterFacts`] for each;
//! `diagnose -A` reads every namespace's facts in the same lists ([`gather::gather_all`]).
//!
//! Exit 0 healthy, 1 a problem found, 2 could not look.

pub mod checks;
pub mod facts;
pub mod fleet;
pub mod gather;
pub mod render;
pub mod report;
pub mod wording;

use k8s_openapi::jiff::Timestamp;
use kube::Client;

pub use checks::judge;
pub use facts::Facts;
pub use fleet::FleetReport;
pub use gather::{Adapter, DiagnoseError, connect};
pub use report::{Problem, Report};

use crate::liqo::Generation;
use crate::remote_clients::RemoteClients;

/// Gathers, judges: the whole walk for `namespace`.
pub async fn diagnose(
    client: &Client,
    generation: Generation,
    namespace: &str,
    cluster_id: Option<String>,
    liqo_namespace: &str,
    remotes: &RemoteClients,
) -> Result<Report, DiagnoseError> {
    let adapter = Adapter::new(generation);
    let mut facts = gather::gather(client, &adapter, namespace, cluster_id, liqo_namespace, remotes).await?;
    facts.cluster.leases = gather::leases(client).await;
    facts.cluster.looked_at = Some(Timestamp::now());
    Ok(judge(&facts.cluster, &facts.namespace))
}

/// Gathers once, judges every namespace: `diagnose -A`.
pub async fn diagnose_all(
    client: &Client,
    generation: Generation,
    cluster_id: Option<String>,
    liqo_namespace: &str,
    remotes: &RemoteClients,
) -> Result<FleetReport, DiagnoseError> {
    let adapter = Adapter::new(generation);
    let (mut cluster, namespaces) =
        gather::gather_all(client, &adapter, cluster_id, liqo_namespace, remotes).await?;
    cluster.leases = gather::leases(client).await;
    cluster.looked_at = Some(Timestamp::now());
    Ok(fleet::judge_all(&cluster, &namespaces))
}
