//! Reads ash's generated bindings into the few facts the derivation needs.
//!
//! ash 0.38 is generated from the Vulkan registry (vk.xml); its layout:
//!
//! - `src/vk/definitions.rs`: every structure and union with its fields;
//!   `unsafe impl ExtendsBase for Other<'_> {}` says that `Other` may be
//!   chained into `Base`'s pNext; `unsafe impl TaggedStructure for Foo`
//!   holds `Foo`'s `const STRUCTURE_TYPE: StructureType = StructureType::X;`.
//! - `src/vk/aliases.rs`: `pub type FooKHR<'a> = Foo<'a>;`, the registry's
//!   aliases of structures and handles.
//! - `src/vk/features.rs` and `src/vk/extensions.rs`: one
//!   `pub type PFN_vkFoo = unsafe extern "system" fn(param: Type, ...)` per
//!   command (an alias has no PFN type of its own); `extensions.rs` also holds
//!   each extension's `pub const KHR_SWAPCHAIN_NAME: &CStr = ... b"VK_KHR_swapchain\0"`.
//! - `src/tables.rs`: the core function tables, `StaticFn`, `EntryFnV1_0`,
//!   `InstanceFnV1_0`, ..., `DeviceFnV1_3`, with fields typed `PFN_vkFoo`,
//!   and loaders that name each field's command: `foo: unsafe { ...
//!   CStr::from_bytes_with_nul_unchecked(b"vkFoo\0") ... }`.
//! - `src/extensions_generated.rs`: `pub mod khr { pub mod swapchain { ... } }`,
//!   one module per extension, whose `pub use crate::vk::KHR_SWAPCHAIN_NAME as NAME`
//!   names it and whose `InstanceFn` and `DeviceFn` are function tables like
//!   the core ones. An alias (vkFooKHR) has its own name string and the
//!   original's PFN type.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::tokens::{at, skip_group, split_commas, tokenize, Tok};

/// A field's or parameter's type, reduced to what the derivation asks.
#[derive(Debug)]
pub struct Type {
    /// The named type under any pointers and arrays, without its path or
    /// lifetime: `*const SwapchainKHR` and `[DisplayKHR; 2]` give the handle.
    pub base: String,
    /// Neither a pointer nor an array: `u64` itself.
    pub plain: bool,
    /// Behind a `*mut` first: a parameter the command writes (an output,
    /// as `vkCreateXcbSurfaceKHR`'s surface).
    pub written: bool,
}

/// A structure's field or a command's parameter.
#[derive(Debug)]
pub struct Field {
    pub name: String,
    pub ty: Type,
}

#[derive(Debug, Default)]
pub struct Struct {
    /// Declared as `Foo<'a>`.
    pub lifetime: bool,
    pub fields: Vec<Field>,
    /// `StructureType::X` from its `TaggedStructure` impl, if it has one.
    pub s_type: Option<String>,
}

/// A command of the registry: an entry of some function table.
#[derive(Debug)]
pub struct Command {
    /// The `PFN_vkFoo` type of its table field, the same for an alias.
    pub pfn: String,
    /// The tables that list it: "VK_VERSION_1_x" or extension names.
    pub from: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct Ash {
    pub structs: BTreeMap<String, Struct>,
    /// Base structure → the structures that may extend it (pNext).
    pub extends: BTreeMap<String, BTreeSet<String>>,
    /// Alias → the name it stands for.
    pub aliases: BTreeMap<String, String>,
    /// `PFN_vkFoo` → its parameters.
    pub pfns: BTreeMap<String, Vec<Field>>,
    /// Command name (`vkFoo`, `vkFooKHR`) → its table entry.
    pub commands: BTreeMap<String, Command>,
}

impl Ash {
    /// Reads ash's `src/` directory.
    pub fn read(src: &Path) -> Result<Ash, String> {
        let file = |name: &str| -> Result<Vec<Tok>, String> {
            let path = src.join(name);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            tokenize(&text).map_err(|e| format!("{}: {e}", path.display()))
        };
        let mut ash = Ash::default();
        ash.read_definitions(&file("vk/definitions.rs")?);
        ash.read_aliases(&file("vk/aliases.rs")?);
        let extensions = file("vk/extensions.rs")?;
        ash.read_pfns(&file("vk/features.rs")?);
        ash.read_pfns(&extensions);
        let names = extension_names(&extensions);
        ash.read_tables(&file("tables.rs")?, &names)?;
        ash.read_tables(&file("extensions_generated.rs")?, &names)?;
        ash.check()?;
        Ok(ash)
    }

    /// The name an alias stands for, or the name itself.
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases.get(name).map_or(name, |s| s)
    }

