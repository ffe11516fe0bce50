//! Fault injection: every mode fires exactly as specified for N hits, and a seeded random mode
//! reproducibly (proptest); every mode survives the control text (proptest); `race_fault!`
//! armed; selectors, rules for sites that register later, listing and the control text.
//!
//! The registry is process-global; each test here uses its own site names, so the tests can
//! share one process.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use proptest::prelude::*;
use sixfs::util::fault::{self, Action, Command, FaultMode, Selector, Trigger};
use std::time::{Duration, Instant};

fn site_a() -> Option<fault::FaultError> {
    sixfs::fault!("ftest_prop:a")
}

/// What `trigger` must do on hits 1..=n.
fn expected(trigger: Trigger, n: u64) -> Vec<bool> {
    (1..=n)
        .map(|h| match trigger {
            Trigger::Always => true,
            Trigger::Oneshot => h == 1,
            Trigger::EveryNth(k) => h % k == 0,
            Trigger::After(k) => h > k,
            Trigger::Times(k) => h <= k,
            Trigger::Random { .. } => unreachable!("not a fixed pattern"),
        })
        .collect()
}

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::Always),
        Just(Trigger::Oneshot),
        (1u64..20).prop_map(Trigger::EveryNth),
        (0u64..20).prop_map(Trigger::After),
        (0u64..20).prop_map(Trigger::Times),
        (1u64..6, any::<u64>()).prop_map(|(one_in, seed)| Trigger::Random { one_in, seed }),
    ]
}

/// Every mode the control text can express: any trigger (`every=` and `random=` at least 1),
/// any positive errno (named or not), any delay down to the nanosecond, yield.
fn any_mode() -> impl Strategy<Value = FaultMode> {
    let trigger = prop_oneof![
        Just(Trigger::Always),
        Just(Trigger::Oneshot),
        (1u64..).prop_map(Trigger::EveryNth),
        any::<u64>().prop_map(Trigger::After),
        any::<u64>().prop_map(Trigger::Times),
        (1u64.., any::<u64>()).prop_map(|(one_in, seed)| Trigger::Random { one_in, seed }),
    ];
    let delay = prop_oneof![
        (0u64..5_000_000).prop_map(Duration::from_nanos),
        (0u64..5_000_000).prop_map(|n| Duration::from_nanos(n * 1_000)),
        (0u64..5_000_000).prop_map(|n| Duration::from_nanos(n * 1_000_000)),
        any::<u64>().prop_map(Duration::from_secs),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ];
    let action = prop_oneof![
        (1i32..200).prop_map(Action::Error),
        (1i32..).prop_map(Action::Error),
        delay.prop_map(Action::Delay),
        Just(Action::Yield),
    ];
    (trigger, action).prop_map(|(trigger, action)| FaultMode { trigger, action })
}

fn site_rt() -> Option<fault::FaultError> {
    sixfs::fault!("ftest_rt:site")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn modes_fire_exactly(t in trigger(), n in 0u64..80, errno in 1i32..200) {
        site_a(); // make sure it is registered
        let mode = FaultMode { trigger: t, action: Action::Error(errno) };
        let run = || -> Vec<bool> {
            fault::set(Selector::Name("ftest_prop:a".into()), Some(mode));
            (0..n)
                .map(|_| match site_a() {
                    Some(e) => {
                        assert_eq!(e.errno, errno);
                        assert_eq!(e.site, "ftest_prop:a");
                        true
                    }
                    None => false,
                })
                .collect()
        };
        let got = run();
        if let Trigger::Random { .. } = t {
            // Reconfiguring with the same seed restarts the same pattern.
            let again = run();
            prop_assert_eq!(&again, &got, "random with a seed is not reproducible");
        } else {
            prop_assert_eq!(&got, &expected(t, n));
        }
        let info = fault::site("ftest_prop:a").unwrap();
        let fires = got.iter().filter(|&&f| f).count() as u64;
        prop_assert_eq!(info.fires, fires);
        let self_disarming = matches!(t, Trigger::Oneshot | Trigger::Times(_));
        if self_disarming && fires == expected(t, 1000).iter().filter(|&&f| f).count() as u64 && n > 0 {
            // Spent: disarmed; hits stop counting.
            prop_assert_eq!(info.mode, None);
        } else {
            prop_assert_eq!(info.hits, n);
        }
    }

    /// The control text of a mode parses back to the same mode, and a listed line (what
    /// `control_text` prints, up to the `#`) restores it.
    #[test]
    fn every_mode_round_trips_through_the_control_text(m in any_mode()) {
        let text = format!("ftest_rt:site {m}");
        let cmds = fault::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(
            cmds,
            vec![Command { selector: Selector::Name("ftest_rt:site".into()), mode: Some(m) }],
            "{}", text
        );
        site_rt(); // registered (no rule for it yet: unarmed)
        fault::set(Selector::Name("ftest_rt:site".into()), Some(m));
        let listing = fault::control_text();
        let line = listing.lines().find(|l| l.starts_with("ftest_rt:site ")).unwrap();
        fault::set(Selector::Name("ftest_rt:site".into()), None);
        fault::configure(line).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
        prop_assert_eq!(fault::site("ftest_rt:site").unwrap().mode, Some(m), "{}", line);
        fault::set(Selector::Name("ftest_rt:site".into()), None);
    }
}

