//! The page in a real browser: headless Chromium (Debian's `chromium`,
//! installed by scripts/deps --test) opens `/` and the screenshot must show
//! the live stream with a detection box drawn in it.

mod common;

use std::process::Command;

use common::daemon::{get, start, wait_for};

#[test]
fn the_page_shows_the_live_stream_with_boxes() {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is not installed: run scripts/deps --test");
    let photos = tempfile::tempdir().unwrap();
    std::fs::copy(common::photo("dog.jpg"), photos.path().join("dog.jpg")).unwrap();
    let config = format!(
        "[source]\nuri = \"images:{}\"\nfps = 10.0\n[model]\npath = \"{}\"\nlabels = \"{}\"\nthreads = 1\n",
        photos.path().display(),
        common::coco_model().display(),
        common::coco_labels().display()
    );
    let d = start(&config);
    wait_for(60, "detections", || {
        let (code, body) = get(&d.addr, "/api/detections");
        (code == 200 && String::from_utf8_lossy(&body).contains("\"dog\"")).then_some(())
    });
    let profile = tempfile::tempdir().unwrap();
    let shot = profile.path().join("page.png");
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
            // The MJPEG stream never finishes loading: take the picture after 6 s.
            "--timeout=6000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("http://{}/", d.addr))
        .output()
        .expect("run chromium");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&shot).expect("screenshot is a PNG").to_rgb8();

    // The dog's box is drawn in the dog's colour: a long straight run of it.
    let colour = edgevision::annotate::label_color("dog");
    let near = |p: &image::Rgb<u8>| {
        p.0.iter()
            .zip(colour.0.iter())
            .all(|(a, b)| (*a as i32 - *b as i32).abs() < 60)
    };
    let longest_run = (0..img.height())
        .map(|y| {
            let (mut best, mut run) = (0, 0);
            for x in 0..img.width() {
                run = if near(img.get_pixel(x, y)) { run + 1 } else { 0 };
                best = best.max(run);
            }
            best
        })
        .max()
        .unwrap();
    assert!(
        longest_run >= 60,
        "no dog box in the screenshot (longest run {longest_run} px)"
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
        "the page looks blank ({} colours)",
        colours.len()
    );
}
