use std::path::{Path, PathBuf};

use super::*;
use crate::infer::ssd::ScoreActivation;
use crate::infer::DecoderKind;

const FILE: &str = "config/x.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(FILE))
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(cfg) => panic!("expected an error for\n{text}\ngot {cfg:?}"),
        Err(e) => e,
    }
}

fn example(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

/// A valid PHC argon2id hash (of "password").
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                    Yw1ALN3qh4mj2nh/iJyk2tUO2CKffLW2zbRMu6nOcT0";

/// Every key, written out with its documented default.
const DEFAULTS: &str = r#"
name = ""

[source]
uri = "test:"
width = 640
height = 480
fps = 15.0
loop = true
format = "auto"
stall_timeout = 5.0
reconnect_max_backoff = 10.0
pan = false
seconds_per_image = 3.0

[model]
path = "models/ssd_mobilenet_v2_coco_int8.tflite"
labels = "models/coco_labels.txt"
threads = 0
workers = 0
xnnpack = true
decoder = "auto"
top_k = 5

[model.ssd]
box_scales = [10.0, 10.0, 5.0, 5.0]
score_activation = "sigmoid"
background_class = true
score_threshold = 0.3
iou_threshold = 0.5
max_detections = 100
max_per_class = 100

[model.ssd.anchors]
num_layers = 6
min_scale = 0.2
max_scale = 0.95
feature_map_sizes = [19, 10, 5, 3, 2, 1]
aspect_ratios = [1.0, 2.0, 0.5, 3.0, 0.3333333333333333]
reduce_boxes_in_lowest_layer = true
interpolated_scale_aspect_ratio = 1.0

[detect]
threshold = 0.5
allow = []
deny = []
min_area = 0.0
every_nth = 1
max_inference_fps = 0.0

[detect.label_thresholds]

[stream]
quality = 80
overlay = true
max_clients = 20
client_timeout = 10.0
annotate = true

[http]
listen = "127.0.0.1:8080"
header_timeout = 10.0
idle_timeout = 60.0
max_connections = 512
allowed_hosts = []

[http.auth]
mode = "none"
users = []
token = ""

[tracking]
min_hits = 2
max_age = 10
iou_threshold = 0.2
anchor = "bottom_center"
stationary_seconds = 10.0
stationary_iou = 0.8

[events]
recent = 100
snapshot_dir = ""
snapshot_max_count = 1000
snapshot_max_hours = 168.0
snapshot_max_megabytes = 500.0
snapshot_quality = 85
snapshot_interval = 2.0

[mqtt]
url = ""
username = ""
password = ""
password_file = ""
ca_file = ""
client_id = ""
topic_prefix = "edgevision"
discovery = true
discovery_prefix = "homeassistant"
qos = 0
stats_interval = 60.0
labels = []
queue = 1000
"#;

#[test]
fn config_defaults_round_trip() {
    let d = Config::default();
    assert_eq!(d.validate(), Ok(()));
    assert_eq!(parse("").unwrap(), d);
    assert_eq!(parse("# nothing\n").unwrap(), d);
    assert_eq!(parse(DEFAULTS).unwrap(), d);
    assert_eq!(d.runtime, None);
    assert_eq!(d.source.parsed_uri().unwrap(), SourceUri::Test);
    assert_eq!(d.http.listen_addr().unwrap().to_string(), "127.0.0.1:8080");

    let s = d.detector_settings();
    assert_eq!(s.model, Path::new("models/ssd_mobilenet_v2_coco_int8.tflite"));
    assert_eq!(s.labels.as_deref(), Some(Path::new("models/coco_labels.txt")));
    assert_eq!(s.session.threads, crate::infer::session::default_threads());
    assert!(s.session.xnnpack);
    assert_eq!(s.decode, crate::infer::DecodeSettings::default());
    assert_eq!(s.filter, crate::infer::FilterSettings::default());
    assert_eq!(s.normalization, Normalization::default());
}

#[test]
fn config_settings_carry_over() {
    let cfg = parse(
        r#"
runtime = "/opt/libLiteRt.so"
[model]
labels = ""
threads = 3
xnnpack = false
decoder = "raw_ssd"
classifier_activation = "softmax"
mean = 0.0
std = 255.0
[model.ssd]
score_activation = "softmax"
[model.ssd.anchors]
min_scale = 0.1
[detect]
threshold = 0.4
label_thresholds = { person = 0.7, "traffic light" = 0.3 }
deny = ["car"]
"#,
    )
    .unwrap();
    assert_eq!(cfg.runtime.as_deref(), Some(Path::new("/opt/libLiteRt.so")));
    let s = cfg.detector_settings();
    assert_eq!(s.labels, None);
    assert_eq!(s.session.threads, 3);
    assert!(!s.session.xnnpack);
    assert_eq!(s.decode.kind, DecoderKind::RawSsd);
    assert_eq!(s.decode.classifier_activation, Some(ScoreActivation::Softmax));
    assert_eq!(s.decode.ssd.score_activation, ScoreActivation::Softmax);
    assert_eq!(s.decode.ssd.anchors.min_scale, 0.1);
    assert_eq!(s.decode.ssd.anchors.num_layers, 6);
    assert_eq!(
        (s.normalization.mean, s.normalization.std),
        (Some(0.0), Some(255.0))
    );
    assert_eq!(s.filter.threshold, 0.4);
    assert_eq!(s.filter.label_thresholds["traffic light"], 0.3);
    assert_eq!(s.filter.deny, vec!["car".to_string()]);
}

#[test]
fn config_example_files_parse_and_validate() {
    let (path, text) = example("edgevision.toml");
    let prod = Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        prod.source.parsed_uri().unwrap(),
        SourceUri::V4l2("/dev/video0".into())
    );
    assert_eq!(
        prod.runtime.as_deref(),
        Some(Path::new("/usr/lib/edgevision/libLiteRt.so"))
    );
    assert!(prod.model.path.starts_with("/usr/share/edgevision/models"));
    assert_eq!(prod.http.listen, "0.0.0.0:8080");

    let (path, text) = example("demo.toml");
    let demo = Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        demo.source.parsed_uri().unwrap(),
        SourceUri::Images("tests/photos".into())
    );
    assert!(demo.source.pan);
    assert_eq!(
        (demo.source.width, demo.source.height, demo.source.fps),
        (640, 480, 15.0)
    );
    assert_eq!(demo.http.listen, "127.0.0.1:8080");
    assert_eq!(
        demo.model.path,
        Path::new("models/ssd_mobilenet_v2_coco_int8.tflite")
    );
    assert_eq!(
        demo.model.labels.as_deref(),
        Some(Path::new("models/coco_labels.txt"))
    );
    assert_eq!(demo.detect.threshold, 0.5);
}

