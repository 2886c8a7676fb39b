use super::*;
use crate::config::validate;
use crate::crd::{SaslMechanism, SaslSecretRef, SaslSpec};
use crate::metrics::Metrics;
use crate::status::{READY, condition};
use crate::test_fixtures::{order_consumer, settings};
use http::{Request, Response};
use kube::client::Body;
use serde_json::Value;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn test_context() -> (Arc<Context>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Context::new(client, settings(), Metrics::default(), "test".to_owned());
    (Arc::new(ctx), handle)
}

/// Waits for the next request, checks its method and path, and returns its JSON body.
async fn expect(
    handle: &mut Handle,
    method: &str,
    path: &str,
) -> (Value, tower_test::mock::SendResponse<Response<Body>>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
        .expect("the client is gone");
    assert_eq!(request.method().as_str(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let query = request.uri().query().unwrap_or_default().to_owned();
    if method == "PATCH" {
        assert!(
            query.contains("fieldManager=eventconsumer-operator") && query.contains("force=true"),
            "writes are server-side applies by our field manager: {query}"
        );
    }
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, send)
}

/// The Degraded condition of a status patch.
fn degraded_condition(patch: &Value) -> Value {
    patch["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Degraded")
        .cloned()
        .expect("a Degraded condition")
}

fn json_response(value: &impl serde::Serialize) -> Response<Body> {
    Response::builder()
        .body(Body::from(serde_json::to_vec(value).unwrap()))
        .unwrap()
}

/// An API server failure answer: a `Status` with `code`, `reason` and `message`.
fn api_error(code: u16, reason: &str, message: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(
            serde_json::to_vec(&json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": reason, "code": code, "message": message
            }))
            .unwrap(),
        ))
        .unwrap()
}

fn not_found() -> Response<Body> {
    api_error(404, "NotFound", "not found")
}

const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/shop/deployments/inventory";
const STATUS_PATH: &str =
    "/apis/eventconsumer.dev/v1alpha1/namespaces/shop/eventconsumers/inventory/status";

fn desired_deployment() -> Deployment {
    let valid = validate(&order_consumer(), &SecretFacts::default()).unwrap();
    let mut d = deployment::build(&valid, &settings());
    drift::stamp(&mut d);
    d
}

#[tokio::test]
async fn a_new_consumer_gets_its_deployment_applied_and_a_status() {
    let (ctx, mut handle) = test_context();
    let ec = Arc::new(order_consumer());
    let server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, "GET", DEPLOYMENT_PATH).await;
        send.send_response(not_found());
        let (applied, send) = expect(&mut handle, "PATCH", DEPLOYMENT_PATH).await;
        assert_eq!(applied["kind"], "Deployment");
        assert_eq!(
            applied["metadata"]["ownerReferences"][0]["kind"],
            "EventConsumer"
        );
        send.send_response(json_response(&applied));
        let (patch, send) = expect(&mut handle, "PATCH", STATUS_PATH).await;
        assert_eq!(patch["kind"], "EventConsumer");
        assert_eq!(patch["status"]["observedGeneration"], 1);
        let types: Vec<_> = patch["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(types, ["Ready", "Progressing", "Degraded"]);
        send.send_response(json_response(&order_consumer()));
        handle
    });
    let action = reconcile(ec, ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(RESYNC));
    let mut handle = server.await.unwrap();
    assert_nothing_more(&mut handle).await;
    assert_eq!(ctx.metrics.reconciles.get(), 1);
}

