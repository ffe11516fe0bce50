//! Dynamic fault injection (notes §11, seeds 000 and 001).
//!
//! A fault site is an expression placed on an IO, allocation or race-handling path:
//!
//! ```
//! # fn write() -> Result<(), i32> {
//! if let Some(e) = sixfs::fault!("dev:write") {
//!     return Err(e.errno); // each layer turns it into its own error
//! }
//! # Ok(()) }
//! # write().unwrap();
//! ```
//!
//! [`fault!`](crate::fault) evaluates to `Option<FaultError>`: `None` normally, `Some` when
//! the site is armed and its trigger fires with an error action. [`race_fault!`](crate::race_fault)
//! evaluates to `bool` for forcing rare race-handling paths. Names are `"class:name"` (checked
//! at compile time); the class groups sites for control (`dev:*`).
//!
//! # Cost
//!
//! Each call site expands to a `static` [`FaultSite`]. A site that is not armed costs one
//! relaxed atomic load and a predictable branch. The first evaluation of a site registers it
//! (lazily, under a mutex) in the registry, so only sites that have been reached are listed.
//!
//! # Modes
//!
//! A mode is a *trigger* (when to fire) and an *action* (what firing does); see
//! [`Trigger`] and [`Action`]. Hits are counted only while a site is armed (an unarmed site
//! counts nothing, to stay one load); `hits` and `fires` restart from zero whenever the site is
//! (re)configured.
//!
//! # Control
//!
//! * API: [`configure`] with the text control format (`docs/faults.md`), or [`set`] with a
//!   [`Selector`] (exact name, name prefix / class, file:line, module) and a [`FaultMode`].
//! * Environment: `SIXFS_FAULTS` holds the same text (commands separated by `;`), read once on
//!   the first use of the registry.
//! * [`list`] returns every registered site with its mode and counts; [`control_text`] renders
//!   it in the control format (what the mount's control socket and `sixfs-debug` show).
//!
//! The registry is **process-global**, because sites are `static`s shared by every `Fs` in the
//! process. Tests that configure faults therefore run in their own process (nextest runs each
//! test in its own process) or use site names no other test hits. Rules persist: a rule also
//! arms matching sites that register later; [`reset`] forgets every rule and disarms every site.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// Declares a fault site and evaluates it: `Option<FaultError>`. See the [module
/// docs](crate::util::fault).
#[macro_export]
macro_rules! fault {
    ($name:expr) => {{
        const _: () = ::core::assert!(
            $crate::util::fault::valid_name($name),
            "fault site names are \"class:name\""
        );
        static SITE: $crate::util::fault::FaultSite =
            $crate::util::fault::FaultSite::new($name, file!(), line!(), module_path!());
        SITE.check()
    }};
}

/// Declares a fault site for a race-handling path and evaluates it: `true` when it fires (take
/// the rare path). A delay action delays and returns `false`.
#[macro_export]
macro_rules! race_fault {
    ($name:expr) => {
        $crate::fault!($name).is_some()
    };
}

/// `true` if `name` is `class:rest` with a non-empty class and rest and no whitespace.
pub const fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    let mut colon = None;
    while i < b.len() {
        if b[i].is_ascii_whitespace() || b[i] == b';' || b[i] == b'#' {
            return false;
        }
        if b[i] == b':' && colon.is_none() {
            colon = Some(i);
        }
        i += 1;
    }
    match colon {
        Some(c) => c > 0 && c + 1 < b.len(),
        None => false,
    }
}

/// What a firing error site returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("injected fault at {site} (errno {errno})")]
pub struct FaultError {
    /// The site's name.
    pub site: &'static str,
    /// The error to report: `EIO` unless the mode overrides it.
    pub errno: i32,
}

