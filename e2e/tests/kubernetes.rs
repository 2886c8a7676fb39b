//! Smoke tests proving the local control plane is real: the API server's readiness, the
//! kwok node, Deployment → ReplicaSet → Pod through the controllers and the scheduler,
//! ServiceAccount admission, and the garbage collector.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use serde_json::json;
use testkit::{eventually, kube_client, unique_name};

/// Generous for a busy two-core machine; each step takes about a second here.
const TIMEOUT: Duration = Duration::from_secs(60);
const NODE: &str = "kwok-node-0";

#[tokio::test]
async fn the_api_server_says_readyz_is_ok() {
    let client = kube_client().await;
    let req = http::Request::get("/readyz")
        .body(Vec::new())
        .expect("request");
    let body = client.request_text(req).await.expect("GET /readyz");
    assert_eq!(body, "ok");
}

#[tokio::test]
async fn the_kwok_node_is_ready() {
    let nodes: Api<Node> = Api::all(kube_client().await);
    let node = nodes.get(NODE).await.expect("the kwok node exists");
    assert!(
        is_ready(node.status.and_then(|s| s.conditions)),
        "{NODE} is not Ready"
    );
}

#[tokio::test]
async fn a_deployment_pod_becomes_ready_on_the_kwok_node() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "e2e-deploy").await;
    let name = unique_name("web");
    create_deployment(&client, &ns.name, &name).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let lp = ListParams::default().labels(&format!("app={name}"));
    let pod = eventually(
        "the Deployment's pod to be Running and Ready on the kwok node",
        TIMEOUT,
        || async {
            let list = pods.list(&lp).await.ok()?;
            list.items.into_iter().find(|p| {
                let status = p.status.clone().unwrap_or_default();
                status.phase.as_deref() == Some("Running") && is_ready(status.conditions)
            })
        },
    )
    .await;
    let spec = pod.spec.expect("pod spec");
    assert_eq!(
        spec.node_name.as_deref(),
        Some(NODE),
        "bound by the scheduler"
    );
    // The ServiceAccount admission plugin gave the pod its account and token volume.
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let volumes = spec.volumes.unwrap_or_default();
    assert!(
        volumes
            .iter()
            .any(|v| v.name.starts_with("kube-api-access-")),
        "no service-account token volume in {volumes:?}"
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        "the Deployment to report 1 ready replica",
        TIMEOUT,
        || async {
            let d = deployments.get(&name).await.ok()?;
            (d.status?.ready_replicas == Some(1)).then_some(())
        },
    )
    .await;
    ns.delete().await;
}

#[tokio::test]
async fn deleting_a_deployment_lets_the_garbage_collector_remove_its_replicaset() {
    let client = kube_client().await;
    let ns = TestNamespace::create(&client, "e2e-gc").await;
    let name = unique_name("gc");
    create_deployment(&client, &ns.name, &name).await;

    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    let lp = ListParams::default().labels(&format!("app={name}"));
    let rs_name = eventually("the Deployment's ReplicaSet", TIMEOUT, || async {
        let list = replicasets.list(&lp).await.ok()?;
        let rs = list.items.into_iter().next()?;
        let owned = rs
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Deployment" && o.name == name);
        owned.then(|| rs.metadata.name.unwrap_or_default())
    })
    .await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    deployments
        .delete(&name, &DeleteParams::background())
        .await
        .expect("delete the Deployment");
    eventually(
        "the garbage collector to delete the orphaned ReplicaSet",
        TIMEOUT,
        || async {
            match replicasets.get_opt(&rs_name).await {
                Ok(None) => Some(()),
                _ => None,
            }
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    eventually("the ReplicaSet's pods to be gone", TIMEOUT, || async {
        pods.list(&lp).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    ns.delete().await;
}

fn is_ready(conditions: Option<Vec<impl ConditionLike>>) -> bool {
    conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.kind() == "Ready" && c.status() == "True")
}

/// Node and Pod conditions are different types with the same two fields read here.
trait ConditionLike {
    fn kind(&self) -> &str;
    fn status(&self) -> &str;
}

impl ConditionLike for k8s_openapi::api::core::v1::NodeCondition {
    fn kind(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
}

impl ConditionLike for k8s_openapi::api::core::v1::PodCondition {
    fn kind(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
}

async fn create_deployment(client: &kube::Client, ns: &str, name: &str) {
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                // kwok plays the kubelet: the image is never pulled.
                "spec": { "containers": [{ "name": "app", "image": "eventconsumer/fake:1" }] }
            }
        }
    }))
    .expect("deployment manifest");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create the Deployment");
}

/// A namespace of one test, deleted when the test passes (a failed test leaves it for
/// inspection; its name is unique, so it never disturbs a later run).
struct TestNamespace {
    api: Api<Namespace>,
    name: String,
}

impl TestNamespace {
    async fn create(client: &kube::Client, prefix: &str) -> Self {
        let api: Api<Namespace> = Api::all(client.clone());
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    "eventconsumer.dev/test".to_owned(),
                    "e2e".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create the test namespace");
        Self { api, name }
    }

    async fn delete(self) {
        self.api
            .delete(&self.name, &DeleteParams::default())
            .await
            .expect("delete the test namespace");
    }
}