#[tokio::test]
async fn a_converged_consumer_is_reconciled_without_any_write() {
    let (ctx, mut handle) = test_context();
    let mut live = desired_deployment();
    live.metadata.resource_version = Some("7".into());
    live.metadata.generation = Some(1);
    live.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(1),
        ready_replicas: Some(1),
        updated_replicas: Some(1),
        available_replicas: Some(1),
        ..Default::default()
    });
    let mut ec = order_consumer();
    ec.status = Some(status::compute(
        &ec,
        Observation::Deployed {
            deployment: &live,
            paused: false,
            refused: None,
        },
        Timestamp::now(),
    ));
    assert_eq!(
        ec.status
            .as_ref()
            .and_then(|s| condition(s, READY))
            .map(|c| c.status.as_str()),
        Some("True")
    );
    let server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, "GET", DEPLOYMENT_PATH).await;
        send.send_response(json_response(&live));
        handle
    });
    reconcile(Arc::new(ec), ctx).await.unwrap();
    let mut handle = server.await.unwrap();
    assert_nothing_more(&mut handle).await;
}

#[test]
fn a_secret_change_maps_to_the_consumers_of_its_namespace_that_name_it() {
    let sasl = |name: &str| SaslSpec {
        mechanism: SaslMechanism::Plain,
        secret_ref: SaslSecretRef {
            name: name.into(),
            username_key: "username".into(),
            password_key: "password".into(),
        },
    };
    let mut naming = order_consumer();
    naming.spec.kafka.sasl = Some(sasl("kafka-creds"));
    let mut other_secret = order_consumer();
    other_secret.metadata.name = Some("other-secret".into());
    other_secret.spec.kafka.sasl = Some(sasl("other-creds"));
    let mut other_namespace = order_consumer();
    other_namespace.metadata.namespace = Some("elsewhere".into());
    other_namespace.spec.kafka.sasl = Some(sasl("kafka-creds"));
    let without = order_consumer();
    let consumers: Vec<Arc<EventConsumer>> = [naming, other_secret, other_namespace, without]
        .into_iter()
        .map(Arc::new)
        .collect();
    let secret = |namespace: &str, name: &str| {
        let mut secret = Secret::default();
        secret.metadata.namespace = Some(namespace.into());
        secret.metadata.name = Some(name.into());
        secret
    };

    assert_eq!(
        consumers_naming(&consumers, &secret("shop", "kafka-creds")),
        vec![ObjectRef::new("inventory").within("shop")]
    );
    assert!(consumers_naming(&consumers, &secret("shop", "unrelated")).is_empty());
    assert_eq!(
        consumers_naming(&consumers, &secret("elsewhere", "kafka-creds")),
        vec![ObjectRef::new("inventory").within("elsewhere")]
    );
}

#[tokio::test]
async fn a_missing_secret_degrades_with_a_warning_and_a_bounded_recheck() {
    let (ctx, mut handle) = test_context();
    let mut ec = order_consumer();
    ec.spec.kafka.sasl = Some(SaslSpec {
        mechanism: SaslMechanism::Plain,
        secret_ref: SaslSecretRef {
            name: "kafka-creds".into(),
            username_key: "username".into(),
            password_key: "password".into(),
        },
    });
    let server = tokio::spawn(async move {
        let (_, send) = expect(
            &mut handle,
            "GET",
            "/api/v1/namespaces/shop/secrets/kafka-creds",
        )
        .await;
        send.send_response(not_found());
        let (_, send) = expect(&mut handle, "GET", DEPLOYMENT_PATH).await;
        send.send_response(not_found());
        let (event, send) = expect(
            &mut handle,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/shop/events",
        )
        .await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "SecretNotFound");
        assert!(event["note"].as_str().unwrap().contains("kafka-creds"));
        send.send_response(json_response(&event));
        let (patch, send) = expect(&mut handle, "PATCH", STATUS_PATH).await;
        let degraded = degraded_condition(&patch);
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "SecretNotFound");
        assert!(
            degraded["message"]
                .as_str()
                .unwrap()
                .starts_with("spec.kafka.sasl.secretRef.name: Secret \"kafka-creds\" not found")
        );
        send.send_response(json_response(&order_consumer()));
        handle
    });
    let action = reconcile(Arc::new(ec), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(RECHECK_EXTERNAL));
    let mut handle = server.await.unwrap();
    assert_nothing_more(&mut handle).await;
    assert_eq!(ctx.metrics.errors_with_reason("SecretNotFound"), 1);
}

