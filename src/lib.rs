//! offloading-webhook: admission webhook and reconcile loop for Liqo namespace offloading.
//!
//! - [`crd`]: the NamespaceOffloading and NamespaceMap types (and their CRDs).
//! - [`offloading`]: the pure domain — names, selectors, the verdict on an object.
//! - [`admission`]: AdmissionReview in, AdmissionResponse out; the HTTP `router()`.
//! - [`server`]: TLS with certificate reload, listeners and the threads connections run on, probes, metrics, graceful shutdown.
//! - [`reconcile`]: the reconcile loops (NamespaceMaps, status), one active replica via a Lease.
//! - [`cluster`]: what the webhook knows of the cluster: cluster id and virtual nodes (caches).
//! - [`liqo`]: Liqo's names (labels, annotations, resources, finalizers), per generation.
//! - [`liqo_api`]: which Liqo generation the cluster runs, and whether the reconcile loop may run.
//! - [`raw_object`]: objects read as JSON text and decoded one at a time.
//! - [`remote_clients`]: clients of the remote clusters, from kubeconfig files or Liqo's Secrets.
//! - [`diagnose`]: the troubleshooting guide as one command (gather, facts, checks, render).
//! - [`plan`]: what applying NamespaceOffloadings would do, before applying them.
//! - [`certs`]: a dev CA, and the CA and serving pair the replicas keep themselves in a Secret.
//! - [`webhook_config`]: the registrations as built; [`registration`]: the replicas filling them in
//!   once ready.
//! - [`metrics`]: the Prometheus registry; [`health`]: faults reported (never `/readyz`), API errors explained.
//! - [`failure_policy`]: what a failed watch or API request means (a fault or a passing failure),
//!   what is said of it and when, how a watch backs off; shared by the caches, the loop, the Lease.
//! - [`rate_limit`]: the client-side QPS/burst limit on every request to an API server.
//! - [`kube_client`]: the one way a client of an API server is built (kubeconfig or in-cluster).
//! - [`policy`]: the static rules as a ValidatingAdmissionPolicy, generated from the rule table.
//! - [`cli`]: the command line, and a `ServeConfig` tests can build directly.

pub mod admission;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod crd;
pub mod diagnose;
pub mod failure_policy;
pub mod health;
pub mod kube_client;
pub mod liqo;
pub mod liqo_api;
pub mod metrics;
pub mod offloading;
pub mod plan;
pub mod policy;
pub mod rate_limit;
pub mod raw_object;
pub mod reconcile;
pub mod registration;
pub mod remote_clients;
pub mod server;
pub mod webhook_config;

use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use cli::Command;

