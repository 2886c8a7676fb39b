//! The control plane side: kubectl and helm, a ServiceAccount's kubeconfig, the
//! EventConsumers, and a pod's environment as the kubelet would resolve it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// The kwok node every pod of the local stack runs on.
pub const NODE: &str = "kwok-node-0";
/// Field manager of what the test applies as "the user".
const MANAGER: &str = "eventconsumer-e2e";

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run {program} ({e}): is the local stack's PATH set? {}",
            testkit::START_THE_STACK
        )
    });
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("writing to {program}'s stdin: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {program}: {e}"))
}

/// Runs `program args` (with `stdin`) and returns its stdout; panics with its stderr when
/// it fails.
pub fn run_ok(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(program, args, stdin);
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `program args` and returns its output whatever the exit status (cleanup).
pub fn run_quiet(program: &str, args: &[&str]) -> Output {
    run(program, args, None)
}

/// A namespace; with `restricted`, labelled to enforce the restricted Pod Security
/// Standard, so the worker pods the operator makes prove they comply.
pub async fn create_namespace(client: &Client, name: &str, restricted: bool) {
    let mut labels = BTreeMap::new();
    if restricted {
        labels.insert(
            "pod-security.kubernetes.io/enforce".to_owned(),
            "restricted".to_owned(),
        );
        labels.insert(
            "pod-security.kubernetes.io/enforce-version".to_owned(),
            "latest".to_owned(),
        );
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating namespace {name}: {e}. {}",
                testkit::START_THE_STACK
            )
        });
}

/// Writes a kubeconfig at `path` that reaches the API server of `$KUBECONFIG` (same
/// server and CA) as ServiceAccount `ns/sa`, with a token minted through the TokenRequest
/// API, the way the kubelet mounts one into the operator's pod.
pub async fn service_account_kubeconfig(client: &Client, ns: &str, sa: &str, path: &Path) {
    // No audience: the API server's own (the default). One hour: the test takes minutes.
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}}))
            .expect("a TokenRequest");
    let token = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for ServiceAccount {ns}/{sa}: {e}"))
        .status
        .and_then(|s| s.token)
        .expect("a TokenRequest answer carries a token");

    let admin_path = std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        panic!(
            "KUBECONFIG is not set: the local stack is not running. {}",
            testkit::START_THE_STACK
        )
    });
    let text = std::fs::read_to_string(&admin_path)
        .unwrap_or_else(|e| panic!("reading the kubeconfig {admin_path}: {e}"));
    let admin: Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("parsing the kubeconfig {admin_path}: {e}"));
    let current = admin["current-context"]
        .as_str()
        .expect("the kubeconfig has a current-context");
    let context = admin["contexts"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == current))
        .expect("the current context is listed");
    let cluster_name = context["context"]["cluster"]
        .as_str()
        .expect("the context names a cluster");
    let mut cluster = admin["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == cluster_name))
        .map(|c| c["cluster"].clone())
        .expect("the context's cluster is listed");
    // A CA given as a file is relative to the kubeconfig that names it.
    if let Some(ca) = cluster["certificate-authority"].as_str() {
        let base = Path::new(&admin_path).parent().unwrap_or(Path::new("."));
        cluster["certificate-authority"] = json!(base.join(ca).to_string_lossy());
    }
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{
            "name": sa,
            "context": {"cluster": cluster_name, "user": sa, "namespace": ns},
        }],
        "current-context": sa,
    });
    let yaml = serde_yaml::to_string(&kubeconfig).expect("kubeconfig YAML");
    std::fs::write(path, yaml).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The EventConsumer resource (`eventconsumer.dev/v1alpha1`), read and written untyped, as
/// a user's tool would: the test depends on the API, not on the operator's Rust types.
pub fn consumers(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("eventconsumer.dev", "v1alpha1", "EventConsumer");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "eventconsumers");
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Server-side applies `manifest` (a full EventConsumer) as the user.
pub async fn apply(api: &Api<DynamicObject>, manifest: &Value) {
    let name = manifest["metadata"]["name"]
        .as_str()
        .expect("a manifest has a name");
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("applying EventConsumer {name}: {e}\n{manifest:#}"));
}

