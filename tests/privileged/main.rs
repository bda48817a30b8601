//! Tests that need root or a system tool (a mount namespace, chown, a tmpfs, journald, a
//! pseudo-terminal, a release build to package, an OpenAPI validator). The harness is libtest-mimic (`harness =
//! false`): each test's requirements are checked before it runs, and a test that cannot run is
//! reported as ignored, with the reason listed as skipped, never as passed. The README's test
//! command runs as root with the tools installed (`scripts/setup-debian test`), so there every
//! one of them runs.

#[path = "../it/util.rs"]
#[allow(dead_code)]
mod util;

mod full_disk;
mod journald;
mod openapi;
mod ownership;
mod package;
mod terminal;

use libtest_mimic::{Arguments, Trial};

/// One test: its name, what it needs, and its body (which fails by panicking).
struct Needs {
    name: &'static str,
    can_run: fn() -> Result<(), String>,
    run: fn(),
}

const TESTS: &[Needs] = &[
    Needs {
        name: "package::the_package_holds_what_a_kiosk_needs",
        can_run: package::can_package,
        run: package::the_package_holds_what_a_kiosk_needs,
    },
    Needs {
        name: "package::the_package_installs_and_its_doctor_passes",
        can_run: package::can_install,
        run: package::the_package_installs_and_its_doctor_passes,
    },
    Needs {
        name: "journald::journald_gets_the_enrollment_and_state_as_fields",
        can_run: journald::can_run,
        run: journald::journald_gets_the_enrollment_and_state_as_fields,
    },
    Needs {
        name: "full_disk::a_full_disk_during_enroll_is_exit_2_and_leaves_nothing",
        can_run: full_disk::can_run,
        run: full_disk::a_full_disk_during_enroll_is_exit_2_and_leaves_nothing,
    },
    Needs {
        name: "full_disk::a_full_disk_during_sync_never_leaves_an_unrecorded_request",
        can_run: full_disk::can_run,
        run: full_disk::a_full_disk_during_sync_never_leaves_an_unrecorded_request,
    },
    Needs {
        name: "ownership::a_key_owned_by_another_user_is_refused_naming_its_owner",
        can_run: ownership::can_run,
        run: ownership::a_key_owned_by_another_user_is_refused_naming_its_owner,
    },
    Needs {
        name: "ownership::enroll_as_another_user_than_the_data_directorys_owner_fails_clearly",
        can_run: ownership::can_run,
        run: ownership::enroll_as_another_user_than_the_data_directorys_owner_fails_clearly,
    },
    Needs {
        name: "openapi::the_apis_description_passes_a_validator_and_documents_bodies_and_errors",
        can_run: openapi::can_run,
        run: openapi::the_apis_description_passes_a_validator_and_documents_bodies_and_errors,
    },
    Needs {
        name: "terminal::progress_is_a_bar_at_a_terminal",
        can_run: terminal::can_run,
        run: terminal::progress_is_a_bar_at_a_terminal,
    },
];

fn main() {
    let args = Arguments::from_args();
    let mut skipped = Vec::new();
    let trials: Vec<Trial> = TESTS
        .iter()
        .map(|t| {
            let ready = (t.can_run)();
            if let Err(why) = &ready {
                skipped.push(format!("  {}: {why}", t.name));
            }
            let run = t.run;
            Trial::test(t.name, move || {
                run();
                Ok(())
            })
            .with_ignored_flag(ready.is_err())
        })
        .collect();
    if !skipped.is_empty() {
        eprintln!("skipped (reported as ignored, not passed), for want of what each needs:\n{}", skipped.join("\n"));
    }
    libtest_mimic::run(&args, trials).exit();
}