/// Every top-level table and key of the production example is documented:
/// it sets every key the parser knows (optional ones may be commented out).
#[test]
fn config_production_example_sets_every_key() {
    let (_, text) = example("edgevision.toml");
    let uncommented: String = text
        .lines()
        .map(|l| l.trim_start().trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    for line in DEFAULTS
        .lines()
        .filter(|l| l.contains(" = ") || l.starts_with('['))
    {
        let key = line.split(" = ").next().unwrap();
        let key = if key.starts_with('[') {
            key.to_string()
        } else {
            format!("{key} =")
        };
        assert!(uncommented.contains(&key), "config/edgevision.toml lacks `{key}`");
    }
    for key in ["classifier_activation =", "mean =", "std =", "runtime ="] {
        assert!(uncommented.contains(key), "config/edgevision.toml lacks `{key}`");
    }
}

#[test]
fn config_source_uri_forms() {
    let ok = [
        ("v4l2:/dev/video0", SourceUri::V4l2("/dev/video0".into())),
        ("/dev/video2", SourceUri::V4l2("/dev/video2".into())),
        (
            "/dev/v4l/by-id/usb-cam-video-index0",
            SourceUri::V4l2("/dev/v4l/by-id/usb-cam-video-index0".into()),
        ),
        ("images:tests/photos", SourceUri::Images("tests/photos".into())),
        ("mjpeg:/tmp/a.mjpg", SourceUri::Mjpeg("/tmp/a.mjpg".into())),
        ("test:", SourceUri::Test),
    ];
    for (s, want) in ok {
        assert_eq!(s.parse::<SourceUri>().unwrap(), want, "{s}");
    }
    for bad in ["rtsp://", "", "images:", "photos/"] {
        let msg = bad.parse::<SourceUri>().unwrap_err().to_string();
        for form in ["v4l2:/dev/videoN", "images:DIR", "mjpeg:FILE", "test:"] {
            assert!(msg.contains(form), "{bad}: {msg}");
        }
    }
}

#[test]
fn config_unknown_key_names_key_table_and_line() {
    let e = parse_err("[source]\nuri = \"test:\"\n\n[detect]\nthreshold = 0.5\ntreshold = 0.6\n");
    let msg = e.to_string();
    assert!(
        msg.starts_with("config/x.toml:6: unknown key `treshold` in [detect] (expected one of: threshold, "),
        "{msg}"
    );
    assert!(
        msg.contains("label_thresholds") && msg.contains("max_inference_fps"),
        "{msg}"
    );
    assert_eq!(e.line(), Some(6));
    assert_eq!(e.key().as_deref(), Some("detect.treshold"));

    // Top level, an unknown table, a nested table, an inline table entry.
    let e = parse_err("runtime = \"/x.so\"\nfoo = 1\n");
    assert!(
        e.to_string()
            .starts_with("config/x.toml:2: unknown key `foo` at the top level"),
        "{e}"
    );
    let e = parse_err("# c\n[detct]\nthreshold = 0.5\n");
    assert!(
        e.to_string()
            .starts_with("config/x.toml:2: unknown key `detct` at the top level"),
        "{e}"
    );
    let e = parse_err("[model.ssd.anchors]\nnum_layers = 6\nlayers = 2\n");
    assert!(
        e.to_string()
            .starts_with("config/x.toml:3: unknown key `layers` in [model.ssd.anchors]"),
        "{e}"
    );
    let e =
        parse_err("[http.auth]\nmode = \"basic\"\nusers = [\n  { name = \"a\", pasword_hash = \"x\" },\n]\n");
    assert!(
        e.to_string()
            .starts_with("config/x.toml:4: unknown key `pasword_hash` in [http.auth.users[0]]"),
        "{e}"
    );
    let e = parse_err("source.fsp = 3\n");
    assert!(
        e.to_string()
            .starts_with("config/x.toml:1: unknown key `fsp` in [source]"),
        "{e}"
    );
}

#[test]
fn config_wrong_type_names_key_and_line() {
    let e = parse_err("[source]\nuri = \"test:\"\nfps = \"fast\"\n");
    assert_eq!(
        e.to_string(),
        "config/x.toml:3: source.fps: invalid type: string \"fast\", expected f32"
    );
    assert!(matches!(e, ConfigError::WrongType { .. }));

    let e = parse_err("[stream]\n\nquality = -3\n");
    assert!(
        e.to_string()
            .starts_with("config/x.toml:3: stream.quality: invalid value: integer `-3`"),
        "{e}"
    );
    let e = parse_err("[model]\ndecoder = \"yolo\"\n");
    assert_eq!(
        e.to_string(),
        "config/x.toml:2: model.decoder: unknown value `yolo` (expected one of: auto, postprocess, raw_ssd, classifier)"
    );
    let e = parse_err("[detect]\nlabel_thresholds = { person = \"high\" }\n");
    assert!(
        e.to_string()
            .starts_with("config/x.toml:2: detect.label_thresholds.person: invalid type"),
        "{e}"
    );
    let e = parse_err("[stream]\nannotate = \"canvas\"\n");
    assert_eq!(
        e.to_string(),
        "config/x.toml:2: stream.annotate: invalid value: string \"canvas\", expected true, false or \"client\""
    );
    let e = parse_err("[stream]\nannotate = 1\n");
    assert!(
        e.to_string()
            .starts_with("config/x.toml:2: stream.annotate: invalid type: integer `1`"),
        "{e}"
    );
    for (text, want) in [
        ("true", Annotate::Burn),
        ("false", Annotate::Off),
        ("\"client\"", Annotate::Client),
        ("\"burn\"", Annotate::Burn),
    ] {
        let c = parse(&format!("[stream]\nannotate = {text}\n")).unwrap();
        assert_eq!(c.stream.annotate, want, "{text}");
    }
    let e = parse_err("source = 5\n");
    assert!(
        e.to_string()
            .starts_with("config/x.toml:1: source: invalid type: integer `5`"),
        "{e}"
    );
}

#[test]
fn config_syntax_error_has_line() {
    let e = parse_err("[source]\nuri = \"test:\"\nfps = \n");
    assert!(matches!(e, ConfigError::Syntax { line: Some(3), .. }), "{e:?}");
    assert!(e.to_string().starts_with("config/x.toml:3: "), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
}

#[test]
fn config_invalid_value_names_key_and_line() {
    let e = parse_err("[source]\nuri = \"test:\"\n\n[detect]\nmin_area = 5.0\n\nthreshold = 1.5\n");
    assert_eq!(
        e.to_string(),
        "config/x.toml:7: detect.threshold: must be between 0 and 1, not 1.5"
    );
    assert!(matches!(e, ConfigError::Invalid { .. }));

    let cases: &[(&str, &str, usize)] = &[
        ("[source]\nfps = -1.0\n", "source.fps", 2),
        ("[source]\nwidth = 0\n", "source.width", 2),
        ("[model]\nworkers = 65\n", "model.workers", 2),
        ("[model]\npath = \"\"\n", "model.path", 2),
        ("[model]\nstd = 0.0\n", "model.std", 2),
        ("[model.ssd]\niou_threshold = 2.0\n", "model.ssd.iou_threshold", 2),
        // A table-level problem: the table's header line.
        ("[model.ssd.anchors]\n\nnum_layers = 2\n", "model.ssd.anchors", 1),
        ("[detect]\nevery_nth = 0\n", "detect.every_nth", 2),
        (
            "[detect.label_thresholds]\ncat = 0.5\n\"traffic light\" = -1\n",
            "detect.label_thresholds.traffic light",
            3,
        ),
        ("[stream]\nquality = 0\n", "stream.quality", 2),
        ("[stream]\nquality = 101\n", "stream.quality", 2),
        ("[stream]\nmax_clients = 0\n", "stream.max_clients", 2),
        ("stream.client_timeout = 0\n", "stream.client_timeout", 1),
        ("[http.auth]\nmode = \"basic\"\n", "http.auth.mode", 2),
        // Upper bounds: a frame a millennium never comes, and never stops.
        ("[source]\nfps = 1e-30\n", "source.fps", 2),
        ("[source]\nfps = 5000.0\n", "source.fps", 2),
        ("[source]\nstall_timeout = 1e9\n", "source.stall_timeout", 2),
        (
            "[source]\nreconnect_max_backoff = 86400.0\n",
            "source.reconnect_max_backoff",
            2,
        ),
        ("[detect]\nevery_nth = 4000000000\n", "detect.every_nth", 2),
        (
            "[detect]\nmax_inference_fps = 1e9\n",
            "detect.max_inference_fps",
            2,
        ),
        ("[stream]\nmax_clients = 1000000\n", "stream.max_clients", 2),
        ("[model]\nthreads = 100000\n", "model.threads", 2),
    ];
    for &(text, key, line) in cases {
        let e = parse_err(text);
        assert_eq!(e.key().as_deref(), Some(key), "{text}: {e}");
        let want = (line > 0).then_some(line);
        assert_eq!(e.line(), want, "{text}: {e}");
    }
    // The bound is in the message.
    let e = parse_err("[source]\nfps = 1e-30\n");
    assert!(e.to_string().contains("between 0.001 and 1000"), "{e}");
    let e = parse_err("[stream]\nmax_clients = 1000000\n");
    assert!(e.to_string().contains("between 1 and 10000"), "{e}");
    assert!(parse("[source]\nfps = 0.05\n").is_ok());
}

#[test]
fn config_invalid_default_value_has_key_but_no_line() {
    // `token` is not in the file: it holds its default, "".
    let e = parse_err("[http.auth]\nmode = \"bearer\"\n");
    assert_eq!(
        e.to_string(),
        "config/x.toml: http.auth.token: must be set when http.auth.mode = \"bearer\""
    );
    assert_eq!(e.line(), None);
    assert_eq!(e.key().as_deref(), Some("http.auth.token"));
}

#[test]
fn config_bad_uri_names_key_and_line() {
    let e = parse_err("[source]\nwidth = 320\nheight = 240\nuri = \"rtsp://x:y/z\"\n");
    let msg = e.to_string();
    assert!(msg.starts_with("config/x.toml:4: source.uri: "), "{msg}");
    assert!(
        msg.contains("rtsp://x:y/z")
            && msg.contains("not a port number")
            && msg.contains("images:DIR")
            && msg.contains("v4l2:"),
        "{msg}"
    );
}

#[test]
fn config_bad_listen_names_key_and_line() {
    let e = parse_err("[http]\n# where\nlisten = \"localhost:8080\"\n");
    let msg = e.to_string();
    assert!(
        msg.starts_with("config/x.toml:3: http.listen: `localhost:8080` is not an IP address"),
        "{msg}"
    );
    assert!(parse("[http]\nlisten = \"[::]:8080\"\n").is_ok());
    assert!(parse("http.listen = \"0.0.0.0:80\"\n").is_ok());
}

#[test]
fn config_bad_argon2_hash_names_key_and_line() {
    let good = format!(
        "[http.auth]\nmode = \"basic\"\nusers = [{{ name = \"admin\", password_hash = \"{HASH}\" }}]\n"
    );
    let cfg = parse(&good).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.http.auth.users[0].name, "admin");
    assert!(!format!("{cfg:?}").contains("<hidden>"));

    let text = format!(
        "[http.auth]\nmode = \"basic\"\n\n[[http.auth.users]]\nname = \"admin\"\npassword_hash = \"{HASH}\"\n\n\
         [[http.auth.users]]\nname = \"bob\"\npassword_hash = \"hunter2\"\n"
    );
    let e = parse_err(&text);
    let msg = e.to_string();
    assert!(
        msg.starts_with("config/x.toml:10: http.auth.users[1].password_hash: not a PHC-format hash"),
        "{msg}"
    );

    let e = parse_err(
        "[http.auth]\nmode = \"basic\"\nusers = [\n  { name = \"a\", password_hash = \"$pbkdf2-sha256$i=1000$c29tZXNhbHRzb21lc2FsdA$Yw1ALN3qh4mj2nh/iJyk2tUO2CKffLW2zbRMu6nOcT0\" },\n]\n",
    );
    assert!(
        e.to_string()
            .starts_with("config/x.toml:4: http.auth.users[0].password_hash: is a `pbkdf2-sha256` hash"),
        "{e}"
    );

    let e = parse_err("[http.auth]\nmode = \"bearer\"\ntoken = \"two words\"\n");
    assert!(
        e.to_string().starts_with("config/x.toml:3: http.auth.token: "),
        "{e}"
    );
    let cfg = parse("[http.auth]\nmode = \"bearer\"\ntoken = \"s3cret-token-0123456789\"\n").unwrap();
    assert!(!format!("{cfg:?}").contains("s3cret"));
}

#[test]
fn config_short_bearer_token_names_key_and_bound() {
    let e = parse_err("[http.auth]\nmode = \"bearer\"\ntoken = \"x\"\n");
    let msg = e.to_string();
    assert!(
        msg.starts_with("config/x.toml:3: http.auth.token: is 1 characters; at least 16 are needed"),
        "{msg}"
    );
    assert!(parse("[http.auth]\nmode = \"bearer\"\ntoken = \"0123456789abcdef\"\n").is_ok());
    assert!(
        parse_err("[http.auth]\nmode = \"bearer\"\ntoken = \"0123456789abcde\"\n")
            .to_string()
            .contains("at least 16")
    );
}

#[test]
fn config_costly_argon2_parameters_name_key_and_bound() {
    // Same salt and hash as HASH; only the parameters differ.
    let with = |params: &str| {
        format!(
            "[http.auth]\nmode = \"basic\"\nusers = [\n  {{ name = \"a\", password_hash = \"$argon2id$v=19${params}$c29tZXNhbHRzb21lc2FsdA$Yw1ALN3qh4mj2nh/iJyk2tUO2CKffLW2zbRMu6nOcT0\" }},\n]\n"
        )
    };
    let e = parse_err(&with("m=268435455,t=2,p=1"));
    let msg = e.to_string();
    assert!(
        msg.starts_with("config/x.toml:4: http.auth.users[0].password_hash: argon2 memory m=268435455 KiB"),
        "{msg}"
    );
    assert!(msg.contains("limit of m=65536 KiB"), "{msg}");
    let msg = parse_err(&with("m=19456,t=4294967295,p=1")).to_string();
    assert!(
        msg.contains("http.auth.users[0].password_hash: argon2 work m*t"),
        "{msg}"
    );
    assert!(msg.contains("limit of 262144"), "{msg}");
    // At the bounds: accepted.
    assert!(parse(&with("m=65536,t=4,p=1")).is_ok());
    assert!(parse(&with("m=65536,t=5,p=1")).is_err());
    assert!(parse(&with("m=65537,t=1,p=1")).is_err());
}

#[test]
fn config_http_limits_are_bounded() {
    for (text, key, part) in [
        (
            "[http]\nheader_timeout = 0.5\n",
            "http.header_timeout",
            "between 1 and 300 seconds, not 0.5",
        ),
        (
            "[http]\nidle_timeout = 7200\n",
            "http.idle_timeout",
            "between 1 and 3600 seconds, not 7200",
        ),
        (
            "[http]\nmax_connections = 2\n",
            "http.max_connections",
            "between 8 and 65536, not 2",
        ),
        (
            "[http]\nallowed_hosts = [\"ok.lan\", \"http://x\"]\n",
            "http.allowed_hosts[1]",
            "`http://x` is not a host name",
        ),
    ] {
        let e = parse_err(text);
        assert_eq!(e.key().as_deref(), Some(key), "{e}");
        assert!(e.to_string().contains(part), "{e}");
    }
    let cfg = parse(
        "[http]\nheader_timeout = 2\nidle_timeout = 5\nmax_connections = 100\nallowed_hosts = [\"camera.lan\"]\n",
    )
    .unwrap();
    assert_eq!(cfg.http.max_connections, 100);
    assert_eq!(cfg.http.allowed_hosts, ["camera.lan"]);
}

#[test]
fn config_read_error_names_file() {
    let e = Config::load(Path::new("/nonexistent/edgevision.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read config /nonexistent/edgevision.toml: "),
        "{e}"
    );
}

#[test]
fn config_resolve_paths_and_check_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("photos")).unwrap();
    std::fs::write(dir.path().join("m.tflite"), b"x").unwrap();
    let abs = dir.path().join("abs.tflite");
    std::fs::write(&abs, b"x").unwrap();

    let mut cfg = Config::default();
    cfg.source.uri = "images:photos".into();
    cfg.model.path = "m.tflite".into();
    cfg.model.labels = Some("nowhere/labels.txt".into());
    cfg.resolve_paths(dir.path());
    // Found only next to the config: rewritten.
    assert_eq!(cfg.model.path, dir.path().join("m.tflite"));
    assert_eq!(
        cfg.source.uri,
        format!("images:{}", dir.path().join("photos").display())
    );
    // Found nowhere: left as written, and the check names it.
    assert_eq!(cfg.model.labels.as_deref(), Some(Path::new("nowhere/labels.txt")));
    let (key, msg) = cfg.check_files().unwrap_err();
    assert_eq!(key, "model.labels");
    assert!(msg.contains("nowhere/labels.txt"), "{msg}");
    cfg.model.labels = None;
    assert_eq!(cfg.check_files(), Ok(()));

    // Absolute paths and paths found from the working directory stay.
    let cwd_relative = Path::new("Cargo.toml");
    if cwd_relative.exists() {
        cfg.model.path = cwd_relative.into();
        cfg.resolve_paths(dir.path());
        assert_eq!(cfg.model.path, cwd_relative);
    }
    cfg.model.path = abs.clone();
    cfg.resolve_paths(Path::new("/elsewhere"));
    assert_eq!(cfg.model.path, abs);

    // load_checked names the key and its line.
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[source]\nuri = \"test:\"\n[model]\nlabels = \"\"\npath = \"missing.tflite\"\n",
    )
    .unwrap();
    let e = Config::load_checked(&file).unwrap_err();
    assert_eq!(e.key().as_deref(), Some("model.path"));
    assert_eq!(e.line(), Some(5));
    assert!(e.to_string().contains("missing.tflite"), "{e}");
    std::fs::write(&file, "[model]\nlabels = \"\"\npath = \"m.tflite\"\n").unwrap();
    let cfg = Config::load_checked(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.model.path, dir.path().join("m.tflite"));
}

