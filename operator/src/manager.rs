//! Wires the pieces of a running operator together: the reconcile [`Context`], the controller
//! and the [`redrive`] runner beside it, and (optionally) leader election around both.
//! `main.rs` and the integration tests both start the operator through [`run`].

use std::sync::Arc;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::context::{Context, Scope};
use crate::leader::{Elector, Timings};
use crate::metrics::Metrics;
use crate::reconcile::run_controller;
use crate::redrive;

/// How one operator replica runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub scope: Scope,
    pub settings: Settings,
    /// This replica's name in the Lease and in the Events it publishes.
    pub identity: String,
    /// `None`: reconcile without electing a leader (a single replica only).
    pub leader_election: Option<LeaderElection>,
    /// Watch the metadata of Secrets, so a rotation reaches the pods at once (see
    /// [`run_controller`]).
    pub watch_secrets: bool,
}

/// Where the leader Lease lives.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    pub timings: Timings,
}

/// Runs the operator until `shutdown` is cancelled.
pub async fn run(client: Client, options: Options, metrics: Metrics, shutdown: CancellationToken) {
    let Options {
        scope,
        settings,
        identity,
        leader_election,
        watch_secrets,
    } = options;
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        metrics.clone(),
        identity.clone(),
    ));
    match leader_election {
        None => {
            metrics.leader.set(1);
            futures::join!(
                run_controller(
                    ctx,
                    scope.clone(),
                    watch_secrets,
                    shutdown.clone().cancelled_owned()
                ),
                redrive::run(client, scope, identity, shutdown.cancelled_owned()),
            );
            metrics.leader.set(0);
        }
        Some(election) => {
            let leases: Api<Lease> = Api::namespaced(client.clone(), &election.lease_namespace);
            let elector = Elector::new(leases, &election.lease_name, &identity, election.timings);
            elector
                .run(
                    move |leading: CancellationToken| {
                        let controller = run_controller(
                            ctx.clone(),
                            scope.clone(),
                            watch_secrets,
                            leading.clone().cancelled_owned(),
                        );
                        let redrives = redrive::run(
                            client.clone(),
                            scope.clone(),
                            identity.clone(),
                            leading.cancelled_owned(),
                        );
                        async move {
                            futures::join!(controller, redrives);
                        }
                    },
                    metrics,
                    shutdown,
                )
                .await;
        }
    }
}
