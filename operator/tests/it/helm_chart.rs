//! The Helm chart (`charts/lagless`) lints, renders and passes the Kubernetes schemas: runs
//! `charts/lagless/tests/check_chart.py`, which drives Helm's own engine (PyPI
//! `helm-python-sdk`) and `kubernetes-validate`, strict, against Kubernetes 1.37. No cluster
//! and no `helm` binary are needed; `scripts/setup.sh` installs both packages.

use std::path::PathBuf;
use std::process::Command;

use lagless_operator::kube::DEFAULT_PROXY_IMAGE;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The value of a top-level `key: value` line of a YAML file (enough for Chart.yaml).
fn top_level(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

#[test]
fn the_chart_lints_renders_and_passes_the_kubernetes_schemas() {
    let checker = repo("charts/lagless/tests/check_chart.py");
    let out = Command::new("python3")
        .arg(&checker)
        .current_dir(repo(""))
        .output()
        .expect("python3 is needed for the chart checks: run scripts/setup.sh");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the Helm chart checks failed ({}):\n{said}",
        out.status
    );
    // Passing means checks ran, not that the script found nothing to do.
    assert!(
        said.contains(" passed, 0 failed"),
        "the chart checker said:\n{said}"
    );
}

#[test]
fn the_chart_ships_this_release() {
    let chart = std::fs::read_to_string(repo("charts/lagless/Chart.yaml")).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(top_level(&chart, "appVersion").as_deref(), Some(version));
    // The proxy image the chart gives the operator by default is the one the operator would
    // use without it: `<proxy.image.repository>:<appVersion>`.
    let values = std::fs::read_to_string(repo("charts/lagless/values.yaml")).unwrap();
    let (repository, _) = DEFAULT_PROXY_IMAGE.rsplit_once(':').unwrap();
    assert!(
        values.contains(&format!("repository: {repository}\n")),
        "values.yaml does not default proxy.image.repository to {repository}"
    );
    assert_eq!(DEFAULT_PROXY_IMAGE, format!("{repository}:{version}"));
}

#[test]
fn the_chart_carries_the_generated_crds() {
    // Helm installs what is in the chart's crds/; it must be the CRDs generated from the types.
    for file in ["mysqlcluster.yaml", "mysqltenantpool.yaml"] {
        let chart = std::fs::read(repo(&format!("charts/lagless/crds/{file}"))).unwrap();
        let generated = std::fs::read(repo(&format!("crds/{file}"))).unwrap();
        assert!(
            chart == generated,
            "charts/lagless/crds/{file} differs from crds/{file}: cp crds/{file} \
             charts/lagless/crds/"
        );
    }
}