#[test]
fn config_ssd_error_keys() {
    let ssd_error = |edit: &dyn Fn(&mut crate::infer::ssd::SsdDecodeParams)| {
        let mut cfg = Config::default();
        edit(&mut cfg.model.ssd);
        cfg.validate().unwrap_err()
    };
    assert_eq!(
        ssd_error(&|p| {
            p.anchors.num_layers = 0;
            p.anchors.feature_map_sizes.clear();
        }),
        ("model.ssd.anchors.num_layers".into(), "must be at least 1".into())
    );
    assert_eq!(
        ssd_error(&|p| p.anchors.feature_map_sizes[2] = 0),
        (
            "model.ssd.anchors.feature_map_sizes".into(),
            "feature_map_sizes[2] is 0".into()
        )
    );
    assert_eq!(
        ssd_error(&|p| p.box_scales[1] = 0.0),
        ("model.ssd.box_scales".into(), "0 is not a positive number".into())
    );
    assert_eq!(
        ssd_error(&|p| {
            p.anchors.min_scale = 0.5;
            p.anchors.max_scale = 0.4;
        }),
        (
            "model.ssd.anchors".into(),
            "need 0 < min_scale <= max_scale <= 1, got min_scale = 0.5, max_scale = 0.4".into()
        )
    );
    assert_eq!(
        ssd_error(&|p| p.anchors.aspect_ratios[1] = -2.0),
        (
            "model.ssd.anchors.aspect_ratios".into(),
            "aspect ratio -2 is not a positive number".into()
        )
    );
    assert_eq!(
        ssd_error(&|p| p.iou_threshold = 2.0),
        ("model.ssd.iou_threshold".into(), "must be in 0..=1, got 2".into())
    );
}

