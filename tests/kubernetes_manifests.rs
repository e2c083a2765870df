//! deploy/kubernetes/: every manifest validates against the Kubernetes schemas with the
//! pinned `kubernetes-validate --strict` (unknown fields are errors), the ConfigMap's
//! wsgate.yaml passes the real `wsgate -t`, and the manifests agree with each other and with
//! that config (ports, mounts, grace period against the drain window, PROXY protocol on both
//! sides or neither).
//!
//! kubernetes-validate comes from PyPI, installed by scripts/ensure-kubernetes-validate.sh
//! (which scripts/ensure-deps.sh runs) into a virtualenv under ~/.cache/wsgate; it carries
//! the schemas, so the test runs offline. Without it the validation tests fail under CI (`CI`
//! set) and print `SKIPPED: ...` and pass elsewhere; the other tests need nothing.
use serde::Deserialize;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned tool; scripts/ensure-kubernetes-validate.sh installs exactly this version.
const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
/// The schemas validated against: the oldest Kubernetes the manifests support (the preStop
/// `sleep` action is on by default from 1.30) and the newest the pinned tool knows.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every YAML file under deploy/kubernetes/, examples included, sorted.
fn yaml_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&deploy_dir(), &mut files);
    files.sort();
    files
}

/// The Kubernetes objects: every YAML file but kustomization.yaml (kustomize's own format,
/// which has no Kubernetes schema; checked by `the_kustomization_lists_every_manifest`).
fn manifests() -> Vec<PathBuf> {
    yaml_files().into_iter().filter(|p| !p.ends_with("kustomization.yaml")).collect()
}

/// The documents of a (possibly multi-document) YAML file, empty ones left out.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn object(kind: &str, name: &str) -> Value {
    manifests()
        .iter()
        .flat_map(|p| documents(p))
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes/"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v:?}"))
}

fn seq(v: &Value) -> &Vec<Value> {
    v.as_sequence().unwrap_or_else(|| panic!("not a list: {v:?}"))
}

/// `host:port` → port.
fn port_of(address: &str) -> u64 {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("no port in {address}"))
}

/// `30s`, `2m` → seconds (the units the shipped config uses).
fn seconds(duration: &str) -> u64 {
    let (n, unit) = duration.split_at(duration.find(|c: char| !c.is_ascii_digit()).unwrap_or(duration.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("duration {duration}"));
    match unit {
        "s" => n,
        "m" => n * 60,
        _ => panic!("unexpected unit in {duration}"),
    }
}

// ------------------------------------------------------------------ kubernetes-validate

/// The pinned kubernetes-validate: `WSGATE_KUBERNETES_VALIDATE`, or where
/// scripts/ensure-kubernetes-validate.sh puts it, or on PATH; only if it says it is the
/// pinned version. Otherwise: a panic under CI, else the one allowed skip message and None.
fn tool_or_skip(test: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    let venv = cache
        .map(|c| c.join(format!("wsgate/kubernetes-validate-{KUBERNETES_VALIDATE_VERSION}/bin/kubernetes-validate")));
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("kubernetes-validate"))
        .find(|p| p.is_file());
    let candidates =
        std::env::var_os("WSGATE_KUBERNETES_VALIDATE").map(PathBuf::from).into_iter().chain(venv).chain(on_path);
    let mut seen = Vec::new();
    for candidate in candidates.filter(|p| p.is_file()) {
        let version = Command::new(&candidate)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        match version {
            Ok(v) if v == KUBERNETES_VALIDATE_VERSION => return Some(candidate),
            Ok(v) => seen.push(format!("{} is version {v}", candidate.display())),
            Err(e) => seen.push(format!("{}: {e}", candidate.display())),
        }
    }
    let why = format!(
        "kubernetes-validate {KUBERNETES_VALIDATE_VERSION} not installed{} (scripts/ensure-kubernetes-validate.sh installs it)",
        if seen.is_empty() { String::new() } else { format!("; found {}", seen.join(", ")) }
    );
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why}");
    }
    // Straight to the process's stderr, past libtest's capture, so the skip shows.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}");
    None
}

