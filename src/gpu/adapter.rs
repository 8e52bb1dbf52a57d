//! How to pick an adapter: [`ContextOptions`], read from the environment or set by the
//! application, and the search for an adapter that matches them.

use crate::error::{Error, Result};
use crate::gpu::byte_count::parse_bytes;

/// How to pick an adapter. `ContextOptions::from_env()` reads `MOE_GPU_BACKEND`,
/// `MOE_GPU_ADAPTER`, `MOE_GPU_TUNE`, `MOE_GPU_MAX_BINDING` and `MOE_GPU_DEVICE_MEMORY`; the
/// defaults pick the
/// high-performance adapter of any backend, with autotuning off and the adapter's own binding
/// limit.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Restrict to one backend (`vulkan`, `gl`, `metal`, `dx12`).
    pub backend: Option<wgpu::Backends>,
    /// Choose the first adapter whose name contains this substring (case-insensitive).
    pub adapter_name: Option<String>,
    /// Prefer a low-power adapter over the high-performance one.
    pub low_power: bool,
    /// Time the matmul tilings at first use of a shape and keep the fastest (the kernels'
    /// `tune` module); off means the fixed defaults.
    pub autotune: bool,
    /// Split weights (and size buffers) as if no storage binding could exceed this many bytes,
    /// when it is below the adapter's own limit: to test the splitting on an adapter whose
    /// limit the model fits, or to leave room for an application's own bindings.
    pub max_binding: Option<u64>,
    /// The adapter's memory for buffers, in bytes, where the backend reports none (only
    /// Vulkan does) or to plan for less than it reports. See [`crate::Context::device_memory`].
    pub device_memory: Option<u64>,
}

impl ContextOptions {
    /// Options taken from `MOE_GPU_BACKEND=vulkan|gl|metal|dx12` and `MOE_GPU_ADAPTER=<substring>`.
    pub fn from_env() -> Result<Self> {
        let backend = match std::env::var("MOE_GPU_BACKEND") {
            Ok(name) if !name.is_empty() => Some(parse_backend(&name)?),
            _ => None,
        };
        let adapter_name = std::env::var("MOE_GPU_ADAPTER")
            .ok()
            .filter(|s| !s.is_empty());
        Ok(Self {
            backend,
            adapter_name,
            low_power: false,
            autotune: autotune_from_env(),
            max_binding: bytes_from_env("MOE_GPU_MAX_BINDING")?,
            device_memory: bytes_from_env("MOE_GPU_DEVICE_MEMORY")?,
        })
    }
}

/// A byte count from the environment variable `name` (`512M`, `2G`), if set.
fn bytes_from_env(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => parse_bytes(&text)
            .map(Some)
            .map_err(|e| Error::input(format!("{name}: {e}"))),
        _ => Ok(None),
    }
}

/// `MOE_GPU_TUNE`: tuning is on unless it says `0`, `off`, `false` or `no`.
pub(crate) fn autotune_from_env() -> bool {
    std::env::var("MOE_GPU_TUNE").map_or(true, |v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "off" | "false" | "no"
        )
    })
}

/// Parses a backend name as used by `MOE_GPU_BACKEND`.
pub fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        other => Err(Error::input(format!(
            "MOE_GPU_BACKEND=`{other}` is not a backend; use vulkan, gl, metal or dx12"
        ))),
    }
}

pub(crate) async fn choose_adapter(
    instance: &wgpu::Instance,
    backends: wgpu::Backends,
    options: &ContextOptions,
) -> Result<wgpu::Adapter> {
    let adapters = instance.enumerate_adapters(backends).await;
    if let Some(want) = &options.adapter_name {
        let want = want.to_lowercase();
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&want))
            .ok_or_else(|| {
                Error::NoAdapter(format!(
                    "no adapter name contains `{want}` (MOE_GPU_ADAPTER); found: [{}]",
                    names.join(", ")
                ))
            });
    }
    let power_preference = if options.low_power {
        wgpu::PowerPreference::LowPower
    } else {
        wgpu::PowerPreference::HighPerformance
    };
    let requested = instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        })
        .await;
    match requested {
        Ok(adapter) => Ok(adapter),
        Err(_) => adapters
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoAdapter(install_hint(backends))),
    }
}

fn install_hint(backends: wgpu::Backends) -> String {
    format!(
        "wgpu found no adapter for backends {backends:?}. Install a GPU driver: on a headless Linux \
         machine `apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1` gives \
         the lavapipe software adapter (Vulkan); for GL, `libegl1 libegl-mesa0 libgl1-mesa-dri`. \
         On macOS Metal and on Windows DX12 are built in. MOE_GPU_BACKEND narrows the search."
    )
}
