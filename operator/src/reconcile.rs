//! The reconciler: for one EventConsumer, read what it references, validate, build the
//! Deployment, apply it when it differs, and record the outcome in status.
//!
//! Writes happen only when something changed: the Deployment is applied (server-side, field
//! manager [`crate::context::FIELD_MANAGER`]) only when [`crate::drift`] finds a difference, the status is
//! patched only when the computed status differs from the current one, and a Warning Event is
//! published only when the spec newly becomes (or stays, differently) unusable. So an operator
//! restart converges without touching unchanged objects.
//!
//! Never silent: whatever admission accepted ends either as its Deployment or as a
//! `Degraded=True` condition (with a Warning Event) saying what to change. That covers what
//! [`crate::config`] refuses, a Deployment of the same name owned by something else, and every
//! refusal of the Deployment by the API server ([`write_failed`]: invalid, forbidden by RBAC or an
//! admission policy, over quota, conflict, a terminating namespace). Only failures a retry of
//! the same request can fix (5xx, 429, transport) stay reconcile errors with backoff.
//!
//! The operator owns the managed Deployment's spec whole. Server-side apply restores every
//! field the operator sets; a field another manager *added* (an env var, a capability, a
//! sidecar) is removed by replacing the spec (see [`deploy`]), with a Warning Event naming it.
//!
//! A change to a Secret a consumer names (created, rotated, deleted) reconciles that consumer at
//! once when the operator watches Secrets ([`run_controller`]'s `watch_secrets`, the default):
//! it watches their metadata only, never caching a value. The new `resourceVersion` lands in the
//! pod template, so the workers roll onto the new credentials.
//!
//! Requeues are bounded: an invalid spec waits for the next spec change; a missing Secret (also
//! when Secrets are not watched) or a refused Deployment is checked again after
//! [`RECHECK_EXTERNAL`]; API errors back off exponentially per object.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{self, SecretFacts};
use crate::context::{Context, FIELD_MANAGER, Scope};
use crate::crd::{CRD_NAME, EventConsumer, EventConsumerStatus};
use crate::deployment::{self, MANAGED_BY};
use crate::drift;
use crate::observer::{Observer, Refusal};
use crate::status::{self, DEGRADED, Observation};

/// Periodic resync of a healthy EventConsumer. Changes to it and to its Deployment trigger a
/// reconcile at once; this only bounds how long a missed watch event could go unnoticed.
const RESYNC: Duration = Duration::from_secs(10 * 60);
/// How soon a spec blocked by another object (a missing Secret, a foreign Deployment) is checked
/// again. Long enough not to load the API server, short enough that creating the Secret takes
/// effect without touching the EventConsumer.
pub const RECHECK_EXTERNAL: Duration = Duration::from_secs(30);
/// First retry after an API error; doubles with each consecutive failure of the same object.
const ERROR_BACKOFF_START: Duration = Duration::from_secs(2);
/// Cap of the per-object error backoff.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);
/// Reason of the Warning Event and condition when a Deployment of the same name belongs to
/// something else.
const DEPLOYMENT_CONFLICT: &str = "DeploymentConflict";
/// Reason of the condition and Warning Event when the API server failed to write the Deployment
/// (5xx, 429): retried with backoff, and reported so a lasting failure is not silent.
const DEPLOYMENT_WRITE_FAILED: &str = "DeploymentWriteFailed";
/// Reason of the Warning Event when fields another manager added to the Deployment were removed.
pub const MANUAL_EDIT_REVERTED: &str = "ManualEditReverted";