/// When an armed site fires. Counting starts at the first hit after the site was configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Every hit.
    Always,
    /// The first hit only; then the site disarms itself.
    Oneshot,
    /// Hits N, 2N, 3N, ...
    EveryNth(u64),
    /// Every hit after the first N.
    After(u64),
    /// The first N hits; then the site disarms itself.
    Times(u64),
    /// Each hit with probability 1/N, from a generator seeded with `seed` mixed with the site
    /// name (reproducible for the same sequence of hits).
    Random {
        /// N.
        one_in: u64,
        /// The seed.
        seed: u64,
    },
}

/// What firing does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Return `Some(FaultError)` with this errno.
    Error(i32),
    /// Sleep, then return `None` (to widen race windows).
    Delay(Duration),
    /// Yield the thread, then return `None`.
    Yield,
}

/// A site's mode: trigger plus action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultMode {
    /// When.
    pub trigger: Trigger,
    /// What.
    pub action: Action,
}

impl FaultMode {
    /// Fire every hit with `EIO`.
    pub const fn on() -> Self {
        FaultMode {
            trigger: Trigger::Always,
            action: Action::Error(libc::EIO),
        }
    }
    /// Fire the next hit with `EIO`.
    pub const fn oneshot() -> Self {
        FaultMode {
            trigger: Trigger::Oneshot,
            action: Action::Error(libc::EIO),
        }
    }
    /// The same trigger with another action.
    pub const fn with_action(self, action: Action) -> Self {
        FaultMode {
            trigger: self.trigger,
            action,
        }
    }
    /// A mode with this trigger and `EIO`.
    pub const fn when(trigger: Trigger) -> Self {
        FaultMode {
            trigger,
            action: Action::Error(libc::EIO),
        }
    }
}

const UNREGISTERED: u8 = 0;
const OFF: u8 = 1;
const ARMED: u8 = 2;

#[derive(Debug)]
struct SiteState {
    mode: Option<FaultMode>,
    hits: u64,
    fires: u64,
    rng: Option<SmallRng>,
}

/// One call site (a `static` made by [`fault!`](crate::fault)). Not for direct use.
#[derive(Debug)]
pub struct FaultSite {
    name: &'static str,
    file: &'static str,
    line: u32,
    module: &'static str,
    state: AtomicU8,
    inner: Mutex<SiteState>,
}

impl FaultSite {
    /// A site; used by the macros.
    #[doc(hidden)]
    pub const fn new(
        name: &'static str,
        file: &'static str,
        line: u32,
        module: &'static str,
    ) -> Self {
        FaultSite {
            name,
            file,
            line,
            module,
            state: AtomicU8::new(UNREGISTERED),
            inner: Mutex::new(SiteState {
                mode: None,
                hits: 0,
                fires: 0,
                rng: None,
            }),
        }
    }

    /// Evaluates the site: one relaxed load unless armed or not yet registered.
    #[inline(always)]
    pub fn check(&'static self) -> Option<FaultError> {
        if self.state.load(Ordering::Relaxed) == OFF {
            return None;
        }
        self.check_slow()
    }

    #[cold]
    #[inline(never)]
    fn check_slow(&'static self) -> Option<FaultError> {
        if self.state.load(Ordering::Acquire) == UNREGISTERED {
            register(self);
        }
        let action = {
            let mut st = lock(&self.inner);
            let mode = st.mode?;
            st.hits += 1;
            let h = st.hits;
            let (fire, spent) = match mode.trigger {
                Trigger::Always => (true, false),
                Trigger::Oneshot => (h == 1, h >= 1),
                Trigger::EveryNth(n) => (n != 0 && h.is_multiple_of(n), false),
                Trigger::After(n) => (h > n, false),
                Trigger::Times(n) => (h <= n, h >= n),
                Trigger::Random { one_in, .. } => {
                    let r = st.rng.get_or_insert_with(|| SmallRng::seed_from_u64(0));
                    (one_in != 0 && r.gen_range(0..one_in) == 0, false)
                }
            };
            if spent {
                st.mode = None;
                self.state.store(OFF, Ordering::Release);
            }
            if !fire {
                return None;
            }
            st.fires += 1;
            mode.action
        };
        match action {
            Action::Error(errno) => Some(FaultError {
                site: self.name,
                errno,
            }),
            Action::Delay(d) => {
                std::thread::sleep(d);
                None
            }
            Action::Yield => {
                std::thread::yield_now();
                None
            }
        }
    }

