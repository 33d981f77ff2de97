//! `offloading-webhook plan -f FILE`: what applying NamespaceOffloadings would do, before applying
//! them, writing nothing. Built from `diagnose`'s parts, in the same steps:
//!
//! 1. [`input`] reads the objects as `kubectl apply -f` takes them (YAML or JSON, documents, Lists);
//! 2. this module gathers the facts: the cluster's once (`diagnose`'s [`gather::cluster`]: local
//!    cluster id, virtual nodes, NamespaceMaps), then per object its namespace, the object stored
//!    under its name, and what each selected remote cluster holds under the remote name;
//! 3. [`judge`] turns them into an [`ObjectPlan`] with the webhook's own pure verdict;
//! 4. [`render`] prints text or JSON.
//!
//! Exit 0 when every object would succeed, 1 when one would be refused or fail later, 2 when
//! `plan` could not look.

pub mod input;
pub mod judge;
pub mod render;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::diagnose::DiagnoseError;
use crate::diagnose::facts::ClusterFacts;
use crate::diagnose::gather::{self, Adapter, remote_fact};
use crate::liqo::Generation;
use crate::raw_object::{RawObject, decode_text};
use crate::remote_clients::RemoteClients;
pub use input::{InputError, Item, What};
pub use judge::{ObjectFacts, ObjectPlan, Outcome};

/// What `plan` says, also printed as JSON with `-o json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    /// The Liqo generation judged by (`v0.3` or `v1.x`).
    pub liqo_api: String,
    pub local_cluster_id: Option<String>,
    pub objects: Vec<ObjectPlan>,
    /// Objects of the input that are not NamespaceOffloadings, `kind name (where)`.
    pub not_judged: Vec<String>,
}

impl PlanReport {
    /// Every object would succeed.
    pub fn succeeds(&self) -> bool {
        self.objects.iter().all(|o| o.outcome == Outcome::Succeeds)
    }
}

/// How the objects are placed, as kubectl places them.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// `-n`: the namespace of objects that name none (and must match those that do).
    pub namespace: Option<String>,
    /// The namespace when neither the object nor `-n` names one (the kubeconfig context's).
    pub default_namespace: String,
}

