//! `sixfs-debug list`, `nodes` and `journal` on an image left unclean (the journal must be
//! replayed to see the latest keys): they show the right keys, nodes and journal entries,
//! and never write to the image.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use sixfs::dev::{BlockDevice, FileDevice, OpenOptions};
use sixfs::format::bkey::{Key, Pos};
use sixfs::format::btree_id::BtreeId;
use sixfs::recovery::{Store, StoreOptions};
use sixfs_e2e::{file_digest, run, scratch};

#[test]
fn list_nodes_and_journal_show_an_unclean_image_without_writing() {
    let d = scratch();
    let img = d.path().join("v.img");
    run(
        "mkfs-sixfs",
        [
            "-q",
            "--size",
            "32M",
            "--block-size",
            "512",
            "--btree-node-size",
            "4K",
            "--bucket-size",
            "64K",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([img.display().to_string()]),
    )
    .expect_code(0);
    let mut want = BTreeSet::new();
    {
        let dev: Arc<dyn BlockDevice> = Arc::new(
            FileDevice::open(
                &img,
                &OpenOptions {
                    write: true,
                    direct: false,
                    exclusive: true,
                },
            )
            .unwrap(),
        );
        let s = Store::open(dev, &StoreOptions::default()).unwrap();
        for batch in 0..20u64 {
            s.btree()
                .run(|t| {
                    for i in 0..50 {
                        t.update(
                            BtreeId::Inodes,
                            Key::cookie(Pos::new(0, batch * 50 + i, 0), b"inode"),
                        )?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        for k in 0..1000 {
            want.insert(k);
        }
        s.btree()
            .run(|t| {
                for k in (0..1000).step_by(3) {
                    t.delete(BtreeId::Inodes, Pos::new(0, k, 0))?;
                }
                Ok(())
            })
            .unwrap();
        want.retain(|k| k % 3 != 0);
        s.flush_all().unwrap();
        // Dropped without close: the image needs journal replay.
    }
    let before = file_digest(&img);

    let l = run(
        "sixfs-debug",
        [
            "list".as_ref(),
            "-b".as_ref(),
            "inodes".as_ref(),
            "--json".as_ref(),
            img.as_os_str(),
        ],
    );
    l.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&l.stdout).unwrap();
    let got: BTreeSet<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["pos"]["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(got, want, "list after replay");
    let text = run(
        "sixfs-debug",
        [
            "list".as_ref(),
            "-b".as_ref(),
            "inodes".as_ref(),
            "-s".as_ref(),
            "0:10".as_ref(),
            "-e".as_ref(),
            "0:14".as_ref(),
            img.as_os_str(),
        ],
    );
    text.expect_code(0);
    assert_eq!(text.stdout.lines().count(), 4, "{}", text.stdout); // 10, 11, 13, 14 (12 deleted)
    assert!(
        text.stdout.contains("inodes 0:10:0 cookie len 5"),
        "{}",
        text.stdout
    );

    let n = run(
        "sixfs-debug",
        [
            "nodes".as_ref(),
            "-b".as_ref(),
            "inodes".as_ref(),
            "--json".as_ref(),
            img.as_os_str(),
        ],
    );
    n.expect_code(0);
    let nodes: serde_json::Value = serde_json::from_str(&n.stdout).unwrap();
    let nodes = nodes.as_array().unwrap();
    assert!(
        nodes.len() > 3,
        "a 1000-key tree in 4K nodes has several nodes"
    );
    assert!(
        nodes.iter().any(|n| n["level"] == 1),
        "the tree grew a level"
    );
    let live: u64 = nodes
        .iter()
        .filter(|n| n["level"] == 0)
        .map(|n| n["live_keys"].as_u64().unwrap())
        .sum();
    assert_eq!(live, want.len() as u64);
    assert!(
        nodes
            .iter()
            .all(|n| !n["entries"].as_array().unwrap().is_empty())
    );

    let j = run(
        "sixfs-debug",
        ["journal".as_ref(), "--json".as_ref(), img.as_os_str()],
    );
    j.expect_code(0);
    let jv: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(jv["clean"], false);
    assert!(jv["replay_range"].is_array(), "{}", j.stdout);
    let keys: u64 = jv["jsets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["key_entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e[2].as_u64().unwrap())
        })
        .sum();
    assert!(
        keys >= 1000 + 334,
        "the journal holds every insert and delete ({keys})"
    );
    let jt = run("sixfs-debug", ["journal".as_ref(), img.as_os_str()]);
    jt.expect_code(0);
    assert!(
        jt.stdout.contains("recovery would replay seqs"),
        "{}",
        jt.stdout
    );

    assert_eq!(
        file_digest(&img),
        before,
        "a sixfs-debug view wrote to the image"
    );
    let bad = run(
        "sixfs-debug",
        [
            "list".as_ref(),
            "-b".as_ref(),
            "nope".as_ref(),
            img.as_os_str(),
        ],
    );
    assert_eq!(bad.code, 2, "usage error");
    assert!(
        bad.stderr.contains("unknown btree \"nope\""),
        "{}",
        bad.stderr
    );
}
