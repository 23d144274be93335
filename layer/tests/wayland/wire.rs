//! The protocol on the wire, as libwayland prints it on a client's standard
//! error with `WAYLAND_DEBUG=client`: one line per request as it is queued
//! (under the display's lock, so in the order the compositor gets them,
//! whichever thread made them) and one per event as it is dispatched, e.g.
//!
//! ```text
//! [1012061.314] {Display Queue} wl_display#1.delete_id(17)
//! [1012062.488] wl_callback#19.done(111929)
//! [1012063.961]  -> wl_surface#5.attach(wl_buffer#14, 0, 0)
//! ```
//!
//! (libwayland 1.23, the guest's, names objects `interface#id` and the
//! queue an event was dispatched from if it has a name; older versions
//! wrote `interface@id`, which is read too), and what the commits on one
//! `wl_surface` were made of.

use std::collections::HashSet;

/// One request or event.
#[derive(Debug)]
pub struct Message<'a> {
    pub request: bool,
    /// An event for an object the client had destroyed: not dispatched.
    pub discarded: bool,
    pub interface: &'a str,
    pub id: u32,
    pub name: &'a str,
    pub args: &'a str,
}

impl Message<'_> {
    pub fn is(&self, interface: &str, name: &str) -> bool {
        self.interface == interface && self.name == name
    }

    /// The id of the first `new id INTERFACE#N` argument.
    pub fn new_id(&self) -> Option<u32> {
        let rest = self.args.split("new id ").nth(1)?;
        object_id(rest.split([',', ')']).next()?)
    }
}

impl std::fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let arrow = if self.request { "-> " } else { "" };
        let (i, id, n, a) = (self.interface, self.id, self.name, self.args);
        write!(f, "{arrow}{i}#{id}.{n}({a})")
    }
}

/// `INTERFACE#N` (or `INTERFACE@N`) → the interface and N.
fn object(text: &str) -> Option<(&str, u32)> {
    let (interface, id) = text.trim().rsplit_once(['#', '@'])?;
    Some((interface, id.parse().ok()?))
}

fn object_id(text: &str) -> Option<u32> {
    object(text).map(|(_, id)| id)
}

/// The messages in `log`, in order; other lines are left out.
pub fn parse(log: &str) -> Vec<Message<'_>> {
    log.lines().filter_map(message).collect()
}

fn message(line: &str) -> Option<Message<'_>> {
    // A line may start with the unfinished line of another writer.
    let (stamp, rest) = line[line.find('[')? + 1..].split_once("] ")?;
    let (ms, us) = stamp.trim_start().split_once('.')?;
    if ms.parse::<u32>().is_err() || us.parse::<u32>().is_err() {
        return None;
    }
    let rest = rest.trim_start();
    // The queue an event was dispatched from, if it has a name.
    let rest = match rest.strip_prefix('{') {
        Some(r) => r.split_once("} ")?.1.trim_start(),
        None => rest,
    };
    let (discarded, rest) = match rest.strip_prefix("discarded ") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (request, rest) = match rest.strip_prefix("->") {
        Some(r) => (true, r.trim_start()),
        None => (false, rest),
    };
    let (target, call) = rest.split_once('.')?;
    let (interface, id) = object(target)?;
    let (name, args) = call.split_once('(')?;
    Some(Message {
        request,
        discarded,
        interface,
        id,
        name,
        args: args.strip_suffix(')')?,
    })
}

/// One `wl_surface.commit` and the requests on the surface (and on its
/// explicit-synchronization object) since the commit before.
#[derive(Debug)]
pub struct Commit<'a> {
    /// Where the commit is in the message sequence, and where its first
    /// request is.
    pub at: usize,
    pub first: usize,
    pub requests: Vec<&'a Message<'a>>,
}

impl Commit<'_> {
    /// Attaches one of `buffers`: a frame of the layer's.
    pub fn attaches(&self, buffers: &HashSet<u32>) -> bool {
        self.requests.iter().any(|m| {
            m.name == "attach"
                && object_id(m.args.split(',').next().unwrap_or(""))
                    .is_some_and(|b| buffers.contains(&b))
        })
    }

    /// The requests named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.requests.iter().filter(|m| m.name == name).count()
    }

    /// The frame callback it asked for.
    pub fn callback(&self) -> Option<u32> {
        self.requests
            .iter()
            .find(|m| m.is("wl_surface", "frame"))
            .and_then(|m| m.new_id())
    }

    pub fn show(&self) -> String {
        let r: Vec<String> = self.requests.iter().map(|m| m.to_string()).collect();
        r.join("; ")
    }
}

/// What happened on `wl_surface#surface`.
pub struct Surface<'a> {
    pub commits: Vec<Commit<'a>>,
    /// Requests after the last commit.
    pub trailing: Vec<&'a Message<'a>>,
    /// The `wl_buffer`s made from dma-bufs (the layer's: the application
    /// makes none).
    pub buffers: HashSet<u32>,
    /// Whether an explicit-synchronization object was made for the surface.
    pub synchronized: bool,
}

impl<'a> Surface<'a> {
    pub fn of(messages: &'a [Message<'a>], surface: u32) -> Surface<'a> {
        let mut syncs = HashSet::new();
        let mut buffers = HashSet::new();
        let mut commits = Vec::new();
        let mut pending: Vec<&Message> = Vec::new();
        let mut first = None;
        for (at, m) in messages.iter().enumerate() {
            if !m.request {
                continue;
            }
            if m.is("zwp_linux_buffer_params_v1", "create_immed") {
                buffers.extend(m.new_id());
            }
            if m.is(
                "zwp_linux_explicit_synchronization_v1",
                "get_synchronization",
            ) && m.args.rsplit(", ").next().and_then(object) == Some(("wl_surface", surface))
            {
                syncs.extend(m.new_id());
            }
            let ours = (m.interface == "wl_surface" && m.id == surface)
                || (m.interface == "zwp_linux_surface_synchronization_v1" && syncs.contains(&m.id));
            if !ours {
                continue;
            }
            if m.is("wl_surface", "commit") {
                commits.push(Commit {
                    at,
                    first: first.take().unwrap_or(at),
                    requests: std::mem::take(&mut pending),
                });
            } else {
                first.get_or_insert(at);
                pending.push(m);
            }
        }
        Surface {
            commits,
            trailing: pending,
            buffers,
            synchronized: !syncs.is_empty(),
        }
    }
}

/// Where each dispatched `wl_callback.done` is, by callback id.
pub fn callbacks_done(messages: &[Message<'_>]) -> Vec<(usize, u32)> {
    messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.request && !m.discarded && m.is("wl_callback", "done"))
        .map(|(at, m)| (at, m.id))
        .collect()
}

/// Signs of a protocol error in a client's standard error: the event
/// itself (`wl_display#1.error(zwp_linux_surface_synchronization_v1#10, 5,
/// "wl_surface@5 no buffer for synchronization")`, seen with a toolkit that
/// does not serialize its commits with the presents), what libwayland logs
/// when it comes (`zwp_linux_surface_synchronization_v1#10: error 5: ...`)
/// and what wayland-rs says of it ("Protocol error 5 on object ...").
pub fn protocol_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            message(l).is_some_and(|m| !m.request && m.is("wl_display", "error"))
                || l.contains("error in client communication")
                || l.to_ascii_lowercase().contains("protocol error")
                || (!l.starts_with('[') && l.contains(": error "))
        })
        .collect()
}
