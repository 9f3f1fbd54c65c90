//! The command line's own tools: shell completions and the manual page,
//! generated from its definition.

use std::process::Command;

use rustnet_tests::{run, rustnet_bin};

fn rustnet(args: &[&str]) -> String {
    run(Command::new(rustnet_bin()).args(args)).unwrap_or_else(|e| panic!("rustnet {args:?}: {e}"))
}

#[test]
fn completions_cover_every_command_and_parse_in_their_shell() {
    let bash = rustnet(&["completions", "bash"]);
    for word in [
        "daemon",
        "status",
        "cluster",
        "completions",
        "man",
        "--watch",
        "--json",
    ] {
        assert!(
            bash.contains(word),
            "{word} missing from the bash completions"
        );
    }
    assert!(bash.contains("complete -F"), "{bash}");
    let script =
        std::env::temp_dir().join(format!("rustnet-completions-{}.bash", std::process::id()));
    std::fs::write(&script, &bash).unwrap();
    let checked = run(Command::new("bash").arg("-n").arg(&script));
    let _ = std::fs::remove_file(&script);
    checked.unwrap_or_else(|e| panic!("bash -n of the completions: {e}"));
    for shell in ["zsh", "fish"] {
        assert!(
            rustnet(&["completions", shell]).contains("status"),
            "{shell}"
        );
    }
}

#[test]
fn the_manual_page_is_roff_for_the_whole_command() {
    let man = rustnet(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH rustnet"),
        "{man}"
    );
    assert!(man.contains(".TH rustnet 1"), "{man}");
    for word in ["daemon", "status", "cluster"] {
        assert!(man.contains(word), "{word} missing from the manual page");
    }
}
