//! The Kubernetes manifests under `deploy/kubernetes/` against the real Kubernetes schemas and
//! against signalbox itself:
//!
//! - every manifest validates, strictly (no unknown field), against the Kubernetes OpenAPI
//!   schemas of 1.30 (the oldest release with the `preStop` sleep action on by default) and
//!   1.37, with the pinned `kubernetes-validate` (`tests/kubernetes/requirements.txt`, installed
//!   into a venv on first use); `kustomization.yaml` lists every resource file;
//! - the autoscalers' bounds, targets and scale-down pacing are `scaling::ScalingPolicy::signalbox`'s;
//! - the termination grace periods exceed the preStop pause plus the shutdown grace of the
//!   ConfigMap's `signalbox.toml`;
//! - pods run as non-root on a read-only root file system, take their connection strings from
//!   the Secret, and mount the config where `SIGNALBOX_CONFIG` points; Services, disruption
//!   budgets and autoscalers select or name pods and Deployments that exist;
//! - the binary accepts each container's arguments, and a `signalbox serve` started with the
//!   ConfigMap's `signalbox.toml` answers 200 on every probe path, each a route of the OpenAPI
//!   document.
//!
//! Needs `python3` with `venv` and a reachable package index (it fails rather than skips
//! without them), and Redis and NATS for the served check, as the other tests.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use scaling::{Metric, ScalingPolicy};
use serde_json::Value;
use support::{describe, get_raw, python_venv, signalbox, Server};

/// Kubernetes releases the manifests must be valid for.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

fn python() -> PathBuf {
    python_venv(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubernetes/requirements.txt"),
        "kubernetes-validate-venv",
    )
}

/// The files `kustomization.yaml` applies, plus the example Secret (not applied: the operator
/// creates the real one).
fn manifest_files(python: &Path) -> Vec<PathBuf> {
    let kustomization = &load(python, &[k8s_dir().join("kustomization.yaml")])[0];
    let mut files: Vec<PathBuf> = kustomization["resources"]
        .as_array()
        .expect("kustomization resources")
        .iter()
        .map(|r| k8s_dir().join(r.as_str().expect("a resource path")))
        .collect();
    files.push(k8s_dir().join("secret.example.yaml"));
    files
}

/// Every YAML document of `files`, as JSON.
fn load(python: &Path, files: &[PathBuf]) -> Vec<Value> {
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml\n\
             docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]\n\
             print(json.dumps(docs))",
        ])
        .args(files)
        .output()
        .expect("run the venv's python");
    assert!(out.status.success(), "{}", describe("read YAML", &out));
    match serde_json::from_slice(&out.stdout).expect("JSON from the YAML reader") {
        Value::Array(docs) => docs,
        other => panic!("not a list of documents: {other}"),
    }
}

fn all_resources(python: &Path) -> Vec<Value> {
    load(python, &manifest_files(python))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn of_kind<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| d["kind"] == kind)
}

/// The ConfigMap's `signalbox.toml`.
fn signalbox_toml(docs: &[Value]) -> String {
    find(docs, "ConfigMap", "signalbox-config")["data"]["signalbox.toml"]
        .as_str()
        .expect("signalbox.toml in the ConfigMap")
        .to_owned()
}

fn shutdown_grace_seconds(docs: &[Value]) -> u64 {
    let config: toml::Table = signalbox_toml(docs)
        .parse()
        .expect("signalbox.toml is TOML");
    let grace = config["http"]["shutdown_grace"]
        .as_str()
        .expect("[http] shutdown_grace is set");
    humantime::parse_duration(grace)
        .expect("a duration")
        .as_secs()
}

fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let wanted = selector.as_object().expect("matchLabels");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let python = python();
    let files = manifest_files(&python);
    // The kustomization applies every resource file in the directory.
    let mut listed: BTreeSet<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    listed.remove("secret.example.yaml");
    let mut present: BTreeSet<String> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    for not_a_resource in [
        "kustomization.yaml",
        "secret.example.yaml",
        "prometheus-adapter-rules.yaml",
    ] {
        assert!(present.remove(not_a_resource), "{not_a_resource}");
    }
    assert_eq!(listed, present, "kustomization.yaml resources");

    let validator = python.parent().unwrap().join("kubernetes-validate");
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&validator)
            .args(["--strict", "--quiet", "-k", version])
            .args(&files)
            .output()
            .expect("run kubernetes-validate");
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("kubernetes-validate --strict -k {version}"), &out)
        );
    }
    // Each manifest kind the files must hold, so an empty file cannot pass.
    let docs = all_resources(&python);
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Secret",
    ] {
        assert!(kinds.contains(kind), "{kind} missing: {kinds:?}");
    }

    // The validator does reject what the schema forbids (a wrong type, an unknown field).
    let bad = tempfile::tempdir().unwrap();
    let bad_file = bad.path().join("bad.yaml");
    std::fs::write(
        &bad_file,
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n\
         spec:\n  scaleTargetRef: {kind: Deployment, name: x}\n  maxReplicas: twenty\n",
    )
    .unwrap();
    let out = Command::new(&validator)
        .args(["--strict", "--quiet"])
        .arg(&bad_file)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{}",
        describe("a bad manifest", &out)
    );
}

