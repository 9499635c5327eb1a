//! A pod log file's Kubernetes identity from its path, as the kubelet lays files out:
//! `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart count>.log`, and once rotated
//! `<n>.log.<timestamp>` (later `.gz`). Namespace and pod names cannot hold `_` (DNS names),
//! so the directory splits into its three parts unambiguously.

use std::path::Path;

/// Who wrote a pod log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFile {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub container: String,
    pub restart_count: u32,
    /// The file was rotated (renamed with a timestamp, perhaps compressed).
    pub rotated: bool,
    pub compressed: bool,
}

/// The identity of `path` under `pods_dir`, or `None` for a path that is not a pod log file.
pub fn parse(pods_dir: &Path, path: &Path) -> Option<PodFile> {
    let rel = path.strip_prefix(pods_dir).ok()?;
    let mut parts = rel.iter().map(|p| p.to_str());
    let (dir, container, file) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() {
        return None;
    }
    let mut ids = dir.splitn(3, '_');
    let (namespace, pod, uid) = (ids.next()?, ids.next()?, ids.next()?);
    let (stem, rest) = file.split_once(".log")?;
    let restart_count = stem.parse().ok()?;
    let compressed = rest.ends_with(".gz");
    let rotated = !rest.is_empty();
    if rotated && !rest.starts_with('.') {
        return None;
    }
    let nonempty = |s: &str| !s.is_empty();
    (nonempty(namespace) && nonempty(pod) && nonempty(uid) && nonempty(container)).then(|| {
        PodFile {
            namespace: namespace.into(),
            pod: pod.into(),
            uid: uid.into(),
            container: container.into(),
            restart_count,
            rotated,
            compressed,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_paths_give_the_pod_and_container() {
        let base = Path::new("/var/log/pods");
        let f = parse(
            base,
            Path::new(
                "/var/log/pods/shop_cart-7d9f_0c1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8/cart/2.log",
            ),
        )
        .unwrap();
        assert_eq!(
            (
                f.namespace.as_str(),
                f.pod.as_str(),
                f.container.as_str(),
                f.restart_count
            ),
            ("shop", "cart-7d9f", "cart", 2)
        );
        assert_eq!(f.uid, "0c1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8");
        assert!(!f.rotated);
        let r = parse(
            base,
            Path::new("/var/log/pods/a_b_c/app/0.log.20240501-100000.gz"),
        )
        .unwrap();
        assert!(r.rotated && r.compressed);
        for bad in [
            "/var/log/pods/a_b_c/app/x.log",
            "/var/log/pods/ab_c/app/0.log",
            "/var/log/pods/a_b_c/app/0.txt",
            "/var/log/pods/a_b_c/app/deeper/0.log",
            "/var/log/other/a_b_c/app/0.log",
            "/var/log/pods/a_b_c/app/0.logs",
        ] {
            assert!(parse(base, Path::new(bad)).is_none(), "{bad}");
        }
    }
}
