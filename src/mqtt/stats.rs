//! The `<prefix>/stats` message: the daemon's figures, and each camera's
//! under `cameras`. The top-level fields are those a one-camera daemon
//! always sent, so dashboards and the `fps` / `inference time` entities
//! keep working; with several cameras they sum up the daemon.

use serde_json::{json, Map, Value};

/// One camera's figures at the moment.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraFigures {
    pub name: String,
    /// Frames processed per second.
    pub fps: f64,
    /// The latest frame's inference time (`None` before the first frame).
    pub inference_ms: Option<f64>,
    /// The source delivers frames.
    pub signal: bool,
    /// Inference on (MQTT's detect switch).
    pub detect: bool,
    /// Objects tracked now.
    pub objects: usize,
}

fn tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn on_off(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

/// The stats JSON. Top level: `camera` is the first camera's name, `fps`
/// and `objects` add up every camera, `inference_ms` is the mean of the
/// cameras that have one, `signal` holds when every camera has signal and
/// `detect` is `ON` while any camera infers; with one camera that is
/// exactly that camera's figures.
pub fn stats_json(cameras: &[CameraFigures], uptime_s: u64, cpu_temperature_c: Option<f64>) -> Value {
    let times: Vec<f64> = cameras.iter().filter_map(|c| c.inference_ms).collect();
    let mean = (!times.is_empty()).then(|| tenth(times.iter().sum::<f64>() / times.len() as f64));
    let mut per_camera = Map::new();
    for c in cameras {
        per_camera.insert(
            c.name.clone(),
            json!({
                "fps": tenth(c.fps),
                "inference_ms": c.inference_ms.map(tenth),
                "signal": c.signal,
                "detect": on_off(c.detect),
                "objects": c.objects,
            }),
        );
    }
    let mut v = json!({
        "camera": cameras.first().map(|c| c.name.as_str()),
        "fps": tenth(cameras.iter().map(|c| c.fps).sum()),
        "inference_ms": mean,
        "signal": !cameras.is_empty() && cameras.iter().all(|c| c.signal),
        "detect": on_off(cameras.iter().any(|c| c.detect)),
        "objects": cameras.iter().map(|c| c.objects).sum::<usize>(),
        "uptime_s": uptime_s,
        "version": env!("CARGO_PKG_VERSION"),
        "cameras": per_camera,
    });
    if let Some(t) = cpu_temperature_c {
        v["cpu_temperature_c"] = tenth(t).into();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(
        name: &str,
        fps: f64,
        ms: Option<f64>,
        signal: bool,
        detect: bool,
        objects: usize,
    ) -> CameraFigures {
        CameraFigures {
            name: name.into(),
            fps,
            inference_ms: ms,
            signal,
            detect,
            objects,
        }
    }

    #[test]
    fn one_camera_keeps_the_fields_it_always_had() {
        let v = stats_json(
            &[cam("default", 9.96, Some(41.04), true, true, 2)],
            75,
            Some(51.27),
        );
        assert_eq!(v["camera"], "default");
        assert_eq!(v["fps"], 10.0);
        assert_eq!(v["inference_ms"], 41.0);
        assert_eq!(v["signal"], true);
        assert_eq!(v["detect"], "ON");
        assert_eq!(v["objects"], 2);
        assert_eq!(v["uptime_s"], 75);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["cpu_temperature_c"], 51.3);
        assert_eq!(v["cameras"]["default"]["fps"], 10.0);
        assert_eq!(v["cameras"]["default"]["detect"], "ON");
        // Without a thermal zone the key is left out.
        assert!(stats_json(&[cam("default", 1.0, None, false, false, 0)], 1, None)
            .get("cpu_temperature_c")
            .is_none());
    }

    #[test]
    fn several_cameras_add_up_and_each_has_its_own() {
        let v = stats_json(
            &[
                cam("door", 5.0, Some(40.0), true, false, 1),
                cam("yard", 4.0, Some(60.0), false, true, 2),
                cam("attic", 0.0, None, true, false, 0),
            ],
            10,
            None,
        );
        assert_eq!(v["camera"], "door");
        assert_eq!(v["fps"], 9.0);
        assert_eq!(v["inference_ms"], 50.0, "the mean of the cameras that have one");
        assert_eq!(v["signal"], false, "one camera without signal");
        assert_eq!(v["detect"], "ON", "one camera infers");
        assert_eq!(v["objects"], 3);
        assert_eq!(v["cameras"]["door"]["detect"], "OFF");
        assert_eq!(v["cameras"]["yard"]["inference_ms"], 60.0);
        assert_eq!(v["cameras"]["yard"]["signal"], false);
        assert_eq!(v["cameras"]["attic"]["inference_ms"], Value::Null);
        assert_eq!(v["cameras"].as_object().unwrap().len(), 3);
    }
}
