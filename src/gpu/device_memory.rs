//! How much memory the adapter has for buffers. wgpu reports no such figure, so it is read
//! from the backend where one reports it: on Vulkan, a discrete GPU's largest device-local
//! memory heap, its VRAM. Integrated GPUs and CPU adapters allocate from system memory, and
//! their heap sizes say little of it (lavapipe reports a 2 GiB heap, then allocates whatever
//! the host has), so for them, and on other backends, it is unknown unless stated
//! ([`crate::ContextOptions::device_memory`]).

/// A discrete GPU's largest device-local heap, where the backend reports heaps.
pub(crate) fn reported(device: &wgpu::Device) -> Option<u64> {
    match device.adapter_info().device_type {
        wgpu::DeviceType::DiscreteGpu => vulkan_heap(device),
        _ => None,
    }
}

#[cfg(any(windows, all(unix, not(target_vendor = "apple"))))]
fn vulkan_heap(device: &wgpu::Device) -> Option<u64> {
    /// `VK_MEMORY_HEAP_DEVICE_LOCAL_BIT`.
    const DEVICE_LOCAL: u32 = 1;
    // SAFETY: the handle is used only to read the physical device's memory properties; nothing
    // is created, destroyed or submitted through it, and the guard is dropped at return.
    let hal = unsafe { device.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: the physical device belongs to this instance, which outlives the call.
    let props =
        unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    let count = (props.memory_heap_count as usize).min(props.memory_heaps.len());
    props.memory_heaps[..count]
        .iter()
        .filter(|heap| heap.flags.as_raw() & DEVICE_LOCAL != 0)
        .map(|heap| heap.size)
        .max()
}

#[cfg(not(any(windows, all(unix, not(target_vendor = "apple")))))]
fn vulkan_heap(_device: &wgpu::Device) -> Option<u64> {
    None
}
