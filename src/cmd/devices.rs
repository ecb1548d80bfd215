//! `edgevision devices`: the V4L2 devices of this machine with their
//! formats, frame sizes and rates, to pick a `[source]` from (or, with
//! `--json`, for scripts and tests).

use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value};

use crate::capture::v4l2::{FormatInfo, SizeInfo, SizeRange};
use crate::capture::{list_devices, DeviceInfo};

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Print one JSON array (one object per /dev/video* node) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Lists every `/dev/video*` node; a node that cannot be queried is listed
/// with its error, so the command itself only fails to write.
pub fn run(args: DevicesArgs) -> anyhow::Result<ExitCode> {
    let devices = list_devices();
    if args.json {
        let list: Vec<Value> = devices.iter().map(device_json).collect();
        println!("{}", Value::Array(list));
    } else if devices.is_empty() {
        println!("no V4L2 devices (/dev/video*) found");
    } else {
        for d in &devices {
            print!("{d}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn device_json(d: &DeviceInfo) -> Value {
    json!({
        "path": d.path.display().to_string(),
        "driver": d.driver,
        "card": d.card,
        "bus": d.bus,
        "capture": d.capture,
        "error": d.error,
        "formats": d.formats.iter().map(format_json).collect::<Vec<_>>(),
    })
}

fn format_json(f: &FormatInfo) -> Value {
    json!({
        "fourcc": f.fourcc,
        "description": f.description,
        "supported": f.supported,
        "sizes": f.sizes.iter().map(size_json).collect::<Vec<_>>(),
    })
}

fn size_json(s: &SizeInfo) -> Value {
    let range = s
        .fps_range
        .map(|(slowest, fastest)| json!({ "min": slowest, "max": fastest }));
    match s.size {
        SizeRange::Discrete { width, height } => json!({
            "width": width,
            "height": height,
            "fps": s.fps,
            "fps_range": range,
        }),
        SizeRange::Stepwise {
            min_width,
            max_width,
            step_width,
            min_height,
            max_height,
            step_height,
        } => json!({
            "min_width": min_width,
            "max_width": max_width,
            "step_width": step_width,
            "min_height": min_height,
            "max_height": max_height,
            "step_height": step_height,
            "fps": s.fps,
            "fps_range": range,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn json_keeps_every_field_in_order() {
        let d = DeviceInfo {
            path: PathBuf::from("/dev/video0"),
            driver: "vivid".into(),
            card: "vivid".into(),
            bus: "platform:vivid-000".into(),
            capture: true,
            formats: vec![FormatInfo {
                fourcc: "YUYV".into(),
                description: "YUYV 4:2:2".into(),
                supported: true,
                sizes: vec![
                    SizeInfo {
                        size: SizeRange::Discrete {
                            width: 640,
                            height: 480,
                        },
                        fps: vec![25.0, 12.5],
                        fps_range: None,
                    },
                    SizeInfo {
                        size: SizeRange::Stepwise {
                            min_width: 16,
                            max_width: 1920,
                            step_width: 2,
                            min_height: 16,
                            max_height: 1080,
                            step_height: 2,
                        },
                        fps: vec![],
                        fps_range: Some((1.0, 30.0)),
                    },
                ],
            }],
            error: None,
        };
        let text = device_json(&d).to_string();
        assert!(
            text.starts_with(r#"{"path":"/dev/video0","driver":"vivid","card":"vivid""#),
            "{text}"
        );
        assert!(
            text.contains(r#""fourcc":"YUYV","description":"YUYV 4:2:2","supported":true"#),
            "{text}"
        );
        assert!(
            text.contains(r#"{"width":640,"height":480,"fps":[25.0,12.5],"fps_range":null}"#),
            "{text}"
        );
        assert!(
            text.contains(r#""max_width":1920"#) && text.contains(r#""fps_range":{"min":1.0,"max":30.0}"#),
            "{text}"
        );
        assert!(text.contains(r#""error":null"#), "{text}");
    }
}