/// `(status, reason, message)` of condition `type_` in an object's `status.conditions`.
pub fn condition(object: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("status"), s("reason"), s("message"))
        })
}

/// The pods of `deployment` that run and are Ready on the kwok node, by name.
pub async fn ready_pods(client: &Client, ns: &str, deployment: &Deployment) -> Vec<Pod> {
    let labels = deployment
        .spec
        .selector
        .match_labels
        .as_ref()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&labels))
        .await
        .unwrap_or_else(|e| panic!("listing the pods of {}: {e}", deployment.name_any()));
    let mut ready: Vec<Pod> = pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(NODE)
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    ready.sort_by_key(ResourceExt::name_any);
    ready
}

/// The one container of a worker pod.
pub fn worker_container(pod: &Pod) -> &Container {
    let containers = &pod.spec.as_ref().expect("a pod has a spec").containers;
    assert_eq!(
        containers.len(),
        1,
        "a worker pod has exactly one container: {}",
        pod.name_any()
    );
    &containers[0]
}

/// The environment `container` of `pod` gets, resolved as the kubelet does: plain values
/// as they are, `secretKeyRef` and `configMapKeyRef` read from the API. Returns the
/// variables in order, and the names that came from Secrets.
pub async fn resolve_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
) -> (Vec<(String, String)>, Vec<String>) {
    let ns = pod.namespace().expect("a pod has a namespace");
    assert!(
        container.env_from.as_ref().is_none_or(Vec::is_empty),
        "envFrom is not resolved by this test; the operator does not use it"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut vars = Vec::new();
    let mut from_secrets = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (value, None) => value.clone().unwrap_or_default(),
            (None, Some(source)) => {
                if let Some(sel) = &source.secret_key_ref {
                    let secret = secrets.get(&sel.name).await.unwrap_or_else(|e| {
                        panic!("Secret {ns}/{} of {}: {e}", sel.name, var.name)
                    });
                    from_secrets.push(var.name.clone());
                    let bytes = secret
                        .data
                        .as_ref()
                        .and_then(|d| d.get(&sel.key))
                        .unwrap_or_else(|| {
                            panic!("Secret {}/{} has no key {}", ns, sel.name, sel.key)
                        });
                    String::from_utf8(bytes.0.clone()).expect("a UTF-8 Secret value")
                } else if let Some(sel) = &source.config_map_key_ref {
                    let cm = config_maps
                        .get(&sel.name)
                        .await
                        .unwrap_or_else(|e| panic!("ConfigMap {ns}/{}: {e}", sel.name));
                    cm.data
                        .as_ref()
                        .and_then(|d| d.get(&sel.key))
                        .cloned()
                        .unwrap_or_else(|| {
                            panic!("ConfigMap {}/{} has no key {}", ns, sel.name, sel.key)
                        })
                } else if let Some(field) = &source.field_ref {
                    match field.field_path.as_str() {
                        "metadata.name" => pod.name_any(),
                        "metadata.namespace" => ns.clone(),
                        other => panic!(
                            "fieldRef {other} of {} is not resolved by this test",
                            var.name
                        ),
                    }
                } else {
                    panic!(
                        "{} has a valueFrom this test cannot resolve: {source:?}",
                        var.name
                    )
                }
            }
            (Some(_), Some(_)) => panic!("{} has both value and valueFrom", var.name),
        };
        vars.push((var.name.clone(), value));
    }
    (vars, from_secrets)
}

/// Where this run's logs and files go: `<target>/e2e-runs/<run>/`.
pub fn run_dir(run: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test executable lives in <target>/<profile>/deps/");
    target.join("e2e-runs").join(run)
}

/// Applies the chart's CRDs, as `make deploy` does before `helm upgrade --install`: Helm
/// creates CRDs only when they are missing and never updates them, so a CRD left by an older
/// build would otherwise decide the outcome.
pub fn apply_chart_crds(chart: &std::path::Path) {
    let crds = chart.join("crds");
    run_ok(
        "kubectl",
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=eventconsumer-e2e",
            "-f",
            crds.to_str().expect("a UTF-8 path"),
        ],
        None,
    );
}
