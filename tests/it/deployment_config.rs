//! The deployment's configuration, as CI sees it: the real `payd config check` runs on exactly the
//! environment docker/compose.yaml and docker/k8s give each payd container (the image's `ENV`, then
//! the ConfigMap/Secret or compose `environment`, secrets filled the way `make up` / an operator
//! fills them) and passes; with any required variable removed it fails, naming the key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;

type Env = BTreeMap<String, String>;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(repo().join(rel)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let mut v = Value::deserialize(d).unwrap();
            v.apply_merge().unwrap();
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn string_map(v: &Value) -> Env {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => panic!("unexpected env value {other:?}"),
                    };
                    (k.as_str().unwrap().to_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `ENV` block of docker/Dockerfile's runtime stage, with the config directory pointed at the
/// repository's `config/` (the image copies that directory to /app/config).
fn image_env() -> Env {
    let text = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let line = joined.lines().find(|l| l.starts_with("ENV ")).expect("Dockerfile has an ENV line");
    let mut env: Env = line[4..]
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert_eq!(env.get("PAYD_CONFIG_DIR").map(String::as_str), Some("/app/config"));
    env.insert("PAYD_CONFIG_DIR".into(), repo().join("config").display().to_string());
    env
}

/// Runs `payd config check [--role R]` with exactly `env`; returns (success, stdout + stderr).
fn config_check(env: &Env, role: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_payd"));
    cmd.args(["config", "check"]);
    if let Some(r) = role {
        cmd.args(["--role", r]);
    }
    let out = cmd.env_clear().envs(env).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `PAYD_CARDS__CVV_KEY` → `cards.cvv_key`.
fn config_key(var: &str) -> String {
    var.trim_start_matches("PAYD_").to_lowercase().replace("__", ".")
}

fn role_of(args: &[String]) -> Option<&str> {
    args.iter().position(|a| a == "--role").and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// Asserts the check passes on `env`, and fails naming the key when each of `required` is removed.
fn check_passes_and_each_removal_fails(what: &str, env: &Env, role: Option<&str>, required: &[&str]) {
    let (ok, out) = config_check(env, role);
    assert!(ok, "{what}: payd config check failed on the shipped environment:\n{out}");
    assert!(out.contains("configuration ok"), "{what}: {out}");
    for var in required {
        let mut less = env.clone();
        assert!(less.remove(*var).is_some(), "{what}: does not set {var}");
        let (ok, out) = config_check(&less, role);
        let key = config_key(var);
        assert!(!ok, "{what}: still accepted without {var}:\n{out}");
        assert!(out.contains(&format!("`{key}`")), "{what}: without {var} the error does not name `{key}`:\n{out}");
    }
}

// ---- compose ------------------------------------------------------------------------------------

/// The secrets `make up` generates (docker/secrets.sh into a fresh file).
fn generated_secrets() -> Env {
    let dir = std::env::temp_dir().join(format!("payd-secrets-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(".env");
    let status = Command::new("bash").arg(repo().join("docker/secrets.sh")).arg(&file).status().unwrap();
    assert!(status.success(), "docker/secrets.sh failed");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Compose's interpolation: `${X}`, `${X:-default}`, `${X-default}`, `${X:?error}`, `${X?error}`, `$$`.
fn interpolate(s: &str, vars: &Env) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed ${{ in {s}"))?;
            let expr = &body[..end];
            let name_end = expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_end);
            let value = vars.get(name).filter(|v| !v.is_empty());
            let resolved = match op {
                "" => vars.get(name).cloned().unwrap_or_default(),
                _ if op.starts_with(":-") => value.cloned().unwrap_or_else(|| op[2..].to_owned()),
                _ if op.starts_with('-') => vars.get(name).cloned().unwrap_or_else(|| op[1..].to_owned()),
                _ if op.starts_with(":?") || op.starts_with('?') => {
                    value.cloned().ok_or_else(|| format!("required variable {name} is missing a value"))?
                }
                _ => return Err(format!("unsupported interpolation ${{{expr}}}")),
            };
            out.push_str(&resolved);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Each payd service of the compose file: (name, command, environment as compose would pass it).
fn compose_services(vars: &Env) -> Result<Vec<(String, Vec<String>, Env)>, String> {
    let compose = yaml_docs("docker/compose.yaml").remove(0);
    let mut out = Vec::new();
    for (name, svc) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if svc["image"].as_str().is_none_or(|i| !i.starts_with("payd:")) {
            continue;
        }
        let command: Vec<String> =
            svc["command"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
        let mut env = image_env();
        for (k, v) in string_map(&svc["environment"]) {
            env.insert(k, interpolate(&v, vars)?);
        }
        out.push((name.to_owned(), command, env));
    }
    Ok(out)
}

const REQUIRED_COMPOSE: &[&str] = &[
    "PAYD_DATABASE__URL",
    "PAYD_REDIS__URL",
    "PAYD_AUTH__JWT_SECRET",
    "PAYD_CARDS__CVV_KEY",
    "PAYD_CARDS__PAN_KEY",
    "PAYD_IDEMPOTENCY__MAC_KEY",
    "PAYD_EVENTS__KAFKA_BROKERS",
];

#[test]
fn compose_environment_passes_config_check_and_names_a_removed_key() {
    let secrets = generated_secrets();
    let services = compose_services(&secrets).unwrap();
    let names: Vec<&str> = services.iter().map(|(n, _, _)| n.as_str()).collect();
    for want in ["payd-migrate", "payd", "payd-worker"] {
        assert!(names.contains(&want), "compose has no {want} service: {names:?}");
    }
    for (name, command, env) in &services {
        assert_eq!(env.get("PAYD_ENV").map(String::as_str), Some("production"), "{name}");
        let role = role_of(command);
        if command.first().map(String::as_str) == Some("serve") {
            assert!(role.is_some(), "{name}: `serve` without --role");
            assert_eq!(env.get("PAYD_SERVER__ROLE").map(String::as_str), role, "{name}: role env and flag differ");
        }
        check_passes_and_each_removal_fails(&format!("compose {name}"), env, role, REQUIRED_COMPOSE);
    }
    // Kafka is the default broker; RabbitMQ is the documented alternative and must boot as well.
    let (_, _, api) = services.iter().find(|(n, _, _)| n == "payd").unwrap();
    assert_eq!(api.get("PAYD_EVENTS__BROKER").map(String::as_str), Some("kafka"));
    let mut with_rabbit = secrets.clone();
    with_rabbit.insert("PAYD_EVENTS_BROKER".into(), "rabbitmq".into());
    let services = compose_services(&with_rabbit).unwrap();
    let (_, command, env) = services.iter().find(|(n, _, _)| n == "payd-worker").unwrap();
    check_passes_and_each_removal_fails(
        "compose payd-worker (rabbitmq)",
        env,
        role_of(command),
        &["PAYD_EVENTS__RABBITMQ_URL"],
    );
    // Every generated secret is required by compose itself (`${X:?…}`): a missing one stops `up`.
    let text = std::fs::read_to_string(repo().join("docker/compose.yaml")).unwrap();
    let body: String = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    assert!(interpolate(&body, &secrets).is_ok());
    for key in secrets.keys() {
        let mut less = secrets.clone();
        less.remove(key);
        assert!(interpolate(&body, &less).is_err(), "compose starts without {key}");
    }
}

// ---- Kubernetes ---------------------------------------------------------------------------------

/// Fills the Secret's `REPLACE_ME` placeholders as an operator would (long random values).
fn fill(v: &str) -> String {
    v.replace("REPLACE_ME", &format!("filled{}", uuid::Uuid::new_v4().simple()))
}

fn k8s_doc(file: &str, kind: &str) -> Value {
    yaml_docs(&format!("docker/k8s/{file}")).into_iter().find(|d| d["kind"].as_str() == Some(kind)).unwrap()
}

/// Every payd container (init containers included) of the workloads: (where, args, env).
fn k8s_containers(config: &Env, secret: &Env) -> Vec<(String, Vec<String>, Env)> {
    let mut out = Vec::new();
    for (file, kind) in [
        ("deployment.yaml", "Deployment"),
        ("worker-deployment.yaml", "Deployment"),
        ("migration-job.yaml", "Job"),
        ("verify-cronjob.yaml", "CronJob"),
    ] {
        let doc = k8s_doc(file, kind);
        let pod = if kind == "CronJob" {
            &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        } else {
            &doc["spec"]["template"]["spec"]
        };
        let containers = pod["initContainers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .chain(pod["containers"].as_sequence().unwrap().iter());
        for c in containers {
            let mut env = image_env();
            for from in c["envFrom"].as_sequence().unwrap() {
                if from["configMapRef"]["name"].as_str() == Some("payd-config") {
                    env.extend(config.clone());
                } else if from["secretRef"]["name"].as_str() == Some("payd-secrets") {
                    env.extend(secret.clone());
                } else {
                    panic!("{file}: unknown envFrom {from:?}");
                }
            }
            for e in c["env"].as_sequence().into_iter().flatten() {
                env.insert(e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned());
            }
            let args: Vec<String> =
                c["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
            out.push((format!("{file} {}", c["name"].as_str().unwrap()), args, env));
        }
    }
    out
}

#[test]
fn kubernetes_environment_passes_config_check_and_names_a_removed_key() {
    let config = string_map(&k8s_doc("configmap.yaml", "ConfigMap")["data"]);
    let shipped = string_map(&k8s_doc("secret.yaml", "Secret")["stringData"]);
    let secret: Env = shipped.iter().map(|(k, v)| (k.clone(), fill(v))).collect();
    assert_eq!(config.get("PAYD_EVENTS__BROKER").map(String::as_str), Some("kafka"));
    // Keys whose absence is legitimate: the bootstrap admin is removed after the first start, and an
    // SMTP relay may take no login (a password without a user name is simply unused).
    let optional = ["PAYD_BOOTSTRAP_ADMIN_EMAIL", "PAYD_BOOTSTRAP_ADMIN_PASSWORD", "PAYD_MAIL__SMTP_USERNAME"];
    let required: Vec<&str> = secret.keys().map(String::as_str).filter(|k| !optional.contains(k)).collect::<Vec<_>>();
    for must in REQUIRED_COMPOSE.iter().filter(|k| **k != "PAYD_EVENTS__KAFKA_BROKERS") {
        assert!(required.contains(must), "the Secret template lacks {must}");
    }
    let containers = k8s_containers(&config, &secret);
    assert!(containers.len() >= 6, "{:?}", containers.iter().map(|c| &c.0).collect::<Vec<_>>());
    for (name, args, env) in &containers {
        let role = role_of(args);
        if args.first().map(String::as_str) == Some("serve") {
            assert!(role.is_some(), "{name}: `serve` without --role");
        }
        check_passes_and_each_removal_fails(&format!("k8s {name}"), env, role, &required);
        let mut less = env.clone();
        less.remove("PAYD_EVENTS__KAFKA_BROKERS");
        let (ok, out) = config_check(&less, role);
        assert!(!ok && out.contains("`events.kafka_brokers`"), "k8s {name}: {out}");
    }
    // A removed bootstrap password while the e-mail stays is refused too.
    let (name, args, env) = &containers[0];
    let mut less = env.clone();
    less.remove("PAYD_BOOTSTRAP_ADMIN_PASSWORD");
    let (ok, out) = config_check(&less, role_of(args));
    assert!(!ok && out.contains("`auth.bootstrap_admin_password`"), "k8s {name}: {out}");
    // The template as shipped (placeholders) must not boot.
    let (_, args, env) = &containers[0];
    let mut unfilled = env.clone();
    unfilled.extend(shipped);
    let (ok, out) = config_check(&unfilled, role_of(args));
    assert!(!ok, "the unfilled Secret template was accepted:\n{out}");
}

#[test]
fn interpolation_follows_compose() {
    let vars: Env = [("A".to_owned(), "x".to_owned()), ("E".to_owned(), String::new())].into_iter().collect();
    assert_eq!(interpolate("${A}-${B:-d}-${E:-e}-${E-f}-$$", &vars).unwrap(), "x-d-e--$");
    assert!(interpolate("${B:?need B}", &vars).is_err());
    assert!(interpolate("${E:?need E}", &vars).is_err());
}