/// Gathers the facts and judges every NamespaceOffloading of `items`.
pub async fn plan(
    client: &Client,
    generation: Generation,
    items: Vec<Item>,
    placement: &Placement,
    cluster_id: Option<String>,
    liqo_namespace: &str,
    remotes: &RemoteClients,
) -> Result<PlanReport, DiagnoseError> {
    let adapter = Adapter::new(generation);
    let mut cluster =
        ClusterFacts { generation, liqo_namespace: liqo_namespace.to_owned(), ..Default::default() };
    gather::cluster(client, &adapter, cluster_id, &mut cluster).await?;
    let created: BTreeSet<&str> = items
        .iter()
        .filter_map(|i| match &i.what {
            What::Namespace(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let mut report = PlanReport {
        liqo_api: generation.as_str().to_owned(),
        local_cluster_id: cluster.local_cluster_id.clone(),
        objects: Vec::new(),
        not_judged: Vec::new(),
    };
    for item in &items {
        match &item.what {
            What::Offloading { .. } => {
                let f = object_facts(client, &adapter, &cluster, item, placement, &created, remotes).await?;
                report.objects.push(judge::judge(&cluster, &f));
            }
            What::Other(what) => report.not_judged.push(format!("{what} ({})", item.source)),
            What::Namespace(_) => {}
        }
    }
    Ok(report)
}

/// Everything about one NamespaceOffloading of the input.
async fn object_facts(
    client: &Client,
    adapter: &Adapter,
    cluster: &ClusterFacts,
    item: &Item,
    placement: &Placement,
    created: &BTreeSet<&str>,
    remotes: &RemoteClients,
) -> Result<ObjectFacts, DiagnoseError> {
    let What::Offloading { api_version, name, namespace, object } = &item.what else {
        return Ok(ObjectFacts::default());
    };
    let ns = namespace
        .clone()
        .or_else(|| placement.namespace.clone())
        .unwrap_or_else(|| placement.default_namespace.clone());
    let mut f = ObjectFacts {
        source: item.source.clone(),
        namespace: ns.clone(),
        name: name.clone(),
        api_version: api_version.clone(),
        object: Some(object.clone().map(|mut o| {
            o.metadata.namespace = Some(ns.clone());
            *o
        })),
        namespace_flag_conflict: match (namespace, &placement.namespace) {
            (Some(own), Some(flag)) if own != flag => Some(flag.clone()),
            _ => None,
        },
        ..Default::default()
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    f.namespace_exists =
        created.contains(ns.as_str()) || read("the namespace", namespaces.get_opt(&ns).await)?.is_some();
    let served = adapter.names().offloadings;
    if *api_version == served.group_version() && !name.is_empty() && f.namespace_exists {
        let api: Api<RawObject> = Api::namespaced_with(client.clone(), &ns, &served.api_resource());
        if let Some(raw) = read("the stored NamespaceOffloading", api.get_opt(name).await)? {
            match decode_text(raw.text()) {
                Ok(stored) => f.stored = Some(stored),
                Err(e) => f.notes.push(format!(
                    "the stored {ns}/{} does not decode ({e}): judged as a create",
                    raw.name_any()
                )),
            }
        }
    }
    let Some(Ok(obj)) = &f.object else { return Ok(f) };
    let local_id = cluster.local_cluster_id.as_deref();
    let Ok(remote_name) = crate::offloading::rules::derived_name(&obj.spec, &ns, local_id) else {
        return Ok(f);
    };
    for i in judge::selection(cluster, obj) {
        let id = &cluster.nodes[i].cluster_id;
        match remotes.get(client, id, &cluster.tenant_of(id)).await {
            Ok(Some(remote)) => {
                let fact = remote_fact(remote, adapter.names(), Some(remote_name.clone())).await;
                f.remotes.insert(id.clone(), fact);
            }
            Ok(None) => {}
            Err(e) => f.unusable_kubeconfigs.push(e.to_string()),
        }
    }
    Ok(f)
}

fn read<T>(what: &str, r: Result<T, kube::Error>) -> Result<T, DiagnoseError> {
    r.map_err(|source| DiagnoseError::Read { what: what.to_owned(), source })
}

/// `plan`: 0 every object would succeed, 1 one would be refused or fail later, 2 could not look.
pub async fn run(args: &crate::cli::PlanArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let items = match read_inputs(&args.filenames) {
        Ok(items) => items,
        Err(e) => {
            eprintln!("error: plan could not look: {e}");
            return ExitCode::from(2);
        }
    };
    let look = &args.look;
    let looked = async {
        let client = crate::diagnose::connect(look.kubeconfig.as_deref()).await?;
        let remotes = RemoteClients::new(look.remote_kubeconfigs.iter().cloned().collect());
        let generation = crate::liqo_api::resolve(&client, look.liqo_api).await?;
        let placement = Placement {
            namespace: args.namespace.clone(),
            default_namespace: client.default_namespace().to_owned(),
        };
        plan(&client, generation, items, &placement, look.cluster_id.clone(), &look.liqo_namespace, &remotes)
            .await
    };
    match looked.await {
        Ok(report) => {
            match look.output {
                crate::cli::OutputFormat::Json => println!("{}", render::json(&report)),
                crate::cli::OutputFormat::Text => print!("{}", render::text(&report)),
            }
            if report.succeeds() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("error: plan could not look: {e}");
            ExitCode::from(2)
        }
    }
}

/// The objects of every `-f`: a file, a directory's .yaml, .yml and .json files (by name), or `-`
/// for standard input.
pub fn read_inputs(paths: &[std::path::PathBuf]) -> Result<Vec<Item>, InputError> {
    use std::io::Read;
    let unreadable =
        |source_name: String, e: std::io::Error| InputError::Read { source_name, detail: e.to_string() };
    let mut items = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        if shown == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| unreadable("standard input".into(), e))?;
            items.extend(input::read(&text, "standard input")?);
            continue;
        }
        let files = if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| unreadable(shown.clone(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|e| unreadable(name.clone(), e))?;
            items.extend(input::read(&text, &name)?);
        }
    }
    Ok(items)
}
