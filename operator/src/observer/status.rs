//! Writing the observer's part of the status (lag, dead letters, autoscaling, the retry-topics
//! condition) under its own field manager, only when it changed or went stale.

use super::*;

impl Observer {
    /// Decides, updates metrics and memory, and writes the status part when it changed.
    pub(super) async fn apply<H: Host>(&self, ctx: &H, job: Job, measured: Measured) {
        let now = Timestamp::now();
        let now = now.round(Unit::Second).unwrap_or(now);
        let old = job.ec.status.clone().unwrap_or_default();
        let ready_now = old.ready_replicas > 0;
        let (namespace, name) = (job.valid.namespace.clone(), job.valid.name.clone());

        let mut new = ObserverPart::of(&old);
        let mut desired_now = None;
        let (last_write, behind) = if let Ok(mut targets) = self.targets.lock()
            && let Some(target) = targets.get_mut(&job.key)
        {
            match (&measured.lag, measured.refused) {
                (Some(Err(error)), Some(problem)) => {
                    target.refused = Refusal::Refused(problem, error.clone());
                }
                (Some(_), _) => target.refused = Refusal::Clear,
                (None, _) => {}
            }
            // `Degraded` (the reconciler's) still tells another refusal than this one: write
            // (a fresh `measuredAt` at least), as the write is what makes the reconciler look.
            let reported = conditions::condition(&old, conditions::DEGRADED)
                .filter(|c| c.status == "True")
                .map(|c| c.reason.as_str())
                .filter(|r| conditions::KAFKA_REFUSALS.contains(r));
            let behind = target.refused != Refusal::Unknown && reported != target.refused.reason();
            match &measured.lag {
                Some(Ok(partitions)) => {
                    new.lag = Some(lag_status(partitions, now));
                    match &job.valid.autoscaling {
                        Some(config) => {
                            let current = target
                                .desired
                                .or(old.autoscaling.as_ref().map(|a| a.desired_replicas))
                                .unwrap_or(old.replicas);
                            let decision = autoscale::decide(&autoscale::Input {
                                config,
                                paused: job.valid.paused,
                                partitions,
                                previous: target.previous.as_ref(),
                                workers_ran: target.workers_were_ready && ready_now,
                                current,
                                needed_since: target.needed_since,
                                moved_at: target.moved_at,
                                now,
                            });
                            if decision.scaled {
                                info!(%namespace, %name, from = current, to = decision.desired, reason = %decision.reason, "autoscaling");
                            }
                            let last_scale_time = if decision.scaled {
                                Some(now.to_string())
                            } else {
                                old.autoscaling
                                    .as_ref()
                                    .and_then(|a| a.last_scale_time.clone())
                            };
                            target.desired = Some(decision.desired);
                            target.needed_since = Some(decision.needed_since);
                            target.moved_at = Some(decision.moved_at);
                            new.autoscaling = Some(AutoscalingStatus {
                                desired_replicas: decision.desired,
                                last_scale_time,
                                scaling_lag: decision.scaling_lag,
                                stuck_partitions: decision.stuck,
                                reason: Some(decision.reason),
                            });
                            desired_now = Some(decision.desired);
                        }
                        None => {
                            target.desired = None;
                            target.needed_since = None;
                            target.moved_at = None;
                            new.autoscaling = None;
                        }
                    }
                    target.previous = Some(
                        partitions
                            .iter()
                            .map(|(p, r)| (p.clone(), r.committed))
                            .collect(),
                    );
                    target.workers_were_ready = ready_now;
                }
                Some(Err(error)) => {
                    let mut lag = new.lag.take().unwrap_or_default();
                    lag.error = Some(error.clone());
                    new.lag = Some(lag);
                    if job.valid.autoscaling.is_none() {
                        new.autoscaling = None;
                    }
                }
                None => {}
            }
            (target.last_write, behind)
        } else {
            return;
        };
        match measured.dead_letters {
            Some(Ok(count)) => {
                new.dead_letters = Some(count);
                new.dead_letters_error = None;
            }
            Some(Err(error)) => new.dead_letters_error = Some(error),
            None => {}
        }
        let old_retry = new.retry.clone();
        match &measured.retry {
            Some(result) => {
                new.retry = Some(retry_condition(result, old_retry.as_ref(), &job.ec, now))
            }
            None if job.valid.delivery.retry_topics.is_empty() => new.retry = None,
            None => {}
        }

        ctx.metrics().observe_consumer(
            &namespace,
            &name,
            new.lag.as_ref().and_then(|l| l.total),
            new.lag
                .as_ref()
                .and_then(|l| l.max_partition.as_ref())
                .map_or(0, |p| p.lag),
            new.dead_letters,
            desired_now.or(new.autoscaling.as_ref().map(|a| a.desired_replicas)),
        );

        if let (Some(Err(message)), true) = (
            &measured.retry,
            newly_failed(old_retry.as_ref(), new.retry.as_ref()),
        ) {
            warn!(%namespace, %name, %message, "retry topic creation failed");
            ctx.publish_warning(&job.ec, RETRY_TOPIC_CREATE_FAILED, message.clone())
                .await;
        }

        let stale = behind || last_write.is_none_or(|at| at.elapsed() >= REFRESH);
        if !new.same_as(&ObserverPart::of(&old), stale) {
            match write(ctx, &job.ec, &new).await {
                Ok(()) => {
                    if let Ok(mut targets) = self.targets.lock()
                        && let Some(target) = targets.get_mut(&job.key)
                    {
                        target.last_write = Some(Instant::now());
                    }
                }
                Err(error) => debug!(%namespace, %name, %error, "writing the lag status failed"),
            }
        }
    }
}

