//! The `layer` test binary: the whole MoE layer against the reference and the HF fixtures,
//! routing flags, dynamic activation, and the expert cache with its prefetch.

#[path = "../common/mod.rs"]
mod common;

mod cpu_experts;
mod dynamic_activation;
mod fixtures_block;
mod mixed_formats;
mod moe_layer;
mod prefetch;
mod residency;
mod router_status;
mod routing_flags;
mod step_record;
