//! The fuzz targets' checks in the normal suite: property tests for the line
//! reader and path normalization, the seed corpus of every target replayed,
//! and proof that the checks themselves catch what they should.

use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

/// Bytes that matter to the line reader, mixed with ordinary ones.
fn control_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => Just(b'\r'),
        3 => Just(b'\n'),
        3 => Just(255u8),
        2 => 251u8..=254,
        1 => 240u8..=250,
        8 => b'a'..=b'z',
        1 => any::<u8>(),
    ];
    proptest::collection::vec(byte, 0..200)
}

/// One of the given path segments (literally, not as a regex).
fn segment(choices: &[&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(choices.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// However the bytes are cut into reads, the reader gives what the plain
    /// model of the rules gives.
    #[test]
    fn line_reader_matches_the_model(
        input in control_bytes(),
        sizes in proptest::collection::vec(1usize..40, 1..6),
        max_len in 16usize..64,
    ) {
        prop_assert_eq!(read_all_lines(&input, &sizes, max_len), reference_lines(&input, max_len));
    }

    /// Normalization never escapes, is idempotent, and keeps storage paths in
    /// the home, for arguments built from the segments that matter.
    #[test]
    fn paths_stay_normalized_and_confined(
        cwd in proptest::collection::vec(segment(&["a", "b c", "ü", "..", ".", ""]), 0..5),
        arg in proptest::collection::vec(segment(&["x", "..", ".", "", "...", " ", "é", "\0", "\n"]), 0..8),
        absolute in any::<bool>(),
    ) {
        let cwd = ftp_path::resolve("/", &cwd.join("/")).expect("no control characters");
        let mut arg = arg.join("/");
        if absolute {
            arg.insert(0, '/');
        }
        check_path(&cwd, &arg);
    }
}

#[test]
fn model_examples() {
    let lines = reference_lines(b"USER a\r\nPASS b\rNOOP\n\xff\xf4\xff\xf2ABOR\r\nA\xff\xffB\xff\xfb\x01C\r\n0123456789012345678\r\nrest", 16);
    assert_eq!(
        lines,
        vec![
            Line::Command(b"USER a".to_vec()),
            Line::Command(b"PASS b".to_vec()),
            Line::Command(b"NOOP".to_vec()),
            Line::Command(b"ABOR".to_vec()),
            Line::Command(b"A\xffBC".to_vec()),
            Line::TooLong,
            Line::Closed,
        ]
    );
}

#[test]
fn path_check_finds_an_escape() {
    // `check_path` must fail for a result that is not normalized; feed it a
    // resolution done wrongly by hand through the same predicate.
    assert!(!is_normalized("/a/../b"));
    assert!(!is_normalized("/a//b"));
    assert!(!is_normalized("a"));
    assert!(is_normalized("/"));
    assert!(is_normalized("/..."));
}

#[test]
fn reply_check_accepts_good_replies() {
    check_replies(b"220 hi\r\n211-Features:\r\n SIZE\r\n 211 not the end\r\n211 End\r\n");
    check_replies(b"");
}

#[test]
#[should_panic(expected = "no reply code")]
fn reply_check_refuses_a_line_without_code() {
    check_replies(b"220 hi\r\nhello\r\n");
}

#[test]
#[should_panic(expected = "never ended")]
fn reply_check_refuses_an_open_multiline_reply() {
    check_replies(b"211-Features:\r\n SIZE\r\n");
}

#[test]
#[should_panic(expected = "bare CR or LF")]
fn reply_check_refuses_a_bare_lf() {
    check_replies(b"200 a\nb\r\n");
}

/// The checked-in seed corpus of one fuzz target (`fuzz/corpus/NAME/`).
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            (path, data)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

#[test]
fn seed_corpus_line_reader() {
    for (_, data) in corpus("line_reader") {
        line_reader(&data);
    }
}

#[test]
fn seed_corpus_path() {
    for (_, data) in corpus("path") {
        path(&data);
    }
}

#[test]
fn seed_corpus_config() {
    for (_, data) in corpus("config") {
        config(&data);
    }
}

#[test]
fn seed_corpus_proxy_header() {
    for (_, data) in corpus("proxy_header") {
        proxy_header(&data);
    }
}

#[test]
fn seed_corpus_session() {
    for (_, data) in corpus("session") {
        session(&data);
    }
}

#[test]
#[should_panic(expected = "outside its home")]
fn session_check_sees_a_change_outside_the_home() {
    // The home check compares the whole tree before and after; a user whose
    // home is `/` can delete another user's file, which the check must see.
    block_on(async {
        let site = fixture();
        let account = Account {
            user: "root".into(),
            home: "/".into(),
            permissions: Permissions::all(),
            ..Account::default()
        };
        let storage = site.storage.open_session(&whole_tree_facts(&account));
        let before = snapshot(&*storage).await;
        storage.delete("/home/bob/secret").await.expect("delete");
        let after = snapshot(&*storage).await;
        assert_eq!(
            outside_home(&before),
            outside_home(&after),
            "a session changed files outside its home"
        );
    });
}
