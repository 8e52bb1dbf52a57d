//! Checks `moe demo`'s size flags before anything is allocated, so that zero or absurd values
//! end in an error naming the flag instead of a panic or an aborted allocation. All
//! arithmetic is checked; a size that overflows `u64` is reported as such.

use anyhow::{Result, bail};

/// The demo's size flags, with their values and defaults (to name the one that is absurd).
pub struct Sizes {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub inter: usize,
    pub experts: usize,
    pub top_k: usize,
    pub vocab: usize,
    pub prompt_tokens: usize,
    pub decode_steps: usize,
}

/// The defaults of `moe demo`'s flags.
pub const DEFAULT: Sizes = Sizes {
    layers: 4,
    hidden: 256,
    heads: 8,
    inter: 128,
    experts: 64,
    top_k: 8,
    vocab: 4096,
    prompt_tokens: 64,
    decode_steps: 16,
};

/// Host memory the demo may use when the machine's cannot be read (`/proc/meminfo`).
const FALLBACK_HOST_BYTES: u64 = 16 << 30;

/// One quantity the demo model needs: what it is, its bytes (None: overflows u64) and the
/// flags it grows with, with their values and defaults.
struct Need {
    what: &'static str,
    bytes: Option<u64>,
    flags: Vec<(&'static str, usize, usize)>,
}

impl Need {
    fn new(what: &'static str, flags: &[(&'static str, usize, usize)], elements: u64) -> Self {
        let bytes = flags
            .iter()
            .try_fold(elements, |acc, (_, v, _)| acc.checked_mul(*v as u64))
            .and_then(|n| n.checked_mul(4));
        Need {
            what,
            bytes,
            flags: flags.to_vec(),
        }
    }

    /// The flag furthest above its default: the one to blame.
    fn flag(&self) -> (&'static str, usize) {
        let (name, value, _) = self
            .flags
            .iter()
            .max_by(|a, b| (a.1 as f64 / a.2 as f64).total_cmp(&(b.1 as f64 / b.2 as f64)))
            .copied()
            .unwrap_or(("--hidden", 0, 1));
        (name, value)
    }

    fn error(&self, limit: u64, of: &str) -> anyhow::Error {
        let (flag, value) = self.flag();
        match self.bytes {
            None => anyhow::anyhow!(
                "{flag} {value}: the demo model's {} would need more than 2^64 bytes",
                self.what
            ),
            Some(b) => anyhow::anyhow!(
                "{flag} {value}: the demo model's {} would need {b} bytes, more than {of} \
                 ({limit} bytes)",
                self.what
            ),
        }
    }
}

impl Sizes {
    /// Zero sizes and inconsistent head or expert counts.
    pub fn check_values(&self) -> Result<()> {
        for (flag, v) in [
            ("--layers", self.layers),
            ("--hidden", self.hidden),
            ("--heads", self.heads),
            ("--inter", self.inter),
            ("--experts", self.experts),
            ("--top-k", self.top_k),
            ("--vocab", self.vocab),
        ] {
            if v == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        if !self.hidden.is_multiple_of(self.heads) || !(self.hidden / self.heads).is_multiple_of(2)
        {
            bail!(
                "--heads {} must divide --hidden {} into heads of an even size",
                self.heads,
                self.hidden
            );
        }
        if self.top_k > self.experts {
            bail!(
                "--top-k {} is more than --experts {}",
                self.top_k,
                self.experts
            );
        }
        if self.vocab > u32::MAX as usize {
            bail!("--vocab {} is more than 2^32 token ids", self.vocab);
        }
        Ok(())
    }

    fn needs(&self) -> (Vec<Need>, Vec<Need>) {
        let d = &DEFAULT;
        let layers = ("--layers", self.layers, d.layers);
        let hidden = ("--hidden", self.hidden, d.hidden);
        let inter = ("--inter", self.inter, d.inter);
        let experts = ("--experts", self.experts, d.experts);
        let vocab = ("--vocab", self.vocab, d.vocab);
        let prompt = (
            "--prompt-tokens",
            self.prompt_tokens.max(1),
            d.prompt_tokens,
        );
        // The KV cache holds prompt and decode positions; the larger flag is named.
        let blame = if self.decode_steps > self.prompt_tokens {
            ("--decode-steps", self.decode_steps, d.decode_steps)
        } else {
            prompt
        };
        let positions = self.prompt_tokens.checked_add(self.decode_steps);
        let kv = Need {
            what: "KV cache per layer",
            bytes: positions.and_then(|p| {
                (p.max(1) as u64)
                    .checked_mul(self.hidden as u64)?
                    .checked_mul(4)
            }),
            flags: vec![blame, hidden],
        };
        // Each of these is one GPU buffer: the embedding table (and lm_head), a layer's
        // expert matrices, a layer's K (or V) cache, a step's activations.
        let buffers = vec![
            Need::new("embedding table", &[vocab, hidden], 1),
            Need::new("expert weights per layer", &[experts, inter, hidden], 3),
            kv,
            Need::new("prefill activations", &[prompt, hidden], 8),
        ];
        // The synthetic checkpoint is held twice on the host while it is written (values and
        // their bytes): embeddings and lm_head, and per layer attention and experts.
        let host = vec![
            Need::new("synthetic checkpoint", &[vocab, hidden], 2 * 2),
            Need::new(
                "synthetic checkpoint",
                &[layers, experts, inter, hidden],
                3 * 2,
            ),
            Need::new("synthetic checkpoint", &[layers, hidden, hidden], 4 * 2),
            Need::new("prompt", &[prompt], 1),
        ];
        (buffers, host)
    }

    /// Host memory for the synthetic checkpoint, before anything is allocated.
    pub fn check_host(&self) -> Result<()> {
        let limit = available_host_bytes();
        let (buffers, host) = self.needs();
        if let Some(n) = buffers.iter().chain(&host).find(|n| n.bytes.is_none()) {
            return Err(n.error(0, ""));
        }
        let total = host.iter().try_fold(0u64, |t, n| t.checked_add(n.bytes?));
        let worst = host.iter().max_by_key(|n| n.bytes).expect("host needs");
        match total {
            Some(t) if t <= limit => Ok(()),
            Some(t) => Err(Need {
                bytes: Some(t),
                ..Need::new(worst.what, &worst.flags, 1)
            }
            .error(limit, "the host memory available")),
            None => Err(worst.error(0, "")),
        }
    }

    /// The largest buffers against the adapter's `max_buffer_size`.
    pub fn check_gpu(&self, limits: &wgpu::Limits) -> Result<()> {
        let limit = limits.max_buffer_size;
        for n in self.needs().0 {
            if n.bytes.is_none_or(|b| b > limit) {
                return Err(n.error(limit, "the adapter's max_buffer_size"));
            }
        }
        Ok(())
    }
}

/// `MemAvailable` of `/proc/meminfo`, else [`FALLBACK_HOST_BYTES`].
fn available_host_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(FALLBACK_HOST_BYTES, |kb| kb.saturating_mul(1024))
}
