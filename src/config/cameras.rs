//! `[[camera]]`: several cameras in one file. Each table has a `name` and
//! any of `[camera.source]`, `[camera.detect]`, `[camera.stream]`,
//! `[camera.tracking]`, `[camera.events]`, `[[camera.zone]]`,
//! `[[camera.line]]` and `[[camera.webhook]]`. A key a camera leaves out
//! takes the top level's value (tables merge key by key; the zone, line and
//! webhook lists are replaced as a whole). The model, the HTTP server and
//! the MQTT broker are the daemon's and are set at the top level only.
//!
//! Each camera is checked as the config file it amounts to, and its errors
//! name the camera and the line the key is on (in the camera's table, or at
//! the top level when it is inherited).

use std::collections::HashSet;
use std::path::Path;

use super::locate::{line_of, KeyMap};
use super::{Config, ConfigError};

/// The keys a `[[camera]]` table may have.
const CAMERA_KEYS: &[&str] = &[
    "name", "source", "detect", "stream", "tracking", "zone", "line", "events", "webhook",
];

/// `[stream]` keys that belong to the server, not to one camera.
const SERVER_WIDE_STREAM: &[&str] = &["font", "max_clients", "client_timeout"];

/// Whether `name` is a usable camera name: 1 to 64 letters, digits, `_`, `-`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The config of each `[[camera]]` of `cfg` (parsed from `text`), merged
/// over the top level and validated; empty without `[[camera]]` tables.
pub(crate) fn expand(
    cfg: &Config,
    text: &str,
    keys: &KeyMap,
    path: &Path,
) -> Result<Vec<Config>, ConfigError> {
    if cfg.camera.is_empty() {
        return Ok(Vec::new());
    }
    let invalid = |key: String, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        line: keys.span_of(&key).map(|s| line_of(text, s.start)),
        key,
        message,
    };
    if !cfg.name.is_empty() {
        return Err(invalid(
            "name".into(),
            "with [[camera]] tables each camera is named in its table; remove the top-level name".into(),
        ));
    }
    let mut top: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: None,
        message: e.message().to_string(),
    })?;
    top.remove("camera");
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(cfg.camera.len());
    for (i, table) in cfg.camera.iter().enumerate() {
        let at = |key: &str| format!("camera[{i}].{key}");
        for key in table.keys() {
            if !CAMERA_KEYS.contains(&key.as_str()) {
                let message = match key.as_str() {
                    "model" | "http" | "mqtt" | "runtime" => {
                        format!("[{key}] is shared by every camera: set it at the top level")
                    }
                    _ => format!("unknown key (expected one of: {})", CAMERA_KEYS.join(", ")),
                };
                return Err(invalid(at(key), message));
            }
        }
        if let Some(stream) = table.get("stream").and_then(toml::Value::as_table) {
            if let Some(key) = stream.keys().find(|k| SERVER_WIDE_STREAM.contains(&k.as_str())) {
                return Err(invalid(
                    at(&format!("stream.{key}")),
                    "belongs to the HTTP server, shared by every camera: set it in the top-level [stream]"
                        .into(),
                ));
            }
        }
        let name = match table.get("name") {
            Some(toml::Value::String(name)) if valid_name(name) => name.clone(),
            Some(toml::Value::String(name)) => {
                return Err(invalid(
                    at("name"),
                    format!("{name:?}: 1 to 64 letters, digits, '_' or '-'"),
                ))
            }
            Some(_) => return Err(invalid(at("name"), "must be a string".into())),
            None => {
                return Err(invalid(
                    format!("camera[{i}]"),
                    "every [[camera]] needs a name (letters, digits, '_' or '-')".into(),
                ))
            }
        };
        if !names.insert(name.clone()) {
            return Err(invalid(at("name"), format!("{name:?} names two cameras")));
        }
        let mut merged = top.clone();
        merge(&mut merged, table);
        let merged_text =
            toml::to_string(&merged).map_err(|e| invalid(format!("camera[{i}]"), e.to_string()))?;
        let mut camera = Config::parse(&merged_text, path).map_err(|e| relocate(e, i, &name, text, keys))?;
        // Each camera's pictures in a directory of its own: retention by
        // count and size then counts that camera's only. A directory the
        // camera names itself is taken as it is.
        let own_dir = table
            .get("events")
            .and_then(toml::Value::as_table)
            .is_some_and(|e| e.contains_key("snapshot_dir"));
        if !own_dir && !camera.events.snapshot_dir.as_os_str().is_empty() {
            camera.events.snapshot_dir = camera.events.snapshot_dir.join(&name);
        }
        out.push(camera);
    }
    Ok(out)
}

