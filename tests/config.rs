//! The configuration layers: defaults < TOML file < environment < flags, validated once,
//! every error naming the setting as the operator wrote it.

mod support;

use std::ffi::OsString;
use std::path::Path;

use dusk_relay::cli::Cli;
use dusk_relay::config::LoadError;
use dusk_relay::Config;
use support::process::{relay_command, run_to_exit};

fn cli(args: &[&str]) -> Cli {
    let argv = std::iter::once("dusk-relay")
        .chain(args.iter().copied())
        .map(OsString::from);
    Cli::parse_from(argv).expect("valid arguments")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The error loading a config with these flags and environment variables.
fn load_error(args: &[&str], vars: &[(&str, &str)]) -> LoadError {
    cli(args).load_config(env(vars)).unwrap_err()
}

/// The message of the error loading a config with these flags (and no environment).
fn cli_error(args: &[&str]) -> String {
    load_error(args, &[]).to_string()
}

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn file_is_overridden_by_env_which_is_overridden_by_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "port = 5001\ndrain_secs = 7\n[relay]\nmax_circuits = 11\nmax_circuits_per_peer = 3\n",
    );

    let (config, _) = cli(&["--config", &file]).load_config(env(&[])).unwrap();
    assert_eq!(config.port, 5001);
    assert_eq!(config.ws_port, Some(15001), "derived from the file's port");
    assert_eq!(config.drain_timeout.as_secs(), 7);
    assert_eq!(config.relay.max_circuits, 11);
    assert_eq!(config.relay.max_circuits_per_peer, 3);
    assert_eq!(
        config.relay.max_reservations,
        Config::default().relay.max_reservations,
        "unset everywhere: the default"
    );

    let (config, _) = cli(&["--config", &file])
        .load_config(env(&[
            ("DUSK_RELAY_PORT", "5002"),
            ("DUSK_RELAY_MAX_CIRCUITS", "12"),
        ]))
        .unwrap();
    assert_eq!((config.port, config.relay.max_circuits), (5002, 12));
    assert_eq!(config.drain_timeout.as_secs(), 7, "the file still counts");

    let (config, _) = cli(&["--config", &file, "--max-circuits", "13"])
        .load_config(env(&[
            ("DUSK_RELAY_PORT", "5002"),
            ("DUSK_RELAY_MAX_CIRCUITS", "12"),
        ]))
        .unwrap();
    assert_eq!((config.port, config.relay.max_circuits), (5002, 13));
    assert_eq!(config.relay.max_circuits_per_peer, 3);
}

#[test]
fn the_config_file_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "[connections]\nmax = 77\n");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dusk-relay"));
    let output = command
        .env_clear()
        .env("HOME", dir.path())
        .env("DUSK_RELAY_CONFIG", &file)
        .arg("--print-config")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(text.contains("[connections]\nmax = 77"), "{text}");
}

/// Every way a value can be wrong, in every layer it can come from: the error names the
/// setting as it was written there.
#[test]
fn each_invalid_value_is_refused_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        // (setting, bad value, how the error must name it)
        ("port", "70000", "port"),
        ("ws_port", "65536", "ws_port"),
        ("listen_ips", "1.2.3", "listen_ips"),
        ("external_addrs", "not-a-multiaddr", "external_addrs"),
        ("metrics_addr", "localhost", "metrics_addr"),
        ("log_format", "xml", "log_format"),
        ("drain_secs", "-1", "drain_secs"),
        ("connections.max", "0", "connections.max"),
        (
            "connections.idle_timeout_secs",
            "0",
            "connections.idle_timeout_secs",
        ),
        ("relay.max_circuits", "0", "relay.max_circuits"),
        (
            "relay.max_circuit_duration_secs",
            "99999999999",
            "relay.max_circuit_duration_secs",
        ),
        ("relay.max_circuit_bytes", "lots", "relay.max_circuit_bytes"),
        ("rendezvous.max_ttl_secs", "0", "rendezvous.max_ttl_secs"),
        ("proxy_protocol.from", "10.0.0.0/33", "proxy_protocol.from"),
    ];
    for (key, value, _) in cases {
        let setting = dusk_relay::config::settings::SETTINGS
            .iter()
            .find(|s| s.key == *key)
            .unwrap();

        // File: the dotted key and the file's path.
        let (section, leaf) = key.rsplit_once('.').map_or(("", *key), |(s, l)| (s, l));
        let text = if section.is_empty() {
            format!("{leaf} = \"{value}\"\n")
        } else {
            format!("[{section}]\n{leaf} = \"{value}\"\n")
        };
        let file = write(dir.path(), &text);
        let message = cli_error(&["--config", &file]);
        assert!(
            message.contains(key) && message.contains(&file) && message.contains(value),
            "{key}: {message}"
        );

        // Environment: the variable.
        let err = load_error(&[], &[(setting.env, value)]);
        assert!(err.to_string().contains(setting.env), "{err}");

        // Flag: the flag, even when the environment sets the same thing validly.
        let flag = format!("--{}", setting.flag());
        let err = load_error(&[&flag, value], &[(setting.env, "1")]);
        assert!(err.to_string().contains(&flag), "{err}");
    }
}

