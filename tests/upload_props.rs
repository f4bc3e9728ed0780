//! Property test of the upload state machine (issue 11, drill 5): random frame
//! sequences — header present, absent, repeated or after data; sizes under, over and
//! equal to the declared one; a right, wrong or malformed SHA-256; any split into
//! frames; a stream that breaks — fed to `courier_server::media::upload` over a real
//! local object store (multipart with small parts). Each sequence must end in exactly
//! the outcome a plain model of the rules predicts: one complete stored object, or one
//! clear error with nothing at all left on disk; never a panic or a hang.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use courier_server::{
    Error,
    media::{Frame, MediaLimits, MediaStore, upload},
    pb,
};
use courier_testkit::{pattern, sha256};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use tonic::{Code, Status};

/// The largest upload in this test: small, so cases run in milliseconds.
const MAX: u64 = 48 * 1024;
/// The part size: objects over it go through a multipart upload.
const PART: usize = 8 * 1024;
/// How many random sequences are tried.
const CASES: u32 = 400;

/// How a sequence's stream fails, if it does: as tonic reports a broken call, or a
/// frame over the transport's size limit.
#[derive(Debug, Clone, Copy)]
enum Break {
    Cancelled,
    FrameTooLarge,
}

/// One item of the stream fed to `upload`.
#[derive(Debug, Clone)]
enum Item {
    Header(pb::UploadHeader),
    Data(Bytes),
    Broken(Break),
}

/// Where the header goes.
#[derive(Debug, Clone, Copy)]
enum HeaderAt {
    Missing,
    First,
    AfterData(usize),
    Twice(usize),
}

/// What SHA-256 the header declares.
#[derive(Debug, Clone, Copy)]
enum Sha {
    None,
    Right,
    Wrong,
    Malformed,
}

/// A generated case.
#[derive(Debug, Clone)]
struct Case {
    kind: i32,
    declared: u64,
    sent: usize,
    seed: u8,
    header_at: HeaderAt,
    sha: Sha,
    splits: Vec<usize>,
    broken: Option<(usize, Break)>,
}

fn case() -> impl Strategy<Value = Case> {
    // Weighted so that about a third of the sequences are valid uploads.
    let declared = prop_oneof![
        1 => Just(0u64),
        1 => Just(1u64),
        8 => 1..=MAX,
        1 => Just(PART as u64),
        1 => Just(MAX),
        1 => Just(MAX + 1),
        1 => MAX + 1..MAX * 2,
    ];
    let kind = prop_oneof![18 => 1..=2i32, 1 => Just(0i32), 1 => Just(7i32)];
    let header_at = prop_oneof![
        1 => Just(HeaderAt::Missing),
        12 => Just(HeaderAt::First),
        1 => (0..4usize).prop_map(HeaderAt::AfterData),
        1 => (0..4usize).prop_map(HeaderAt::Twice),
    ];
    let sha = prop_oneof![
        8 => Just(Sha::None),
        8 => Just(Sha::Right),
        1 => Just(Sha::Wrong),
        1 => Just(Sha::Malformed),
    ];
    // The bytes sent, relative to the declared size.
    let delta = prop_oneof![
        8 => Just(0i64),
        1 => -64i64..0,
        1 => 1i64..64,
        1 => -(MAX as i64)..(MAX as i64),
    ];
    let splits = prop::collection::vec(prop_oneof![1 => Just(0usize), 9 => 1..20_000usize], 1..6);
    let broken = prop::option::weighted(
        0.1,
        (
            0..12usize,
            prop_oneof![Just(Break::Cancelled), Just(Break::FrameTooLarge)],
        ),
    );
    (
        kind,
        declared,
        delta,
        any::<u8>(),
        header_at,
        sha,
        splits,
        broken,
    )
        .prop_map(
            |(kind, declared, delta, seed, header_at, sha, splits, broken)| Case {
                kind,
                declared,
                sent: (declared as i64 + delta).clamp(0, 2 * MAX as i64) as usize,
                seed,
                header_at,
                sha,
                splits,
                broken,
            },
        )
}

/// The stream of a case, and the bytes it sends.
fn items(case: &Case) -> (Vec<Item>, Bytes) {
    let data = pattern(case.sent, case.seed);
    let sha256 = match case.sha {
        Sha::None => Vec::new(),
        Sha::Right => sha256(&data),
        Sha::Wrong => sha256(b"something else"),
        Sha::Malformed => vec![1; 31],
    };
    let header = pb::UploadHeader {
        kind: case.kind,
        file_name: "f.bin".into(),
        size: case.declared,
        content_type: String::new(),
        sha256: sha256.into(),
    };
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut last_empty = false;
    // Bounded: an empty frame is always followed by a non-empty one.
    for size in case.splits.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let size = if last_empty { (*size).max(1) } else { *size };
        let end = (at + size).min(data.len());
        chunks.push(Item::Data(data.slice(at..end)));
        last_empty = end == at;
        at = end;
    }
    let mut items = chunks;
    match case.header_at {
        HeaderAt::Missing => {}
        HeaderAt::First => items.insert(0, Item::Header(header)),
        HeaderAt::AfterData(k) => items.insert(k.min(items.len()), Item::Header(header)),
        HeaderAt::Twice(k) => {
            items.insert(0, Item::Header(header.clone()));
            items.insert((k + 1).min(items.len()), Item::Header(header));
        }
    }
    if let Some((at, kind)) = case.broken {
        items.insert(at.min(items.len()), Item::Broken(kind));
    }
    (items, data)
}

