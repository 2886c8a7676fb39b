//! The `video` handler: the seed's choreography chain, one stage per consumer group.
//!
//! `transcode` consumes `video.uploaded`, simulates work proportional to the size at a
//! configurable speed (fast by default) and publishes `video.transcoded`, carrying the
//! user id on; `publish` consumes `video.transcoded` and publishes `video.ready` with a
//! thumbnail URL. Both key by video id and wait for the broker's acknowledgement.

use std::time::Duration;

use rdkafka::message::OwnedMessage;

use super::{HandlerError, Outcome, payload};
use crate::events::{self, EventError, VideoReady, VideoTranscoded, VideoUploaded};
use crate::producer::Producer;
use eventconsumer_contract::VideoStage;

/// Where thumbnails are said to live; the demo's fictional CDN.
const THUMBNAIL_BASE: &str = "https://cdn.example.com/thumbnails";
/// Bytes of video per second of playback, to derive a plausible duration (≈ 8 Mbit/s).
const BYTES_PER_PLAYBACK_SECOND: i64 = 1_000_000;
/// Uploads at least this large also get a 4k rendition.
const FOUR_K_THRESHOLD: i64 = 1_000_000_000;

/// The simulated transcoding time of `size_bytes` at `bytes_per_sec`.
pub fn transcode_time(size_bytes: i64, bytes_per_sec: u64) -> Duration {
    let size = u64::try_from(size_bytes).unwrap_or(0);
    Duration::from_secs_f64(size as f64 / bytes_per_sec.max(1) as f64)
}

/// The `video.transcoded` event for an upload.
pub fn transcoded(uploaded: &VideoUploaded) -> VideoTranscoded {
    let mut formats = vec!["720p".to_owned(), "1080p".to_owned()];
    if uploaded.size_bytes >= FOUR_K_THRESHOLD {
        formats.push("4k".to_owned());
    }
    VideoTranscoded {
        video_id: uploaded.video_id.clone(),
        user_id: uploaded.user_id.clone(),
        formats,
        duration_seconds: (uploaded.size_bytes / BYTES_PER_PLAYBACK_SECOND).max(1),
    }
}

/// The `video.ready` event for a transcoded video.
pub fn ready(transcoded: &VideoTranscoded) -> VideoReady {
    VideoReady {
        video_id: transcoded.video_id.clone(),
        user_id: transcoded.user_id.clone(),
        thumbnail_url: format!("{THUMBNAIL_BASE}/{}.jpg", transcoded.video_id),
    }
}

pub struct VideoHandler {
    stage: VideoStage,
    output_topic: String,
    bytes_per_sec: u64,
    producer: Producer,
}

impl VideoHandler {
    pub fn new(
        stage: VideoStage,
        output_topic: &str,
        bytes_per_sec: u64,
        producer: Producer,
    ) -> VideoHandler {
        VideoHandler {
            stage,
            output_topic: output_topic.to_owned(),
            bytes_per_sec,
            producer,
        }
    }

    pub async fn handle(&self, msg: &OwnedMessage) -> Result<Outcome, HandlerError> {
        let bytes = payload(msg)?;
        let encode =
            |e: serde_json::Error| EventError::Decode(format!("cannot encode the output: {e}"));
        let (video_id, body) = match self.stage {
            VideoStage::Transcode => {
                let uploaded: VideoUploaded = events::decode(bytes)?;
                uploaded.validate()?;
                tokio::time::sleep(transcode_time(uploaded.size_bytes, self.bytes_per_sec)).await;
                let out = transcoded(&uploaded);
                (
                    out.video_id.clone(),
                    serde_json::to_vec(&out).map_err(encode)?,
                )
            }
            VideoStage::Publish => {
                let done: VideoTranscoded = events::decode(bytes)?;
                done.validate()?;
                let out = ready(&done);
                (
                    out.video_id.clone(),
                    serde_json::to_vec(&out).map_err(encode)?,
                )
            }
        };
        self.producer
            .send(&self.output_topic, Some(video_id.as_bytes()), &body, None)
            .await?;
        tracing::debug!(%video_id, stage = self.stage.as_str(), "video stage done");
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(size: i64) -> VideoUploaded {
        VideoUploaded {
            video_id: "v-1".into(),
            s3_key: "uploads/v-1.mp4".into(),
            user_id: "u-1".into(),
            size_bytes: size,
        }
    }

    #[test]
    fn transcoding_time_grows_with_size() {
        assert_eq!(transcode_time(2_000_000, 1_000_000), Duration::from_secs(2));
        assert!(transcode_time(100_000_000, 2_000_000_000) < Duration::from_millis(100));
    }

    #[test]
    fn the_chain_carries_the_user_id_to_the_ready_event() {
        let t = transcoded(&upload(50_000_000));
        assert_eq!(t.user_id, "u-1");
        assert_eq!(t.formats, vec!["720p", "1080p"]);
        assert_eq!(t.duration_seconds, 50);
        assert_eq!(t.validate(), Ok(()));
        let r = ready(&t);
        assert_eq!(r.user_id, "u-1");
        assert_eq!(
            r.thumbnail_url,
            "https://cdn.example.com/thumbnails/v-1.jpg"
        );
        assert!(
            transcoded(&upload(2_000_000_000))
                .formats
                .contains(&"4k".to_owned())
        );
    }
}