    fn info(&self) -> SiteInfo {
        let st = lock(&self.inner);
        SiteInfo {
            name: self.name,
            file: self.file,
            line: self.line,
            module: self.module,
            mode: st.mode,
            hits: st.hits,
            fires: st.fires,
        }
    }

    /// Sets the mode and restarts the counts. Caller holds the registry lock.
    fn apply(&self, mode: Option<FaultMode>) {
        let mut st = lock(&self.inner);
        st.mode = mode;
        st.hits = 0;
        st.fires = 0;
        st.rng = match mode.map(|m| m.trigger) {
            Some(Trigger::Random { seed, .. }) => {
                Some(SmallRng::seed_from_u64(seed ^ fnv1a(self.name.as_bytes())))
            }
            _ => None,
        };
        self.state
            .store(if mode.is_some() { ARMED } else { OFF }, Ordering::Release);
    }
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which sites a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Every site.
    All,
    /// The site with exactly this name.
    Name(String),
    /// Sites whose name starts with this (a class is `"class:"`).
    Prefix(String),
    /// Sites in a file whose path ends with `file`, on a line in `first..=last`.
    FileLine {
        /// Path suffix, e.g. `dev/file.rs`.
        file: String,
        /// First line.
        first: u32,
        /// Last line.
        last: u32,
    },
    /// Sites in this module or a module inside it, by whole `::` path components:
    /// `sixfs::dev` matches `sixfs::dev` and `sixfs::dev::file`, not `sixfs::devices`.
    Module(String),
}

impl Selector {
    fn matches(&self, s: &FaultSite) -> bool {
        match self {
            Selector::All => true,
            Selector::Name(n) => s.name == n,
            Selector::Prefix(p) => s.name.starts_with(p.as_str()),
            Selector::FileLine { file, first, last } => {
                path_ends_with(s.file, file) && (*first..=*last).contains(&s.line)
            }
            Selector::Module(m) => module_within(s.module, m),
        }
    }
}

/// Whether module path `path` is `module` or inside it (whole `::` components).
fn module_within(path: &str, module: &str) -> bool {
    match path.strip_prefix(module) {
        Some(rest) => rest.is_empty() || rest.starts_with("::") || module.ends_with("::"),
        None => false,
    }
}

fn path_ends_with(path: &str, suffix: &str) -> bool {
    path == suffix
        || (path.ends_with(suffix) && path[..path.len() - suffix.len()].ends_with(['/', '\\']))
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => f.write_str("*"),
            Selector::Name(n) => f.write_str(n),
            Selector::Prefix(p) => write!(f, "{p}*"),
            Selector::FileLine { file, first, last } if first == last => {
                write!(f, "{file}:{first}")
            }
            Selector::FileLine { file, first, last } => write!(f, "{file}:{first}-{last}"),
            Selector::Module(m) => write!(f, "module={m}"),
        }
    }
}

/// A registered site's description and counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteInfo {
    /// `class:name`.
    pub name: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
    /// Module path.
    pub module: &'static str,
    /// The mode, or `None` when not armed.
    pub mode: Option<FaultMode>,
    /// Hits since the site was last configured, counted while armed.
    pub hits: u64,
    /// Fires since the site was last configured.
    pub fires: u64,
}

impl fmt::Display for SiteInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.mode {
            Some(m) => m.to_string(),
            None => "off".to_string(),
        };
        write!(
            f,
            "{} {mode} # {}:{} {} hits={} fires={}",
            self.name, self.file, self.line, self.module, self.hits, self.fires
        )
    }
}

// ---- registry ----