#[tokio::test]
async fn an_api_failure_is_reported_and_an_error_with_a_metric_and_a_growing_backoff() {
    let (ctx, mut handle) = test_context();
    let ec = Arc::new(order_consumer());
    let server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, "GET", DEPLOYMENT_PATH).await;
        send.send_response(not_found());
        let (_, send) = expect(&mut handle, "PATCH", DEPLOYMENT_PATH).await;
        send.send_response(api_error(500, "InternalError", "etcd is down"));
        // Reported even though it is retried: a lasting 500 must not be silent.
        let (event, send) = expect(
            &mut handle,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/shop/events",
        )
        .await;
        assert_eq!(event["reason"], "DeploymentWriteFailed");
        send.send_response(json_response(&event));
        let (patch, send) = expect(&mut handle, "PATCH", STATUS_PATH).await;
        let degraded = degraded_condition(&patch);
        assert_eq!(degraded["reason"], "DeploymentWriteFailed");
        assert!(
            degraded["message"]
                .as_str()
                .unwrap()
                .contains("etcd is down")
        );
        send.send_response(json_response(&order_consumer()));
        handle
    });
    let error = reconcile(ec.clone(), ctx.clone()).await.unwrap_err();
    server.await.unwrap();
    assert_eq!(error.metric_label(), "ApplyDeployment");
    assert_eq!(ctx.metrics.errors_with_reason("ApplyDeployment"), 1);
    assert_eq!(
        error_policy(ec.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(2))
    );
    assert_eq!(
        error_policy(ec, &error, ctx),
        Action::requeue(Duration::from_secs(4))
    );
}

#[tokio::test]
async fn a_deployment_the_api_server_refuses_degrades_the_consumer_with_a_warning() {
    let (ctx, mut handle) = test_context();
    let ec = Arc::new(order_consumer());
    let server = tokio::spawn(async move {
        let (_, send) = expect(&mut handle, "GET", DEPLOYMENT_PATH).await;
        send.send_response(not_found());
        let (_, send) = expect(&mut handle, "PATCH", DEPLOYMENT_PATH).await;
        send.send_response(api_error(
            422,
            "Invalid",
            "Deployment.apps \"inventory\" is invalid: metadata.labels: Invalid value: \"x\": must be no more than 63 characters",
        ));
        let (event, send) = expect(
            &mut handle,
            "POST",
            "/apis/events.k8s.io/v1/namespaces/shop/events",
        )
        .await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "DeploymentInvalid");
        send.send_response(json_response(&event));
        let (patch, send) = expect(&mut handle, "PATCH", STATUS_PATH).await;
        let degraded = degraded_condition(&patch);
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "DeploymentInvalid");
        let message = degraded["message"].as_str().unwrap();
        assert!(
            message.contains("422 Invalid") && message.contains("metadata.labels"),
            "{message}"
        );
        send.send_response(json_response(&order_consumer()));
        handle
    });
    let action = reconcile(ec, ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(RECHECK_EXTERNAL));
    let mut handle = server.await.unwrap();
    assert_nothing_more(&mut handle).await;
    assert_eq!(ctx.metrics.errors_with_reason("DeploymentInvalid"), 1);
}

