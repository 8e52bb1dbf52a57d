//! Autotuning of the expert GEMMs' tiling. At first use of a layer shape the candidates of
//! [`Tiling::candidates`] are timed on a small grouped problem of that shape and the fastest
//! is kept, in memory and on disk, keyed by adapter and shape bucket. Layers whose expert
//! matrices hold fewer than 16K weights keep the default: the tiling cannot matter there, and
//! tests and toy models pay nothing. With tuning off
//! ([`Context::set_autotune`], `MOE_GPU_TUNE=0`) the fixed defaults are used. Every candidate
//! computes the same function (tests/kernels/matmul_variants.rs), so tuning changes speed, not
//! results beyond f32 rounding.
//!
//! The cache file is `tuning-v5.json` in `MOE_GPU_CACHE_DIR`, else the platform cache
//! directory (`$XDG_CACHE_HOME/moe-gpu`, `~/.cache/moe-gpu`, `~/Library/Caches/moe-gpu`,
//! `%LOCALAPPDATA%\moe-gpu`). A cache that cannot be read or written is ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::Result;
use crate::gpu::{Context, GpuTimer, median};
use crate::kernels::expert_arena::ExpertArena;
use crate::kernels::grouped_matmul::GroupedMatmul;
use crate::kernels::matmul::{ExpertFormat, Glu, MatmulBuffers, MatmulSpec};
use crate::kernels::permute::{TileLists, expert_sorted_rows};
use crate::kernels::tiling::{TileKind, Tiling};
use crate::spec::weights::ExpertWeights;

/// The cache file's name; the version changes whenever the candidates or the tuning problem do.
const CACHE_FILE: &str = "tuning-v5.json";

/// Tuning problems: rows per expert. Prefill rows are spread unevenly around 16 (as random
/// routing of 128 tokens over 64 experts with k = 8 spreads them), so that a tiling pays for
/// the partly filled tiles real routing leaves; decode has one row per expert.
const PREFILL_ROWS: [usize; 12] = [16, 13, 19, 9, 22, 15, 18, 11, 24, 14, 20, 12];
const DECODE_ROWS: [usize; 8] = [1; 8];
const MAX_TUNED_SIZE: usize = 1024;
/// Expert matrices with fewer weights (hidden · inter) than this are too small for the tiling
/// to matter, so they keep the default rather than pay for tuning (test fixtures, toy demos).
const MIN_TUNED_WEIGHTS: usize = 16 * 1024;
const TUNE_REPEATS: usize = 5;

/// Tuned tilings by cache key, for every context of the process (the key names the adapter);
/// `None` until the disk cache has been read.
static TUNED: Mutex<Option<HashMap<String, Tiling>>> = Mutex::new(None);

/// The two expert GEMMs of a layer: gate/up (with its activation) over hidden, then down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpertGemms {
    /// Hidden size.
    pub hidden: usize,
    /// Expert width.
    pub inter: usize,
    /// Gated activation of gate/up.
    pub glu: Glu,
    /// The experts carry biases.
    pub bias: bool,
    /// Storage formats of the gate/up and down weights.
    pub format: ExpertFormat,
}

impl ExpertGemms {
    /// FLOPs of both GEMMs for `rows` rows (a multiply-add counts two).
    pub fn flops(&self, rows: usize) -> f64 {
        let gate_up = self.inter * self.glu.rows_per_output();
        2.0 * rows as f64 * (gate_up * self.hidden + self.hidden * self.inter) as f64
    }

    /// The gate/up GEMM (`first`) or the down GEMM, grouped over experts or dense.
    pub fn spec(&self, first: bool, tiling: Tiling, grouped: bool) -> MatmulSpec {
        let (n, k, glu, format) = if first {
            (self.inter, self.hidden, self.glu, self.format.gate_up)
        } else {
            (self.hidden, self.inter, Glu::None, self.format.down)
        };
        MatmulSpec {
            n,
            k,
            glu,
            bias: self.bias,
            format,
            grouped,
            // Grouped gate/up reads token rows through the permutation; down reads its rows
            // in sorted order.
            gather: grouped && first,
            tail: false,
            tiling,
        }
    }
}

/// The tiling of `kind` for a layer with expert GEMMs `g`: tuned, cached or the default.
pub fn tiling(ctx: &Context, kind: TileKind, g: &ExpertGemms) -> Tiling {
    let default = Tiling::default_for(kind);
    if !ctx.autotune() || g.hidden * g.inter < MIN_TUNED_WEIGHTS {
        return default;
    }
    let key = cache_key(ctx, kind, g);
    let mut cache = TUNED.lock().unwrap_or_else(|p| p.into_inner());
    let map = cache.get_or_insert_with(load_cache);
    if let Some(t) = map.get(&key)
        && t.validate(ctx).is_ok()
    {
        return *t;
    }
    let started = std::time::Instant::now();
    let chosen = measure(ctx, kind, g).unwrap_or(default);
    ctx.note_tuning(started.elapsed());
    map.insert(key, chosen);
    save_cache(map);
    chosen
}

