//! What the reconciler, the observer and the redrive controller share: the [`Context`] of a
//! reconcile, the field manager every write is made with, and the watched [`Scope`]. It imports
//! the observer (whose state it carries, and whose [`Host`] it implements); the observer does not
//! import it.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};
use tracing::warn;

use crate::config::Settings;
use crate::crd::EventConsumer;
use crate::metrics::Metrics;
use crate::observer::{Host, Observer};

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "eventconsumer-operator";

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Lag, dead letters and autoscaling decisions, measured beside the reconciler.
    pub observer: Observer,
    recorder: Recorder,
    /// Consecutive failures per object, for the error backoff.
    pub(crate) failures: Mutex<HashMap<ObjectRef<EventConsumer>, u32>>,
}

impl Context {
    /// `instance` identifies this operator replica in the Events it publishes.
    pub fn new(client: Client, settings: Settings, metrics: Metrics, instance: String) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(instance),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            observer: Observer::default(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes a Warning Event about `ec`, best effort: failing to publish one must not fail
    /// the caller, since the status carries the same message.
    pub async fn publish_warning(&self, ec: &EventConsumer, reason: &str, message: String) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(message),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &ec.object_ref(&())).await {
            warn!(%error, "publishing a Warning Event failed");
        }
    }
}

/// Which namespaces the operator watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    AllNamespaces,
    Namespace(String),
}

impl Scope {
    /// The API of `K` in the watched namespaces.
    pub fn api<K>(&self, client: Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match self {
            Scope::AllNamespaces => Api::all(client),
            Scope::Namespace(ns) => Api::namespaced(client, ns),
        }
    }
}

impl Host for Context {
    fn client(&self) -> &Client {
        &self.client
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn observer(&self) -> &Observer {
        &self.observer
    }

    fn publish_warning(
        &self,
        ec: &EventConsumer,
        reason: &str,
        message: String,
    ) -> impl std::future::Future<Output = ()> + Send {
        Context::publish_warning(self, ec, reason, message)
    }
}
