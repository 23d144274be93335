//! What the layer's queue does with each event the compositor sends: it
//! records it in [`State`], which the presenter's event thread reads.

use syncfile::SyncFile;
use wayland_client::protocol::{wl_buffer, wl_callback, wl_registry};
use wayland_client::{Connection, Dispatch, QueueHandle};
use wayland_protocols::wp::linux_dmabuf::zv1::client::{
    zwp_linux_buffer_params_v1 as params, zwp_linux_dmabuf_feedback_v1 as feedback,
    zwp_linux_dmabuf_v1 as dmabuf,
};
use wayland_protocols::wp::linux_explicit_synchronization::zv1::client::{
    zwp_linux_buffer_release_v1 as release, zwp_linux_explicit_synchronization_v1 as explicit,
    zwp_linux_surface_synchronization_v1 as surface_sync,
};

use super::{Callback, FeedbackOf, State};
use crate::platform::wayland::formats::CompositorFormats;
use crate::platform::wayland::Release;
use crate::wsi::platform::Shown;

impl Dispatch<wl_registry::WlRegistry, ()> for State {
    fn event(
        state: &mut Self,
        _: &wl_registry::WlRegistry,
        event: wl_registry::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        // Globals that come later (hot-plugged outputs and the like) are not
        // ones the layer binds.
        if let wl_registry::Event::Global {
            name,
            interface,
            version,
        } = event
        {
            state.globals.push((name, interface, version));
        }
    }
}

impl Dispatch<wl_callback::WlCallback, Callback> for State {
    fn event(
        state: &mut Self,
        _: &wl_callback::WlCallback,
        _: wl_callback::Event,
        data: &Callback,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match data {
            Callback::Sync(serial) => state.synced = state.synced.max(*serial),
            Callback::Frame(seq) => {
                state.frames_done += 1;
                if let Some(seq) = seq {
                    let shown = Shown::At {
                        time_ns: crate::wsi::platform::monotonic_now_ns(),
                        refresh_ns: None,
                    };
                    state.presented.push((*seq, shown));
                }
            }
        }
    }
}

impl Dispatch<dmabuf::ZwpLinuxDmabufV1, ()> for State {
    fn event(
        state: &mut Self,
        _: &dmabuf::ZwpLinuxDmabufV1,
        event: dmabuf::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        // v3 only: v4 announces its formats through the feedback instead.
        if let dmabuf::Event::Modifier {
            format,
            modifier_hi,
            modifier_lo,
        } = event
        {
            state.formats.add(
                format,
                u64::from(modifier_hi) << 32 | u64::from(modifier_lo),
            );
        }
    }
}

impl Dispatch<feedback::ZwpLinuxDmabufFeedbackV1, FeedbackOf> for State {
    fn event(
        state: &mut Self,
        _: &feedback::ZwpLinuxDmabufFeedbackV1,
        event: feedback::Event,
        of: &FeedbackOf,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        match of {
            FeedbackOf::Default => match state.feedback.handle(event) {
                Some(Ok(tranches)) => {
                    state.formats = CompositorFormats::default();
                    state.formats.extend(tranches.into_iter().flatten());
                    state.feedback_done.get_or_insert(Ok(()));
                }
                Some(Err(e)) => {
                    state.feedback_done.get_or_insert(Err(e));
                }
                None => {}
            },
            FeedbackOf::Surface => match state.surface_feedback.handle(event) {
                Some(Ok(tranches)) => state.surface_tranches = Some(tranches),
                Some(Err(e)) => {
                    tracing::warn!("the surface's dma-buf feedback is unreadable: {e}");
                }
                None => {}
            },
        }
    }
}

/// A params object's data: the image its buffer is for.
impl Dispatch<params::ZwpLinuxBufferParamsV1, u32> for State {
    fn event(
        state: &mut Self,
        _: &params::ZwpLinuxBufferParamsV1,
        event: params::Event,
        image: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        // A compositor that cannot import a `create_immed` buffer either
        // raises a protocol error or marks the buffer failed with this.
        match event {
            params::Event::Failed => state.refused.push(*image),
            other => tracing::debug!("unexpected zwp_linux_buffer_params_v1 event {other:?}"),
        }
    }
}

impl Dispatch<wl_buffer::WlBuffer, u32> for State {
    fn event(
        state: &mut Self,
        _: &wl_buffer::WlBuffer,
        event: wl_buffer::Event,
        image: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wl_buffer::Event::Release = event {
            state.released.push((*image, Release::Buffer));
        }
    }
}

impl Dispatch<explicit::ZwpLinuxExplicitSynchronizationV1, ()> for State {
    fn event(
        _: &mut Self,
        _: &explicit::ZwpLinuxExplicitSynchronizationV1,
        _: explicit::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        // The interface has no events.
    }
}

impl Dispatch<surface_sync::ZwpLinuxSurfaceSynchronizationV1, ()> for State {
    fn event(
        _: &mut Self,
        _: &surface_sync::ZwpLinuxSurfaceSynchronizationV1,
        _: surface_sync::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        // The interface has no events.
    }
}

impl Dispatch<release::ZwpLinuxBufferReleaseV1, u32> for State {
    fn event(
        state: &mut Self,
        _: &release::ZwpLinuxBufferReleaseV1,
        event: release::Event,
        image: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let r = match event {
            release::Event::FencedRelease { fence } => Release::Fenced(SyncFile::from(fence)),
            release::Event::ImmediateRelease => Release::Immediate,
            _ => return,
        };
        state.released.push((*image, r));
    }
}