#[test]
fn config_labels_beside_a_model_other_than_the_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("birds.txt"), "robin\n").unwrap();
    let mut c = Config::default();
    c.model.path = dir.path().join("birds.tflite");
    assert_eq!(c.detector_settings().labels, Some(dir.path().join("birds.txt")));
    c.model.labels = Some("mine.txt".into());
    assert_eq!(c.detector_settings().labels, Some(PathBuf::from("mine.txt")));
    assert_eq!(
        Config::default().detector_settings().labels,
        ModelConfig::default().labels
    );
}

#[test]
fn config_zones_lines_and_webhooks_carry_over() {
    let cfg = parse(
        r#"
[tracking]
anchor = "center"
stationary_seconds = 30

[[zone]]
name = "driveway"
polygon = [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]
labels = ["car", "person"]
loiter_seconds = 2.5

[[line]]
name = "gate"
points = [[0.5, 0.0], [0.5, 1.0]]

[events]
snapshot_dir = "/var/lib/edgevision/snapshots"

[[webhook]]
url = "http://hooks.local:9000/edgevision"
events = ["new", "end"]
"#,
    )
    .unwrap();
    let t = cfg.tracking_settings();
    assert_eq!(t.anchor, crate::track::Anchor::Center);
    assert_eq!(t.stationary_ms, 30_000);
    assert_eq!(t.zones[0].name, "driveway");
    assert_eq!(t.zones[0].min_frames, 3);
    assert_eq!(t.zones[0].loiter_ms, 2500);
    assert_eq!(t.zones[0].labels, ["car", "person"]);
    assert_eq!((t.lines[0].a, t.lines[0].b), ([0.5, 0.0], [0.5, 1.0]));
    assert!(t.snapshots);
    let s = cfg.snapshot_settings().unwrap();
    assert_eq!(s.max_count, 1000);
    assert_eq!(s.max_age, std::time::Duration::from_secs(168 * 3600));
    let w = cfg.webhook_settings();
    assert_eq!(w[0].url.port, 9000);
    assert_eq!(
        w[0].events,
        [crate::track::EventType::New, crate::track::EventType::End]
    );
    assert_eq!(w[0].queue, 1000);
    assert!(Config::default().snapshot_settings().is_none());
}