#[derive(Debug)]
struct Registry {
    sites: Vec<&'static FaultSite>,
    rules: Vec<(Selector, Option<FaultMode>)>,
    env_read: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    sites: Vec::new(),
    rules: Vec::new(),
    env_read: false,
});

/// The environment variable read on first use.
pub const ENV_VAR: &str = "SIXFS_FAULTS";

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    let mut r = lock(&REGISTRY);
    if !r.env_read {
        r.env_read = true;
        if let Ok(spec) = std::env::var(ENV_VAR) {
            match parse(&spec) {
                Ok(cmds) => r
                    .rules
                    .extend(cmds.into_iter().map(|c| (c.selector, c.mode))),
                Err(e) => log::error!("{ENV_VAR} ignored: {e}"),
            }
        }
    }
    r
}

fn register(site: &'static FaultSite) {
    let mut r = registry();
    if site.state.load(Ordering::Acquire) != UNREGISTERED {
        return;
    }
    r.sites.push(site);
    let mode = r
        .rules
        .iter()
        .rev()
        .find(|(sel, _)| sel.matches(site))
        .and_then(|(_, m)| *m);
    site.apply(mode);
}

fn set_locked(r: &mut Registry, sel: Selector, mode: Option<FaultMode>) {
    for s in r.sites.iter().filter(|s| sel.matches(s)) {
        s.apply(mode);
    }
    r.rules.retain(|(old, _)| *old != sel);
    r.rules.push((sel, mode));
}

/// Arms (or with `None`, disarms) every site `sel` matches, now and when they register later.
pub fn set(sel: Selector, mode: Option<FaultMode>) {
    set_locked(&mut registry(), sel, mode);
}

/// Applies control-format commands (see `docs/faults.md`). Nothing is applied unless all of
/// them parse.
pub fn configure(spec: &str) -> Result<(), ParseError> {
    let cmds = parse(spec)?;
    let mut r = registry();
    for c in cmds {
        set_locked(&mut r, c.selector, c.mode);
    }
    Ok(())
}

/// Every registered site, in registration order.
pub fn list() -> Vec<SiteInfo> {
    registry().sites.iter().map(|s| s.info()).collect()
}

/// The registered site called `name`, if it has been reached.
pub fn site(name: &str) -> Option<SiteInfo> {
    registry()
        .sites
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.info())
}

/// The sites in the control format, one per line: `name mode # file:line module hits=H fires=F`.
/// Each line, up to the `#`, is a valid command that restores the mode.
pub fn control_text() -> String {
    list().iter().map(|s| format!("{s}\n")).collect()
}

/// Forgets every rule (including those from the environment) and disarms every site, restarting
/// its counts.
pub fn reset() {
    let mut r = registry();
    r.rules.clear();
    for s in &r.sites {
        s.apply(None);
    }
}

// ---- the control format ----

/// One parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Which sites.
    pub selector: Selector,
    /// The mode, or `None` for `off`.
    pub mode: Option<FaultMode>,
}

/// A control-format error, with the 1-based command number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fault control, command {command}: {msg}")]
pub struct ParseError {
    /// Which command (1-based, counting non-empty ones).
    pub command: usize,
    /// What is wrong.
    pub msg: String,
}

const ERRNOS: &[(&str, i32)] = &[
    ("EIO", libc::EIO),
    ("ENOSPC", libc::ENOSPC),
    ("ENOMEM", libc::ENOMEM),
    ("EROFS", libc::EROFS),
    ("EAGAIN", libc::EAGAIN),
    ("EINTR", libc::EINTR),
    ("EINVAL", libc::EINVAL),
    ("ENOENT", libc::ENOENT),
    ("EEXIST", libc::EEXIST),
    ("EFBIG", libc::EFBIG),
    ("ENODATA", libc::ENODATA),
    ("EBUSY", libc::EBUSY),
    ("EPERM", libc::EPERM),
    ("EACCES", libc::EACCES),
    ("EDQUOT", libc::EDQUOT),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ENOTEMPTY", libc::ENOTEMPTY),
    ("ESTALE", libc::ESTALE),
    ("EOVERFLOW", libc::EOVERFLOW),
    ("ECANCELED", libc::ECANCELED),
];

