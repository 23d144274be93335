//! The syncfile-wsi Vulkan layer.