#[test]
fn config_bad_zones_lines_and_webhooks_name_key_and_line() {
    let zone = |body: &str| format!("[[zone]]\nname = \"a\"\n{body}\n");
    let square = "polygon = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]";
    let cases: Vec<(String, &str, usize, &str)> = vec![
        (
            zone("polygon = [[0.1, 0.1], [0.9, 0.1]]"),
            "zone[0].polygon",
            3,
            "has 2 points",
        ),
        (
            zone("polygon = [[0.1, 0.1], [1.5, 0.1], [0.9, 0.9]]"),
            "zone[0].polygon[1]",
            3,
            "outside the frame",
        ),
        (
            zone("polygon = [[0.1, 0.1],\n [0.9, 0.9],\n [0.9, 0.1],\n [0.1, 0.9]]"),
            "zone[0].polygon",
            3,
            "crosses itself",
        ),
        (
            zone("polygon = [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]"),
            "zone[0].polygon",
            3,
            "no area",
        ),
        (
            format!("{}\n[[zone]]\nname = \"a\"\n{square}\n", zone(square)),
            "zone[1].name",
            6,
            "used twice",
        ),
        (
            zone(&format!("{square}\nmin_frames = 0")),
            "zone[0].min_frames",
            4,
            "between 1 and 1000",
        ),
        (
            "[[zone]]\nname = \"drive way\"\npolygon = [[0,0],[1,0],[1,1]]\n".into(),
            "zone[0].name",
            2,
            "letters, digits",
        ),
        (
            "[[line]]\nname = \"l\"\npoints = [[0.5, 0.0]]\n".into(),
            "line[0].points",
            3,
            "exactly 2",
        ),
        (
            "[[line]]\nname = \"l\"\npoints = [[0.5, 0.5], [0.5, 0.5]]\n".into(),
            "line[0].points",
            3,
            "same point",
        ),
        (
            "[[line]]\nname = \"l\"\npoints = [[0.5, 0.0], [0.5, -1.0]]\n".into(),
            "line[0].points[1]",
            3,
            "outside",
        ),
        (
            "[tracking]\nmin_hits = 0\n".into(),
            "tracking.min_hits",
            2,
            "between 1 and 100",
        ),
        (
            "[events]\nsnapshot_quality = 0\n".into(),
            "events.snapshot_quality",
            2,
            "between 1 and 100",
        ),
        (
            "[[webhook]]\nurl = \"https://x/y\"\n".into(),
            "webhook[0].url",
            2,
            "http://",
        ),
        (
            "[[webhook]]\nurl = \"http://x/y\"\nevents = [\"new\", \"started\"]\n".into(),
            "webhook[0].events[1]",
            3,
            "unknown event type",
        ),
    ];
    for (text, key, line, msg) in &cases {
        let e = parse_err(text);
        assert_eq!(e.key().as_deref(), Some(*key), "{text}: {e}");
        assert_eq!(e.line(), Some(*line), "{text}: {e}");
        assert!(e.to_string().contains(msg), "{text}: {e}");
    }
    // An unknown key in a zone is named with its table.
    let e = parse_err(&zone(&format!("{square}\ncolour = \"red\"")));
    assert!(e.to_string().contains("unknown key `colour`"), "{e}");
}