/// Runs the tool in strict mode on `files` against one Kubernetes version. Ok only if it
/// exits 0 and says `passed` for each document of each file and nothing else: it warns and
/// exits 0 on a kind or apiVersion it has no schema for (`kind: Deploymnet`,
/// `policy/v1beta1`), and says nothing at all for a file without objects.
fn validate(tool: &Path, files: &[PathBuf], version: &str) -> Result<String, String> {
    let out = Command::new(tool)
        .arg("--strict")
        .arg("-k")
        .arg(version)
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut problems: Vec<String> = lines
        .iter()
        .filter(|l| !(l.starts_with("INFO ") && l.contains(" passed for resource ")))
        .map(|l| l.to_string())
        .collect();
    if !out.status.success() {
        problems.push(format!("exit status {}", out.status));
    }
    for file in files {
        let shown = format!(" {} passed ", file.display());
        let passed = lines.iter().filter(|l| l.contains(&shown)).count();
        let expected = documents(file).len();
        if expected == 0 || passed != expected {
            problems.push(format!("{}: {passed} of {expected} object(s) passed", file.display()));
        }
    }
    if problems.is_empty() {
        Ok(output)
    } else {
        Err(format!("against Kubernetes {version}:\n{}\n--- output:\n{output}", problems.join("\n")))
    }
}

#[test]
fn every_manifest_validates_against_the_pinned_kubernetes_schemas() {
    let Some(tool) = tool_or_skip("every_manifest_validates_against_the_pinned_kubernetes_schemas") else {
        return;
    };
    let files = manifests();
    assert!(files.len() >= 9, "the manifests of deploy/kubernetes/: {files:?}");
    for version in KUBERNETES_VERSIONS {
        if let Err(e) = validate(&tool, &files, version) {
            panic!("{e}");
        }
    }
}

#[test]
fn a_misspelled_field_or_kind_fails_validation() {
    let Some(tool) = tool_or_skip("a_misspelled_field_or_kind_fails_validation") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let deployment = std::fs::read_to_string(deploy_dir().join("deployment.yaml")).unwrap();
    let cases = [
        // An unknown field: the schema's strict mode names it.
        (
            "terminationGracePeriodSeconds:",
            "terminationGracePeriodSecond:",
            "'terminationGracePeriodSecond' was unexpected",
        ),
        ("readOnlyRootFilesystem:", "readOnlyRootFileSystem:", "'readOnlyRootFileSystem' was unexpected"),
        // A value of the wrong type (annotations are strings).
        ("prometheus.io/port: \"9100\"", "prometheus.io/port: 9100", "is not of type 'string'"),
        // A kind without a schema: the tool only warns (exit 0); `validate` refuses it.
        ("kind: Deployment", "kind: Deploymnet", "Couldn't find schema for kind Deploymnet"),
    ];
    for (from, to, expected) in cases {
        assert!(deployment.contains(from), "{from} not in deployment.yaml");
        let broken = deployment.replacen(from, to, 1);
        let path = dir.path().join("deployment.yaml");
        std::fs::write(&path, broken).unwrap();
        let err = validate(&tool, &[path], KUBERNETES_VERSIONS[0]).expect_err(to);
        assert!(err.contains(expected), "{to}: expected {expected:?} in:\n{err}");
    }
    // And an empty file is no manifest.
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "# nothing\n").unwrap();
    assert!(validate(&tool, &[empty], KUBERNETES_VERSIONS[0]).is_err());
}

// ------------------------------------------------------------------ the ConfigMap's config

/// The ConfigMap's wsgate.yaml, as shipped.
fn shipped_config_text() -> String {
    text(&object("ConfigMap", "wsgate-config")["data"]["wsgate.yaml"]).to_string()
}

fn shipped_config() -> Value {
    serde_yaml::from_str(&shipped_config_text()).expect("wsgate.yaml in the ConfigMap is YAML")
}

/// Every string in `v` that is an absolute path under /etc/.
fn etc_paths(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.starts_with("/etc/") => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|i| etc_paths(i, out)),
        Value::Mapping(m) => m.values().for_each(|i| etc_paths(i, out)),
        _ => {}
    }
}

