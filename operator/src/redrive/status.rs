//! Writing a redrive's status: merge patches of the status subresource guarded by the
//! redrive's uid (so a deleted and re-created redrive of the same name is never written
//! with the old one's progress), and its conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{Timestamp, Unit};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::resource::{DeadLetterRedrive, DeadLetterRedriveStatus};

/// Condition type: True while the redrive cannot make progress (reason and message say why).
pub const BLOCKED: &str = "Blocked";
/// Condition type: True once the redrive succeeded.
pub const COMPLETE: &str = "Complete";

/// Whether a status write reached the redrive.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Done,
    /// The redrive was deleted (or replaced by another of the same name): stop.
    Gone,
}

/// Writes the status of one redrive.
#[derive(Clone)]
pub struct StatusWriter {
    api: Api<DeadLetterRedrive>,
    name: String,
    uid: String,
    runtime: tokio::runtime::Handle,
}

impl StatusWriter {
    pub fn new(api: Api<DeadLetterRedrive>, name: &str, uid: &str) -> Self {
        Self {
            api,
            name: name.to_owned(),
            uid: uid.to_owned(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Name of the redrive.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes `status`, from async code.
    pub async fn write_async(
        &self,
        status: &DeadLetterRedriveStatus,
    ) -> Result<Written, kube::Error> {
        // The uid in the patch is a precondition: the API server refuses the patch with a
        // Conflict when the object of this name has another uid.
        let patch = json!({
            "metadata": { "uid": self.uid },
            "status": status,
        });
        match self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(Written::Done),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Written::Gone),
            Err(e) => Err(e),
        }
    }

    /// Writes `status`, from a blocking thread (not from the runtime's own threads).
    pub fn write(&self, status: &DeadLetterRedriveStatus) -> Result<Written, kube::Error> {
        self.runtime.block_on(self.write_async(status))
    }
}

/// Sets condition `type_`, keeping its transition time when its status does not change.
pub fn set_condition(
    status: &mut DeadLetterRedriveStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
) {
    let value = if value { "True" } else { "False" };
    let now = Timestamp::now();
    let now = Time(now.round(Unit::Second).unwrap_or(now));
    let last_transition_time = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == value)
        .map_or(now, |c| c.last_transition_time.clone());
    status.conditions.retain(|c| c.type_ != type_);
    status.conditions.push(Condition {
        type_: type_.to_owned(),
        status: value.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: None,
        last_transition_time,
    });
    status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_stays() {
        let mut status = DeadLetterRedriveStatus::default();
        set_condition(&mut status, BLOCKED, true, "ConsumerNotFound", "a");
        let first = status.conditions[0].last_transition_time.clone();
        set_condition(&mut status, BLOCKED, true, "KafkaUnavailable", "b");
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].last_transition_time, first);
        assert_eq!(status.conditions[0].reason, "KafkaUnavailable");
        set_condition(&mut status, COMPLETE, true, "Succeeded", "");
        assert_eq!(
            status
                .conditions
                .iter()
                .map(|c| c.type_.as_str())
                .collect::<Vec<_>>(),
            [BLOCKED, COMPLETE]
        );
    }
}
