//! `ec-node keygen` and `ec-node id` run as the real binary.

use ec_node_testkit::process::{run, stderr, work_dir};
use std::process::Output;

fn stdout_line(out: &Output) -> String {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim_end()
        .to_string()
}

fn is_node_id(text: &str) -> bool {
    text.len() == 52 && text.bytes().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7'))
}

#[test]
fn keygen_writes_a_private_key_and_id_prints_the_same_node_id() {
    let dir = work_dir("keys_cli", "keygen");
    let key = dir.join("node.key");
    let key_arg = key.to_str().unwrap();
    let out = run(&["keygen", "--out", key_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout_line(&out);
    assert!(is_node_id(&id), "{id:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = run(&["id", "--key", key_arg]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout_line(&again), id);
    let equals_form = run(&["id", &format!("--key={key_arg}")]);
    assert_eq!(stdout_line(&equals_form), id);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let dir = work_dir("keys_cli", "overwrite");
    let key = dir.join("node.key");
    let key_arg = key.to_str().unwrap();
    let first = stdout_line(&run(&["keygen", "--out", key_arg]));
    let before = std::fs::read(&key).unwrap();

    let refused = run(&["keygen", "--out", key_arg]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(refused.stdout.is_empty());
    let err = stderr(&refused);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the old key is untouched"
    );

    let forced = run(&["keygen", "--out", key_arg, "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let second = stdout_line(&forced);
    assert_ne!(second, first);
    assert_eq!(stdout_line(&run(&["id", "--key", key_arg])), second);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let leftovers = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_or_corrupt_key_files_are_usage_errors_that_say_why() {
    let dir = work_dir("keys_cli", "corrupt");
    let key = dir.join("node.key");
    let key_arg = key.to_str().unwrap();

    let missing = run(&["id", "--key", key_arg]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("No such file"),
        "{}",
        stderr(&missing)
    );

    assert!(run(&["keygen", "--out", key_arg]).status.success());
    let good = std::fs::read(&key).unwrap();
    let cases: [(Vec<u8>, &str); 4] = [
        (good[..40].to_vec(), "is 40 bytes long"),
        (vec![b'x'; 1000], "longer than"),
        (
            [b"ECNODEK1", &good[8..]].concat(),
            "not an ec-node key file",
        ),
        (
            {
                let mut flipped = good.clone();
                flipped[20] ^= 1;
                flipped
            },
            "corrupt",
        ),
    ];
    for (bytes, expected) in cases {
        std::fs::write(&key, &bytes).unwrap();
        let out = run(&["id", "--key", key_arg]);
        assert_eq!(out.status.code(), Some(2));
        assert!(out.stdout.is_empty());
        let err = stderr(&out);
        assert!(err.contains(expected) && err.contains(key_arg), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keygen_into_a_folder_that_does_not_exist_is_a_usage_error() {
    let dir = work_dir("keys_cli", "missing-parent");
    let path = dir.join("no-such-folder").join("node.key");
    let out = run(&["keygen", "--out", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("No such file or directory"),
        "{}",
        stderr(&out)
    );
}
