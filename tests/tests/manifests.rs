//! The install folder (`manifests/`), the images and the GitOps health check, as a user meets them.
//!
//! Some checks run an external tool: `kubectl` (kustomize), `kubernetes-validate` (offline
//! validation against the Kubernetes OpenAPI schemas, from PyPI) and `lua5.4` (the Argo CD
//! health check). CI installs them and sets `CI=true`, which makes a missing tool a failure;
//! on a developer machine without them the check says it was skipped.

mod support;

use std::{collections::BTreeSet, path::Path, process::Command};

use serde_json::Value;
use support::{rendered_at, repo, run, strings, tool};

/// The objects `kubectl apply -k manifests/` would create, rendered by kubectl's kustomize.
fn rendered() -> Option<Vec<Value>> {
    rendered_at("manifests")
}

/// Whether `apiVersion` is served by Kubernetes itself (the core group, a group without a dot,
/// or one under `k8s.io`). Custom resources are checked against their CRDs elsewhere:
/// `KafkaConsumerProxy` by crds/tests/schema.rs, the KEDA `ScaledObject` by
/// tests/tests/autoscaling.rs, the monitoring kit by tests/tests/monitoring_kit.rs.
fn built_in(api_version: &str) -> bool {
    match api_version.split_once('/') {
        None => true,
        Some((group, _)) => !group.contains('.') || group.ends_with(".k8s.io"),
    }
}

/// Every (group, resource, verb) the operator's code uses, from `operator/src/api_calls.rs`.
fn needed() -> BTreeSet<(String, String, String)> {
    kcp_operator::api_calls::API_CALLS
        .iter()
        .flat_map(|c| {
            c.verbs
                .iter()
                .map(|v| (c.group.to_owned(), c.resource.to_owned(), (*v).to_owned()))
        })
        .collect()
}