fn race() -> bool {
    sixfs::race_fault!("ftest_race:r")
}

#[test]
fn race_fault_armed_fires_as_specified() {
    assert!(!race(), "unarmed");
    fault::configure("ftest_race:r oneshot").unwrap();
    assert!(race(), "oneshot: the first hit takes the rare path");
    assert!(!race() && !race(), "oneshot: only the first");
    let info = fault::site("ftest_race:r").unwrap();
    assert_eq!((info.fires, info.mode), (1, None), "spent and disarmed");

    fault::configure("ftest_race:r every=3").unwrap();
    let got: Vec<bool> = (0..7).map(|_| race()).collect();
    assert_eq!(got, [false, false, true, false, false, true, false]);
    fault::configure("ftest_race:r times=2 error=ENOSPC").unwrap();
    let got: Vec<bool> = (0..4).map(|_| race()).collect();
    assert_eq!(
        got,
        [true, true, false, false],
        "any error action is `true`"
    );

    // A delay or yield action delays and returns `false` (it fires, but the rare path is not
    // taken).
    fault::configure("ftest_race:r on delay=5ms").unwrap();
    let t = Instant::now();
    assert!(!race());
    assert!(t.elapsed() >= Duration::from_millis(5), "no delay");
    fault::configure("ftest_race:r on yield").unwrap();
    assert!(!race());
    assert_eq!(fault::site("ftest_race:r").unwrap().fires, 1);
    fault::configure("ftest_race:r off").unwrap();
    assert!(!race());
}

fn site_r() -> Option<fault::FaultError> {
    sixfs::fault!("ftest_random:r")
}

#[test]
fn random_is_seeded_and_about_one_in_n() {
    let run = |seed: u64| -> Vec<bool> {
        fault::configure(&format!("ftest_random:r random=10 seed={seed}")).unwrap();
        (0..10_000).map(|_| site_r().is_some()).collect()
    };
    let a = run(7);
    let b = run(7);
    let c = run(8);
    assert_eq!(a, b, "same seed, same pattern");
    assert_ne!(a, c, "another seed, another pattern");
    let fires = a.iter().filter(|&&f| f).count();
    assert!(
        (800..=1200).contains(&fires),
        "random=10 fired {fires} of 10000"
    );
    let last = c.iter().filter(|&&f| f).count() as u64;
    assert_eq!(
        fault::site("ftest_random:r").unwrap().fires,
        last,
        "counts since the last configure"
    );
    fault::configure("ftest_random:r random=1").unwrap();
    assert!(
        (0..100).all(|_| site_r().is_some()),
        "random=1 fires always"
    );
    fault::configure("ftest_random:r off").unwrap();
    assert!(site_r().is_none());
}

fn site_d() -> Option<fault::FaultError> {
    sixfs::fault!("ftest_delay:d")
}

#[test]
fn delay_and_yield_return_none_and_count() {
    fault::configure("ftest_delay:d times=2 delay=30ms").unwrap();
    let t = Instant::now();
    assert!(site_d().is_none());
    assert!(site_d().is_none());
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "the delay did not happen"
    );
    let t = Instant::now();
    assert!(site_d().is_none());
    assert!(
        t.elapsed() < Duration::from_millis(30),
        "delayed after times=2 was spent"
    );
    assert_eq!(fault::site("ftest_delay:d").unwrap().fires, 2);
    fault::configure("ftest_delay:d yield").unwrap();
    assert!(!sixfs::race_fault!("ftest_delay:race"));
    assert!(site_d().is_none());
    assert_eq!(fault::site("ftest_delay:d").unwrap().fires, 1);
}

