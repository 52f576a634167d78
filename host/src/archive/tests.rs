use super::*;
use crate::fetch::{Encoded, Fetched};
use std::time::Duration;

fn fetched(status: u16, body: &'static [u8], encoded: Option<Encoded>) -> Fetched {
    Fetched {
        status,
        reason: "OK".into(),
        response_url: "http://a.test/p".into(),
        request_headers: vec![
            ("User-Agent".into(), "ua".into()),
            ("Cookie".into(), "secret=1".into()),
        ],
        headers: vec![
            ("content-type".into(), "text/html; charset=utf-8".into()),
            ("transfer-encoding".into(), "chunked".into()),
        ],
        body: bytes::Bytes::from_static(body),
        elapsed: Duration::from_millis(7),
        redirect: None,
        rendered: false,
        encoded,
        version: "HTTP/1.1",
        archived: None,
    }
}

fn exchange<'a>(url: &'a str, f: &'a Fetched, appid: &'a str) -> Exchange<'a> {
    let owner = Box::leak(Box::new(Owner {
        appid: appid.into(),
        crawlid: "c1".into(),
        spiderid: "link".into(),
        depth: 2,
        via: None,
    }));
    Exchange {
        url,
        method: "GET",
        request_body: None,
        fetched: f,
        owner,
    }
}

fn settings(dir: &Path) -> Warc {
    Warc {
        dir: dir.display().to_string(),
        ..Warc::default()
    }
}

fn text(path: &Path, a: &Archived) -> String {
    String::from_utf8_lossy(&read_member(path, a.offset, a.length).expect("member")).into_owned()
}

#[tokio::test]
async fn a_fetch_is_three_records_with_the_bytes_as_sent_and_an_index_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = Archive::open(&settings(tmp.path()), None, None).expect("open");
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"<p>hi</p>").expect("gzip");
        e.finish().expect("gzip")
    };
    let f = fetched(
        200,
        b"<p>hi</p>",
        Some(Encoded {
            body: gz.clone().into(),
            content_encoding: "gzip".into(),
            content_length: None,
        }),
    );
    let a = archive
        .write(&exchange("http://a.test/p", &f, "app 1"))
        .expect("write");
    archive.durable().await.expect("durable");
    assert!(a.file.starts_with("app_1_"), "{}", a.file);
    archive.close().expect("close");
    let path = tmp.path().join(&a.file);
    let rec = read_member(&path, a.offset, a.length).expect("member");
    let text = String::from_utf8_lossy(&rec);
    assert!(text.contains("WARC-Type: response\r\n"), "{text}");
    assert!(text.contains("content-encoding: gzip\r\n"), "{text}");
    assert!(
        text.contains("X-Crawler-transfer-encoding: chunked\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Content-Length: {}\r\n", gz.len())),
        "{text}"
    );
    // The payload is the gzip as sent, not the decoded page.
    let payload_at = memchr::memmem::find(&rec, b"\r\n\r\n").expect("warc head") + 4;
    let http_end =
        payload_at + memchr::memmem::find(&rec[payload_at..], b"\r\n\r\n").expect("http") + 4;
    assert_eq!(&rec[http_end..rec.len() - 4], &gz[..]);
    assert!(text.contains(&format!("WARC-Payload-Digest: {}", record::sha1_of(&[&gz]))));
    // Every member whole; the request's cookie redacted.
    let file = File::open(&path).expect("file");
    let all: Vec<_> = members(&file)
        .expect("members")
        .collect::<Result<_, _>>()
        .expect("whole");
    assert_eq!(all.len(), 4, "warcinfo, response, request, metadata");
    let request = String::from_utf8_lossy(&all[2].2);
    assert!(
        request.contains("GET /p HTTP/1.1\r\nHost: a.test\r\n"),
        "{request}"
    );
    assert!(request.contains("Cookie: (redacted)") && !request.contains("secret"));
    let meta = String::from_utf8_lossy(&all[3].2);
    assert!(
        meta.contains("crawlid: c1\r\n") && meta.contains("depth: 2\r\n"),
        "{meta}"
    );
    let index = std::fs::read_to_string(
        path.with_file_name(
            path.file_name()
                .expect("name")
                .to_string_lossy()
                .replace(".warc.gz", ".cdxj"),
        ),
    )
    .expect("index");
    assert_eq!(index.lines().count(), 1);
    assert!(index.starts_with("test,a)/p "), "{index}");
    assert!(
        index.contains(&format!("\"offset\":\"{}\"", a.offset)),
        "{index}"
    );
}