fn errno_name(e: i32) -> Option<&'static str> {
    ERRNOS.iter().find(|(_, v)| *v == e).map(|(n, _)| *n)
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.trigger {
            Trigger::Always => f.write_str("on")?,
            Trigger::Oneshot => f.write_str("oneshot")?,
            Trigger::EveryNth(n) => write!(f, "every={n}")?,
            Trigger::After(n) => write!(f, "after={n}")?,
            Trigger::Times(n) => write!(f, "times={n}")?,
            Trigger::Random { one_in, seed } => write!(f, "random={one_in} seed={seed}")?,
        }
        match self.action {
            Action::Error(e) => match errno_name(e) {
                Some(n) => write!(f, " error={n}"),
                None => write!(f, " error={e}"),
            },
            Action::Delay(d) => write!(f, " delay={}", DelayText(d)),
            Action::Yield => f.write_str(" yield"),
        }
    }
}

/// A delay in the control format, in the coarsest unit that represents it exactly (`500ns`,
/// `20us`, `5ms`, `2s`), so that parsing the text gives the same `Duration` back.
struct DelayText(Duration);

impl fmt::Display for DelayText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        for (unit, per) in [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)] {
            if ns.is_multiple_of(per) {
                return write!(f, "{}{unit}", ns / per);
            }
        }
        write!(f, "{ns}ns")
    }
}

fn parse_u64(v: &str, what: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("{what} wants a number, got {v:?}"))
}

/// A delay: a number and a unit (`ns`, `us`, `ms`, `s`; none means ms). Any `Duration` can be
/// written this way (in ns if need be: the number may exceed `u64`).
fn parse_duration(v: &str) -> Result<Duration, String> {
    const NS_PER_S: u128 = 1_000_000_000;
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n = num
        .parse::<u128>()
        .map_err(|_| format!("delay wants a number, got {num:?}"))?;
    let per: u128 = match unit {
        "" | "ms" => 1_000_000,
        "us" => 1_000,
        "ns" => 1,
        "s" => NS_PER_S,
        _ => return Err(format!("unknown delay unit {unit:?} (ns, us, ms, s)")),
    };
    let too_long = || format!("delay {v:?} is too long");
    let ns = n.checked_mul(per).ok_or_else(too_long)?;
    let secs = u64::try_from(ns / NS_PER_S).map_err(|_| too_long())?;
    // The remainder is below 10^9.
    #[allow(clippy::cast_possible_truncation)]
    let sub = (ns % NS_PER_S) as u32;
    Ok(Duration::new(secs, sub))
}

fn parse_errno(v: &str) -> Result<i32, String> {
    if let Some((_, e)) = ERRNOS.iter().find(|(n, _)| n.eq_ignore_ascii_case(v)) {
        return Ok(*e);
    }
    match v.parse::<i32>() {
        Ok(e) if e > 0 => Ok(e),
        _ => Err(format!(
            "unknown error {v:?} (an E-name or a positive number)"
        )),
    }
}

fn parse_selector(s: &str) -> Result<Selector, String> {
    if s == "*" || s == "all" {
        return Ok(Selector::All);
    }
    if let Some(m) = s.strip_prefix("module=") {
        if m.is_empty() {
            return Err("`module=` wants a module path (e.g. module=sixfs::dev)".into());
        }
        return Ok(Selector::Module(m.to_string()));
    }
    if let Some(c) = s.strip_prefix("class=") {
        return Ok(Selector::Prefix(format!("{c}:")));
    }
    if let Some(pos) = s.find(".rs:") {
        let (file, lines) = (&s[..pos + 3], &s[pos + 4..]);
        let (a, b) = lines.split_once('-').unwrap_or((lines, lines));
        let first = a.parse::<u32>().map_err(|_| format!("bad line in {s:?}"))?;
        let last = b.parse::<u32>().map_err(|_| format!("bad line in {s:?}"))?;
        if first > last {
            return Err(format!("empty line range in {s:?}"));
        }
        return Ok(Selector::FileLine {
            file: file.to_string(),
            first,
            last,
        });
    }
    if let Some(p) = s.strip_suffix('*') {
        return Ok(Selector::Prefix(p.to_string()));
    }
    if valid_name(s) {
        return Ok(Selector::Name(s.to_string()));
    }
    Err(format!(
        "bad selector {s:?} (class:name, prefix*, file.rs:line, module=path, *)"
    ))
}