/// Failures of a reconcile. Each is retried with backoff by [`error_policy`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the EventConsumer has no namespace")]
    MissingNamespace,
    #[error("reading Secret {name:?}: {source}")]
    ReadSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading the Deployment: {0}")]
    ReadDeployment(#[source] kube::Error),
    #[error("applying the Deployment: {0}")]
    ApplyDeployment(#[source] kube::Error),
    #[error("replacing the Deployment to remove fields other managers added: {0}")]
    ReplaceDeployment(#[source] kube::Error),
    #[error("patching the status: {0}")]
    PatchStatus(#[source] kube::Error),
}

impl Error {
    /// Label of the `reconcile_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::MissingNamespace => "MissingNamespace",
            Error::ReadSecret { .. } => "ReadSecret",
            Error::ReadDeployment(_) => "ReadDeployment",
            Error::ApplyDeployment(_) => "ApplyDeployment",
            Error::ReplaceDeployment(_) => "ReplaceDeployment",
            Error::PatchStatus(_) => "PatchStatus",
        }
    }
}

/// Reconciles one EventConsumer; see the module documentation.
pub async fn reconcile(ec: Arc<EventConsumer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let result = reconcile_inner(&ec, &ctx).await;
    if let Err(error) = &result {
        ctx.metrics.error(error.metric_label());
    } else if let Ok(mut failures) = ctx.failures.lock() {
        failures.remove(&ObjectRef::from_obj(&*ec));
    }
    result
}

async fn reconcile_inner(ec: &EventConsumer, ctx: &Context) -> Result<Action, Error> {
    let namespace = ec.namespace().ok_or(Error::MissingNamespace)?;
    let name = ec.name_any();
    if ec.metadata.deletion_timestamp.is_some() {
        // Being deleted (e.g. `--cascade=foreground`): the garbage collector is removing the
        // Deployment, and applying it again would fight it.
        debug!(%namespace, %name, "being deleted; nothing to do");
        return Ok(Action::await_change());
    }
    debug!(%namespace, %name, generation = ?ec.metadata.generation, "reconciling");

    // Dereference: the Secrets the spec names and the Deployment of the same name.
    let secrets = read_secrets(&ctx.client, &namespace, config::referenced_secrets(ec)).await?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let live = deployments
        .get_opt(&name)
        .await
        .map_err(Error::ReadDeployment)?;

    // Validate → build → apply.
    let outcome = match config::validate(ec, &secrets) {
        Err(error) => invalid(ctx, ec, &error, live),
        Ok(_) if live.as_ref().is_some_and(|d| !controlled_by(d, ec)) => conflict(ctx, &name),
        Ok(valid) => deploy(ctx, ec, valid, live, &deployments).await?,
    };

    // Status.
    let refused = kafka_refusal(ctx.observer.refusal(ec), ec.status.as_ref());
    let status = status::compute(ec, outcome.observation(refused.as_ref()), Timestamp::now());
    if ec.status.as_ref() != Some(&status) {
        let problem = match &outcome {
            Outcome::Blocked {
                reason, message, ..
            } => Some((*reason, message)),
            Outcome::Deployed { .. } => refused.as_ref().map(|(r, m)| (*r, m)),
        };
        if let Some((reason, message)) = problem
            && newly_degraded(ec.status.as_ref(), &status)
        {
            warn!(%namespace, %name, reason, message, "EventConsumer cannot be carried out");
            publish_warning(ctx, ec, reason, message.clone()).await;
        }
        patch_status(&ctx.client, &namespace, &name, &status).await?;
    }
    outcome.result()
}

/// How a reconcile ended, which decides its status and its requeue.
enum Outcome {
    /// The spec cannot be carried out: `reason` and `message` go into the Degraded condition
    /// (and a Warning Event when new); `deployment` is one left from an earlier generation.
    /// `then` is the requeue, or, for a failed write a retry may fix (5xx, 429), the error
    /// [`error_policy`] retries with backoff: reported even then, so a failure that lasts
    /// (some invalid values make the API server answer 500) is never silent.
    Blocked {
        reason: &'static str,
        message: String,
        deployment: Option<Deployment>,
        then: Result<Action, Error>,
    },
    /// The Deployment matches the spec (applied now, or already).
    Deployed {
        deployment: Deployment,
        paused: bool,
    },
}

impl Outcome {
    fn observation<'a>(&'a self, refused: Option<&'a (&'static str, String)>) -> Observation<'a> {
        match self {
            Outcome::Blocked {
                reason,
                message,
                deployment,
                ..
            } => Observation::Blocked {
                reason,
                message,
                deployment: deployment.as_ref(),
            },
            Outcome::Deployed { deployment, paused } => Observation::Deployed {
                deployment,
                paused: *paused,
                refused: refused.map(|(reason, message)| (*reason, message.as_str())),
            },
        }
    }

    /// The requeue, or the error that makes [`error_policy`] decide it.
    fn result(self) -> Result<Action, Error> {
        match self {
            Outcome::Blocked { then, .. } => then,
            Outcome::Deployed { .. } => Ok(Action::requeue(RESYNC)),
        }
    }
}