fn kinds(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn one_kustomization_installs_crd_and_operator() {
    let Some(objs) = rendered() else { return };
    let got: BTreeSet<String> = kinds(&objs).into_iter().collect();
    for want in [
        "CustomResourceDefinition/kafkaconsumerproxies.kafkaproxy.io",
        "Namespace/kcp-system",
        "ServiceAccount/kcp-operator",
        "ClusterRole/kcp-operator",
        "ClusterRoleBinding/kcp-operator",
        "Role/kcp-operator-leader-election",
        "RoleBinding/kcp-operator-leader-election",
        "Deployment/kcp-operator",
        "Service/kcp-operator-metrics",
    ] {
        assert!(got.contains(want), "missing {want}; rendered: {got:?}");
    }
}

#[test]
fn every_installed_object_and_example_validates_against_kubernetes_schemas() {
    let Some(objs) = rendered() else { return };
    let Some(validate) = tool("kubernetes-validate", "pip install kubernetes-validate") else {
        return;
    };
    let Some(single_namespace) = rendered_at("manifests/overlays/single-namespace") else {
        return;
    };
    let Some(monitoring) = rendered_at("manifests/overlays/monitoring") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("kcp-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Built-in kinds only; custom resources are checked against their CRDs elsewhere (see
    // `built_in`): the examples' Secret, the monitoring kit's dashboard ConfigMap.
    let write = |file: &str, objs: &[Value]| {
        let path = dir.join(file);
        let text: String = objs
            .iter()
            .filter(|o| built_in(o["apiVersion"].as_str().unwrap_or_default()))
            .map(|o| format!("---\n{}", serde_yaml::to_string(o).expect("serializes")))
            .collect();
        std::fs::write(&path, text).expect("write");
        path
    };
    let rendered_file = write("rendered.yaml", &objs);
    let overlay_file = write("single-namespace.yaml", &single_namespace);
    let monitoring_file = write("monitoring.yaml", &monitoring);
    let examples: Vec<Value> = support::examples()
        .into_iter()
        .map(|(_, doc)| doc)
        .collect();
    let examples = write("examples.yaml", &examples);
    for file in [&rendered_file, &overlay_file, &monitoring_file, &examples] {
        run(Command::new(validate)
            .args(["--strict", "--kubernetes-version", "1.33.0", "--quiet"])
            .arg(file));
    }
    // The validator is not a rubber stamp: a wrong type in the operator Deployment is refused.
    let broken = std::fs::read_to_string(&rendered_file)
        .expect("read")
        .replace(
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: thirty",
        );
    let broken_file = dir.join("broken.yaml");
    std::fs::write(&broken_file, broken).expect("write");
    let status = Command::new(validate)
        .args(["--strict", "--kubernetes-version", "1.33.0", "--quiet"])
        .arg(&broken_file)
        .output()
        .expect("runs");
    assert!(
        !status.status.success(),
        "the validator accepted a broken Deployment"
    );
}

/// (apiGroup, resource, verb) triples granted by the rendered ClusterRole and Roles.
fn granted(objs: &[Value]) -> BTreeSet<(String, String, String)> {
    let mut set = BTreeSet::new();
    for role in objs
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
    {
        for rule in role["rules"].as_array().expect("rules") {
            let strings = |k: &str| strings(&rule[k]);
            for g in strings("apiGroups") {
                for r in strings("resources") {
                    for v in strings("verbs") {
                        assert!(
                            g != "*" && r != "*" && v != "*",
                            "wildcard in {}: {rule}",
                            role["metadata"]["name"]
                        );
                        set.insert((g.clone(), r.clone(), v));
                    }
                }
            }
        }
    }
    set
}

#[test]
fn rbac_grants_exactly_the_api_calls_the_operator_makes() {
    let Some(objs) = rendered() else { return };
    let needed = needed();
    let granted = granted(&objs);
    let missing: Vec<_> = needed.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&needed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "manifests/operator/rbac.yaml disagrees with operator/src/api_calls.rs\nmissing: {missing:?}\nextra: {extra:?}"
    );
    // Leader election rights stay in the operator's namespace.
    for role in objs.iter().filter(|o| o["kind"] == "ClusterRole") {
        assert!(
            !role.to_string().contains("leases"),
            "leases must be granted by a namespaced Role, not a ClusterRole"
        );
    }
}

#[test]
fn single_namespace_overlay_grants_the_same_calls_in_one_namespace_only() {
    let Some(objs) = rendered_at("manifests/overlays/single-namespace") else {
        return;
    };
    assert!(
        !objs
            .iter()
            .any(|o| o["kind"] == "ClusterRole" || o["kind"] == "ClusterRoleBinding"),
        "no cluster-wide grants in single-namespace mode: {:?}",
        kinds(&objs)
    );
    assert_eq!(
        granted(&objs),
        needed(),
        "namespaced Roles grant exactly the operator's calls"
    );
    let watched = objs
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "kcp-operator")
        .and_then(|r| r["metadata"]["namespace"].as_str())
        .expect("a Role for the watched namespace");
    let deployment = objs
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("operator Deployment");
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    let ns = env
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == "KCP_NAMESPACE"))
        .and_then(|v| v["value"].as_str());
    assert_eq!(
        ns,
        Some(watched),
        "the operator watches the namespace its Role covers"
    );
}

#[test]
fn operator_deployment_is_hardened_and_highly_available() {
    let Some(objs) = rendered() else { return };
    let d = objs
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("operator Deployment");
    assert_eq!(
        d["spec"]["replicas"], 2,
        "two replicas with leader election"
    );
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    for c in pod["containers"].as_array().expect("containers") {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{}",
            c["name"]
        );
        assert!(c["livenessProbe"].is_object() && c["readinessProbe"].is_object());
        assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"].is_object());
        assert!(
            !c["image"].as_str().unwrap_or_default().ends_with(":latest"),
            "pin the image"
        );
    }
    assert_eq!(
        pod["serviceAccountName"], "kcp-operator",
        "the operator runs as the ServiceAccount the RBAC binds"
    );
}

