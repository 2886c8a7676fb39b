//! The handler and its options: exactly the options of the chosen handler, with the output
//! topic resolved from the contract's defaults.

use super::*;

pub(super) fn handler_config(ec: &EventConsumer) -> Result<HandlerConfig, ConfigError> {
    let spec = &ec.spec;
    let forbid = |present: bool, field: &str| {
        if present {
            Err(ConfigError::invalid(
                format!("spec.{field}"),
                format!("only allowed when handler is {field}"),
            ))
        } else {
            Ok(())
        }
    };
    match spec.handler {
        Handler::Order => {
            forbid(spec.analytics.is_some(), "analytics")?;
            forbid(spec.video.is_some(), "video")?;
            let order = spec.order.as_ref().ok_or_else(|| {
                ConfigError::invalid("spec.order", "required when handler is order")
            })?;
            if let Some(url) = &order.sink_url {
                let scheme_ok = ["http://", "https://"]
                    .iter()
                    .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len());
                if !scheme_ok || url.chars().any(char::is_whitespace) {
                    return Err(ConfigError::invalid(
                        "spec.order.sinkUrl",
                        "must be an absolute http:// or https:// URL",
                    ));
                }
            }
            Ok(HandlerConfig::Order {
                action: order.action,
                sink_url: order.sink_url.clone(),
            })
        }
        Handler::Analytics => {
            forbid(spec.order.is_some(), "order")?;
            forbid(spec.video.is_some(), "video")?;
            let window = spec
                .analytics
                .as_ref()
                .map(|a| a.window.clone())
                .unwrap_or_else(|| crate::crd::AnalyticsOptions::default().window);
            positive_duration("spec.analytics.window", &window)?;
            Ok(HandlerConfig::Analytics { window })
        }
        Handler::Video => {
            forbid(spec.order.is_some(), "order")?;
            forbid(spec.analytics.is_some(), "analytics")?;
            let video = spec.video.as_ref().ok_or_else(|| {
                ConfigError::invalid("spec.video", "required when handler is video")
            })?;
            Ok(HandlerConfig::Video { stage: video.stage })
        }
    }
}

/// The output topic the spec sets explicitly, with the field it came from.
pub(super) fn spec_output_topic(ec: &EventConsumer) -> Option<(String, String)> {
    let spec = &ec.spec;
    let (topic, handler) = match spec.handler {
        Handler::Order => (spec.order.as_ref()?.output_topic.as_ref()?, "order"),
        Handler::Analytics => (spec.analytics.as_ref()?.output_topic.as_ref()?, "analytics"),
        Handler::Video => (spec.video.as_ref()?.output_topic.as_ref()?, "video"),
    };
    Some((topic.0.clone(), format!("spec.{handler}.outputTopic")))
}