fn parse_command(cmd: &str) -> Result<Command, String> {
    let mut words = cmd.split_whitespace();
    let selector = parse_selector(words.next().unwrap_or_default())?;
    let mut trigger: Option<Trigger> = None;
    let mut action: Option<Action> = None;
    let mut seed: Option<u64> = None;
    let mut off = false;
    for w in words {
        let (k, v) = w.split_once('=').unwrap_or((w, ""));
        let t = match (k, v) {
            ("off", "") => {
                off = true;
                None
            }
            ("on", "") => Some(Trigger::Always),
            ("oneshot", "") => Some(Trigger::Oneshot),
            ("every", v) => Some(Trigger::EveryNth(parse_u64(v, "every")?.max(1))),
            ("after", v) => Some(Trigger::After(parse_u64(v, "after")?)),
            ("times", v) => Some(Trigger::Times(parse_u64(v, "times")?)),
            ("random", v) => Some(Trigger::Random {
                one_in: parse_u64(v, "random")?.max(1),
                seed: 0,
            }),
            ("seed", v) => {
                seed = Some(parse_u64(v, "seed")?);
                None
            }
            ("error", v) | ("errno", v) => {
                if action.replace(Action::Error(parse_errno(v)?)).is_some() {
                    return Err("more than one action".into());
                }
                None
            }
            ("delay", v) => {
                if action.replace(Action::Delay(parse_duration(v)?)).is_some() {
                    return Err("more than one action".into());
                }
                None
            }
            ("yield", "") => {
                if action.replace(Action::Yield).is_some() {
                    return Err("more than one action".into());
                }
                None
            }
            _ => return Err(format!("unknown word {w:?}")),
        };
        if let Some(t) = t
            && trigger.replace(t).is_some()
        {
            return Err("more than one trigger".into());
        }
    }
    if off {
        if trigger.is_some() || action.is_some() || seed.is_some() {
            return Err("`off` takes no other words".into());
        }
        return Ok(Command {
            selector,
            mode: None,
        });
    }
    let mut trigger = trigger.unwrap_or(Trigger::Always);
    if let Some(s) = seed {
        match &mut trigger {
            Trigger::Random { seed, .. } => *seed = s,
            _ => return Err("`seed` goes with `random`".into()),
        }
    }
    let action = action.unwrap_or(Action::Error(libc::EIO));
    Ok(Command {
        selector,
        mode: Some(FaultMode { trigger, action }),
    })
}