/// Adapter identity plus the shape bucket (sizes rounded up to powers of two).
fn cache_key(ctx: &Context, kind: TileKind, g: &ExpertGemms) -> String {
    let i = &ctx.info;
    // A uniform format keeps the key it had before formats were per matrix.
    let (gu, dn) = (g.format.gate_up, g.format.down);
    let format = if gu == dn {
        format!("{gu:?}")
    } else {
        format!("{gu:?}+{dn:?}")
    };
    format!(
        "{} | {:?} | {} {} | {:04x}:{:04x} | {kind:?} {format} glu={} bias={} | h{} i{}",
        i.name,
        i.backend,
        i.driver,
        i.driver_info,
        i.vendor,
        i.device,
        g.glu.rows_per_output() == 2,
        g.bias,
        g.hidden.next_power_of_two(),
        g.inter.next_power_of_two()
    )
}

/// Times every candidate on the problem of `kind` (`PREFILL_ROWS` or `DECODE_ROWS`) and returns
/// the fastest.
fn measure(ctx: &Context, kind: TileKind, g: &ExpertGemms) -> Result<Tiling> {
    let rows: &[usize] = match kind {
        TileKind::Prefill => &PREFILL_ROWS,
        TileKind::Decode => &DECODE_ROWS,
    };
    let experts = rows.len();
    let g = ExpertGemms {
        hidden: g.hidden.min(MAX_TUNED_SIZE),
        inter: g.inter.min(MAX_TUNED_SIZE),
        ..*g
    };
    let arena = ExpertArena::new(ctx, g.hidden, g.inter, experts, g.format, g.bias)?;
    for e in 0..experts {
        arena.upload(ctx, e, &pattern_expert(&g, e))?;
    }
    let table = ExpertArena::new_table(ctx, experts)?;
    ExpertArena::write_table(ctx, &table, &(0..experts as u32).collect::<Vec<_>>());
    let ids: Vec<u32> = rows
        .iter()
        .enumerate()
        .flat_map(|(e, &n)| std::iter::repeat_n(e as u32, n))
        .collect();
    let timer = GpuTimer::new(ctx)?;
    // A candidate the adapter cannot build or run is skipped, not fatal. The others are timed
    // in turn, round after round, so that load from other processes, which changes over
    // seconds, does not favour the ones timed while it was low.
    let mut runs: Vec<(Tiling, GroupedRun, Vec<f64>)> = Tiling::candidates(kind)
        .into_iter()
        .filter_map(|tiling| {
            let run = GroupedRun::new(ctx, (&arena, &table), &g, &ids, 1, tiling).ok()?;
            run.time(ctx, &timer).ok()?;
            Some((tiling, run, Vec::new()))
        })
        .collect();
    for _ in 0..TUNE_REPEATS {
        for (_, run, times) in &mut runs {
            times.push(run.time(ctx, &timer)?);
        }
    }
    let best = runs
        .iter_mut()
        .map(|(tiling, _, times)| (median(times), *tiling))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    Ok(best.map_or(Tiling::default_for(kind), |(_, t)| t))
}

/// Cheap deterministic weights of ordinary magnitude (values do not change GEMM speed).
fn pattern_expert(g: &ExpertGemms, e: usize) -> ExpertWeights {
    let fill = |n: usize, salt: usize| -> Vec<f32> {
        (0..n)
            .map(|i| {
                (i.wrapping_mul(2_654_435_761).wrapping_add(salt * 97 + e) % 2001) as f32 * 1e-4
                    - 0.1
            })
            .collect()
    };
    let (h, i) = (g.hidden, g.inter);
    ExpertWeights {
        gate: fill(i * h, 1),
        up: fill(i * h, 2),
        down: fill(h * i, 3),
        gate_bias: g.bias.then(|| fill(i, 4)),
        up_bias: g.bias.then(|| fill(i, 5)),
        down_bias: g.bias.then(|| fill(h, 6)),
    }
}

/// The grouped gate/up and down GEMMs on the experts resident in an arena, for a fixed
/// (token, slot) → expert assignment, with the tile lists the permutation kernels would build
/// (full tiles, and tail tiles where the tiling has a tail): built once, timed many times.
pub struct GroupedRun {
    gate_up: GroupedMatmul,
    down: GroupedMatmul,
    /// Tiles in the (full, tail) lists.
    tiles: (u32, u32),
}