/// Sites in their own module, so the module selector below touches no other test's sites.
mod sel {
    use sixfs::util::fault::FaultError;
    pub(crate) fn one() -> Option<FaultError> {
        sixfs::fault!("ftest_sel:one")
    }
    pub(crate) fn two() -> Option<FaultError> {
        sixfs::fault!("ftest_sel:two")
    }
    pub(crate) fn line() -> (u32, Option<FaultError>) {
        (line!(), sixfs::fault!("ftest_sel_line:x"))
    }
    pub(crate) mod inner {
        pub(crate) fn deep() -> Option<sixfs::util::fault::FaultError> {
            sixfs::fault!("ftest_sel_inner:deep")
        }
    }
}
/// A module whose path starts with `fault_modes::sel` as a string, but is not inside it.
mod selectors {
    pub(crate) fn near() -> Option<sixfs::util::fault::FaultError> {
        sixfs::fault!("ftest_sel_near:x")
    }
}
use sel::{line as sel_line, one as sel_one, two as sel_two};

#[test]
fn selectors_by_class_name_file_line_and_module() {
    // A class rule arms sites that register after it.
    fault::configure("ftest_sel:* on error=ENOSPC").unwrap();
    assert_eq!(sel_one().map(|e| e.errno), Some(libc::ENOSPC));
    assert_eq!(sel_two().map(|e| e.errno), Some(libc::ENOSPC));
    // An exact name overrides one of them.
    fault::configure("ftest_sel:two off").unwrap();
    assert!(sel_one().is_some());
    assert!(sel_two().is_none());
    fault::configure("class=ftest_sel off").unwrap();
    assert!(sel_one().is_none());

    let (line, none) = sel_line();
    assert!(none.is_none());
    fault::configure(&format!("tests/fault_modes.rs:{line} oneshot")).unwrap();
    assert!(sel_line().1.is_some());
    assert!(sel_line().1.is_none(), "oneshot");
    fault::configure(&format!("fault_modes.rs:{}-{} on", line - 1, line + 1)).unwrap();
    assert!(sel_line().1.is_some());
    fault::configure(&format!("tests/fault_modes.rs:{} on", line + 1)).unwrap();
    fault::configure(&format!("fault_modes.rs:{line} off")).unwrap();
    assert!(sel_line().1.is_none());

    assert!(selectors::near().is_none()); // registered before the rule, too
    fault::configure("module=fault_modes::sel every=2").unwrap();
    assert!(sel_one().is_none());
    assert!(sel_one().is_some());
    assert!(
        sel::inner::deep().is_none() && sel::inner::deep().is_some(),
        "submodule"
    );
    assert!(
        (0..4).all(|_| selectors::near().is_none()),
        "module=fault_modes::sel matched fault_modes::selectors"
    );
    assert_eq!(fault::site("ftest_sel_near:x").unwrap().mode, None);
    fault::set(Selector::Module("fault_modes::sel".into()), None);
    assert!(sel_one().is_none() && sel_two().is_none() && sel_line().1.is_none());
    assert!(sel::inner::deep().is_none());
}

fn listed() -> Option<fault::FaultError> {
    sixfs::fault!("ftest_list:site")
}

#[test]
fn list_and_control_text() {
    assert!(listed().is_none());
    fault::configure("ftest_list:site after=1 error=EROFS").unwrap();
    assert!(listed().is_none());
    assert_eq!(listed().map(|e| e.errno), Some(libc::EROFS));
    let info = fault::list()
        .into_iter()
        .find(|s| s.name == "ftest_list:site")
        .unwrap();
    assert!(info.file.ends_with("fault_modes.rs"));
    assert_eq!(info.module, "fault_modes");
    assert!(info.line > 0);
    assert_eq!((info.hits, info.fires), (2, 1));
    assert_eq!(
        info.mode,
        Some(FaultMode {
            trigger: Trigger::After(1),
            action: Action::Error(libc::EROFS)
        })
    );
    let text = fault::control_text();
    let line = text
        .lines()
        .find(|l| l.starts_with("ftest_list:site "))
        .unwrap();
    assert!(line.contains("hits=2 fires=1"), "{line}");
    // The listing is itself valid control text that restores the mode (and resets counts).
    fault::configure(line).unwrap();
    let again = fault::site("ftest_list:site").unwrap();
    assert_eq!(again.mode, info.mode);
    assert_eq!((again.hits, again.fires), (0, 0));
    assert!(fault::configure("ftest_list:site on; ftest_list:site nonsense").is_err());
    assert_eq!(
        fault::site("ftest_list:site").unwrap().mode,
        info.mode,
        "a bad spec applies nothing"
    );
}