/// The spec is invalid or names a missing object: stop measuring it, and wait for a spec
/// change (or recheck soon, when another object is missing).
fn invalid(
    ctx: &Context,
    ec: &EventConsumer,
    error: &config::ConfigError,
    live: Option<Deployment>,
) -> Outcome {
    ctx.observer.forget(ec);
    ctx.metrics.error(error.reason());
    let requeue = if error.depends_on_other_objects() {
        Action::requeue(RECHECK_EXTERNAL)
    } else {
        Action::await_change()
    };
    Outcome::Blocked {
        reason: error.reason(),
        message: error.to_string(),
        deployment: live.filter(|d| controlled_by(d, ec)),
        then: Ok(requeue),
    }
}

/// A Deployment of the same name belongs to something else: never take it over.
fn conflict(ctx: &Context, name: &str) -> Outcome {
    ctx.metrics.error(DEPLOYMENT_CONFLICT);
    Outcome::Blocked {
        reason: DEPLOYMENT_CONFLICT,
        message: format!(
            "Deployment {name:?} already exists and is not controlled by this EventConsumer; delete or rename it"
        ),
        deployment: None,
        then: Ok(Action::requeue(RECHECK_EXTERNAL)),
    }
}

/// Builds the Deployment (replicas from the observer), applies it when it drifted, and removes
/// what other managers added to its spec.
///
/// Removal is a full update (PUT) of the spec, not server-side apply: apply never deletes a field
/// another manager owns, and taking ownership first (applying the same value) only shares it.
/// The PUT carries the live metadata, so its resourceVersion makes it fail instead of
/// overwriting a newer edit (the next reconcile then starts again), and it runs after the apply,
/// so it only removes fields: the values the operator sets are already in place and stay owned
/// by its apply.
async fn deploy(
    ctx: &Context,
    ec: &EventConsumer,
    mut valid: config::ValidConsumer,
    live: Option<Deployment>,
    deployments: &Api<Deployment>,
) -> Result<Outcome, Error> {
    let (namespace, name) = (valid.namespace.clone(), ec.name_any());
    valid.replicas = ctx.observer.replicas(ec, &valid, live.as_ref());
    ctx.observer.register(ec, &valid, live.as_ref());
    let mut desired = deployment::build(&valid, &ctx.settings);
    drift::stamp(&mut desired);
    let owned = live.clone().filter(|d| controlled_by(d, ec));
    let mut deployment = if drift::needs_apply(&desired, live.as_ref()) {
        info!(%namespace, %name, "applying Deployment");
        match deployments
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await
        {
            Ok(applied) => applied,
            Err(error) => return write_failed(ctx, error, Error::ApplyDeployment, owned),
        }
    } else {
        debug!(%namespace, %name, "Deployment up to date");
        live.unwrap_or(desired.clone())
    };

    let foreign = drift::foreign_fields(&deployment, FIELD_MANAGER);
    if !foreign.is_empty() {
        let list: Vec<String> = foreign.iter().map(ToString::to_string).collect();
        info!(%namespace, %name, fields = ?list, "removing fields other managers added");
        let replacement = drift::replacement(&desired, &deployment);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        deployment = match deployments.replace(&name, &params, &replacement).await {
            Ok(replaced) => replaced,
            // Someone wrote in between: start over from the newer object.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                return Err(Error::ReplaceDeployment(kube::Error::Api(status)));
            }
            Err(error) => return write_failed(ctx, error, Error::ReplaceDeployment, owned),
        };
        ctx.publish_warning(
            ec,
            MANUAL_EDIT_REVERTED,
            format!(
                "removed from Deployment {name:?} what other managers added to it: {}. The operator owns the Deployment's spec; change the EventConsumer instead (only `kubectl rollout restart` is kept)",
                list.join(", ")
            ),
        )
        .await;
    }
    Ok(Outcome::Deployed {
        deployment,
        paused: valid.paused,
    })
}