/// Puts `over`'s keys into `base`: tables merge key by key, anything else
/// (values, lists of tables) replaces.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// An error found in camera `i`'s merged config, told about the file: the
/// key's line in the camera's table, or at the top level when the camera
/// inherits it, and the camera's name before the key.
fn relocate(e: ConfigError, i: usize, name: &str, text: &str, keys: &KeyMap) -> ConfigError {
    let line = |key: &str| {
        keys.span_of(&format!("camera[{i}].{key}"))
            .or_else(|| keys.span_of(key))
            .map(|s| line_of(text, s.start))
    };
    let prefix = |key: &str| format!("camera {name:?}: {key}");
    match e {
        ConfigError::UnknownKey {
            path,
            table,
            name: key,
            expected,
            ..
        } => {
            let full = if table.is_empty() {
                key.clone()
            } else {
                format!("{table}.{key}")
            };
            ConfigError::UnknownKey {
                path,
                line: line(&full),
                table: prefix(&table),
                name: key,
                expected,
            }
        }
        ConfigError::WrongType {
            path, key, message, ..
        } => ConfigError::WrongType {
            path,
            line: line(&key),
            key: prefix(&key),
            message,
        },
        ConfigError::Invalid {
            path, key, message, ..
        } => ConfigError::Invalid {
            path,
            line: line(&key),
            key: prefix(&key),
            message,
        },
        e => e,
    }
}

/// A problem `(key, message)` found in camera `i` after parsing (a file
/// check), located like a parse error.
pub(crate) fn invalid_at(
    path: &Path,
    text: &str,
    i: usize,
    name: &str,
    key: String,
    message: String,
) -> ConfigError {
    let Some(keys) = KeyMap::new(text) else {
        return ConfigError::Invalid {
            path: path.to_path_buf(),
            line: None,
            key,
            message,
        };
    };
    let e = ConfigError::Invalid {
        path: path.to_path_buf(),
        line: None,
        key,
        message,
    };
    relocate(e, i, name, text, &keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("cams.toml"))
    }

    const TWO: &str = r#"
[source]
fps = 10.0
width = 320
height = 240

[detect]
threshold = 0.4

[events]
snapshot_dir = "/var/lib/edgevision"

[[zone]]
name = "porch"
polygon = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]

[[camera]]
name = "door"
[camera.source]
uri = "test:"
fps = 5.0