    fn read_definitions(&mut self, t: &[Tok]) {
        let mut i = 0;
        while i < t.len() {
            if at(t, i, "pub struct _") || at(t, i, "pub union _") {
                let name = t[i + 2].ident().unwrap_or_default().to_string();
                let mut j = i + 3;
                let lifetime = at(t, j, "<") && matches!(t[j + 1], Tok::Lifetime(_));
                if at(t, j, "<") {
                    j = skip_group(t, j);
                }
                if at(t, j, "{") {
                    let end = skip_group(t, j);
                    let s = self.structs.entry(name).or_default();
                    s.lifetime = lifetime;
                    s.fields = fields(&t[j + 1..end - 1]);
                    i = end;
                    continue;
                }
            } else if at(t, i, "unsafe impl _ for _") {
                let (Some(trait_), Some(other)) = (t[i + 2].ident(), t[i + 4].ident()) else {
                    i += 1;
                    continue;
                };
                if let Some(base) = trait_.strip_prefix("Extends") {
                    let extenders = self.extends.entry(base.to_string()).or_default();
                    extenders.insert(other.to_string());
                }
            } else if at(t, i, "TaggedStructure for _") {
                let name = t[i + 2].ident().unwrap_or_default().to_string();
                let pattern = "const STRUCTURE_TYPE : StructureType = StructureType :: _";
                let end = skip_group(t, (i..t.len()).find(|&k| at(t, k, "{")).unwrap_or(i));
                if let Some(k) = (i..end).find(|&k| at(t, k, pattern)) {
                    let s_type = t[k + 7].ident().map(str::to_string);
                    self.structs.entry(name).or_default().s_type = s_type;
                }
            }
            i += 1;
        }
    }

    /// `pub type Alias<'a> = Original<'a>;` (but not type definitions such
    /// as `pub type PFN_... = Option<...>`).
    fn read_aliases(&mut self, t: &[Tok]) {
        for i in 0..t.len() {
            if !at(t, i, "pub type _") {
                continue;
            }
            let mut j = i + 3;
            if at(t, j, "<") {
                j = skip_group(t, j);
            }
            if !at(t, j, "= _") {
                continue;
            }
            let mut k = j + 2;
            if at(t, k, "<") {
                k = skip_group(t, k);
            }
            if let (true, Some(alias), Some(original)) =
                (at(t, k, ";"), t[i + 2].ident(), t[j + 1].ident())
            {
                self.aliases.insert(alias.to_string(), original.to_string());
            }
        }
    }

    /// `pub type PFN_vkFoo = unsafe extern "system" fn(params) -> Ret;`
    fn read_pfns(&mut self, t: &[Tok]) {
        for i in 0..t.len() {
            if at(t, i, "pub type _ = unsafe extern _ fn (") {
                let name = t[i + 2].ident().unwrap_or_default();
                let end = skip_group(t, i + 8);
                self.pfns
                    .insert(name.to_string(), fields(&t[i + 9..end - 1]));
            }
        }
    }

    /// The function tables of `tables.rs` (core: the version from the
    /// struct's name) or `extensions_generated.rs` (the enclosing module's
    /// extension name).
    fn read_tables(&mut self, t: &[Tok], names: &BTreeMap<String, String>) -> Result<(), String> {
        struct Table {
            from: String,
            /// (field, PFN type) in declaration order.
            fields: Vec<(String, String)>,
            /// field → command name, from the loader.
            names: BTreeMap<String, String>,
        }
        let mut tables: Vec<Table> = Vec::new();
        // Open `pub mod`s: the brace depth inside them and their extension.
        let mut modules: Vec<(usize, Option<String>)> = Vec::new();
        let mut depth = 0;
        let mut i = 0;
        while i < t.len() {
            if at(t, i, "{") {
                depth += 1;
            } else if at(t, i, "}") {
                depth -= 1;
                modules.retain(|(d, _)| *d <= depth);
            } else if at(t, i, "pub mod _ {") {
                modules.push((depth + 1, None));
            } else if at(t, i, "crate :: vk :: _ as NAME") {
                let konst = t[i + 4].ident().unwrap_or_default();
                let name = names
                    .get(konst)
                    .ok_or(format!("no extension name {konst}"))?;
                if let Some(m) = modules.last_mut() {
                    m.1 = Some(name.clone());
                }
            } else if at(t, i, "pub struct _ {") {
                let name = t[i + 2].ident().unwrap_or_default();
                if name.ends_with("Fn") || name.contains("FnV") {
                    let from = match name.split_once("FnV") {
                        Some((_, v)) => format!("VK_VERSION_{v}"),
                        None if name == "StaticFn" => "VK_VERSION_1_0".to_string(),
                        None => modules
                            .last()
                            .and_then(|m| m.1.clone())
                            .ok_or(format!("table {name} outside an extension module"))?,
                    };
                    let end = skip_group(t, i + 3);
                    let fields = fields(&t[i + 4..end - 1])
                        .into_iter()
                        .map(|f| (f.name, f.ty.base))
                        .collect();
                    let names = BTreeMap::new();
                    tables.push(Table {
                        from,
                        fields,
                        names,
                    });
                    i = end;
                    continue;
                }
            } else if at(t, i, "_ : unsafe {") && matches!(t[i], Tok::Ident(_)) {
                // A loader entry: the first "vk..." string after it is its name.
                let command = t[i..].iter().find_map(|x| match x {
                    Tok::Str(s) if s.starts_with("vk") => Some(s.trim_end_matches('\0')),
                    _ => None,
                });
                if let (Some(table), Some(command)) = (tables.last_mut(), command) {
                    let field = t[i].ident().unwrap_or_default().to_string();
                    table.names.insert(field, command.to_string());
                }
            }
            i += 1;
        }
        for table in tables {
            for (field, pfn) in table.fields {
                let name = table.names.get(&field).ok_or(format!(
                    "{}: no command name found for field {field}",
                    table.from
                ))?;
                let command = self.commands.entry(name.clone()).or_insert(Command {
                    pfn: pfn.clone(),
                    from: BTreeSet::new(),
                });
                if command.pfn != pfn {
                    return Err(format!("{name} is both {} and {pfn}", command.pfn));
                }
                command.from.insert(table.from.clone());
            }
        }
        Ok(())
    }