/// A failed write of the Deployment as an outcome. An answer of the API server is reported:
/// a refusal a retry of the same request cannot fix (4xx but 429) is rechecked after
/// [`RECHECK_EXTERNAL`]; any other answer (5xx, 429) is retried with backoff as the error
/// `wrap` makes. A transport error, which would fail the status write as well, is only an
/// error.
fn write_failed(
    ctx: &Context,
    error: kube::Error,
    wrap: fn(kube::Error) -> Error,
    deployment: Option<Deployment>,
) -> Result<Outcome, Error> {
    let kube::Error::Api(status) = &error else {
        return Err(wrap(error));
    };
    let refused = |reason, hint| (reason, Some(hint));
    let (reason, hint) = match status.code {
        422 => refused(
            "DeploymentInvalid",
            "change the EventConsumer field the named Deployment field comes from (or the operator's settings)",
        ),
        403 if status.message.contains("exceeded quota") => refused(
            "QuotaExceeded",
            "raise the namespace's ResourceQuota or lower the consumer's needs",
        ),
        403 => refused(
            "DeploymentForbidden",
            "grant the operator's ServiceAccount the access, or change what the admission policy refuses",
        ),
        409 => refused("DeploymentApplyConflict", "fix what the message names"),
        429 => (DEPLOYMENT_WRITE_FAILED, None),
        400..=499 => refused("DeploymentRefused", "fix what the message names"),
        _ => (DEPLOYMENT_WRITE_FAILED, None),
    };
    let answer = format!("({} {}): {}", status.code, status.reason, status.message);
    Ok(match hint {
        Some(hint) => {
            ctx.metrics.error(reason);
            Outcome::Blocked {
                reason,
                message: format!("the API server refused the worker Deployment {answer}; {hint}"),
                deployment,
                then: Ok(Action::requeue(RECHECK_EXTERNAL)),
            }
        }
        None => Outcome::Blocked {
            reason,
            message: format!(
                "writing the worker Deployment failed {answer}; retrying with backoff"
            ),
            deployment,
            then: Err(wrap(error)),
        },
    })
}

/// Requeue delay after a failed reconcile: exponential per object, capped.
pub fn error_policy(ec: Arc<EventConsumer>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx
        .failures
        .lock()
        .map(|mut failures| {
            let count = failures.entry(ObjectRef::from_obj(&*ec)).or_insert(0);
            *count = count.saturating_add(1);
            *count
        })
        .unwrap_or(1);
    let delay = backoff_delay(failures);
    warn!(
        namespace = ec.namespace().unwrap_or_default(),
        name = ec.name_any(),
        error = %error,
        failures,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

fn backoff_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    ERROR_BACKOFF_START
        .saturating_mul(1 << exponent)
        .min(ERROR_BACKOFF_MAX)
}

/// The `Degraded` reason and message for the brokers' refusal of the consumer's Kafka
/// access, from the observer's last measurement; before its first one (after a restart),
/// the refusal the status already reports, so a restart does not clear it unmeasured.
fn kafka_refusal(
    refusal: Refusal,
    old: Option<&EventConsumerStatus>,
) -> Option<(&'static str, String)> {
    match &refusal {
        Refusal::Refused(_, message) => Some((refusal.reason()?, message.clone())),
        Refusal::Clear => None,
        Refusal::Unknown => {
            let degraded = status::condition(old?, DEGRADED)?;
            let reason = status::KAFKA_REFUSALS
                .into_iter()
                .find(|r| *r == degraded.reason)?;
            Some((reason, degraded.message.clone()))
        }
    }
}

fn controlled_by(deployment: &Deployment, ec: &EventConsumer) -> bool {
    let uid = ec.uid();
    deployment
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}

/// The Degraded condition of `new` is True and differs (in status, reason or message) from
/// `old`'s: the user has not been told about this problem yet.
fn newly_degraded(old: Option<&EventConsumerStatus>, new: &EventConsumerStatus) -> bool {
    let parts = |s: &EventConsumerStatus| {
        status::condition(s, DEGRADED)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let new_parts = parts(new);
    new_parts.as_ref().is_some_and(|(s, _, _)| s == "True") && old.and_then(parts) != new_parts
}

async fn read_secrets(
    client: &Client,
    namespace: &str,
    names: BTreeSet<String>,
) -> Result<SecretFacts, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut facts = SecretFacts::default();
    for name in names {
        let secret = api
            .get_opt(&name)
            .await
            .map_err(|source| Error::ReadSecret {
                name: name.clone(),
                source,
            })?;
        if let Some(secret) = secret {
            facts.insert(&secret);
        }
    }
    Ok(facts)
}

async fn publish_warning(ctx: &Context, ec: &EventConsumer, reason: &str, message: String) {
    ctx.publish_warning(ec, reason, message).await;
}

async fn patch_status(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &EventConsumerStatus,
) -> Result<(), Error> {
    let api: Api<EventConsumer> = Api::namespaced(client.clone(), namespace);
    let patch = json!({
        "apiVersion": EventConsumer::api_version(&()),
        "kind": EventConsumer::kind(&()),
        "status": status::reconciler_part(status),
    });
    debug!(%namespace, %name, "patching status");
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::PatchStatus)?;
    Ok(())
}

