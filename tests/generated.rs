//! Generated files must match what the code generates; the message says how to regenerate.

use offloading_webhook::cli::{HookFlags, WebhookConfigArgs};

fn assert_fresh(path: &str, generated: &str, command: &str) {
    let on_disk = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert!(on_disk == generated, "{path} is stale: run `cargo run -- {command} > {path}` and commit it");
}

fn service_args(cert_manager: Option<&str>) -> WebhookConfigArgs {
    WebhookConfigArgs {
        url: None,
        service: Some("offloading-webhook/offloading-webhook".into()),
        ca_file: None,
        cert_manager_certificate: cert_manager.map(Into::into),
        name: "offloading-webhook".into(),
        hooks: HookFlags::default(),
    }
}

#[test]
fn manifests_are_up_to_date() {
    assert_fresh("manifests/crds.yaml", &offloading_webhook::crd::crds_yaml().unwrap(), "crds");
    assert_fresh(
        "manifests/webhooks.yaml",
        &offloading_webhook::webhook_config_yaml(&service_args(None)).unwrap(),
        "webhook-config --service offloading-webhook/offloading-webhook",
    );
    assert_fresh(
        "manifests/cert-manager/webhooks.yaml",
        &offloading_webhook::webhook_config_yaml(&service_args(Some(
            "offloading-webhook/offloading-webhook",
        )))
        .unwrap(),
        "webhook-config --service offloading-webhook/offloading-webhook --cert-manager-certificate offloading-webhook/offloading-webhook",
    );
}