#[test]
fn config_bad_mqtt_keys_name_key_and_line() {
    let cases: &[(&str, &str, usize)] = &[
        ("[mqtt]\nurl = \"tcp://broker\"\n", "mqtt.url", 2),
        ("[mqtt]\nurl = \"mqtt://u:p@broker\"\n", "mqtt.url", 2),
        ("[mqtt]\nurl = \"mqtt://broker\"\nqos = 2\n", "mqtt.qos", 3),
        (
            "[mqtt]\nurl = \"mqtt://broker\"\npassword = \"x\"\n",
            "mqtt.username",
            0,
        ),
        (
            "[mqtt]\nurl = \"mqtt://broker\"\ntopic_prefix = \"a/#\"\n",
            "mqtt.topic_prefix",
            3,
        ),
        (
            "[mqtt]\nurl = \"mqtt://broker\"\nstats_interval = 0\n",
            "mqtt.stats_interval",
            3,
        ),
        ("name = \"front door\"\n", "name", 1),
    ];
    for &(text, key, line) in cases {
        let e = parse_err(text);
        assert_eq!(e.key().as_deref(), Some(key), "{text}: {e}");
        assert_eq!(e.line(), (line > 0).then_some(line), "{text}: {e}");
    }
    let cfg =
        parse("name = \"garden\"\n[mqtt]\nurl = \"mqtts://broker\"\n[detect]\nallow = [\"cat\"]\n").unwrap();
    let m = cfg.mqtt_settings().unwrap().unwrap();
    assert_eq!((m.host.as_str(), m.port, m.tls), ("broker", 8883, true));
    assert_eq!(m.camera, "garden");
    assert_eq!(m.labels, ["cat"]);
    assert!(m.client_id.starts_with("edgevision-"));
    assert!(Config::default().mqtt_settings().unwrap().is_none());
}

