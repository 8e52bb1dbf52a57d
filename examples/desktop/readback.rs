//! A presented surface texture copied to a buffer, mapped, turned into tight RGBA rows and
//! written as PNG.

use std::path::Path;
use std::sync::mpsc::channel;

use anyhow::{Context as _, Result, bail};

/// An 8-bit RGBA image, rows top to bottom without padding.
pub struct Frame {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// width × height × 4 bytes.
    pub rgba: Vec<u8>,
}

/// The copy of a surface texture, recorded but not yet read.
pub struct PendingFrame {
    buffer: wgpu::Buffer,
    width: u32,
    height: u32,
    padded_row: u32,
    bgra: bool,
}

impl PendingFrame {
    /// Records a copy of `texture` (8-bit RGBA or BGRA, sRGB or not) into a mappable buffer
    /// whose rows are padded to wgpu's copy alignment.
    pub fn record(
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        texture: &wgpu::Texture,
    ) -> Result<Self> {
        use wgpu::TextureFormat as F;
        let bgra = match texture.format() {
            F::Bgra8Unorm | F::Bgra8UnormSrgb => true,
            F::Rgba8Unorm | F::Rgba8UnormSrgb => false,
            other => bail!("--screenshot: cannot read a {other:?} surface (only 8-bit RGBA/BGRA)"),
        };
        let size = texture.size();
        let padded_row = (size.width * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("screenshot"),
            size: u64::from(padded_row) * u64::from(size.height),
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        encoder.copy_texture_to_buffer(
            texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(padded_row),
                    rows_per_image: Some(size.height),
                },
            },
            size,
        );
        Ok(Self {
            buffer,
            width: size.width,
            height: size.height,
            padded_row,
            bgra,
        })
    }

    /// Waits for the copy (submitted since) and returns the image, alpha made opaque.
    pub fn read(self, device: &wgpu::Device) -> Result<Frame> {
        let slice = self.buffer.slice(..);
        let (tx, rx) = channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .context("waiting for the screenshot copy")?;
        rx.recv()
            .context("the screenshot copy never finished")?
            .context("mapping the screenshot buffer")?;
        let data = slice
            .get_mapped_range()
            .context("reading the mapped screenshot buffer")?;
        let row = self.width as usize * 4;
        let mut rgba = Vec::with_capacity(row * self.height as usize);
        for padded in data.chunks(self.padded_row as usize) {
            for px in padded[..row].chunks_exact(4) {
                let [r, g, b] = if self.bgra {
                    [px[2], px[1], px[0]]
                } else {
                    [px[0], px[1], px[2]]
                };
                rgba.extend_from_slice(&[r, g, b, 255]);
            }
        }
        Ok(Frame {
            width: self.width,
            height: self.height,
            rgba,
        })
    }
}

impl Frame {
    /// Writes the image as an 8-bit RGBA PNG.
    pub fn write_png(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("--screenshot {}: cannot create it", path.display()))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), self.width, self.height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.rgba)?;
        writer.finish()?;
        Ok(())
    }
}
