//! The loader's side of the layer interface (`vk_layer.h`), which ash does
//! not define: the negotiation struct and the creation-chain structs the
//! loader puts in the `pNext` chains of `VkInstanceCreateInfo` and
//! `VkDeviceCreateInfo`.
//!
//! The loader allocates every one of these; the layer only reads them and,
//! as the interface requires, advances the link list before calling down.

use std::ffi::{c_char, c_void};
use std::ptr;

use ash::vk;

/// The interface version this layer speaks (`vkNegotiateLoaderLayerInterfaceVersion`).
pub const INTERFACE_VERSION: u32 = 2;

/// `VkNegotiateLayerStructType::LAYER_NEGOTIATE_INTERFACE_STRUCT`.
pub const NEGOTIATE_INTERFACE_STRUCT: i32 = 1;

/// `PFN_GetPhysicalDeviceProcAddr` (`vk_layerGetPhysicalDeviceProcAddr`).
pub type GetPhysicalDeviceProcAddr =
    unsafe extern "system" fn(vk::Instance, *const c_char) -> vk::PFN_vkVoidFunction;

/// `VkNegotiateLayerInterface`.
#[repr(C)]
pub struct NegotiateLayerInterface {
    pub s_type: i32,
    pub p_next: *mut c_void,
    pub loader_layer_interface_version: u32,
    pub pfn_get_instance_proc_addr: Option<vk::PFN_vkGetInstanceProcAddr>,
    pub pfn_get_device_proc_addr: Option<vk::PFN_vkGetDeviceProcAddr>,
    pub pfn_get_physical_device_proc_addr: Option<GetPhysicalDeviceProcAddr>,
}

/// `VkLayerFunction`: what the union of a loader create-info node holds.
const LAYER_LINK_INFO: i32 = 0;
const LOADER_DATA_CALLBACK: i32 = 1;

/// `VkLayerInstanceLink`.
#[repr(C)]
pub struct InstanceLink {
    pub p_next: *mut InstanceLink,
    pub pfn_next_get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
    pub pfn_next_get_physical_device_proc_addr: Option<GetPhysicalDeviceProcAddr>,
}

/// `VkLayerDeviceLink`.
#[repr(C)]
pub struct DeviceLink {
    pub p_next: *mut DeviceLink,
    pub pfn_next_get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
    pub pfn_next_get_device_proc_addr: vk::PFN_vkGetDeviceProcAddr,
}

/// `PFN_vkSetDeviceLoaderData`: gives a dispatchable object the layer
/// creates itself (a command buffer, say) the loader's dispatch pointer.
pub type SetDeviceLoaderData = unsafe extern "system" fn(vk::Device, *mut c_void) -> vk::Result;

/// The head of `VkLayerInstanceCreateInfo` / `VkLayerDeviceCreateInfo`. The
/// union that follows `function` starts with a pointer in every variant; only
/// the variants this layer reads are spelled out, since it never allocates
/// one of these.
#[repr(C)]
struct LoaderCreateInfo<U: Copy> {
    s_type: vk::StructureType,
    p_next: *const c_void,
    function: i32,
    u: U,
}

#[repr(C)]
#[derive(Clone, Copy)]
union InstanceUnion {
    layer_info: *mut InstanceLink,
}

#[repr(C)]
#[derive(Clone, Copy)]
union DeviceUnion {
    layer_info: *mut DeviceLink,
    set_device_loader_data: Option<SetDeviceLoaderData>,
}

/// The size of `VkLayerDeviceCreateInfo`, for a layer that passes a copy
/// of it on (in a device create info's chain edited down): its union is
/// one pointer whatever it holds. `VkLayerInstanceCreateInfo`'s union has
/// a larger variant this layer does not define, so its size is not known
/// here.
pub fn chained_size(s_type: vk::StructureType) -> Option<usize> {
    (s_type == vk::StructureType::LOADER_DEVICE_CREATE_INFO)
        .then(std::mem::size_of::<LoaderCreateInfo<DeviceUnion>>)
}