/// `wsgate -t` on `config` with every /etc/ path moved into a temp dir, where each file it
/// names exists: keys and certificates are the repository's demo pair (conf/tls), anything
/// else (the admin token) a made-up token.
fn wsgate_check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut paths = Vec::new();
    etc_paths(&serde_yaml::from_str(config).unwrap_or(Value::Null), &mut paths);
    let conf_tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tls");
    for path in &paths {
        let file = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if name.contains("key") {
            std::fs::copy(conf_tls.join("key.pem"), &file).unwrap();
        } else if name.ends_with(".crt") || name.ends_with(".pem") {
            std::fs::copy(conf_tls.join("cert.pem"), &file).unwrap();
        } else {
            std::fs::write(&file, "a-test-token-of-no-importance-0123456789\n").unwrap();
        }
    }
    let path = root.join("etc/wsgate/wsgate.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, config.replace("/etc/", &format!("{}/etc/", root.display()))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wsgate")).arg("-t").arg("-c").arg(&path).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_configmaps_config_passes_wsgate_check() {
    let (ok, out) = wsgate_check(&shipped_config_text());
    assert!(ok && out.contains("is valid"), "{out}");
    let config = shipped_config();
    assert_eq!(config["config_watch"], Value::Bool(true), "a ConfigMap update must reach the pods");
    let mut paths = Vec::new();
    etc_paths(&config, &mut paths);
    assert!(paths.iter().any(|p| p.starts_with("/etc/wsgate-tls/")), "TLS from the Secret: {paths:?}");
}

#[test]
fn a_misspelled_config_key_fails_wsgate_check() {
    let shipped = shipped_config_text();
    for (from, to) in [("config_watch: true", "config_wacth: true"), ("  window: 30s", "  windw: 30s")] {
        assert!(shipped.contains(from), "{from} not in the ConfigMap's wsgate.yaml");
        let broken = shipped.replacen(from, to, 1);
        let (ok, out) = wsgate_check(&broken);
        let key = to.trim().split(':').next().unwrap();
        assert!(!ok && out.contains(key), "{to} must fail naming {key}:\n{out}");
    }
}

// ------------------------------------------------------------------ consistency