#[test]
fn autoscalers_follow_the_scaling_policy() {
    let python = python();
    let docs = all_resources(&python);
    let policy = ScalingPolicy::signalbox();
    let rule = |metric: Metric| {
        policy
            .rules()
            .iter()
            .find(|r| r.metric == metric)
            .unwrap_or_else(|| panic!("the policy has a {metric:?} rule"))
    };
    let smallest_step = policy.rules().iter().map(|r| r.scale_step).min().unwrap();
    let hpas: Vec<&Value> = of_kind(&docs, "HorizontalPodAutoscaler").collect();
    assert_eq!(hpas.len(), 2, "one for the API, one for the workers");
    for hpa in &hpas {
        let spec = &hpa["spec"];
        let name = &hpa["metadata"]["name"];
        assert_eq!(spec["minReplicas"], policy.min_replicas(), "{name}");
        assert_eq!(spec["maxReplicas"], policy.max_replicas(), "{name}");
        // The Deployment it scales exists.
        let target = &spec["scaleTargetRef"];
        assert_eq!(target["kind"], "Deployment");
        find(&docs, "Deployment", target["name"].as_str().unwrap());
        // Every autoscaler watches CPU against the CPU rule's upper threshold.
        let cpu = spec["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
            .unwrap_or_else(|| panic!("{name}: a CPU metric"));
        assert_eq!(
            cpu["resource"]["target"]["averageUtilization"].as_f64(),
            Some(rule(Metric::CpuUtilization).threshold_up),
            "{name}"
        );
        // Scale-down: held for the policy's cooldown, the smallest step at a time.
        let down = &spec["behavior"]["scaleDown"];
        assert_eq!(
            down["stabilizationWindowSeconds"].as_u64(),
            Some(policy.cooldown_ms() / 1000),
            "{name}"
        );
        let policies = down["policies"].as_array().unwrap();
        assert_eq!(policies.len(), 1, "{name}");
        assert_eq!(policies[0]["type"], "Pods");
        assert_eq!(policies[0]["value"], smallest_step);
    }
    // The workers also follow the queue: pending jobs against the queue rule's upper threshold.
    let worker = find(&docs, "HorizontalPodAutoscaler", "signalbox-worker");
    let external = worker["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["type"] == "External")
        .expect("a queue-depth metric");
    let target = &external["external"]["target"];
    assert_eq!(target["type"], "Value");
    let value: f64 = target["value"].as_str().unwrap().parse().unwrap();
    assert_eq!(value, rule(Metric::QueueLength).threshold_up);
    // …whose name is the one the Prometheus adapter rule serves, from `queue_size`.
    let adapter = &load(&python, &[k8s_dir().join("prometheus-adapter-rules.yaml")])[0];
    let served = &adapter["externalRules"][0];
    assert_eq!(
        served["name"]["as"], external["external"]["metric"]["name"],
        "the adapter serves the metric the HPA reads"
    );
    let query = served["metricsQuery"].as_str().unwrap();
    assert!(query.contains("queue_size{"), "{query}");
    // The API replicas report the same database-wide depths: de-duplicated, not summed.
    assert!(query.contains("max by (queue_name, tenant_id)"), "{query}");
}

#[test]
fn shutdown_fits_in_the_termination_grace_period() {
    let python = python();
    let docs = all_resources(&python);
    let grace = shutdown_grace_seconds(&docs);
    assert!(grace > 0);
    let deployments: Vec<&Value> = of_kind(&docs, "Deployment").collect();
    assert_eq!(deployments.len(), 2);
    for d in deployments {
        let pod = &d["spec"]["template"]["spec"];
        let name = &d["metadata"]["name"];
        let termination = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: terminationGracePeriodSeconds"));
        for c in pod["containers"].as_array().unwrap() {
            let pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_u64()
                .unwrap_or(0);
            assert!(
                termination > pause + grace,
                "{name}: {termination} s must exceed the preStop pause ({pause} s) plus the \
                 shutdown grace ({grace} s)"
            );
        }
    }
    // The API pauses before SIGTERM, so load balancers stop sending first.
    let api = find(&docs, "Deployment", "signalbox");
    assert!(
        api["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"]
            ["seconds"]
            .as_u64()
            .is_some_and(|s| s > 0)
    );
}

#[test]
fn pods_are_locked_down_and_wired_to_the_config_and_secret() {
    let python = python();
    let docs = all_resources(&python);
    let secret = find(&docs, "Secret", "signalbox-env");
    for key in ["DATABASE_URL", "REDIS_URL", "NATS_URL"] {
        assert!(secret["stringData"][key].is_string(), "{key}");
    }
    for d in of_kind(&docs, "Deployment") {
        let name = &d["metadata"]["name"];
        let template = &d["spec"]["template"];
        assert!(
            selector_matches(
                &d["spec"]["selector"]["matchLabels"],
                &template["metadata"]["labels"]
            ),
            "{name}: the selector matches its pods"
        );
        let pod = &template["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap() > 0);
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{name}");
            assert!(
                c["envFrom"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["secretRef"]["name"] == "signalbox-env"),
                "{name}: connection strings from the Secret"
            );
            assert!(
                c["resources"]["requests"]["cpu"].is_string(),
                "{name}: a CPU request (the HPA's utilisation is relative to it)"
            );
            // SIGNALBOX_CONFIG names the ConfigMap's key where the ConfigMap is mounted.
            let config_path = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "SIGNALBOX_CONFIG")
                .and_then(|e| e["value"].as_str())
                .unwrap_or_else(|| panic!("{name}: SIGNALBOX_CONFIG"));
            let config_volume = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["configMap"]["name"] == "signalbox-config")
                .expect("the config volume");
            let mount = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == config_volume["name"])
                .expect("the config mount");
            assert_eq!(
                config_path,
                format!("{}/signalbox.toml", mount["mountPath"].as_str().unwrap())
            );
            // The data directory of signalbox.toml is writable (an emptyDir).
            let toml: toml::Table = signalbox_toml(&docs).parse().unwrap();
            let data_dir = toml["data_dir"].as_str().unwrap();
            let data_mount = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == data_dir)
                .unwrap_or_else(|| panic!("{name}: {data_dir} mounted"));
            assert!(pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == data_mount["name"] && v["emptyDir"].is_object()));
        }
    }
    // Services and disruption budgets select pods that exist.
    let pod_labels: Vec<&Value> = of_kind(&docs, "Deployment")
        .map(|d| &d["spec"]["template"]["metadata"]["labels"])
        .collect();
    let service = find(&docs, "Service", "signalbox");
    let api = find(&docs, "Deployment", "signalbox");
    assert!(selector_matches(
        &service["spec"]["selector"],
        &api["spec"]["template"]["metadata"]["labels"]
    ));
    let port_names: Vec<&Value> = api["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert!(port_names.contains(&&service["spec"]["ports"][0]["targetPort"]));
    let pdbs: Vec<&Value> = of_kind(&docs, "PodDisruptionBudget").collect();
    assert_eq!(pdbs.len(), 2);
    for pdb in pdbs {
        let selector = &pdb["spec"]["selector"]["matchLabels"];
        assert_eq!(
            pod_labels
                .iter()
                .filter(|l| selector_matches(selector, l))
                .count(),
            1,
            "{}",
            pdb["metadata"]["name"]
        );
    }
}

