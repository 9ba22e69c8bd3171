use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;

use super::server::offer;
use super::*;

fn listener() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

fn handed(owner: &str, l: &TcpListener) -> Handed {
    let local = l.local_addr().unwrap();
    Handed {
        info: SocketInfo {
            owner: owner.to_owned(),
            bind: Some(local),
            local: Some(local),
            path: None,
        },
        fd: OwnedFd::from(l.try_clone().unwrap()),
    }
}

#[test]
fn a_frame_carries_its_descriptors_and_the_next_frame_stays_separate() {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let sockets = [listener(), listener(), listener()];
    let fds: Vec<OwnedFd> = sockets
        .iter()
        .map(|l| OwnedFd::from(l.try_clone().unwrap()))
        .collect();
    send_frame(&mut a, &Frame::Draining { pid: 7 }, &fds).unwrap();
    send_frame(
        &mut a,
        &Frame::Error {
            message: "x".into(),
        },
        &[],
    )
    .unwrap();

    let (frame, received) = recv_frame(&mut b).unwrap();
    assert!(matches!(frame, Frame::Draining { pid: 7 }), "{frame:?}");
    assert_eq!(received.len(), 3);
    for (sent, got) in sockets.iter().zip(received) {
        // The same kernel socket: same local address, and a connect to it is accepted on
        // the received descriptor.
        let got = TcpListener::from(got);
        assert_eq!(got.local_addr().unwrap(), sent.local_addr().unwrap());
        let _client = std::net::TcpStream::connect(sent.local_addr().unwrap()).unwrap();
        got.set_nonblocking(false).unwrap();
        got.accept().unwrap();
    }
    let (frame, received) = recv_frame(&mut b).unwrap();
    assert!(matches!(frame, Frame::Error { .. }), "{frame:?}");
    assert!(received.is_empty());
}

#[test]
fn more_sockets_than_one_message_holds_go_in_several_frames() {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let count = MAX_FDS_PER_FRAME + 17;
    let sockets: Vec<TcpListener> = (0..count).map(|_| listener()).collect();
    let handed: Vec<Handed> = sockets
        .iter()
        .enumerate()
        .map(|(i, l)| handed(&format!("listeners.l{i}"), l))
        .collect();
    let sender = std::thread::spawn(move || offer(&mut a, handed, None).unwrap());
    let mut infos = Vec::new();
    let mut frames = 0;
    loop {
        let (frame, fds) = recv_frame(&mut b).unwrap();
        frames += 1;
        let Frame::Offer { sockets, more, .. } = frame else {
            panic!("{frame:?}")
        };
        assert_eq!(fds.len(), sockets.len());
        for (info, fd) in sockets.into_iter().zip(fds) {
            let got = TcpListener::from(fd);
            assert_eq!(Some(got.local_addr().unwrap()), info.local);
            infos.push(info.owner);
        }
        if !more {
            break;
        }
    }
    sender.join().unwrap();
    assert_eq!(frames, 2);
    let expected: Vec<String> = (0..count).map(|i| format!("listeners.l{i}")).collect();
    assert_eq!(infos, expected);
}

#[test]
fn garbage_and_oversized_frames_are_errors_not_panics() {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    a.write_all(&5u32.to_be_bytes()).unwrap();
    a.write_all(b"{nope").unwrap();
    let err = recv_frame(&mut b).unwrap_err();
    assert!(format!("{err:#}").contains("malformed"), "{err:#}");

    a.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let err = recv_frame(&mut b).unwrap_err();
    assert!(format!("{err:#}").contains("too large"), "{err:#}");

    drop(a);
    let err = recv_frame(&mut b).unwrap_err();
    assert!(format!("{err:#}").contains("closed"), "{err:#}");
}

#[test]
fn the_endpoint_is_private_replaces_a_stale_file_and_leaves_a_live_one_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/upgrade.sock");
    let first = server::Endpoint::bind(&path, true).unwrap().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // Someone answers on it: an explicit path is an error, the default path a quiet no.
    let err = server::Endpoint::bind(&path, true).err().unwrap();
    assert!(format!("{err:#}").contains("another Portico"), "{err:#}");
    assert!(server::Endpoint::bind(&path, false).unwrap().is_none());

    // Its process is gone but the file stayed: replaced.
    drop(first);
    let second = server::Endpoint::bind(&path, true).unwrap().unwrap();
    second.remove_file();
    assert!(!path.exists());

    // Not a socket: never removed.
    std::fs::write(&path, "data").unwrap();
    let err = server::Endpoint::bind(&path, true).err().unwrap();
    assert!(format!("{err:#}").contains("not a socket"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
}

#[test]
fn the_default_path_is_used_unless_configured_and_never_for_the_demo() {
    assert_eq!(
        socket_path(None, false),
        Some((PathBuf::from(DEFAULT_SOCKET), false))
    );
    assert_eq!(socket_path(None, true), None);
    let p = Path::new("/tmp/x.sock");
    assert_eq!(socket_path(Some(p), true), Some((p.to_path_buf(), true)));
}