fn wsgate_container(deployment: &Value) -> &Value {
    seq(&deployment["spec"]["template"]["spec"]["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some("wsgate"))
        .expect("a container named wsgate")
}

/// The container port called `name`.
fn container_port(container: &Value, name: &str) -> u64 {
    seq(&container["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .map(|p| int(&p["containerPort"]))
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let kustomization: Value =
        serde_yaml::from_str(&std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap()).unwrap();
    let mut listed: Vec<&str> = seq(&kustomization["resources"]).iter().map(text).collect();
    listed.sort();
    let mut top_level: Vec<String> = manifests()
        .iter()
        .filter(|p| p.parent() == Some(deploy_dir().as_path()))
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    top_level.sort();
    assert_eq!(listed, top_level, "kustomization.yaml's resources vs the manifests beside it (examples/ stays out)");
}

#[test]
fn the_deployment_mounts_runs_and_stops_as_the_config_needs() {
    let deployment = object("Deployment", "wsgate");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = wsgate_container(&deployment);
    let config = shipped_config();

    // The ConfigMap as a read-only directory at /etc/wsgate, never by subPath.
    let mounts = seq(&container["volumeMounts"]);
    assert!(mounts.iter().all(|m| m.get("subPath").is_none()), "a subPath mount never sees an update");
    let config_mount = mounts.iter().find(|m| m["mountPath"].as_str() == Some("/etc/wsgate")).expect("/etc/wsgate");
    assert_eq!(config_mount["readOnly"], Value::Bool(true));
    let volume = seq(&pod["volumes"]).iter().find(|v| v["name"] == config_mount["name"]).expect("its volume");
    assert_eq!(text(&volume["configMap"]["name"]), "wsgate-config");
    let args: Vec<&str> = seq(&container["args"]).iter().map(text).collect();
    assert_eq!(args, ["-c", "/etc/wsgate/wsgate.yaml"]);

    // Every file the config names is under a mount; the pid file and socket are writable.
    let mut paths = Vec::new();
    etc_paths(&config, &mut paths);
    let mounted = |p: &str| mounts.iter().find(|m| p.starts_with(&format!("{}/", text(&m["mountPath"]))));
    for p in &paths {
        assert!(mounted(p).is_some(), "{p} is named by the config but no volume is mounted there");
    }
    for key in ["pid_file", "upgrade_sock"] {
        let p = text(&config["server"][key]);
        let m = mounted(p).unwrap_or_else(|| panic!("server.{key} {p}: not on a writable mount"));
        assert_ne!(m["readOnly"], Value::Bool(true), "server.{key} {p}");
    }

    // Stop: the preStop pause, then the drain window, within the grace period.
    let pause = int(&container["lifecycle"]["preStop"]["sleep"]["seconds"]);
    let window = seconds(text(&config["drain"]["window"]));
    let grace = int(&pod["terminationGracePeriodSeconds"]);
    assert!(pause >= 5, "preStop pause {pause}s: too short for endpoints to be removed");
    assert!(grace >= pause + window + 15, "terminationGracePeriodSeconds {grace} < {pause} + {window} + 15");

    // Probes and ports agree with the config's listeners.
    assert_eq!(text(&container["readinessProbe"]["httpGet"]["path"]), "/ready");
    assert_eq!(text(&container["readinessProbe"]["httpGet"]["port"]), "metrics");
    assert_eq!(text(&container["livenessProbe"]["httpGet"]["port"]), "metrics");
    assert_eq!(container_port(container, "metrics"), port_of(text(&config["metrics"]["address"])));
    assert_eq!(container_port(container, "admin"), port_of(text(&config["admin"]["address"])));
    let listeners = seq(&config["listeners"]);
    let plain = listeners.iter().find(|l| l.get("tls").is_none()).expect("a plain listener");
    let tls = listeners.iter().find(|l| l.get("tls").is_some()).expect("a TLS listener");
    assert_eq!(container_port(container, "http"), port_of(text(&plain["address"])));
    assert_eq!(container_port(container, "https"), port_of(text(&tls["address"])));

    // Hardening.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true));
    assert_eq!(text(&pod["securityContext"]["seccompProfile"]["type"]), "RuntimeDefault");
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(seq(&sc["capabilities"]["drop"]).iter().map(text).collect::<Vec<_>>(), ["ALL"]);
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(container["resources"][kind].get(resource).is_some(), "resources.{kind}.{resource}");
        }
    }
    assert_eq!(int(&deployment["spec"]["replicas"]), 2);
}

#[test]
fn services_budget_and_autoscaler_select_the_deployment() {
    let deployment = object("Deployment", "wsgate");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let container = wsgate_container(&deployment);
    let port_names: Vec<&str> = seq(&container["ports"]).iter().map(|p| text(&p["name"])).collect();

    let service = object("Service", "wsgate");
    assert_eq!(text(&service["spec"]["type"]), "LoadBalancer");
    assert_eq!(text(&service["spec"]["externalTrafficPolicy"]), "Local");
    let admin = object("Service", "wsgate-admin");
    assert_eq!(text(&admin["spec"]["clusterIP"]), "None");
    for svc in [&service, &admin] {
        assert_eq!(&svc["spec"]["selector"], labels);
        for port in seq(&svc["spec"]["ports"]) {
            assert!(port_names.contains(&text(&port["targetPort"])), "targetPort {:?}", port["targetPort"]);
        }
    }
    let public: Vec<&str> = seq(&service["spec"]["ports"]).iter().map(|p| text(&p["targetPort"])).collect();
    assert_eq!(public, ["http", "https"], "metrics and admin stay off the balancer");

    let pdb = object("PodDisruptionBudget", "wsgate");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    let hpa = object("HorizontalPodAutoscaler", "wsgate");
    assert_eq!(text(&hpa["spec"]["scaleTargetRef"]["kind"]), "Deployment");
    assert_eq!(text(&hpa["spec"]["scaleTargetRef"]["name"]), "wsgate");
    assert!(int(&hpa["spec"]["minReplicas"]) >= 2);
    let resource = &seq(&hpa["spec"]["metrics"])[0]["resource"];
    assert_eq!(text(&resource["name"]), "cpu");
}

/// Whether the Service's (uncommented) annotations ask the balancer for PROXY headers.
fn service_sends_proxy(service: &Value) -> bool {
    let Some(annotations) = service["metadata"].get("annotations").and_then(Value::as_mapping) else {
        return false;
    };
    annotations.iter().any(|(k, v)| {
        let (k, v) = (k.as_str().unwrap_or(""), v.as_str().unwrap_or(""));
        k.replace('-', "").contains("proxyprotocol") && (v == "*" || v == "true" || v.starts_with('v'))
    })
}

/// The PROXY protocol is on at the balancer exactly when every listener expects it.
fn proxy_protocol_agrees(service: &Value, config: &Value) -> Result<(), String> {
    let sends = service_sends_proxy(service);
    let expecting: Vec<bool> =
        seq(&config["listeners"]).iter().map(|l| l["proxy_protocol"].as_bool().unwrap_or(false)).collect();
    if expecting.iter().all(|&e| e == sends) {
        Ok(())
    } else {
        Err(format!("the Service sends PROXY headers: {sends}; the listeners expect them: {expecting:?}"))
    }
}

#[test]
fn proxy_protocol_is_on_at_both_ends_or_neither() {
    let (service, config) = (object("Service", "wsgate"), shipped_config());
    proxy_protocol_agrees(&service, &config).unwrap();

    // Turning it on at one end only is caught, either way round.
    let mut config_on = config.clone();
    for listener in config_on["listeners"].as_sequence_mut().unwrap() {
        listener["proxy_protocol"] = Value::Bool(true);
    }
    assert!(proxy_protocol_agrees(&service, &config_on).is_err());
    let mut service_on = service.clone();
    service_on["metadata"]["annotations"] =
        serde_yaml::from_str(r#"{"service.beta.kubernetes.io/aws-load-balancer-proxy-protocol": "*"}"#).unwrap();
    assert!(proxy_protocol_agrees(&service_on, &config).is_err());
    proxy_protocol_agrees(&service_on, &config_on).unwrap();
    // Every annotation commented out in service.yaml turns it on when uncommented.
    let shipped = std::fs::read_to_string(deploy_dir().join("service.yaml")).unwrap();
    for line in shipped.lines().map(str::trim).filter(|l| l.starts_with("# ") && l.contains("proxy")) {
        let Ok(Value::Mapping(m)) = serde_yaml::from_str::<Value>(line.trim_start_matches("# ")) else { continue };
        if m.keys().any(|k| k.as_str().is_some_and(|k| k.contains('/'))) {
            let mut svc = service.clone();
            svc["metadata"]["annotations"] = Value::Mapping(m);
            assert!(service_sends_proxy(&svc), "{line}");
        }
    }
}

#[test]
fn the_backend_examples_match_the_config() {
    let config = shipped_config();
    let pool = &config["upstreams"]["chat"];
    assert_eq!(text(&pool["discovery"]), "dns");
    let backend = text(&seq(&pool["backends"])[0]);
    let (host, port) = backend.split_once(':').unwrap();

    let headless = object("Service", host);
    assert_eq!(text(&headless["spec"]["clusterIP"]), "None", "discovery: dns needs a headless Service");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], Value::Bool(true));
    assert_eq!(int(&seq(&headless["spec"]["ports"])[0]["port"]).to_string(), port);

    let deployment = object("Deployment", host);
    assert_eq!(&deployment["spec"]["template"]["metadata"]["labels"], &headless["spec"]["selector"]);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &seq(&pod["containers"])[0];
    assert_eq!(int(&seq(&container["ports"])[0]["containerPort"]).to_string(), port);
    let hook: Vec<&str> = seq(&container["lifecycle"]["preStop"]["exec"]["command"]).iter().map(text).collect();
    let script = hook.last().unwrap();
    assert!(script.contains(&format!("drain chat \"$POD_IP:{port}\"")), "{script}");
    assert!(script.contains("--wait") && !script.contains("$(POD_IP)"), "{script}");
    let admin_port = port_of(text(&config["admin"]["address"]));
    assert!(script.contains(&format!(":{admin_port}\"")), "the admin port {admin_port}: {script}");
    let token_file = text(&config["admin"]["token_file"]);
    assert!(script.contains(token_file), "the same token file path {token_file}: {script}");
    let timeout: u64 = script.split("--timeout ").nth(1).and_then(|t| t.split('s').next()?.parse().ok()).unwrap();
    assert!(int(&pod["terminationGracePeriodSeconds"]) > timeout, "the grace period must outlast --timeout");
}