[[camera]]
name = "yard"
[camera.source]
uri = "images:/srv/photos"
[camera.detect]
threshold = 0.7
[[camera.zone]]
name = "lawn"
polygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]
"#;

    #[test]
    fn cameras_inherit_what_they_leave_out_key_by_key() {
        let cfg = parse(TWO).unwrap();
        let cams = cfg.camera_configs();
        assert_eq!(cams.len(), 2);
        let (door, yard) = (&cams[0], &cams[1]);
        assert_eq!((door.camera_name(), yard.camera_name()), ("door", "yard"));
        // A table merges key by key: door's fps, the top level's size.
        assert_eq!((door.source.uri.as_str(), door.source.fps), ("test:", 5.0));
        assert_eq!((door.source.width, door.source.height), (320, 240));
        assert_eq!((yard.source.fps, yard.source.width), (10.0, 320));
        assert_eq!((door.detect.threshold, yard.detect.threshold), (0.4, 0.7));
        // A list replaces: yard has its own zones, door the top level's.
        assert_eq!(
            door.zone.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(),
            ["porch"]
        );
        assert_eq!(
            yard.zone.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(),
            ["lawn"]
        );
        // Pictures in a directory per camera.
        assert_eq!(door.events.snapshot_dir, Path::new("/var/lib/edgevision/door"));
        assert_eq!(yard.events.snapshot_dir, Path::new("/var/lib/edgevision/yard"));
        // A directory a camera names itself is its own.
        let own = format!("{TWO}[camera.events]\nsnapshot_dir = \"/srv/yard\"\n");
        let cams = parse(&own).unwrap().camera_configs();
        assert_eq!(cams[1].events.snapshot_dir, Path::new("/srv/yard"));
        // Credentials shared at the top level, for cameras that have rtsp://.
        let shared = "[source]\nusername = \"admin\"\npassword_env = \"EDGEVISION_NO_SUCH_VAR\"\n\
                      [[camera]]\nname = \"a\"\n[camera.source]\nuri = \"rtsp://cam-a/stream\"\n";
        let cfg = parse(shared).unwrap();
        assert_eq!(cfg.camera_configs()[0].source.username, "admin");
        let e = parse(&shared.replace("rtsp://cam-a/stream", "test:"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("camera \"a\": source.username"), "{e}");
        // Without [[camera]] the file is one camera, "default".
        let one = parse("[source]\nuri = \"test:\"\n").unwrap();
        assert_eq!(one.camera_configs().len(), 1);
        assert_eq!(one.camera_configs()[0].camera_name(), "default");
    }

    /// The error's text and line for `text`.
    fn error(text: &str) -> (String, Option<usize>) {
        let e = parse(text).unwrap_err();
        (e.to_string(), e.line())
    }

    #[test]
    fn errors_name_the_camera_and_the_line() {
        // A bad value in a camera's table: that line.
        let text =
            format!("{TWO}\n[[camera]]\nname = \"gate\"\n[camera.source]\nuri = \"test:\"\nfps = -3.0\n");
        let bad = text.lines().position(|l| l == "fps = -3.0").unwrap() + 1;
        let (msg, line) = error(&text);
        assert_eq!(line, Some(bad), "{msg}");
        assert!(msg.contains("camera \"gate\": source.fps"), "{msg}");

        // A wrong type, and an unknown key, in a camera's table.
        let (msg, line) = error("[[camera]]\nname = \"a\"\n[camera.detect]\nthreshold = \"high\"\n");
        assert_eq!(line, Some(4), "{msg}");
        assert!(msg.contains("camera \"a\": detect.threshold"), "{msg}");
        let (msg, line) = error("[[camera]]\nname = \"a\"\n[camera.detect]\ntreshold = 0.5\n");
        assert_eq!(line, Some(4), "{msg}");
        assert!(
            msg.contains("unknown key `treshold`") && msg.contains("camera \"a\""),
            "{msg}"
        );

        // An inherited value that does not fit the camera: the top level's line.
        let text =
            "[source]\nwidth = 0\nheight = 0\n[[camera]]\nname = \"a\"\n[camera.source]\nheight = 480\n";
        let (msg, line) = error(text);
        assert!(msg.contains("camera \"a\": source.width"), "{msg}");
        assert_eq!(line, Some(2), "{msg}");

        // Shared settings, names.
        let (msg, line) = error("[[camera]]\nname = \"a\"\n[camera.model]\npath = \"m.tflite\"\n");
        assert!(
            msg.contains("camera[0].model") && msg.contains("top level"),
            "{msg}"
        );
        assert_eq!(line, Some(3), "{msg}");
        let (msg, _) = error("[[camera]]\nname = \"a\"\n[camera.stream]\nmax_clients = 3\n");
        assert!(msg.contains("camera[0].stream.max_clients"), "{msg}");
        let (msg, line) = error("[[camera]]\nname = \"a\"\n[[camera]]\nname = \"a\"\n");
        assert_eq!(line, Some(4), "{msg}");
        assert!(msg.contains("names two cameras"), "{msg}");
        let (msg, _) = error("[[camera]]\n[camera.source]\nuri = \"test:\"\n");
        assert!(msg.contains("needs a name"), "{msg}");
        let (msg, _) = error("[[camera]]\nname = \"front door\"\n");
        assert!(msg.contains("letters, digits"), "{msg}");
        let (msg, line) = error("name = \"x\"\n[[camera]]\nname = \"a\"\n");
        assert_eq!(line, Some(1), "{msg}");
        assert!(msg.contains("remove the top-level name"), "{msg}");
        let (msg, _) = error("[[camera]]\nname = \"a\"\nfps = 3\n");
        assert!(
            msg.contains("camera[0].fps") && msg.contains("unknown key"),
            "{msg}"
        );
    }
}
