//! `moe calibrate --plot` and `moe cache-sim --plot`: the PNGs, decoded with the `png` crate,
//! have the plot's size and hold a heatmap or lines of the expected colours; a path that
//! cannot take the file is an error naming it.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;

use crate::common::edit::temp_dir;
use crate::common::fixtures::dir;
use crate::run::{moe, stderr};

/// The plots' size in pixels (`src/bin/moe/plot/mod.rs`).
const SIZE: (usize, usize) = (1200, 900);
/// Belady's MIN's line and the first two policies' (LRU, LFU), from `plot/hits.rs`.
const OPTIMAL: [u8; 3] = [44, 160, 44];
const LRU: [u8; 3] = [31, 119, 180];
const LFU: [u8; 3] = [214, 39, 40];

/// A decoded RGB image.
struct Image {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Image {
    fn open(path: &Path) -> Image {
        let file = std::fs::File::open(path).unwrap();
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .unwrap();
        let mut buf = vec![
            0;
            reader
                .output_buffer_size()
                .expect("a PNG that fits in memory")
        ];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let rgb = buf[..info.buffer_size()]
            .chunks(3)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        Image {
            width: info.width as usize,
            height: info.height as usize,
            rgb,
        }
    }

    /// The pixels of the region spanning the fractions `x` and `y` of the image.
    fn region(&self, x: Range<f64>, y: Range<f64>) -> impl Iterator<Item = [u8; 3]> + '_ {
        let span =
            |r: &Range<f64>, n: usize| (r.start * n as f64) as usize..(r.end * n as f64) as usize;
        let (xs, ys) = (span(&x, self.width), span(&y, self.height));
        ys.flat_map(move |y| xs.clone().map(move |x| self.rgb[y * self.width + x]))
    }

    fn count(&self, colour: [u8; 3]) -> usize {
        self.rgb.iter().filter(|&&p| p == colour).count()
    }
}

/// A colour far from grey (not text, axes, grid or background).
fn saturated(p: &[u8; 3]) -> bool {
    p.iter().max().unwrap() - p.iter().min().unwrap() > 60
}

/// The plot's size, and at least a fiftieth of it drawn (not white).
fn check_drawn(img: &Image) -> Result<(), String> {
    if (img.width, img.height) != SIZE {
        return Err(format!("size {}×{}", img.width, img.height));
    }
    let drawn = img.rgb.iter().filter(|&&p| p != [255; 3]).count();
    if drawn * 50 < img.rgb.len() {
        return Err(format!("only {drawn} pixels are not white"));
    }
    Ok(())
}

/// The heatmap (the upper part, left of the colour bar) holds several colours of the scale
/// and the w_j/w_1 plot below it one line per j = 2..k.
fn check_routing(img: &Image, k: usize) -> Result<(), String> {
    check_drawn(img)?;
    let heat: HashSet<[u8; 3]> = img.region(0.1..0.8, 0.15..0.5).filter(saturated).collect();
    if heat.len() < 4 {
        return Err(format!("heatmap colours {heat:?}"));
    }
    let lines: HashSet<[u8; 3]> = img.region(0.1..0.95, 0.7..0.9).filter(saturated).collect();
    if lines.len() < k - 1 {
        return Err(format!("ratio line colours {lines:?}"));
    }
    Ok(())
}

/// Each line's colour along much of the plot's width.
fn check_hits(img: &Image) -> Result<(), String> {
    check_drawn(img)?;
    for (name, c) in [("MIN", OPTIMAL), ("LRU", LRU), ("LFU", LFU)] {
        let n = img.count(c);
        if n < 300 {
            return Err(format!("{name}'s colour {c:?} has {n} pixels"));
        }
    }
    Ok(())
}

#[test]
fn the_checks_refuse_a_blank_image() {
    let path = temp_dir("plot-blank").join("blank.png");
    let file = std::fs::File::create(&path).unwrap();
    let mut enc = png::Encoder::new(file, SIZE.0 as u32, SIZE.1 as u32);
    enc.set_color(png::ColorType::Rgb);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&vec![255; SIZE.0 * SIZE.1 * 3]).unwrap();
    w.finish().unwrap();
    let img = Image::open(&path);
    assert!(check_drawn(&img).is_err());
    assert!(check_routing(&img, 4).is_err());
    assert!(check_hits(&img).is_err());
}

#[test]
fn cache_sim_plots_hit_rate_against_slots() {
    let d = temp_dir("plot-hits");
    let path = d.join("hits.png");
    let p = path.to_str().unwrap();
    let o = moe(&[
        "cache-sim",
        "--zipf",
        "1",
        "--steps",
        "300",
        "--plot",
        p,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("belady"), "{table}");
    check_hits(&Image::open(&path)).unwrap();

    // Only the requested slot counts are printed; the plot still sweeps k..experts.
    let o = moe(&[
        "cache-sim",
        "--zipf",
        "1",
        "--steps",
        "100",
        "--slots",
        "16",
        "--json",
        "--plot",
        p,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sim: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sim.as_array().unwrap().len(), 1);
    assert_eq!(sim[0]["slots"], 16);
    check_hits(&Image::open(&path)).unwrap();
}

#[test]
fn a_plot_path_that_cannot_be_written_is_an_error() {
    let d = temp_dir("plot-bad");
    let missing = d.join("no-such-folder").join("hits.png");
    let not_png = d.join("hits.txt");
    // A folder of that name: even root cannot write the file.
    let unwritable = d.join("taken.png");
    std::fs::create_dir(&unwritable).unwrap();
    for (path, says) in [
        (missing.as_path(), "not an existing folder"),
        (not_png.as_path(), "must end in .png"),
        (unwritable.as_path(), "cannot write the PNG"),
    ] {
        let o = moe(&[
            "cache-sim",
            "--zipf",
            "1",
            "--steps",
            "50",
            "--plot",
            path.to_str().unwrap(),
        ]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{}", path.display());
        assert!(err.contains(says) && !err.contains("panicked"), "{err}");
    }
    let model = dir("hf-tiny", "qwen3_moe").join("model");
    let stats = d.join("stats.json");
    let o = moe(&[
        "calibrate",
        "--model",
        model.to_str().unwrap(),
        "--out",
        stats.to_str().unwrap(),
        "--plot",
        missing.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not an existing folder"),
        "{}",
        stderr(&o)
    );
    assert!(!stats.exists(), "refused before calibrating");
}

#[test]
fn calibrate_plots_a_heatmap_and_the_weight_ratios() {
    let model = dir("hf-tiny", "qwen3_moe").join("model");
    let d = temp_dir("plot-routing");
    let stats = d.join("stats.json");
    let path = d.join("routing.png");
    let o = moe(&[
        "calibrate",
        "--model",
        model.to_str().unwrap(),
        "--out",
        stats.to_str().unwrap(),
        "--seq-len",
        "16",
        "--sequences",
        "3",
        "--plot",
        path.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    check_routing(&Image::open(&path), 4).unwrap();
}
