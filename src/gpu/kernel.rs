//! What the pipeline cache needs to know about a compute kernel, as plain data: its WGSL
//! source, the bindings of its group 0 and the override constants the host sets. The kernels
//! themselves declare these values (`src/kernels/`); this layer knows none of them.

use std::borrow::Cow;

/// How a binding of group 0 is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `var<uniform>`: the parameter block.
    Uniform,
    /// `var<uniform>` whose block is chosen per dispatch by a dynamic offset (kernels
    /// dispatched several times in one pass with different parameters).
    UniformDynamic,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// One binding of group 0. Its index in [`KernelDef::bindings`] is its `@binding` number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The WGSL variable's name.
    pub name: &'static str,
    /// How the kernel accesses it.
    pub access: Access,
}

impl Binding {
    /// A `var<uniform>` binding.
    pub const fn uniform(name: &'static str) -> Self {
        Self {
            name,
            access: Access::Uniform,
        }
    }

    /// A `var<uniform>` binding bound with a dynamic offset.
    pub const fn uniform_dynamic(name: &'static str) -> Self {
        Self {
            name,
            access: Access::UniformDynamic,
        }
    }

    /// A `var<storage, read>` binding.
    pub const fn read(name: &'static str) -> Self {
        Self {
            name,
            access: Access::Read,
        }
    }

    /// A `var<storage, read_write>` binding.
    pub const fn read_write(name: &'static str) -> Self {
        Self {
            name,
            access: Access::ReadWrite,
        }
    }
}

/// The name of a WGSL `override` constant that the host sets when it builds a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Override(pub &'static str);

impl Override {
    /// The name as declared in WGSL.
    pub fn name(self) -> &'static str {
        self.0
    }
}

/// A compute kernel: everything needed to build its pipeline, apart from the values of its
/// override constants. The entry point is always `main`.
pub struct KernelDef {
    /// Names the kernel in labels and errors, and tells kernels apart in the pipeline cache,
    /// so it must be unique.
    pub name: &'static str,
    /// The WGSL files, in order: the shared files of the kernel's family, then its own. The
    /// source is their concatenation, one newline between two parts.
    pub parts: &'static [&'static str],
    /// Group 0, in `@binding` order.
    pub bindings: &'static [Binding],
    /// The override constants the host sets (not those the source derives from them).
    pub overrides: &'static [Override],
}

/// Everything but the source, which would drown the rest.
impl std::fmt::Debug for KernelDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelDef")
            .field("name", &self.name)
            .field("bindings", &self.bindings)
            .field("overrides", &self.overrides)
            .finish_non_exhaustive()
    }
}

impl KernelDef {
    /// The WGSL source as compiled.
    pub fn source(&self) -> Cow<'static, str> {
        match self.parts {
            [one] => Cow::Borrowed(one),
            parts => Cow::Owned(parts.join("\n")),
        }
    }
}