#[test]
fn the_configured_binary_answers_its_probes() {
    let python = python();
    let docs = all_resources(&python);
    let dir = tempfile::tempdir().unwrap();
    // The binary knows every container's command line.
    for d in of_kind(&docs, "Deployment") {
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            let args: Vec<&str> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let out = signalbox(dir.path())
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                describe(&format!("signalbox {} --help", args.join(" ")), &out)
            );
        }
    }
    // The API started with the ConfigMap's signalbox.toml (flags move it to a loopback port
    // and a temporary directory; connection strings as the Secret gives them).
    let config = dir.path().join("signalbox.toml");
    std::fs::write(&config, signalbox_toml(&docs)).unwrap();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let stream = format!("sbxtest_{id}");
    let redis = std::env::var("SIGNALBOX_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let nats =
        std::env::var("SIGNALBOX_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let data = dir.path().join("data");
    let server = Server::start(
        signalbox(&data)
            .env("SIGNALBOX_CONFIG", &config)
            .env("REDIS_URL", &redis)
            .env("NATS_URL", &nats)
            .env("SIGNALBOX_EVENT_LOG_STREAM", &stream)
            .env("SIGNALBOX_CACHE_KEY_PREFIX", format!("sbxtest:cache:{id}:"))
            .env(
                "SIGNALBOX_RATE_LIMIT_KEY_PREFIX",
                format!("sbxtest:rl:{id}"),
            ),
    );
    let (status, _, openapi) = get_raw(&server.addr, "/openapi.json", "");
    assert_eq!(status, 200);
    let openapi: Value = serde_json::from_str(&openapi).unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let api = find(&docs, "Deployment", "signalbox");
    let container = &api["spec"]["template"]["spec"]["containers"][0];
    let mut probed = 0;
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        let path = get["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{probe}: an HTTP GET"));
        assert_eq!(get["port"], container["ports"][0]["name"], "{probe}");
        for doc in [&openapi, &committed] {
            assert!(
                doc["paths"][path]["get"].is_object(),
                "{probe}: GET {path} is a documented route"
            );
        }
        let (status, _, body) = get_raw(&server.addr, path, "");
        assert_eq!(status, 200, "{probe} GET {path}: {body}");
        probed += 1;
    }
    assert_eq!(probed, 3);
    // Readiness checked the shared services the ConfigMap turns on.
    let (_, _, ready) = get_raw(&server.addr, "/ready", "");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    for component in ["storage", "redis", "nats"] {
        assert_eq!(
            ready["components"][component]["status"], "up",
            "{component}: {ready}"
        );
    }
    drop(server);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        if let Ok(client) = async_nats::connect(&nats).await {
            let _ = async_nats::jetstream::new(client)
                .delete_stream(&stream)
                .await;
        }
    });
}
