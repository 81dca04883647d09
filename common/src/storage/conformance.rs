//! The conformance suite every [`ObjectStore`] backend must pass. It runs
//! against the local directory and against a real S3-compatible server.
//! It panics with a message on the first failure, like any test.

use bytes::Bytes;

use super::{list_all, ListOptions, ObjectStore, StorageErrorKind};

/// Runs every check against `store`. The checks write under `conf/`,
/// leave their objects there and expect nothing else under it, so give
/// each run an empty store or a fresh prefix.
pub async fn run(store: &dyn ObjectStore) {
    put_get_overwrite(store).await;
    put_file(store).await;
    conditional_put(store).await;
    ranged_get(store).await;
    head_and_missing(store).await;
    list_prefix_delimiter_pagination(store).await;
    delete_is_idempotent(store).await;
    rejects_bad_keys(store).await;
}

async fn put_get_overwrite(store: &dyn ObjectStore) {
    let key = "conf/put/a.bin";
    store.put(key, Bytes::from_static(b"first")).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), Bytes::from_static(b"first"));
    store
        .put(key, Bytes::from_static(b"second body"))
        .await
        .unwrap();
    assert_eq!(
        store.get(key).await.unwrap(),
        Bytes::from_static(b"second body")
    );
    store.put("conf/put/empty", Bytes::new()).await.unwrap();
    assert!(store.get("conf/put/empty").await.unwrap().is_empty());
}

/// Bytes of the file [`put_file`] writes: over two parts of 5 MiB, S3's
/// smallest, so a store with that part size sends it in three.
pub const BIG_FILE_BYTES: usize = (11 << 20) + 3;

async fn put_file(store: &dyn ObjectStore) {
    let dir = tempfile::tempdir().unwrap();
    let (big, small) = (dir.path().join("big"), dir.path().join("small"));
    let body: Vec<u8> = (0..BIG_FILE_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&big, &body).unwrap();
    std::fs::write(&small, b"small").unwrap();
    let key = "conf/file/a.bin";
    assert!(store.put_file(key, &big).await.unwrap() >= 1);
    assert_eq!(store.get(key).await.unwrap(), body);
    assert_eq!(store.head(key).await.unwrap().size, body.len() as u64);
    // Across the first part's end.
    let edge = 5u64 << 20;
    assert_eq!(
        store.get_range(key, edge - 2..edge + 2).await.unwrap(),
        body[edge as usize - 2..edge as usize + 2]
    );
    assert_eq!(store.put_file(key, &small).await.unwrap(), 1);
    assert_eq!(store.get(key).await.unwrap(), Bytes::from_static(b"small"));
    let missing = dir.path().join("missing");
    let err = store
        .put_file("conf/file/b.bin", &missing)
        .await
        .unwrap_err();
    assert_eq!(err.kind, StorageErrorKind::Io);
    assert_eq!(
        store.get("conf/file/b.bin").await.unwrap_err().kind,
        StorageErrorKind::NotFound
    );
    store.delete(key).await.unwrap();
}

async fn conditional_put(store: &dyn ObjectStore) {
    let key = "conf/cond/x";
    store
        .put_if_absent(key, Bytes::from_static(b"one"))
        .await
        .unwrap();
    let err = store
        .put_if_absent(key, Bytes::from_static(b"two"))
        .await
        .expect_err("second conditional put must fail");
    assert_eq!(err.kind, StorageErrorKind::AlreadyExists, "{err}");
    assert_eq!(store.get(key).await.unwrap(), Bytes::from_static(b"one"));
}

async fn ranged_get(store: &dyn ObjectStore) {
    let key = "conf/range/r";
    let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    store.put(key, Bytes::from(body.clone())).await.unwrap();
    assert_eq!(
        &store.get_range(key, 0..10).await.unwrap()[..],
        &body[0..10]
    );
    assert_eq!(
        &store.get_range(key, 5000..9999).await.unwrap()[..],
        &body[5000..9999]
    );
    assert_eq!(
        &store.get_range(key, 9990..20_000).await.unwrap()[..],
        &body[9990..]
    );
    // Past the end is refused (S3's 416), even on an empty object.
    let past = store.get_range(key, 20_000..20_010).await.unwrap_err();
    assert_eq!(past.kind, StorageErrorKind::InvalidRequest, "{past}");
    let empty = "conf/range/empty";
    store.put(empty, Bytes::new()).await.unwrap();
    let past = store.get_range(empty, 5..10).await.unwrap_err();
    assert_eq!(past.kind, StorageErrorKind::InvalidRequest, "{past}");
}

