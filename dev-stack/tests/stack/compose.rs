//! docker-compose.yml cannot be run here (no Docker engine), so its structure is checked, and
//! every variable it sets is checked against the variables the programs really read (their
//! clap definitions).

use clap::CommandFactory;
use std::collections::BTreeSet;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> Yaml {
    YamlLoader::load_from_str(&repo_file("docker-compose.yml"))
        .expect("docker-compose.yml is valid YAML")
        .remove(0)
}

/// The environment variables a clap parser reads.
fn reads(command: clap::Command) -> BTreeSet<String> {
    command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        // Read by the tracing subscriber, not clap.
        .chain(["RUST_LOG".to_owned()])
        .collect()
}

fn environment(service: &Yaml) -> Vec<(String, String)> {
    service["environment"]
        .as_hash()
        .expect("environment is a map")
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                Yaml::Boolean(b) => b.to_string(),
                other => panic!("unexpected value {other:?}"),
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn strings(yaml: &Yaml) -> Vec<&str> {
    yaml.as_vec()
        .expect("a list")
        .iter()
        .map(|item| item.as_str().expect("a string"))
        .collect()
}

#[test]
fn every_variable_compose_sets_is_one_the_program_reads() {
    let compose = compose();
    let services = &compose["services"];
    let cases = [
        (
            "auth-service",
            reads(auth_service::config::AuthConfig::command()),
        ),
        (
            "task-service",
            reads(task_service::config::TaskConfig::command()),
        ),
        ("migrate", reads(migrations::cli::Cli::command())),
    ];
    for (name, known) in cases {
        let env = environment(&services[name]);
        assert!(!env.is_empty(), "{name} sets its configuration");
        for (variable, _) in env {
            assert!(
                known.contains(&variable),
                "{name} sets {variable}, which it does not read (it reads {known:?})"
            );
        }
    }
}

#[test]
fn the_services_start_in_order_and_report_health() {
    let compose = compose();
    let services = &compose["services"];
    for name in ["postgres", "migrate", "auth-service", "task-service"] {
        assert!(!services[name].is_badvalue(), "service {name} is defined");
    }
    let depends = |service: &str, on: &str| {
        services[service]["depends_on"][on]["condition"]
            .as_str()
            .unwrap_or_else(|| panic!("{service} depends on {on}"))
            .to_owned()
    };
    assert_eq!(depends("migrate", "postgres"), "service_healthy");
    assert_eq!(
        depends("auth-service", "migrate"),
        "service_completed_successfully"
    );
    assert_eq!(
        depends("task-service", "migrate"),
        "service_completed_successfully"
    );
    assert_eq!(depends("task-service", "auth-service"), "service_healthy");

    let dockerfile = repo_file("Dockerfile");
    let built = |binary: &str| dockerfile.contains(&format!("target/release/{binary}"));
    for (name, probe) in [
        ("postgres", "pg_isready"),
        ("auth-service", "health-probe"),
        ("task-service", "health-probe"),
    ] {
        let test = strings(&services[name]["healthcheck"]["test"]);
        assert_eq!(&test[..2], ["CMD", probe], "{name}'s health check");
    }
    for name in ["auth-service", "task-service"] {
        let test = strings(&services[name]["healthcheck"]["test"]);
        assert!(built(test[1]), "the image contains {}", test[1]);
        let command = strings(&services[name]["command"]);
        assert!(built(command[0]), "the image contains {}", command[0]);
        // The probe asks about this service, on the port it listens on.
        let env = environment(&services[name]);
        let listen = &env
            .iter()
            .find(|(k, _)| k.ends_with("_LISTEN_ADDR"))
            .unwrap()
            .1;
        let port = listen.rsplit(':').next().unwrap();
        assert!(
            test.contains(&format!("https://127.0.0.1:{port}").as_str()),
            "{test:?}"
        );
    }
    let migrate = strings(&services["migrate"]["command"]).join(" ");
    assert!(built("migrate"));
    assert!(migrate.contains("--service auth up") && migrate.contains("--service task up"));

    // The task-service finds the auth-service by its compose name and port.
    let task_env = environment(&services["task-service"]);
    let auth_url = &task_env
        .iter()
        .find(|(k, _)| k == "AUTH_SERVICE_URL")
        .unwrap()
        .1;
    assert_eq!(auth_url, "https://auth-service:50051");
}

#[test]
fn both_services_serve_tls_and_the_task_service_verifies_the_auth_service() {
    let compose = compose();
    let services = &compose["services"];
    let certs = strings(&services["certs"]["volumes"]);
    assert!(certs.contains(&"./certs:/src:ro"), "{certs:?}");
    let env_of = |name: &str| -> std::collections::BTreeMap<String, String> {
        environment(&services[name]).into_iter().collect()
    };
    for name in ["auth-service", "task-service"] {
        let env = env_of(name);
        let volumes = strings(&services[name]["volumes"]);
        assert!(volumes.contains(&"certs:/certs:ro"), "{name}: {volumes:?}");
        for variable in ["TLS_CERT_FILE", "TLS_KEY_FILE"] {
            let path = env
                .get(variable)
                .unwrap_or_else(|| panic!("{name} sets {variable}"));
            assert!(path.starts_with("/certs/"), "{name}: {variable}={path}");
        }
        // The health check verifies the certificate with the CA.
        let test = strings(&services[name]["healthcheck"]["test"]);
        let ca = test.iter().position(|arg| *arg == "--ca-file");
        assert_eq!(ca.map(|i| test[i + 1]), Some("/certs/ca.pem"), "{test:?}");
    }
    // The auth-service starts once the certificates are copied (the task-service after it).
    assert_eq!(
        services["auth-service"]["depends_on"]["certs"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    let task = env_of("task-service");
    assert_eq!(
        task.get("AUTH_SERVICE_CA_FILE").map(String::as_str),
        Some("/certs/ca.pem")
    );
    assert!(task.contains_key("TLS_CLIENT_CERT_FILE") && task.contains_key("TLS_CLIENT_KEY_FILE"));
    // The runtime image can also verify certificates from public CAs.
    assert!(repo_file("Dockerfile").contains("ca-certificates"));
}

#[test]
fn secrets_come_from_the_environment_and_are_documented() {
    let compose = compose();
    let text = repo_file("docker-compose.yml");
    let documented = repo_file(".env.example");
    for (_, service) in compose["services"].as_hash().unwrap() {
        let Some(env) = service["environment"].as_hash() else {
            continue;
        };
        for (key, value) in env {
            let (key, value) = (key.as_str().unwrap(), value.as_str().unwrap_or_default());
            if key.contains("SECRET") || key.contains("PASSWORD") || key.ends_with("DATABASE_URL") {
                assert!(
                    value.contains("${"),
                    "{key} must come from the environment, not be written in the file"
                );
            }
        }
    }
    // Every variable the file interpolates is explained in .env.example.
    for part in text.split("${").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        assert!(
            documented.contains(&format!("{name}=")),
            "{name} is not in .env.example"
        );
    }
}

#[test]
fn the_replicas_override_sets_only_what_the_services_read_and_trusts_only_the_balancer() {
    // `!reset` is compose's tag for "replace, do not merge"; the loader here does not know it.
    let text = repo_file("docker-compose.replicas.yml").replace("!reset ", "");
    let replicas = YamlLoader::load_from_str(&text)
        .expect("docker-compose.replicas.yml is valid YAML")
        .remove(0);
    let services = &replicas["services"];
    let balancer = services["balancer"]["networks"]["edge"]["ipv4_address"]
        .as_str()
        .expect("the balancer has a fixed address");
    for (name, known) in [
        (
            "auth-service",
            reads(auth_service::config::AuthConfig::command()),
        ),
        (
            "task-service",
            reads(task_service::config::TaskConfig::command()),
        ),
    ] {
        let env = environment(&services[name]);
        for (variable, _) in &env {
            assert!(
                known.contains(variable),
                "{name} sets {variable}, which it does not read"
            );
        }
        let trusted = env
            .iter()
            .find(|(k, _)| k == "TRUSTED_PROXIES")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            trusted,
            Some(balancer),
            "{name} trusts exactly the balancer"
        );
        assert_eq!(services[name]["deploy"]["replicas"].as_i64(), Some(2));
        assert!(
            services[name]["ports"].as_vec().is_some_and(Vec::is_empty),
            "{name} publishes no port of its own"
        );
        assert_eq!(
            services["balancer"]["depends_on"][name]["condition"].as_str(),
            Some("service_healthy")
        );
    }
}