#[test]
fn settings_that_contradict_each_other_are_refused_naming_both() {
    // (flags, the two settings the error must name)
    let cases: [(&[&str], [&str; 2]); 3] = [
        (
            &[
                "--rendezvous-min-ttl-secs",
                "100",
                "--rendezvous-max-ttl-secs",
                "50",
            ],
            ["--rendezvous-min-ttl-secs", "--rendezvous-max-ttl-secs"],
        ),
        (
            &["--tls-cert", "/c.pem"],
            ["DUSK_RELAY_TLS_KEY", "--tls-cert"],
        ),
        (&["--port", "60000"], ["DUSK_RELAY_WS_PORT", "--port"]),
    ];
    for (args, [one, other]) in cases {
        let err = cli_error(args);
        assert!(err.contains(one) && err.contains(other), "{err}");
    }
}

#[test]
fn unusable_config_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml").display().to_string();
    let err = load_error(&["--config", &missing], &[]);
    assert!(matches!(err, LoadError::File(_)));
    assert!(err.to_string().contains(&missing), "{err}");

    let file = write(dir.path(), "port = \n");
    let err = cli_error(&["--config", &file]);
    assert!(err.contains(&file), "{err}");

    let file = write(dir.path(), "[relay]\nmax_circuit = 3\n");
    let err = cli_error(&["--config", &file]);
    assert!(err.contains("relay.max_circuit"), "{err}");

    let file = write(dir.path(), "drain_secs = 2.5\n");
    let err = cli_error(&["--config", &file]);
    assert!(err.contains("drain_secs"), "{err}");
}

#[test]
fn printed_config_is_a_config_file_that_reproduces_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = cli(&[
        "--port",
        "6000",
        "--external-addr",
        "/dns4/relay.example.com/tcp/6000",
    ])
    .load_config(env(&[("DUSK_RELAY_WSS_PORT", "off")]))
    .unwrap();
    let printed = config.to_toml();
    let file = write(dir.path(), &printed);
    let (again, _) = cli(&["--config", &file]).load_config(env(&[])).unwrap();
    assert_eq!(again.to_toml(), printed);
    assert_eq!(again.wss_port, None);
    assert_eq!(again.external_addrs, config.external_addrs);
}

#[test]
fn the_example_config_in_deploy_is_valid_and_documents_every_key() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/dusk-relay.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let example = example.display().to_string();
    cli(&["--config", &example])
        .load_config(env(&[]))
        .unwrap_or_else(|e| panic!("{e}"));
    for setting in dusk_relay::config::settings::SETTINGS {
        let leaf = setting.key.rsplit('.').next().unwrap();
        assert!(
            text.contains(&format!("{leaf} =")) || text.contains(&format!("# {leaf} =")),
            "{} missing from the example",
            setting.key
        );
    }
}

#[tokio::test]
async fn binary_refuses_a_bad_file_before_writing_or_listening() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "[relay]\nmax_circuits = -5\n");
    let mut command = relay_command(dir.path());
    command.arg("--config").arg(&file);
    let (status, output) = run_to_exit(&mut command).await;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("relay.max_circuits") && output.contains("-5"),
        "{output}"
    );
    assert!(
        !dir.path().join("keypair").exists(),
        "nothing written before the config is valid"
    );
}

#[test]
fn a_redis_password_never_appears_in_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "hunter2";
    let mut errors = Vec::new();
    // A value the relay refuses (TLS to Redis), from the file and from the environment.
    let file = write(
        dir.path(),
        &format!("[rendezvous]\nstore = \"rediss://:{secret}@valkey:6379/0\"\n"),
    );
    errors.push(cli_error(&["--config", &file]));
    errors.push(
        load_error(
            &[],
            &[(
                "DUSK_RELAY_RENDEZVOUS_STORE",
                &format!("redis:/user:{secret}@valkey"),
            )],
        )
        .to_string(),
    );
    // A file that is not TOML on the store's line: the parser quotes the line.
    let file = write(
        dir.path(),
        &format!("[rendezvous]\nstore = \"redis://:{secret}@valkey:6379/0\" junk\n"),
    );
    errors.push(cli_error(&["--config", &file]));
    for error in errors {
        assert!(!error.contains(secret), "password printed: {error}");
        assert!(error.contains("***"), "the redaction is visible: {error}");
    }
}