    /// Guards against a layout this reader does not understand: the
    /// derivation would then quietly find nothing.
    fn check(&self) -> Result<(), String> {
        let tagged = self.structs.values().filter(|s| s.s_type.is_some()).count();
        let counts = [
            ("structures", self.structs.len(), 1000),
            ("tagged structures", tagged, 800),
            ("pNext bases", self.extends.len(), 50),
            ("aliases", self.aliases.len(), 200),
            ("PFN types", self.pfns.len(), 500),
            ("commands", self.commands.len(), 500),
        ];
        for (what, n, least) in counts {
            if n < least {
                return Err(format!("read only {n} {what} from ash (expected {least} or more): has its layout changed?"));
            }
        }
        for (name, command) in &self.commands {
            if !name.starts_with("vk") || !command.pfn.starts_with("PFN_") {
                return Err(format!("{name}: table field of type {}", command.pfn));
            }
            if !self.pfns.contains_key(&command.pfn) {
                return Err(format!("{name}: no definition of {}", command.pfn));
            }
        }
        Ok(())
    }
}

/// Fields or parameters, from the tokens between the braces or parentheses.
fn fields(t: &[Tok]) -> Vec<Field> {
    split_commas(t).into_iter().filter_map(field).collect()
}

/// `#[attr] pub name: Type` (struct field) or `name: Type` (parameter).
fn field(mut t: &[Tok]) -> Option<Field> {
    while at(t, 0, "# [") {
        t = &t[skip_group(t, 1)..];
    }
    if at(t, 0, "pub (") {
        t = &t[skip_group(t, 1)..];
    } else if at(t, 0, "pub") {
        t = &t[1..];
    }
    let name = t.first()?.ident()?.to_string();
    if !at(t, 1, ":") {
        return None;
    }
    let mut t = &t[2..];
    let mut plain = true;
    let mut written = None;
    loop {
        match t.first()? {
            Tok::Punct("*") => {
                plain = false;
                written.get_or_insert(at(t, 1, "mut"));
            }
            Tok::Punct("[" | "&") => plain = false,
            Tok::Ident(w) if w == "const" || w == "mut" => {}
            Tok::Lifetime(_) => {}
            // A path: `crate::vk::Device` is `Device`.
            Tok::Ident(_) if at(t, 1, "::") => t = &t[1..],
            Tok::Ident(base) => {
                let base = base.clone();
                return Some(Field {
                    name,
                    ty: Type {
                        base,
                        plain,
                        written: written.unwrap_or(false),
                    },
                });
            }
            _ => return None,
        }
        t = &t[1..];
    }
}

/// Extension name constants: `KHR_SWAPCHAIN_NAME` → "VK_KHR_swapchain".
fn extension_names(t: &[Tok]) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for i in 0..t.len() {
        if at(t, i, "pub const _ : & CStr =") {
            let value = t[i + 7..]
                .iter()
                .take_while(|x| !x.is(";"))
                .find_map(|x| match x {
                    Tok::Str(s) => Some(s.trim_end_matches('\0').to_string()),
                    _ => None,
                });
            if let (Some(konst), Some(value)) = (t[i + 2].ident(), value) {
                names.insert(konst.to_string(), value);
            }
        }
    }
    names
}
