//! One output as an atomic commit drives it: a connector, the CRTC that
//! feeds it and that CRTC's primary plane, with the ids of the properties
//! a commit sets. It only fills [`AtomicRequest`]s; the caller commits.

use std::collections::HashMap;

use rustix::io::Errno;

use super::{AtomicRequest, Card, Connector, Object};
use crate::Result;

/// The plane `type` property's value for a primary plane.
const PRIMARY_PLANE: u64 = 1;

/// A connector routed through a CRTC and its primary plane.
#[derive(Clone, Debug)]
pub struct Output {
    /// The connector's id.
    pub connector: u32,
    /// The CRTC's id.
    pub crtc: u32,
    /// The CRTC's index in [`Card::resources`] (what `possible_crtcs`
    /// masks and flip events' `crtc` name).
    pub crtc_index: usize,
    /// The primary plane's id.
    pub plane: u32,
    /// Property ids by object and name.
    props: HashMap<(u32, String), u32>,
}

impl Output {
    /// Routes `connector`: the first CRTC one of its encoders can drive
    /// and the primary plane of that CRTC that scans out `format` (a DRM
    /// fourcc). The card has the ATOMIC client cap (else it hides the
    /// properties a commit needs). `ENOENT` when there is no such route.
    pub fn route(card: &Card, connector: &Connector, format: u32) -> Result<Output> {
        let crtcs = card.resources()?.crtcs;
        let mut possible = 0;
        for &encoder in &connector.encoders {
            possible |= card.encoder_crtcs(encoder)?;
        }
        let (crtc_index, &crtc) = crtcs
            .iter()
            .enumerate()
            .find(|(i, _)| possible & (1 << i) != 0)
            .ok_or(Errno::NOENT)?;
        let plane = Self::primary_plane(card, crtc_index, format)?.ok_or(Errno::NOENT)?;
        let mut output = Output {
            connector: connector.id,
            crtc,
            crtc_index,
            plane,
            props: HashMap::new(),
        };
        output.learn(card, connector.id, Object::Connector)?;
        output.learn(card, crtc, Object::Crtc)?;
        output.learn(card, plane, Object::Plane)?;
        Ok(output)
    }

    /// The first primary plane that can feed CRTC `crtc_index` and shows
    /// `format`.
    pub fn primary_plane(card: &Card, crtc_index: usize, format: u32) -> Result<Option<u32>> {
        for id in card.planes()? {
            let plane = card.plane(id)?;
            let primary = card
                .properties(id, Object::Plane)?
                .iter()
                .any(|p| p.name == "type" && p.value == PRIMARY_PLANE);
            if primary
                && plane.possible_crtcs & (1 << crtc_index) != 0
                && plane.formats.contains(&format)
            {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Adds the property ids of object `id` (another connector, say).
    pub fn learn(&mut self, card: &Card, id: u32, kind: Object) -> Result<()> {
        for p in card.properties(id, kind)? {
            self.props.insert((id, p.name), p.id);
        }
        Ok(())
    }

    /// The id of `object`'s property `name`; `ENOENT` if it has none.
    pub fn prop(&self, object: u32, name: &str) -> Result<u32> {
        self.props
            .get(&(object, name.to_owned()))
            .copied()
            .ok_or(Errno::NOENT.into())
    }

    /// Whether `object` has property `name` (`IN_FENCE_FD`, say).
    pub fn has(&self, object: u32, name: &str) -> bool {
        self.prop(object, name).is_ok()
    }

    /// Sets the plane to show framebuffer `fb` (`size` pixels) over the
    /// same size at the CRTC's top left.
    pub fn show(&self, request: &mut AtomicRequest, fb: u32, size: (u32, u32)) -> Result<()> {
        let (w, h) = size;
        let p = self.plane;
        for (name, value) in [
            ("FB_ID", u64::from(fb)),
            ("CRTC_ID", u64::from(self.crtc)),
            ("SRC_X", 0),
            ("SRC_Y", 0),
            ("SRC_W", u64::from(w) << 16),
            ("SRC_H", u64::from(h) << 16),
            ("CRTC_X", 0),
            ("CRTC_Y", 0),
            ("CRTC_W", w.into()),
            ("CRTC_H", h.into()),
        ] {
            request.set(p, self.prop(p, name)?, value);
        }
        Ok(())
    }

    /// Sets the connector on the CRTC and the CRTC on, in the mode of
    /// property blob `mode_blob` (a commit that needs `allow_modeset`).
    pub fn enable(&self, request: &mut AtomicRequest, mode_blob: u32) -> Result<()> {
        let (c, crtc) = (self.connector, self.crtc);
        request.set(c, self.prop(c, "CRTC_ID")?, crtc.into());
        request.set(crtc, self.prop(crtc, "MODE_ID")?, mode_blob.into());
        request.set(crtc, self.prop(crtc, "ACTIVE")?, 1);
        Ok(())
    }

    /// Switches the output off: the connector off the CRTC, the CRTC
    /// inactive, the plane empty (a commit that needs `allow_modeset`).
    pub fn disable(&self, request: &mut AtomicRequest) -> Result<()> {
        let (c, crtc, p) = (self.connector, self.crtc, self.plane);
        request.set(c, self.prop(c, "CRTC_ID")?, 0);
        request.set(crtc, self.prop(crtc, "MODE_ID")?, 0);
        request.set(crtc, self.prop(crtc, "ACTIVE")?, 0);
        request.set(p, self.prop(p, "FB_ID")?, 0);
        request.set(p, self.prop(p, "CRTC_ID")?, 0);
        Ok(())
    }
}