/// Runs one command of the binary.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(cfg) => {
            let stop = CancellationToken::new();
            tokio::spawn(stop_on_signal(stop.clone()));
            server::run(*cfg, stop).await?;
        }
        Command::Certs(args) => {
            let mut names = args.dns;
            names.extend(args.ip.iter().map(ToString::to_string));
            certs::write_dir(&args.out, &names, args.days)?;
            println!(
                "wrote {0}/ca.crt, {0}/tls.crt, {0}/tls.key for {1}",
                args.out.display(),
                names.join(", ")
            );
        }
        Command::Crds => print!("{}", crd::crds_yaml()?),
        Command::WebhookConfig(args) => print!("{}", webhook_config_yaml(&args)?),
        Command::Diagnose(args) => return Ok(run_diagnose(args).await),
        Command::Policy(args) => print!("{}", policy_yaml(&args)?),
        Command::Plan(args) => return Ok(plan::run(&args).await),
        Command::Completion(args) => {
            use clap::CommandFactory;
            clap_complete::generate(
                args.shell,
                &mut cli::Cli::command(),
                &args.bin_name,
                &mut std::io::stdout(),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `diagnose`: 0 healthy, 1 a problem found, 2 could not look.
async fn run_diagnose(args: cli::DiagnoseArgs) -> ExitCode {
    let look = &args.look;
    let looked = async {
        let (client, remotes, generation) = diagnose::gather::look(look).await?;
        let (id, liqo_ns) = (look.cluster_id.clone(), look.liqo_namespace.as_str());
        if args.all_namespaces {
            return diagnose::diagnose_all(&client, generation, id, liqo_ns, &remotes).await.map(Looked::All);
        }
        // As kubectl: the context's namespace when -n is absent.
        let ns = args.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
        diagnose::diagnose(&client, generation, &ns, id, liqo_ns, &remotes).await.map(Looked::One)
    };
    enum Looked {
        One(diagnose::Report),
        All(diagnose::FleetReport),
    }
    use diagnose::render;
    match looked.await {
        Ok(looked) => {
            let (printed, healthy) = match (&looked, look.output) {
                (Looked::One(r), cli::OutputFormat::Json) => (render::json(r) + "\n", r.healthy),
                (Looked::One(r), cli::OutputFormat::Text) => (render::text(r), r.healthy),
                (Looked::All(r), cli::OutputFormat::Json) => (render::fleet_json(r) + "\n", r.healthy),
                (Looked::All(r), cli::OutputFormat::Text) => (render::fleet_text(r), r.healthy),
            };
            print!("{printed}");
            if healthy { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("error: diagnose could not look: {e}");
            ExitCode::from(2)
        }
    }
}

/// The output of `webhook-config`.
pub fn webhook_config_yaml(args: &cli::WebhookConfigArgs) -> anyhow::Result<String> {
    let ca = match &args.ca_file {
        Some(path) => Some(
            std::fs::read(path).with_context(|| format!("could not read the CA file {}", path.display()))?,
        ),
        None => None,
    };
    let target = match (&args.url, &args.service) {
        (Some(url), _) => webhook_config::Target::Url(url.clone()),
        (None, Some(service)) => webhook_config::Target::service(service).map_err(anyhow::Error::msg)?,
        (None, None) => anyhow::bail!("give --url or --service"),
    };
    let annotations = args
        .cert_manager_certificate
        .as_ref()
        .map(|c| [("cert-manager.io/inject-ca-from".to_owned(), c.clone())].into_iter().collect());
    let (v, m) = webhook_config::configurations(
        &args.name,
        &args.hooks.settings(),
        &target,
        ca.as_deref(),
        annotations,
    );
    Ok(webhook_config::to_yaml(&v, &m)?)
}

/// The output of `policy`.
pub fn policy_yaml(args: &cli::PolicyArgs) -> anyhow::Result<String> {
    let (generation, api) = match args.liqo_api {
        cli::LiqoApi::V0_3 => (offloading::Generation::V0_3, "v0.3"),
        cli::LiqoApi::V1 => (offloading::Generation::V1, "v1"),
        cli::LiqoApi::Auto => anyhow::bail!(
            "policy cannot find out which Liqo the cluster runs: give --liqo-api v0.3 or --liqo-api v1"
        ),
    };
    let opts = policy::Options {
        generation,
        name: args.name.clone(),
        validation_actions: args.validation_actions.clone(),
        liqo_namespace: args.liqo_namespace.clone(),
        cluster_id: args.cluster_id.clone(),
        exclude_namespaces: args.exclude_namespaces.clone(),
    };
    let part = match args.part {
        cli::PolicyPart::All => policy::Part::All,
        cli::PolicyPart::Policy => policy::Part::Policy,
        cli::PolicyPart::Bindings => policy::Part::Bindings,
    };
    let p = policy::build(&opts)?;
    let mut command = format!("offloading-webhook policy --liqo-api {api}");
    if opts.cluster_id.is_some() {
        command.push_str(" --cluster-id ...");
    }
    Ok(policy::to_yaml(&p, part, &command)?)
}

/// Cancels `stop` on SIGTERM or Ctrl-C.
async fn stop_on_signal(stop: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutdown signal received");
            stop.cancel();
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    stop.cancel();
}