/// Parses control-format text: commands separated by newlines or `;`, `#` starts a comment.
pub fn parse(spec: &str) -> Result<Vec<Command>, ParseError> {
    let mut out = Vec::new();
    for line in spec.lines() {
        let line = line.split('#').next().unwrap_or_default();
        for cmd in line.split(';') {
            if cmd.trim().is_empty() {
                continue;
            }
            let n = out.len() + 1;
            out.push(parse_command(cmd).map_err(|msg| ParseError { command: n, msg })?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_modes() {
        let cmds = parse(
            "dev:write oneshot\n dev:* every=3 error=ENOSPC ; # comment\n\
             btree:reuse random=10 seed=42 delay=2ms\nsrc/dev/file.rs:10-20 times=2 yield\n\
             module=sixfs::dev after=5 error=28\nclass=alloc off",
        )
        .unwrap();
        assert_eq!(cmds.len(), 6);
        assert_eq!(cmds[0].selector, Selector::Name("dev:write".into()));
        assert_eq!(cmds[0].mode, Some(FaultMode::oneshot()));
        assert_eq!(cmds[1].selector, Selector::Prefix("dev:".into()));
        assert_eq!(
            cmds[1].mode,
            Some(FaultMode {
                trigger: Trigger::EveryNth(3),
                action: Action::Error(libc::ENOSPC)
            })
        );
        assert_eq!(
            cmds[2].mode.unwrap().trigger,
            Trigger::Random {
                one_in: 10,
                seed: 42
            }
        );
        assert_eq!(
            cmds[2].mode.unwrap().action,
            Action::Delay(Duration::from_millis(2))
        );
        assert_eq!(
            cmds[3].selector,
            Selector::FileLine {
                file: "src/dev/file.rs".into(),
                first: 10,
                last: 20
            }
        );
        assert_eq!(cmds[4].mode.unwrap().action, Action::Error(libc::ENOSPC));
        assert_eq!(
            cmds[5],
            Command {
                selector: Selector::Prefix("alloc:".into()),
                mode: None
            }
        );
        for c in &cmds {
            let text = match c.mode {
                Some(m) => format!("{} {m}", c.selector),
                None => format!("{} off", c.selector),
            };
            assert_eq!(&parse(&text).unwrap()[0], c, "{text}");
        }
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "dev:write oneshoot",
            "dev:write on every=2",
            "nocolon on",
            "dev:write seed=3",
            "dev:write off on",
            "dev:write delay=3h",
            "dev:write error=EWHAT",
            "x.rs:9-3 on",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("a:b on; a:b bogus").unwrap_err().command, 2);
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("dev:write"));
        assert!(!valid_name("dev"));
        assert!(!valid_name(":x"));
        assert!(!valid_name("a:"));
        assert!(!valid_name("a: b"));
    }

    #[test]
    fn delays_list_in_a_unit_that_restores_them() {
        for (d, text) in [
            (Duration::from_nanos(500), "500ns"),
            (Duration::from_nanos(1_500), "1500ns"),
            (Duration::from_micros(20), "20us"),
            (Duration::from_micros(1_500), "1500us"),
            (Duration::from_millis(5), "5ms"),
            (Duration::from_secs(2), "2s"),
            (Duration::ZERO, "0s"),
            (
                Duration::new(u64::MAX, 1),
                "18446744073709551615000000001ns",
            ),
        ] {
            let m = FaultMode::on().with_action(Action::Delay(d));
            assert_eq!(m.to_string(), format!("on delay={text}"));
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
        assert!(parse_duration("18446744073709551616s").is_err(), "too long");
        assert!(parse_duration("99999999999999999999999999999999999999999s").is_err());
        assert_eq!(
            parse_duration("7"),
            Ok(Duration::from_millis(7)),
            "bare = ms"
        );
    }

    #[test]
    fn module_selector_matches_whole_components() {
        assert!(module_within("sixfs::dev", "sixfs::dev"));
        assert!(module_within("sixfs::dev::file", "sixfs::dev"));
        assert!(module_within("sixfs::dev::file", "sixfs::dev::"));
        assert!(module_within("sixfs::dev::file", "sixfs"));
        assert!(!module_within("sixfs::devices", "sixfs::dev"));
        assert!(!module_within("sixfs::devices::x", "sixfs::dev"));
        assert!(!module_within("sixfs::dev", "sixfs::dev::file"));
        assert!(!module_within("other::sixfs::dev", "sixfs::dev"));
        assert!(parse("module= on").is_err());
    }

    #[test]
    fn file_suffix_matches_whole_components() {
        assert!(path_ends_with("libfs/src/dev/file.rs", "dev/file.rs"));
        assert!(path_ends_with("dev/file.rs", "dev/file.rs"));
        assert!(!path_ends_with("libfs/src/dev/profile.rs", "file.rs"));
    }
}
