//! The operator's own image, which member pods copy the agent binary from.
//!
//! In its Deployment the operator reads it from its own pod (the downward API cannot give an image),
//! so the release file names the image once: changing the Deployment's image changes the agents'.
//! `--image` / `PGREPLICA_OPERATOR_IMAGE` overrides it (the operator run as a process).

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use super::error::KubeError;

/// The operator's container in its Deployment (manifests/deployment.yaml).
pub const OPERATOR_CONTAINER: &str = "operator";
/// The pod name the Deployment passes through the downward API.
pub const POD_NAME_ENV: &str = "POD_NAME";

/// The image of `container` in `pod`, or of its only container.
pub fn image_in(pod: &Pod, container: &str) -> Option<String> {
    let containers = &pod.spec.as_ref()?.containers;
    let found =
        containers
            .iter()
            .find(|c| c.name == container)
            .or(match containers.as_slice() {
                [only] => Some(only),
                _ => None,
            })?;
    found.image.clone().filter(|i| !i.is_empty())
}

/// `given` when set; otherwise the image of the pod this operator runs in.
pub async fn resolve(
    given: Option<String>,
    client: &kube::Client,
    namespace: &str,
) -> Result<String, KubeError> {
    if let Some(image) = given.filter(|i| !i.is_empty()) {
        return Ok(image);
    }
    let name = std::env::var(POD_NAME_ENV).map_err(|_| {
        KubeError::Other(format!(
            "the operator's image is unknown: it is read from the operator's own pod, named by \
             {POD_NAME_ENV} (set by manifests/deployment.yaml); outside a pod pass --image IMAGE"
        ))
    })?;
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(&name)
        .await
        .map_err(|source| KubeError::Api {
            action: "reading the operator's own",
            kind: "Pod",
            name: format!("{namespace}/{name}"),
            source,
        })?;
    image_in(&pod, OPERATOR_CONTAINER).ok_or_else(|| {
        KubeError::Other(format!(
            "pod {namespace}/{name} has no container named {OPERATOR_CONTAINER:?} with an image: \
             pass --image IMAGE"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}),
        )
        .expect("pod")
    }

    #[test]
    fn the_image_comes_from_the_operator_container() {
        let cases = [
            (
                json!([{"name": "operator", "image": "localhost/pgreplica:0.1.0"}]),
                Some("localhost/pgreplica:0.1.0"),
            ),
            (
                json!([{"name": "sidecar", "image": "x:1"}, {"name": "operator", "image": "r/pgreplica:2"}]),
                Some("r/pgreplica:2"),
            ),
            (
                json!([{"name": "renamed", "image": "r/pgreplica:3"}]),
                Some("r/pgreplica:3"),
            ),
            (
                json!([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]),
                None,
            ),
            (json!([{"name": "operator", "image": ""}]), None),
            (json!([{"name": "operator"}]), None),
        ];
        for (containers, want) in cases {
            assert_eq!(
                image_in(&pod(containers.clone()), OPERATOR_CONTAINER).as_deref(),
                want,
                "{containers}"
            );
        }
        assert_eq!(image_in(&Pod::default(), OPERATOR_CONTAINER), None);
    }
}
