use super::*;

/// What a body writer puts on the wire for `frames`, then its end (with `trailers`): the bytes
/// written and whether the body was whole.
async fn framed(
    framing: Framing,
    announced: &[&'static str],
    frames: &[Bytes],
    trailers: Option<&HeaderMap>,
) -> (Vec<u8>, bool) {
    let mut writer = BodyWriter {
        framing,
        trailers: announced
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect(),
        sent: 0,
    };
    let (mut wire, mut out) = (Vec::new(), Vec::new());
    for frame in frames {
        writer
            .data(frame.clone(), &mut wire, &mut out)
            .await
            .unwrap();
    }
    let whole = writer.end(trailers, &mut out);
    write_out(&mut wire, &mut out).await.unwrap();
    (wire, whole)
}

#[tokio::test]
async fn a_chunked_body_is_framed_in_order_small_and_large_frames_alike() {
    let large = Bytes::from(vec![b'x'; COPY_FRAME + 1]);
    let frames = [
        Bytes::from_static(b"hello"),
        Bytes::new(),
        large.clone(),
        Bytes::from_static(b"!"),
    ];
    let (wire, whole) = framed(Framing::Chunked, &[], &frames, None).await;
    let mut want = b"5\r\nhello\r\n".to_vec();
    want.extend_from_slice(format!("{:x}\r\n", large.len()).as_bytes());
    want.extend_from_slice(&large);
    want.extend_from_slice(b"\r\n1\r\n!\r\n0\r\n\r\n");
    assert_eq!(wire, want);
    assert!(whole);
}

#[tokio::test]
async fn a_length_body_never_goes_past_its_length_and_a_short_one_is_not_whole() {
    let frames = [Bytes::from_static(b"hello"), Bytes::from_static(b" world")];
    let (wire, whole) = framed(Framing::Length(7), &[], &frames, None).await;
    assert_eq!(wire, b"hello w");
    assert!(whole);
    let (wire, whole) = framed(Framing::Length(10), &[], &frames[..1], None).await;
    assert_eq!(wire, b"hello");
    assert!(!whole, "5 of 10 bytes: the connection cannot be reused");
}

#[tokio::test]
async fn only_announced_trailers_follow_a_chunked_body() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-sum", "42".parse().unwrap());
    trailers.insert("x-other", "1".parse().unwrap());
    let frames = [Bytes::from_static(b"ab")];
    let (wire, _) = framed(Framing::Chunked, &["x-sum"], &frames, Some(&trailers)).await;
    assert_eq!(wire, b"2\r\nab\r\n0\r\nx-sum: 42\r\n\r\n");
    // Not announced (or the client did not take trailers): the body just ends.
    let (wire, _) = framed(Framing::Chunked, &[], &frames, Some(&trailers)).await;
    assert_eq!(wire, b"2\r\nab\r\n0\r\n\r\n");
}

#[test]
fn only_the_small_rest_of_a_length_body_is_waited_for_before_writing() {
    let writer = |framing, sent| BodyWriter {
        framing,
        trailers: Vec::new(),
        sent,
    };
    let head = vec![b'h'; 200];
    let small = (COPY_FRAME - head.len()) as u64;
    assert!(writer(Framing::Length(small), 0).rest_fits_behind(&head));
    assert!(!writer(Framing::Length(small + 1), 0).rest_fits_behind(&head));
    // What is left counts, not the whole length.
    assert!(writer(Framing::Length(small + 1000), 1000).rest_fits_behind(&head));
    // Nothing left to wait for (an HTTP/2 stream may end much later): written at once.
    assert!(!writer(Framing::Length(500), 500).rest_fits_behind(&head));
    assert!(writer(Framing::Length(u64::MAX), u64::MAX - 1).rest_fits_behind(&[]));
    assert!(!writer(Framing::Length(u64::MAX), 0).rest_fits_behind(&[]));
    // A chunked body may stream: never held.
    assert!(!writer(Framing::Chunked, 0).rest_fits_behind(&[]));
}
