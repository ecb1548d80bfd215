//! The stream in real clients: the page in headless Chromium and Firefox
//! (Debian's `chromium` and `firefox-esr`), and `/stream.mjpg` in VLC, all
//! installed by scripts/deps --test. Each picture must show the live photo
//! with the dog's detection box drawn in it.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::daemon::{start_until_dog, Daemon};
use common::photo_dir;

fn installed(candidates: &[&'static str]) -> &'static str {
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates
        .iter()
        .copied()
        .find(|c| std::env::split_paths(&path).any(|d| d.join(c).is_file()))
        .unwrap_or_else(|| panic!("{} is not installed: run scripts/deps --test", candidates[0]))
}

/// The daemon on dog.jpg, once it reports the dog.
fn dog_daemon() -> (Daemon, tempfile::TempDir) {
    let photos = photo_dir(&["dog.jpg"]);
    let config = format!(
        "[source]\nuri = \"images:{}\"\nfps = 10.0\n[model]\npath = \"{}\"\nlabels = \"{}\"\nthreads = 1\n",
        photos.path().display(),
        common::coco_model().display(),
        common::coco_labels().display()
    );
    (start_until_dog(&config), photos)
}

#[test]
fn the_page_shows_the_live_stream_with_boxes() {
    let (d, _photos) = dog_daemon();
    chromium_shows_dog_box(&d);
}

/// `stream.annotate = "client"`: the stream has no boxes; the page draws
/// them on a canvas from the reports.
#[test]
fn the_page_draws_the_boxes_itself_in_client_mode() {
    let (d, _dir, _dog) = crate::client_annotate::client_mode_daemon("");
    // The stream itself carries the photo without any box.
    let part = common::daemon::open_stream(&d.addr, Duration::from_secs(10))
        .next_part()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let frame = dir.path().join("part.png");
    image::load_from_memory(&part).unwrap().save(&frame).unwrap();
    assert!(
        dog_box_run(&frame) < 60,
        "the streamed frame already has a box drawn in it"
    );
    chromium_shows_dog_box(&d);
}

/// The page reads the stream itself once reports arrive: the picture on
/// its canvas, and the list, figures and frame number of that picture's
/// report, each detection with its box's colour.
#[test]
fn the_page_lists_the_report_of_the_frame_it_shows() {
    let (d, _photos) = dog_daemon();
    let dom = chromium_dom(
        &format!("http://{}/", d.addr),
        &["--timeout=10000", COMPOSITE],
        |dom| dom.contains(r#"class="view reading""#),
    );
    assert!(
        dom.contains(r#"class="view reading""#),
        "the canvas was never shown: {dom}"
    );
    let frame: u64 = dom
        .split(r#"<span id="frame">"#)
        .nth(1)
        .and_then(|t| t.split('<').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no frame number: {dom}"));
    assert!(frame >= 1, "{dom}");
    let [r, g, b] = edgevision::annotate::label_color("dog").0;
    let swatch = format!(r#"<i class="swatch" style="background: rgb({r}, {g}, {b});"></i>dog"#);
    assert!(dom.contains(&swatch), "no {swatch} in the list: {dom}");
}

/// The page's list of objects: each with its id, what it did, and its
/// picture from the daemon.
#[test]
fn the_page_lists_objects_with_their_pictures() {
    let (d, _clip, _snaps) = crate::tracking::crossing_daemon_with_pictures();
    common::wait_for(120, "an object ended", || {
        let (_, body) = common::daemon::get(&d.addr, "/api/events/recent");
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (!v["events"].as_array()?.is_empty()).then_some(())
    });
    let dom = chromium_dom(
        &format!("http://{}/", d.addr),
        &["--timeout=5000", COMPOSITE],
        |dom| dom.contains("/snapshot.jpg"),
    );
    let list = dom
        .split(r#"<ul id="events">"#)
        .nth(1)
        .and_then(|t| t.split("</ul>").next())
        .unwrap_or_else(|| panic!("no object list: {dom}"));
    assert!(list.contains("dog #"), "{list}");
    assert!(list.contains("crossed middle (forward)"), "{list}");
    let src = list
        .split(r#"src=""#)
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_else(|| panic!("no picture in the list: {list}"));
    assert!(
        src.starts_with("api/events/") && src.contains("/snapshot.jpg"),
        "{src}"
    );
    let path = format!("/{}", src.replace("&amp;", "&"));
    let (code, jpeg) = common::daemon::get(&d.addr, &path);
    assert_eq!(code, 200, "{path}");
    assert!(image::load_from_memory(&jpeg).is_ok());
}

/// Lets the page draw what it shows: `--dump-dom` alone skips rendering,
/// and with it the image decoding the page's canvas needs.
const COMPOSITE: &str = "--run-all-compositor-stages-before-draw";

/// The DOM of the page at `url` in headless Chromium (with `extra_args`),
/// once `done` holds of it. Chromium dumps the DOM when it deems the page
/// loaded, which may be before the page's script has read the stream or
/// its fetches have come back, and a busy machine may be later still:
/// take up to five dumps, each from a fresh browser and profile. Returns
/// the last dump whether or not `done` held: the caller's asserts say what
/// was missing.
///
/// `--virtual-time-budget` (the page's timers and fetches run before the
/// dump) is for pages without a stream only: with `/stream.mjpg` on the
/// page its never-ending fetch holds virtual time, and Chromium never
/// dumps at all, `--timeout` or not.
fn chromium_dom(url: &str, extra_args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let chromium = installed(&["chromium", "chromium-browser"]);
    let mut dom = String::new();
    for _ in 0..5 {
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--dump-dom",
            ])
            .args(extra_args)
            .arg(format!(
                "--user-data-dir={}",
                profile.path().join("profile").display()
            ))
            .arg(url)
            .output()
            .expect("run chromium");
        dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if done(&dom) {
            break;
        }
    }
    dom
}

fn chromium_shows_dog_box(d: &Daemon) {
    chromium_shows_dog_box_at(d, "/");
}

/// [`chromium_shows_dog_box`] for the page at `path`.
fn chromium_shows_dog_box_at(d: &Daemon, path: &str) {
    let chromium = installed(&["chromium", "chromium-browser"]);
    let profile = tempfile::tempdir().unwrap();
    let shot = profile.path().join("page.png");
    // Chromium takes the screenshot once the page has loaded, and the
    // stream's <img> counts as loaded at its first picture. In client mode
    // the boxes come a moment later, when the page has read the first report
    // and swapped the <img> for its canvas; on a busy machine that moment
    // can fall after the screenshot. Take up to five, each from a fresh
    // browser: one of them must show the box.
    let mut err = String::new();
    for attempt in 0..5 {
        let _ = std::fs::remove_file(&shot);
        let out = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=900,1000",
                "--timeout=6000",
            ])
            .arg(format!(
                "--user-data-dir={}",
                profile.path().join(format!("profile{attempt}")).display()
            ))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("http://{}{path}", d.addr))
            .output()
            .expect("run chromium");
        err = String::from_utf8_lossy(&out.stderr).into_owned();
        if shot.exists() && dog_box_run(&shot) >= 60 {
            break;
        }
    }
    assert!(shot.exists(), "no screenshot: {err}");
    assert_shows_dog_box(&shot, "chromium");
}

#[test]
fn firefox_shows_the_live_stream_with_boxes() {
    let firefox = installed(&["firefox-esr", "firefox"]);
    let (d, _photos) = dog_daemon();
    let home = tempfile::tempdir().unwrap();
    let shot = home.path().join("page.png");
    // Firefox takes the screenshot once the page has loaded; the MJPEG image
    // counts as loaded at its first frame.
    let out = Command::new(firefox)
        .env("HOME", home.path())
        .args(["--headless", "--no-remote", "--window-size=900,1000", "--profile"])
        .arg(home.path())
        .arg("--screenshot")
        .arg(&shot)
        .arg(format!("http://{}/", d.addr))
        .output()
        .expect("run firefox");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_shows_dog_box(&shot, "firefox");
}

#[test]
fn vlc_plays_the_mjpeg_stream() {
    let vlc = installed(&["cvlc"]);
    let (d, _photos) = dog_daemon();
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    // VLC refuses to run as root: drop to nobody when the tests are root.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        use std::os::unix::fs::PermissionsExt;
        for p in [dir.path(), frames.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
    }
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", vlc]);
        c
    } else {
        Command::new(vlc)
    };
    // The scene filter saves every decoded frame as a PNG. VLC never ends an
    // endless stream by itself: stop it once it has saved a few frames.
    let mut child = cmd
        .env("HOME", dir.path())
        .args([
            "--intf=dummy",
            "--vout=dummy",
            "--no-audio",
            "--video-filter=scene",
            "--scene-format=png",
            "--scene-ratio=1",
            "--scene-prefix=frame",
        ])
        .arg(format!("--scene-path={}", frames.display()))
        .arg(format!("http://{}/stream.mjpg", d.addr))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run vlc");
    common::poll(Duration::from_secs(60), Duration::from_millis(200), || {
        let saved = std::fs::read_dir(&frames).unwrap().count();
        (saved >= 5 || child.try_wait().unwrap().is_some()).then_some(())
    });
    // Let the PNG being written finish.
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let mut saved: Vec<_> = std::fs::read_dir(&frames)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    saved.sort();
    assert!(
        saved.len() >= 3,
        "VLC decoded {} frames: {}",
        saved.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    // The newest file may have been cut short by the kill.
    let frame = &saved[saved.len() - 2];
    assert_eq!(image::image_dimensions(frame).unwrap(), (640, 480));
    assert_shows_dog_box(frame, "vlc");
}

/// The longest horizontal run of the dog's box colour in a picture.
fn dog_box_run(shot: &Path) -> u32 {
    let img = image::open(shot).expect("the picture is a PNG").to_rgb8();

    // The dog's box is drawn in the dog's colour: a long straight run of it.
    let colour = edgevision::annotate::label_color("dog");
    let near = |p: &image::Rgb<u8>| {
        p.0.iter()
            .zip(colour.0.iter())
            .all(|(a, b)| (*a as i32 - *b as i32).abs() < 60)
    };
    (0..img.height())
        .map(|y| {
            let (mut best, mut run) = (0, 0);
            for x in 0..img.width() {
                run = if near(img.get_pixel(x, y)) { run + 1 } else { 0 };
                best = best.max(run);
            }
            best
        })
        .max()
        .unwrap()
}

/// The picture holds the photo (many colours) and the dog's box.
fn assert_shows_dog_box(shot: &Path, client: &str) {
    let img = image::open(shot).expect("the picture is a PNG").to_rgb8();
    let longest_run = dog_box_run(shot);
    assert!(
        longest_run >= 60,
        "{client}: no dog box in the picture (longest run {longest_run} px)"
    );

    // And the photo itself is there: many distinct colours, not a blank page.
    let mut colours: Vec<u32> = img
        .pixels()
        .step_by(7)
        .map(|p| (p[0] as u32 >> 3) << 10 | (p[1] as u32 >> 3) << 5 | p[2] as u32 >> 3)
        .collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(
        colours.len() > 2000,
        "{client}: the picture looks blank ({} colours)",
        colours.len()
    );
}

/// Several cameras: the page is a grid with a tile per camera, each its
/// latest picture and a link to its own page, where the stream shows full
/// size with its boxes.
#[test]
fn the_grid_shows_every_camera_and_each_camera_page_its_stream() {
    let photos = photo_dir(&["dog.jpg"]);
    let config = format!(
        "[model]\npath = \"{}\"\nlabels = \"{}\"\nthreads = 1\n\
         [[camera]]\nname = \"yard\"\n[camera.source]\nuri = \"images:{}\"\nfps = 10.0\n\
         [[camera]]\nname = \"door\"\n[camera.source]\nuri = \"test:\"\nfps = 5.0\n",
        common::coco_model().display(),
        common::coco_labels().display(),
        photos.path().display(),
    );
    let d = start_until_dog(&config);
    // The grid is built by the page's script from a fetch of api/cameras:
    // let the page's timers and fetches run first.
    let dom = chromium_dom(
        &format!("http://{}/", d.addr),
        &["--virtual-time-budget=3000"],
        |dom| dom.contains("cameras/door/snapshot.jpg") && dom.contains("fps"),
    );
    for cam in ["yard", "door"] {
        assert!(
            dom.contains(&format!(r#"href="cameras/{cam}/""#)),
            "no link to {cam}: {dom}"
        );
        assert!(dom.contains(&format!("<b>{cam}</b>")), "no tile for {cam}: {dom}");
        assert!(
            dom.contains(&format!("cameras/{cam}/snapshot.jpg")),
            "no picture of {cam}: {dom}"
        );
    }
    assert!(dom.contains("2 cameras"), "{dom}");
    // One camera full size, with the dog's box, on its own page.
    chromium_shows_dog_box_at(&d, "/cameras/yard/");
}