#[test]
fn config_stream_font_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.tflite"), b"x").unwrap();
    std::fs::write(dir.path().join("notafont.ttf"), b"plain text").unwrap();
    let file = dir.path().join("c.toml");
    let write = |font: &str| {
        std::fs::write(
            &file,
            format!("[model]\nlabels = \"\"\npath = \"m.tflite\"\n[stream]\nfont = \"{font}\"\n"),
        )
        .unwrap()
    };
    write("missing.ttf");
    let e = Config::load_checked(&file).unwrap_err();
    assert_eq!(e.key().as_deref(), Some("stream.font"));
    assert_eq!(e.line(), Some(5));
    assert!(e.to_string().contains("font file not found"), "{e}");
    // Next to the config, but not a font.
    write("notafont.ttf");
    let e = Config::load_checked(&file).unwrap_err();
    assert_eq!(e.key().as_deref(), Some("stream.font"));
    assert!(
        e.to_string().contains("is not a TrueType or OpenType font"),
        "{e}"
    );
    // Debian's DejaVu (fonts-dejavu-core) loads.
    write(crate::annotate::text::DEFAULT_FONTS[1]);
    let cfg = Config::load_checked(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.stream.font.as_deref(),
        Some(Path::new(crate::annotate::text::DEFAULT_FONTS[1]))
    );
}

#[test]
fn config_credentials_from_a_file_go_into_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "p@ss:w/rd\n").unwrap();
    let text = format!(
        "[source]\nuri = \"http://cam:81/video\"\nusername = \"viewer\"\npassword_file = \"{}\"\n",
        pw.display()
    );
    let cfg = Config::parse(&text, Path::new("config/x.toml")).unwrap();
    match cfg.source.source_uri().unwrap() {
        SourceUri::Http(u) => {
            assert_eq!(
                u.credentials,
                Some(("viewer".to_string(), "p@ss:w/rd".to_string()))
            );
            assert_eq!(u.to_string(), "http://***@cam:81/video");
        }
        other => panic!("{other:?}"),
    }
    // An empty file, and both sources of a password: errors on their keys.
    std::fs::write(&pw, "\n").unwrap();
    let (key, msg) = cfg.source.source_uri().unwrap_err();
    assert_eq!(key, "source.password_file");
    assert!(msg.contains("is empty"), "{msg}");
    let e = parse_err(&format!("{text}password_env = \"X\"\n"));
    assert_eq!(e.key().as_deref(), Some("source.password_env"));
    assert_eq!(e.line(), Some(5));
    assert!(e.to_string().contains("not both"), "{e}");
}