/// What the rules say a stream ends in: the stored bytes, or an error code.
fn model(items: &[Item]) -> Result<Bytes, Code> {
    let mut items = items.iter();
    let header = match items.next() {
        None | Some(Item::Data(_)) => return Err(Code::InvalidArgument),
        Some(Item::Broken(kind)) => return Err(broken_code(*kind)),
        Some(Item::Header(header)) => header,
    };
    let valid = matches!(header.kind, 1 | 2)
        && header.size >= 1
        && header.size <= MAX
        && matches!(header.sha256.len(), 0 | 32);
    if !valid {
        return Err(Code::InvalidArgument);
    }
    let mut received = Vec::new();
    for item in items {
        match item {
            Item::Header(_) => return Err(Code::InvalidArgument),
            Item::Broken(kind) => return Err(broken_code(*kind)),
            Item::Data(data) => {
                received.extend_from_slice(data);
                if received.len() as u64 > header.size {
                    return Err(Code::InvalidArgument);
                }
            }
        }
    }
    if received.len() as u64 != header.size {
        return Err(Code::InvalidArgument);
    }
    if !header.sha256.is_empty() && header.sha256[..] != sha256(&received)[..] {
        return Err(Code::InvalidArgument);
    }
    Ok(received.into())
}

fn broken_code(kind: Break) -> Code {
    match kind {
        Break::Cancelled => Code::Cancelled,
        Break::FrameTooLarge => Code::ResourceExhausted,
    }
}

/// The stream `upload` reads, as the gRPC handler builds it.
fn frames(items: Vec<Item>) -> impl futures::Stream<Item = Result<Frame, Error>> + Unpin {
    futures::stream::iter(items.into_iter().map(|item| match item {
        Item::Header(header) => Ok(Frame::Header(header)),
        Item::Data(data) => Ok(Frame::Data(data)),
        Item::Broken(Break::Cancelled) => Err(Error::from(Status::cancelled("the call ended"))),
        Item::Broken(Break::FrameTooLarge) => {
            Err(Error::from(Status::out_of_range("a frame over the limit")))
        }
    }))
}

/// Every file under `dir`, relative to it.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// How many cases ended in each outcome, for the summary.
type Tally = Mutex<BTreeMap<String, usize>>;

async fn check(case: Case, tally: &Tally) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let media = MediaStore::new(
        Arc::new(store),
        MediaLimits {
            quota: Default::default(),
            max_upload_size: MAX,
            ttl: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(5),
            part_size: PART,
            grace: Duration::from_secs(3600),
        },
    );
    let (items, _) = items(&case);
    let expected = model(&items);
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        upload(&media, "alice", frames(items)),
    )
    .await
    .map_err(|_| TestCaseError::fail("the upload hung"))?;
    let left = files(dir.path());
    let label = match &outcome {
        Ok(r) if r.size > PART as u64 => "stored (multipart)".to_owned(),
        Ok(_) => "stored (one put)".to_owned(),
        Err(e) => format!("{:?}", e.code()),
    };
    *tally
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(label)
        .or_default() += 1;
    match (outcome, expected) {
        (Ok(record), Ok(bytes)) => {
            let id = &record.media_id;
            // Layout 2: the bytes under their digest, the record, and the owner's
            // index key; nothing staged.
            let digest = hex::encode(sha256(&bytes));
            let owner = hex::encode(sha256(b"alice"));
            prop_assert_eq!(
                &left,
                &vec![
                    format!("content/{digest}"),
                    format!("owners/{owner}/{digest}/{id}"),
                    format!("records/{id}.json"),
                ]
            );
            let stored = std::fs::read(dir.path().join("content").join(&digest))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(stored == bytes, "the stored bytes differ");
            prop_assert_eq!(record.size, bytes.len() as u64);
            prop_assert_eq!(record.sha256, hex::encode(sha256(&bytes)));
        }
        (Err(error), Err(code)) => {
            prop_assert_eq!(error.code(), code, "{}", error);
            prop_assert!(!error.to_string().is_empty());
            prop_assert!(left.is_empty(), "left behind: {:?}", left);
        }
        (outcome, expected) => {
            return Err(TestCaseError::fail(format!(
                "the upload gave {:?}, the rules say {:?}",
                outcome
                    .map(|r| r.size)
                    .map_err(|e| (e.code(), e.to_string())),
                expected.map(|b| b.len())
            )));
        }
    }
    Ok(())
}

#[test]
fn every_frame_sequence_ends_in_one_object_or_one_clear_error() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    });
    let tally = Tally::default();
    let result = runner.run(&case(), |case| runtime.block_on(check(case, &tally)));
    if let Err(e) = result {
        panic!("{e}");
    }
    let tally = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    eprintln!("upload state machine, {CASES} random sequences: {tally:?}");
    for kind in ["stored (multipart)", "stored (one put)", "InvalidArgument"] {
        assert!(
            tally.get(kind).copied().unwrap_or(0) >= 10,
            "too few {kind}: {tally:?}"
        );
    }
}