/// The part of the status the observer owns.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct ObserverPart {
    pub(super) lag: Option<LagStatus>,
    pub(super) dead_letters: Option<i64>,
    pub(super) dead_letters_error: Option<String>,
    pub(super) autoscaling: Option<AutoscalingStatus>,
    pub(super) retry: Option<Condition>,
}

impl ObserverPart {
    pub(super) fn of(status: &EventConsumerStatus) -> Self {
        Self {
            lag: status.lag.clone(),
            dead_letters: status.dead_letters,
            dead_letters_error: status.dead_letters_error.clone(),
            autoscaling: status.autoscaling.clone(),
            retry: status
                .conditions
                .iter()
                .find(|c| c.type_ == RETRY_TOPICS_READY)
                .cloned(),
        }
    }

    /// Equal, ignoring `lag.measuredAt` unless the last write is `stale`.
    pub(super) fn same_as(&self, other: &Self, stale: bool) -> bool {
        if stale {
            return self == other;
        }
        let strip = |part: &Self| {
            let mut part = part.clone();
            if let Some(lag) = part.lag.as_mut() {
                lag.measured_at = None;
            }
            part
        };
        strip(self) == strip(other)
    }
}

pub(super) async fn write<H: Host>(
    ctx: &H,
    ec: &EventConsumer,
    part: &ObserverPart,
) -> Result<(), kube::Error> {
    let (Some(namespace), name) = (ec.namespace(), ec.name_any()) else {
        return Ok(());
    };
    let mut status = serde_json::Map::new();
    if let Some(lag) = &part.lag {
        status.insert("lag".into(), json!(lag));
    }
    if let Some(dead_letters) = part.dead_letters {
        status.insert("deadLetters".into(), json!(dead_letters));
    }
    if let Some(error) = &part.dead_letters_error {
        status.insert("deadLettersError".into(), json!(error));
    }
    if let Some(autoscaling) = &part.autoscaling {
        status.insert("autoscaling".into(), json!(autoscaling));
    }
    if let Some(retry) = &part.retry {
        status.insert("conditions".into(), json!([retry]));
    }
    let patch = json!({
        "apiVersion": EventConsumer::api_version(&()),
        "kind": EventConsumer::kind(&()),
        "status": status,
    });
    let api: Api<EventConsumer> = Api::namespaced(ctx.client().clone(), &namespace);
    api.patch_status(
        &name,
        &PatchParams::apply(OBSERVER_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}
