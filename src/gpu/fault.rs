//! GPU faults as errors: device loss and wgpu errors that no error scope caught are recorded
//! here instead of panicking the process (wgpu's default handler panics), and every submit,
//! wait, readback, upload and buffer creation of a [`crate::Context`] checks the record first.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// What went wrong on a device, written by wgpu's callbacks (on any thread).
#[derive(Default)]
pub(crate) struct Health {
    /// Set once anything is recorded, so the healthy path is one atomic load.
    faulted: AtomicBool,
    record: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    /// Why the device was lost (destroyed, driver reset, a panic inside wgpu).
    lost: Option<String>,
    /// The first wgpu error that no error scope caught.
    uncaptured: Option<String>,
}

impl Health {
    /// Registers the device-lost callback and the uncaptured-error handler on `device` (wgpu
    /// keeps one of each per device, so this replaces the application's own) and returns the
    /// record they write to.
    pub(crate) fn install(device: &wgpu::Device) -> Arc<Self> {
        let health = Arc::new(Self::default());
        let on_lost = health.clone();
        device.set_device_lost_callback(move |reason, message| {
            let detail = if message.is_empty() {
                format!("{reason:?}")
            } else {
                format!("{reason:?}: {message}")
            };
            on_lost.note_lost(detail);
        });
        let on_error = health.clone();
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            on_error.note_uncaptured(error.to_string());
        }));
        health
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note_lost(&self, detail: String) {
        self.lock().lost.get_or_insert(detail);
        self.faulted.store(true, Ordering::Release);
    }

    fn note_uncaptured(&self, detail: String) {
        self.lock().uncaptured.get_or_insert(detail);
        self.faulted.store(true, Ordering::Release);
    }

    /// The recorded fault as an error, loss first; `None` while the device is healthy.
    fn fault(&self) -> Option<Error> {
        if !self.faulted.load(Ordering::Acquire) {
            return None;
        }
        let record = self.lock();
        if let Some(lost) = &record.lost {
            return Some(Error::DeviceLost(lost.clone()));
        }
        record
            .uncaptured
            .as_ref()
            .map(|message| Error::gpu("an earlier GPU call (an uncaptured wgpu error)", message))
    }
}

// The checks behind `Context::check_device` and `Context::poll`.
impl Health {
    pub(crate) fn check(&self, device: &wgpu::Device) -> Result<()> {
        let Some(fault) = self.fault() else {
            return Ok(());
        };
        if matches!(fault, Error::DeviceLost(_)) {
            return Err(fault);
        }
        // A destroyed device reports its loss only when polled, and the first symptom is often
        // a validation error about an invalid buffer: poll once so the loss is what is named.
        self.poll_device(device, wgpu::PollType::Poll).ok();
        Err(self.fault().unwrap_or(fault))
    }

    pub(crate) fn poll(&self, device: &wgpu::Device, poll: wgpu::PollType) -> Result<()> {
        let polled = self.poll_device(device, poll);
        self.check(device)?;
        polled
    }

    /// wgpu panics when the device fails during a poll; that panic is caught and recorded as
    /// a loss.
    fn poll_device(&self, device: &wgpu::Device, poll: wgpu::PollType) -> Result<()> {
        match catch_unwind(AssertUnwindSafe(|| device.poll(poll))) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::gpu("poll", e)),
            Err(_) => {
                let detail = "wgpu panicked while polling the device";
                self.note_lost(detail.into());
                Err(Error::DeviceLost(detail.into()))
            }
        }
    }
}