#[tokio::test]
async fn only_refusals_a_retry_cannot_fix_degrade_the_consumer_without_a_retry() {
    let (ctx, _handle) = test_context();
    let api = |code: u16, reason: &str, message: &str| {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.to_owned(),
            message: message.to_owned(),
            ..Default::default()
        }))
    };
    // The reason of a refusal that is rechecked later; `None` for a failure retried with
    // backoff (reported as DeploymentWriteFailed) or a transport error.
    let reason = |e: kube::Error| match write_failed(&ctx, e, Error::ApplyDeployment, None) {
        Ok(Outcome::Blocked {
            reason,
            then: Ok(_),
            ..
        }) => Some(reason),
        Ok(Outcome::Blocked {
            reason,
            then: Err(_),
            ..
        }) => {
            assert_eq!(reason, DEPLOYMENT_WRITE_FAILED);
            None
        }
        _ => None,
    };
    assert_eq!(
        reason(api(422, "Invalid", "bad")),
        Some("DeploymentInvalid")
    );
    assert_eq!(
        reason(api(
            403,
            "Forbidden",
            "exceeded quota: q, requested: count/deployments.apps=1"
        )),
        Some("QuotaExceeded")
    );
    assert_eq!(
        reason(api(403, "Forbidden", "denied by policy")),
        Some("DeploymentForbidden")
    );
    assert_eq!(
        reason(api(409, "Conflict", "x")),
        Some("DeploymentApplyConflict")
    );
    assert_eq!(
        reason(api(400, "BadRequest", "x")),
        Some("DeploymentRefused")
    );
    assert_eq!(reason(api(429, "TooManyRequests", "x")), None);
    assert_eq!(reason(api(500, "InternalError", "x")), None);
    assert_eq!(reason(api(503, "ServiceUnavailable", "x")), None);
}

#[tokio::test]
async fn a_consumer_being_deleted_is_left_to_the_garbage_collector() {
    let (ctx, mut handle) = test_context();
    let mut ec = order_consumer();
    ec.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Timestamp::now(),
    ));
    let action = reconcile(Arc::new(ec), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_nothing_more(&mut handle).await;
}

#[tokio::test]
async fn a_missing_crd_is_reported_in_one_line_saying_how_to_install_it() {
    let (ctx, mut handle) = test_context();
    let server = tokio::spawn(async move {
        let (_, send) = expect(
            &mut handle,
            "GET",
            "/apis/eventconsumer.dev/v1alpha1/eventconsumers",
        )
        .await;
        send.send_response(not_found());
    });
    let error = check_crd_installed(&ctx.client, &Scope::AllNamespaces)
        .await
        .unwrap_err();
    server.await.unwrap();
    let line = error.to_string();
    assert!(matches!(error, CrdCheckError::NotInstalled));
    assert!(!line.contains('\n'));
    assert!(
        line.contains("kubectl apply -f crds/eventconsumer.yaml"),
        "{line}"
    );
}

async fn assert_nothing_more(handle: &mut Handle) {
    let next = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    if let Ok(Some((request, _))) = next {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

#[test]
fn error_backoff_doubles_and_is_capped() {
    assert_eq!(backoff_delay(1), Duration::from_secs(2));
    assert_eq!(backoff_delay(2), Duration::from_secs(4));
    assert_eq!(backoff_delay(5), Duration::from_secs(32));
    assert_eq!(backoff_delay(100), ERROR_BACKOFF_MAX);
}

#[test]
fn a_reported_refusal_survives_a_restart_until_the_observer_measures_again() {
    let mut ec = order_consumer();
    let live = Deployment::default();
    let message = "reading metadata of topic \"t\": the brokers refused this client";
    ec.status = Some(status::compute(
        &ec,
        Observation::Deployed {
            deployment: &live,
            paused: false,
            refused: Some((status::KAFKA_AUTHORIZATION_FAILED, message)),
        },
        Timestamp::now(),
    ));
    let old = ec.status.as_ref();
    assert_eq!(
        kafka_refusal(Refusal::Unknown, old),
        Some((status::KAFKA_AUTHORIZATION_FAILED, message.to_owned())),
        "not measured yet: the reported refusal stays"
    );
    assert_eq!(
        kafka_refusal(Refusal::Clear, old),
        None,
        "measured: cleared"
    );
    assert_eq!(
        kafka_refusal(
            Refusal::Refused(
                crate::lag::AccessProblem::Authentication,
                "refused".to_owned()
            ),
            old
        ),
        Some((status::KAFKA_AUTHENTICATION_FAILED, "refused".to_owned()))
    );
    assert_eq!(kafka_refusal(Refusal::Unknown, None), None);
}
