//! Where missed experts run: the options behind `--cpu-experts`, `--n-cpu-moe`,
//! `--cpu-threads` and `--cpu-cache`.

use crate::error::{Error, Result};

/// Which of a step's experts the CPU computes instead of the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuPolicy {
    /// Every expert the step needs runs on the GPU; missing ones are uploaded first.
    Never,
    /// In cache mode, each missing expert is uploaded or computed on the CPU, whichever the
    /// cost model ([`crate::moe::cost_model`]) says finishes the step sooner. Resident experts
    /// always run on the GPU; with every expert resident nothing changes.
    #[default]
    Auto,
    /// No routed expert is ever uploaded: the CPU computes them all, from host memory, while
    /// the GPU runs the rest of the layer (llama.cpp's `--cpu-moe`).
    Always,
}

impl CpuPolicy {
    /// `never`, `auto` or `always`.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "never" => Ok(Self::Never),
            "auto" => Ok(Self::Auto),
            "always" => Ok(Self::Always),
            other => Err(Error::input(format!(
                "--cpu-experts `{other}` is not one of: auto, never, always"
            ))),
        }
    }

    /// The name [`Self::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::Auto => "auto",
            Self::Always => "always",
        }
    }
}

impl std::str::FromStr for CpuPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Default bytes of converted experts the host keeps for the CPU (`--cpu-cache`).
pub const DEFAULT_HOST_CACHE: u64 = 4 << 30;

/// How routed experts may run on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuOptions {
    /// Which missed experts the CPU computes.
    pub policy: CpuPolicy,
    /// The experts of the first N MoE layers stay on the CPU and get no VRAM slots
    /// (llama.cpp's static `--n-cpu-moe`); the other layers follow `policy`.
    pub n_cpu_moe: usize,
    /// Threads of the CPU expert kernels; 0 = one per core.
    pub threads: usize,
    /// Bytes of experts kept on the host in the GPU format (converted once) for the CPU; an
    /// expert the checkpoint stores in that format is read from the mapped file instead.
    pub host_cache: u64,
}

impl Default for CpuOptions {
    fn default() -> Self {
        Self {
            policy: CpuPolicy::Auto,
            n_cpu_moe: 0,
            threads: 0,
            host_cache: DEFAULT_HOST_CACHE,
        }
    }
}

impl CpuOptions {
    /// Whether MoE layer number `index` (0-based among the model's MoE layers) keeps every
    /// expert on the CPU.
    pub fn cpu_only(&self, index: usize) -> bool {
        self.policy == CpuPolicy::Always || index < self.n_cpu_moe
    }

    /// Every expert on the GPU (`--cpu-experts never`): an expert cache then gives the bits of
    /// all experts resident, whatever the step's neighbours.
    pub fn never() -> Self {
        Self {
            policy: CpuPolicy::Never,
            ..Self::default()
        }
    }

    /// The options of a layer whose experts all stay on the CPU.
    pub fn always(self) -> Self {
        Self {
            policy: CpuPolicy::Always,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_by_name_and_refuse_others() {
        for p in [CpuPolicy::Never, CpuPolicy::Auto, CpuPolicy::Always] {
            assert_eq!(CpuPolicy::parse(p.name()).unwrap(), p);
        }
        assert!(CpuPolicy::parse("sometimes").is_err());
    }

    #[test]
    fn the_first_n_moe_layers_are_cpu_only() {
        let o = CpuOptions {
            n_cpu_moe: 2,
            ..Default::default()
        };
        assert_eq!(
            (0..4).map(|i| o.cpu_only(i)).collect::<Vec<_>>(),
            [true, true, false, false]
        );
        assert!(o.always().cpu_only(3));
    }
}