async fn head_and_missing(store: &dyn ObjectStore) {
    store
        .put("conf/head/h", Bytes::from_static(b"12345"))
        .await
        .unwrap();
    assert_eq!(store.head("conf/head/h").await.unwrap().size, 5);
    for err in [
        store.get("conf/head/missing").await.unwrap_err(),
        store.head("conf/head/missing").await.unwrap_err(),
    ] {
        assert_eq!(err.kind, StorageErrorKind::NotFound, "{err}");
    }
}

async fn list_prefix_delimiter_pagination(store: &dyn ObjectStore) {
    let mut keys = Vec::new();
    for hour in 0..3 {
        for i in 0..5 {
            keys.push(format!("conf/list/hour={hour:02}/k{i}"));
        }
    }
    keys.push("conf/list/top".to_owned());
    keys.push("conf/listing-not-under".to_owned());
    for k in &keys {
        store.put(k, Bytes::from(k.clone())).await.unwrap();
    }
    let mut want: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with("conf/list/"))
        .cloned()
        .collect();
    want.sort();
    let got: Vec<String> = list_all(store, "conf/list/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(got, want);

    // Pages of 4 must together give the same keys, in order, with no repeats.
    assert_eq!(paged(store, 4, None).await, want);

    // Starting after a folder (not a key): its keys and every later one,
    // paged, in order; a token then takes over from the start.
    let after = "conf/list/hour=01/";
    let from = paged(store, 3, Some(after)).await;
    let want_from: Vec<String> = want
        .iter()
        .filter(|k| k.as_str() > after)
        .cloned()
        .collect();
    assert_eq!(from.len(), 11, "{from:?}");
    assert_eq!(from, want_from);

    let page = store
        .list(
            "conf/list/",
            ListOptions {
                delimiter: Some("/"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.common_prefixes,
        vec![
            "conf/list/hour=00/",
            "conf/list/hour=01/",
            "conf/list/hour=02/"
        ]
    );
    assert_eq!(
        page.objects
            .iter()
            .map(|m| m.key.as_str())
            .collect::<Vec<_>>(),
        vec!["conf/list/top"]
    );

    // A prefix that ends mid-name.
    let got = list_all(store, "conf/list/hour=0").await.unwrap();
    assert_eq!(got.len(), 15);
    assert!(list_all(store, "conf/nothing-here/")
        .await
        .unwrap()
        .is_empty());
}

async fn delete_is_idempotent(store: &dyn ObjectStore) {
    store
        .put("conf/del/d", Bytes::from_static(b"x"))
        .await
        .unwrap();
    store.delete("conf/del/d").await.unwrap();
    assert_eq!(
        store.get("conf/del/d").await.unwrap_err().kind,
        StorageErrorKind::NotFound
    );
    store.delete("conf/del/d").await.unwrap();
}

async fn rejects_bad_keys(store: &dyn ObjectStore) {
    for key in ["", "/abs", "a/../b", "a//b", "./a"] {
        let err = store.put(key, Bytes::from_static(b"x")).await.unwrap_err();
        assert_eq!(
            err.kind,
            StorageErrorKind::InvalidRequest,
            "key {key:?}: {err}"
        );
    }
}

/// Every key under `conf/list/` (after `start_after`), `max` to a page.
async fn paged(store: &dyn ObjectStore, max: usize, start_after: Option<&str>) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list(
                "conf/list/",
                ListOptions {
                    page_token: token,
                    max_keys: Some(max),
                    start_after,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(page.objects.len() <= max);
        keys.extend(page.objects.into_iter().map(|m| m.key));
        match page.next_token {
            Some(t) => token = Some(t),
            None => return keys,
        }
    }
}