/// Finds the loader node of `s_type` and `function` in a `pNext` chain.
///
/// # Safety
/// `p_next` is null or the start of a valid `pNext` chain.
unsafe fn find<U: Copy>(
    mut p_next: *const c_void,
    s_type: vk::StructureType,
    function: i32,
) -> *mut LoaderCreateInfo<U> {
    while !p_next.is_null() {
        let node = p_next.cast::<vk::BaseInStructure>();
        // SAFETY: every structure in a valid pNext chain starts with sType and pNext.
        let (node_type, next) = unsafe { ((*node).s_type, (*node).p_next) };
        if node_type == s_type {
            let info = p_next.cast_mut().cast::<LoaderCreateInfo<U>>();
            // SAFETY: the loader's nodes of this sType have this layout.
            if unsafe { (*info).function } == function {
                return info;
            }
        }
        p_next = next.cast();
    }
    ptr::null_mut()
}

/// What `vkCreateInstance` needs from its chain: the next entity's
/// `vkGetInstanceProcAddr`, with the link already advanced for it.
pub struct InstanceChain {
    pub next_get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
}

impl InstanceChain {
    /// Takes this layer's link off the instance chain so that the next layer
    /// finds its own. `None` when the loader gave no link (no loader, or one
    /// that does not speak this interface).
    ///
    /// # Safety
    /// `info` is the `VkInstanceCreateInfo` the loader passed to this layer.
    pub unsafe fn advance(info: &vk::InstanceCreateInfo<'_>) -> Option<Self> {
        // SAFETY: the caller passes the loader's create info, whose chain is valid.
        let node: *mut LoaderCreateInfo<InstanceUnion> = unsafe {
            find(
                info.p_next,
                vk::StructureType::LOADER_INSTANCE_CREATE_INFO,
                LAYER_LINK_INFO,
            )
        };
        if node.is_null() {
            return None;
        }
        // SAFETY: a LINK_INFO node holds the loader's link list, whose head is
        // this layer's link; the loader owns the node and expects it advanced.
        unsafe {
            let link = (*node).u.layer_info;
            if link.is_null() {
                return None;
            }
            (*node).u.layer_info = (*link).p_next;
            Some(Self {
                next_get_instance_proc_addr: (*link).pfn_next_get_instance_proc_addr,
            })
        }
    }
}

/// What `vkCreateDevice` needs from its chain.
pub struct DeviceChain {
    pub next_get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
    pub next_get_device_proc_addr: vk::PFN_vkGetDeviceProcAddr,
    /// Absent with loaders too old to offer it.
    pub set_device_loader_data: Option<SetDeviceLoaderData>,
    node: *mut LoaderCreateInfo<DeviceUnion>,
    next_link: *mut DeviceLink,
}

impl DeviceChain {
    /// Takes this layer's link off the device chain, like
    /// [`InstanceChain::advance`], and picks up the loader-data callback.
    ///
    /// # Safety
    /// `info` is the `VkDeviceCreateInfo` the loader passed to this layer.
    pub unsafe fn advance(info: &vk::DeviceCreateInfo<'_>) -> Option<Self> {
        // SAFETY: the caller passes the loader's create info, whose chain is valid.
        let (node, callback) = unsafe {
            let node: *mut LoaderCreateInfo<DeviceUnion> = find(
                info.p_next,
                vk::StructureType::LOADER_DEVICE_CREATE_INFO,
                LAYER_LINK_INFO,
            );
            let callback: *mut LoaderCreateInfo<DeviceUnion> = find(
                info.p_next,
                vk::StructureType::LOADER_DEVICE_CREATE_INFO,
                LOADER_DATA_CALLBACK,
            );
            (node, callback)
        };
        if node.is_null() {
            return None;
        }
        // SAFETY: as in InstanceChain::advance; a DATA_CALLBACK node holds the
        // callback in its union.
        unsafe {
            let link = (*node).u.layer_info;
            if link.is_null() {
                return None;
            }
            let next_link = (*link).p_next;
            (*node).u.layer_info = next_link;
            Some(Self {
                next_get_instance_proc_addr: (*link).pfn_next_get_instance_proc_addr,
                next_get_device_proc_addr: (*link).pfn_next_get_device_proc_addr,
                set_device_loader_data: if callback.is_null() {
                    None
                } else {
                    (*callback).u.set_device_loader_data
                },
                node,
                next_link,
            })
        }
    }

    /// Puts the chain back where [`DeviceChain::advance`] left it, so that
    /// `vkCreateDevice` can be called down a second time: the layers below
    /// advanced the shared node during the first call.
    ///
    /// # Safety
    /// The create info this chain came from is still alive.
    pub unsafe fn rewind(&self) {
        // SAFETY: the node belongs to the loader's create info, still alive.
        unsafe { (*self.node).u.layer_info = self.next_link };
    }
}