impl GroupedRun {
    /// `ids` is [tokens, top_k] expert ids of the rows, looked up in the arena through
    /// `table`; `tiling` fixes the tile height.
    pub fn new(
        ctx: &Context,
        (arena, table): (&ExpertArena, &wgpu::Buffer),
        g: &ExpertGemms,
        ids: &[u32],
        top_k: usize,
        tiling: Tiling,
    ) -> Result<Self> {
        let (h, i, k) = (g.hidden, g.inter, top_k.max(1));
        let pairs = ids.len();
        let experts = ids
            .iter()
            .filter(|&&e| e != u32::MAX)
            .max()
            .map_or(0, |&e| e as usize + 1);
        let (rows, counts) = expert_sorted_rows(ids, experts);
        let lists = TileLists::new(&counts, tiling.block_m(), tiling.tail_m());
        let tokens = pairs.div_ceil(k);
        let x: Vec<f32> = (0..tokens * h)
            .map(|v| (v % 7) as f32 * 0.25 - 0.75)
            .collect();
        let x = ctx.storage_with("tune x", &x)?;
        let hbuf = ctx.storage("tune hidden", (pairs * i * 4) as u64)?;
        let y = ctx.storage("tune y", (pairs * h * 4) as u64)?;
        let tiles = ctx.storage_with("tune tiles", &lists.buffer_words())?;
        let rows = ctx.storage_with("tune rows", &rows)?;
        let buffers = |x, w, bias, out| MatmulBuffers {
            x,
            w,
            bias,
            slots: table,
            tiles: &tiles,
            rows: &rows,
            out,
        };
        let gate_up = GroupedMatmul::new(
            ctx,
            g.spec(true, tiling, true),
            h,
            i,
            k,
            buffers(&x, &arena.gate_up, &arena.gate_up_bias, &hbuf),
        )?;
        let down = GroupedMatmul::new(
            ctx,
            g.spec(false, tiling, true),
            i,
            h,
            k,
            buffers(&hbuf, &arena.down, &arena.down_bias, &y),
        )?;
        Ok(Self {
            gate_up,
            down,
            tiles: (lists.full.len() as u32, lists.tail.len() as u32),
        })
    }

    /// Seconds of one run of both GEMMs.
    pub fn time(&self, ctx: &Context, timer: &GpuTimer) -> Result<f64> {
        timer.time(ctx, |mut enc| {
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                self.gate_up.encode_tiles(&mut pass, self.tiles);
                self.down.encode_tiles(&mut pass, self.tiles);
            }
            Ok(enc)
        })
    }
}

/// The directory of the tuning cache, if the platform has one.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("MOE_GPU_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = if cfg!(target_os = "windows") {
        var("LOCALAPPDATA").map(PathBuf::from)
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| PathBuf::from(h).join("Library/Caches"))
    } else {
        var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
    };
    base.map(|b| b.join("moe-gpu"))
}

fn load_cache() -> HashMap<String, Tiling> {
    cache_dir().map(|d| load_cache_from(&d)).unwrap_or_default()
}

fn save_cache(map: &HashMap<String, Tiling>) {
    if let Some(dir) = cache_dir() {
        save_cache_to(&dir, map);
    }
}

/// The cache in `dir`; empty when it is missing or unreadable.
fn load_cache_from(dir: &Path) -> HashMap<String, Tiling> {
    std::fs::read(dir.join(CACHE_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Writes the cache through a temporary file and a rename, so a reader never sees half a
/// file; any failure leaves tuning in memory only.
fn save_cache_to(dir: &Path, map: &HashMap<String, Tiling>) {
    let Ok(json) = serde_json::to_vec_pretty(map) else {
        return;
    };
    let tmp = dir.join(format!("{CACHE_FILE}.{}.tmp", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&tmp, json))
        .and_then(|_| std::fs::rename(&tmp, dir.join(CACHE_FILE)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trips_through_a_directory() {
        let dir = std::env::temp_dir().join(format!("moe-gpu-tune-test-{}", std::process::id()));
        let mut map = HashMap::new();
        map.insert(
            "adapter | Prefill".to_string(),
            Tiling::registers(1, 64, 8, 8),
        );
        save_cache_to(&dir, &map);
        assert_eq!(load_cache_from(&dir), map);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_or_corrupt_cache_is_ignored() {
        // A file where the directory should be: nothing can be written below it.
        let blocker =
            std::env::temp_dir().join(format!("moe-gpu-tune-file-{}", std::process::id()));
        std::fs::write(&blocker, b"not a directory").unwrap();
        let mut map = HashMap::new();
        map.insert("k".to_string(), Tiling::DECODE);
        save_cache_to(&blocker.join("cache"), &map);
        assert!(load_cache_from(&blocker.join("cache")).is_empty());
        std::fs::remove_file(&blocker).unwrap();

        let dir = std::env::temp_dir().join(format!("moe-gpu-tune-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CACHE_FILE), b"{ not json").unwrap();
        assert!(load_cache_from(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