/// `value` as a Lua expression (JSON null is nil; object keys always in brackets).
fn lua_literal(value: &Value) -> String {
    fn string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\{:03}", u32::from(c)));
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
    match value {
        Value::Null => "nil".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// Runs `manifests/argocd/health_test.lua` on `samples`; its output and whether it passed.
fn run_health_check(lua: &str, samples: &[Value], file: &str) -> (String, bool) {
    let dir = std::env::temp_dir().join(format!("kcp-argocd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!("return {}\n", lua_literal(&Value::Array(samples.to_vec()))),
    )
    .expect("write samples");
    let out = Command::new(lua)
        .arg(repo().join("manifests/argocd/health_test.lua"))
        .arg(&path)
        .output()
        .expect("lua starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text, out.status.success())
}

/// The Argo CD health check gives the expected health on every status the operator can write:
/// `manifests/argocd/samples.json`, generated from the status code by
/// `operator/tests/argocd_samples.rs` (which fails when the file is out of date).
#[test]
fn argocd_health_check_reads_every_status_the_operator_writes() {
    let text = std::fs::read_to_string(repo().join("manifests/argocd/samples.json"))
        .expect("manifests/argocd/samples.json");
    let file: Value = serde_json::from_str(&text).expect("samples.json is JSON");
    let samples = file["samples"].as_array().expect("a samples list").clone();
    let healths: BTreeSet<&str> = samples
        .iter()
        .filter_map(|s| s["expect"]["status"].as_str())
        .collect();
    assert_eq!(
        healths,
        BTreeSet::from(["Degraded", "Healthy", "Progressing", "Suspended"]),
        "samples.json covers every health the check reports"
    );
    let Some(lua) = tool("lua5.4", "apt-get install lua5.4") else {
        return;
    };
    let (out, passed) = run_health_check(lua, &samples, "samples.lua");
    let summary = format!("{} passed, 0 failed", samples.len());
    assert!(passed && out.contains(&summary), "{out}");

    // The runner is not a rubber stamp: a wrong expected health or message fails it.
    let mut wrong_health = samples.clone();
    wrong_health[0]["expect"]["status"] = "Healthy".into();
    let mut wrong_message = samples.clone();
    wrong_message[0]["expect"]["message"] = "no such text".into();
    for (wrong, file) in [
        (wrong_health, "wrong-health.lua"),
        (wrong_message, "wrong-message.lua"),
    ] {
        let (out, passed) = run_health_check(lua, &wrong, file);
        assert!(
            !passed && out.contains(", 1 failed"),
            "a wrong expectation must fail:\n{out}"
        );
    }
}

/// Instructions joined across `\` continuations, comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        let (body, cont) = match t.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (t, false),
        };
        cur.push_str(body.trim());
        cur.push(' ');
        if !cont {
            out.push(cur.trim().to_owned());
            cur.clear();
        }
    }
    out
}

#[test]
fn dockerfiles_are_well_formed_multi_stage_non_root_and_build_like_ci() {
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ];
    let ci = std::fs::read_to_string(repo().join(".ci/run")).expect(".ci/run");
    assert!(
        ci.contains(".ci/build-deps.sh"),
        ".ci/run installs with .ci/build-deps.sh"
    );
    for (file, package) in [
        ("images/sidecar.Dockerfile", "kcp-sidecar"),
        ("images/operator.Dockerfile", "kcp-operator"),
    ] {
        let text = std::fs::read_to_string(repo().join(file)).expect("Dockerfile");
        let ins = dockerfile_instructions(&text);
        for i in &ins {
            let word = i.split_whitespace().next().unwrap_or_default();
            assert!(
                KNOWN.contains(&word),
                "{file}: unknown instruction {word:?} in {i:?}"
            );
        }
        let froms: Vec<&String> = ins.iter().filter(|i| i.starts_with("FROM ")).collect();
        assert!(froms.len() >= 2, "{file}: multi-stage build");
        assert!(
            froms
                .last()
                .is_some_and(|f| f.contains("distroless") && f.contains("nonroot")),
            "{file}: small non-root runtime image"
        );
        let runtime = &ins[ins
            .iter()
            .rposition(|i| i.starts_with("FROM "))
            .expect("FROM")..];
        assert!(
            runtime
                .iter()
                .any(|i| i.starts_with("USER ") && !i.contains(" 0") && !i.contains("root")),
            "{file}: runtime stage runs as a non-root USER"
        );
        assert!(
            !runtime.iter().any(|i| i.starts_with("RUN ")),
            "{file}: the runtime stage needs no shell"
        );
        assert!(
            ins.iter().any(|i| i.starts_with("RUN .ci/build-deps.sh")),
            "{file}: installs build dependencies exactly as CI does"
        );
        let build = format!("cargo build --release --locked -p {package} --bin {package}");
        assert!(
            ins.iter().any(|i| i.contains(&build)),
            "{file}: runs `{build}`"
        );
        let entry = format!("ENTRYPOINT [\"/usr/local/bin/{package}\"]");
        assert!(ins.contains(&entry), "{file}: {entry}");
        // The binary it builds exists in the workspace.
        let main = repo()
            .join(package.trim_start_matches("kcp-"))
            .join("src/main.rs");
        assert!(
            Path::new(&main).exists(),
            "{file}: {} has no main.rs",
            package
        );
    }
}
