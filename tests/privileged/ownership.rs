//! Files of another user: refused, naming the owner (needs root, to chown).

use crate::util::*;

pub fn can_run() -> Result<(), String> {
    if is_root() {
        Ok(())
    } else {
        Err("giving a file to another user needs root (chown)".into())
    }
}

/// Gives `path` to uid 12345.
fn give_away(path: &std::path::Path) {
    let status = std::process::Command::new("chown").arg("12345").arg(path).status().unwrap();
    assert!(status.success(), "chown 12345 {}", path.display());
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A master key owned by another user is refused, naming its owner.
pub fn a_key_owned_by_another_user_is_refused_naming_its_owner() {
    let env = Env::new(free_port());
    give_away(&env.data_dir().join("master.key"));
    let out = env.run(&["queue", "list"]);
    assert_exit(&out, 2, "");
    assert!(stderr(&out).contains("belongs to uid 12345"), "{}", stderr(&out));
}

pub fn enroll_as_another_user_than_the_data_directorys_owner_fails_clearly() {
    let env = Env::new(free_port());
    let manifest = env.manifest("m", "", |_| {});
    env.enroll(&manifest);
    give_away(&env.data_dir());
    let before = std::fs::read_dir(env.data_dir().join("spool")).unwrap().count();
    let out = env.cmd().arg("enroll").arg(&manifest).output().unwrap();
    assert_exit(&out, 2, "");
    assert!(stderr(&out).contains("belongs to uid 12345") && stderr(&out).contains("daemon"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(env.data_dir().join("spool")).unwrap().count(), before, "nothing was written");
}