#[tokio::test]
async fn a_304_is_a_revisit_and_files_rotate_past_their_size() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut s = settings(tmp.path());
    s.max_bytes = 1 << 20;
    s.split_by = SplitBy::None;
    let archive = Archive::open(&s, None, None).expect("open");
    let f = fetched(304, b"", None);
    let a = archive
        .write(&exchange("http://a.test/p", &f, "x"))
        .expect("write");
    archive.close().expect("close");
    let t = text(&tmp.path().join(&a.file), &a);
    assert!(
        t.contains("WARC-Type: revisit\r\n") && t.contains("server-not-modified"),
        "{t}"
    );
    assert!(!t.contains("WARC-Payload-Digest"));
    // Incompressible bytes: a file passes 1 MiB in a few pages.
    let archive = Archive::open(&s, None, None).expect("open");
    let noise: &'static [u8] = Box::leak(
        (0..400_000)
            .map(|_| fastrand::u8(..))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let f = fetched(200, noise, None);
    let names: std::collections::BTreeSet<String> = (0..5)
        .map(|_| {
            archive
                .write(&exchange("http://a.test/n", &f, "x"))
                .expect("write")
                .file
        })
        .collect();
    archive.close().expect("close");
    assert!(names.len() >= 2, "{names:?}");
    for n in names {
        assert!(tmp.path().join(n).exists());
    }
}

#[tokio::test]
async fn a_file_left_open_is_cut_to_its_last_whole_record_and_indexed_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = settings(tmp.path());
    let f = fetched(200, b"<p>page</p>", None);
    let (open_path, written) = {
        let archive = Archive::open(&s, None, None).expect("open");
        let a = archive
            .write(&exchange("http://a.test/1", &f, "app"))
            .expect("write");
        archive
            .write(&exchange("http://a.test/2", &f, "app"))
            .expect("write");
        let open = archive
            .files
            .lock()
            .values()
            .next()
            .expect("open")
            .path
            .clone();
        // Killed: nothing sealed, the lock goes with the process (here,
        // with the file handles).
        std::mem::forget(
            archive
                .files
                .lock()
                .drain()
                .map(|(_, o)| o.index)
                .collect::<Vec<_>>(),
        );
        (open, a)
    };
    // Half a record at the end, as a write cut short leaves it.
    let whole = std::fs::metadata(&open_path).expect("meta").len();
    let mut tail = std::fs::OpenOptions::new()
        .append(true)
        .open(&open_path)
        .expect("open");
    tail.write_all(&[0x1f, 0x8b, 8, 0, 0, 0]).expect("tail");
    drop(tail);
    let _again = Archive::open(&s, None, None).expect("reopen");
    let sealed = tmp.path().join(&written.file);
    assert!(sealed.exists(), "not sealed: {}", sealed.display());
    assert!(!open_path.exists());
    assert_eq!(std::fs::metadata(&sealed).expect("meta").len(), whole);
    let index = std::fs::read_to_string(
        sealed.with_file_name(
            sealed
                .file_name()
                .expect("name")
                .to_string_lossy()
                .replace(".warc.gz", ".cdxj"),
        ),
    )
    .expect("index");
    assert_eq!(index.lines().count(), 2, "{index}");
    assert!(index.contains("test,a)/1 ") && index.contains("test,a)/2 "));
    assert!(text(&sealed, &written).contains("http://a.test/1"));
}

#[tokio::test]
async fn pages_written_before_a_failure_go_back_and_later_ones_do_not() {
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = Archive::open(&settings(tmp.path()), None, None).expect("open");
    let f = fetched(200, b"<p>x</p>", None);
    archive
        .write(&exchange("http://a.test/1", &f, "app"))
        .expect("write");
    archive.durable().await.expect("synced");
    archive
        .write(&exchange("http://a.test/2", &f, "app"))
        .expect("write");
    // A failed fsync forgets what it failed on: no later sync vouches for it.
    archive.lose(&ArchiveError::Io("test".into()));
    assert!(archive.durable().await.is_err());
    archive
        .write(&exchange("http://a.test/3", &f, "app"))
        .expect("write");
    archive.durable().await.expect("written after the failure");
    archive.close().expect("close");
}