/// The CRD is not served: the one line to print before exiting.
#[derive(Debug, thiserror::Error)]
pub enum CrdCheckError {
    #[error(
        "the EventConsumer CRD ({CRD_NAME}) is not installed: run `kubectl apply -f crds/eventconsumer.yaml` (or install the helm chart), then start the operator again"
    )]
    NotInstalled,
    #[error("cannot list EventConsumers: {0}")]
    Api(#[source] kube::Error),
}

/// Checks that EventConsumers can be listed in `scope`.
pub async fn check_crd_installed(client: &Client, scope: &Scope) -> Result<(), CrdCheckError> {
    let api: Api<EventConsumer> = scope.api(client.clone());
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(CrdCheckError::NotInstalled),
        Err(error) => Err(CrdCheckError::Api(error)),
    }
}

/// Runs the controller until `shutdown` resolves, then lets running reconciles finish.
/// Reconciles in flight at once. kube's default is unlimited: an operator starting next to
/// 1,000 existing EventConsumers then ran 1,000 reconciles together and its RSS peaked above
/// 100 MiB on buffered API responses. A reconcile is a few API calls, so 32 at once still
/// reconcile hundreds of consumers per second.
const RECONCILE_CONCURRENCY: u16 = 32;

/// `watch_secrets`: also watch the metadata of the Secrets in `scope` (list and watch on Secrets),
/// so a Secret's change reconciles the consumers naming it at once. Off, the operator only
/// `get`s Secrets, and a rotation reaches the pods at the consumer's next reconcile.
pub async fn run_controller(
    ctx: Arc<Context>,
    scope: Scope,
    watch_secrets: bool,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let consumers: Api<EventConsumer> = scope.api(ctx.client.clone());
    let deployments: Api<Deployment> = scope.api(ctx.client.clone());
    info!(?scope, watch_secrets, "controller starting");
    let mut controller = Controller::new(consumers, watcher::Config::default().any_semantic())
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY));
    if watch_secrets {
        let store = controller.store();
        // `PartialObjectMeta`: the API server sends metadata only, so no value is ever read.
        let secrets: Api<PartialObjectMeta<Secret>> = scope.api(ctx.client.clone());
        controller = controller.watches(secrets, watcher::Config::default(), move |secret| {
            consumers_naming(&store.state(), &secret)
        });
    }
    let stop_observer = CancellationToken::new();
    let observer = tokio::spawn(Observer::run(
        ctx.clone(),
        controller.store(),
        ctx.settings.measure_interval,
        stop_observer.clone(),
    ));
    controller
        .owns(
            deployments,
            watcher::Config::default()
                .labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}")),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => {
                    debug!(name = %object.name, namespace = ?object.namespace, "reconciled")
                }
                Err(error) => debug!(%error, "reconcile did not complete"),
            }
        })
        .await;
    stop_observer.cancel();
    if let Err(error) = observer.await {
        warn!(%error, "the lag observer failed");
    }
    info!("controller stopped");
}

/// The consumers (of `consumers`) that name `secret` in their Kafka settings.
pub fn consumers_naming(
    consumers: &[Arc<EventConsumer>],
    secret: &impl Resource,
) -> Vec<ObjectRef<EventConsumer>> {
    let (Some(namespace), Some(name)) = (
        secret.meta().namespace.as_deref(),
        secret.meta().name.as_deref(),
    ) else {
        return Vec::new();
    };
    consumers
        .iter()
        .filter(|ec| ec.namespace().as_deref() == Some(namespace))
        .filter(|ec| config::referenced_secrets(ec).contains(name))
        .map(|ec| ObjectRef::from_obj(ec.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests;
