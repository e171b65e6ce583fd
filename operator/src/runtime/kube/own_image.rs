//! The operator's own image, which member pods copy the agent binary from.
//!
//! In its Deployment the operator reads it from its own pod (the downward API cannot give an image),
//! so the release file names the image once: changing the Deployment's image changes the agents'.
//! `--image` / `PGREPLICA_OPERATOR_IMAGE` overrides it (the operator run as a process).

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tracing::warn;

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

/// Which image member pods copy the agent from.
#[derive(Debug, PartialEq, Eq)]
pub enum Chosen {
    /// `--image` / `PGREPLICA_OPERATOR_IMAGE`; `differs` names the pod's own image when it is
    /// another one (a setting left over from an older install keeps the agents on an old image).
    Given {
        image: String,
        differs: Option<String>,
    },
    /// The image of the operator's own container.
    Own(String),
    /// Neither.
    Unknown,
}

/// The given image wins; the pod's own image is the default.
pub fn choose(given: Option<String>, own: Option<String>) -> Chosen {
    match (given.filter(|i| !i.is_empty()), own) {
        (Some(image), own) => Chosen::Given {
            differs: own.filter(|o| *o != image),
            image,
        },
        (None, Some(own)) => Chosen::Own(own),
        (None, None) => Chosen::Unknown,
    }
}

/// The image member pods copy the agent from: `given`, or the image of the pod this operator
/// runs in (read whenever `POD_NAME` is set, to warn when `given` differs from it).
pub async fn resolve(
    given: Option<String>,
    client: &kube::Client,
    namespace: &str,
) -> Result<String, KubeError> {
    let pod_name = std::env::var(POD_NAME_ENV).ok();
    let own = match &pod_name {
        Some(name) => match own_pod_image(client, namespace, name).await {
            Ok(own) => own,
            Err(e) if given.is_some() => {
                warn!(error = %e, "cannot read the operator's own pod; using the given image");
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    match choose(given, own) {
        Chosen::Given { image, differs } => {
            if let Some(own) = differs {
                warn!(
                    given = %image,
                    own = %own,
                    "PGREPLICA_OPERATOR_IMAGE (or --image) differs from the image this operator runs: \
                     member pods copy the agent from the given one; remove the setting to follow the \
                     Deployment's image (kubectl -n {namespace} set env deploy/pgreplica-operator \
                     PGREPLICA_OPERATOR_IMAGE-)"
                );
            }
            Ok(image)
        }
        Chosen::Own(image) => Ok(image),
        Chosen::Unknown => Err(KubeError::Other(match pod_name {
            None => format!(
                "the operator's image is unknown: it is read from the operator's own pod, named by \
                 {POD_NAME_ENV} (set by the release file's Deployment); outside a pod pass --image IMAGE"
            ),
            Some(name) => format!(
                "pod {namespace}/{name} has no container named {OPERATOR_CONTAINER:?} with an image: \
                 name the operator's container {OPERATOR_CONTAINER:?} or set PGREPLICA_OPERATOR_IMAGE"
            ),
        })),
    }
}

async fn own_pod_image(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, KubeError> {
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|source| KubeError::Api {
            action: "reading the operator's own",
            kind: "Pod",
            name: format!("{namespace}/{name}"),
            source,
        })?;
    Ok(image_in(&pod, OPERATOR_CONTAINER))
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

    #[test]
    fn a_given_image_wins_and_a_different_own_image_is_named() {
        let s = |v: &str| Some(v.to_string());
        let given = |image: &str, differs: Option<&str>| Chosen::Given {
            image: image.into(),
            differs: differs.map(str::to_string),
        };
        let cases = [
            (s("r/p:2"), s("r/p:2"), given("r/p:2", None)),
            (s("r/p:2"), s("r/p:1"), given("r/p:2", Some("r/p:1"))),
            (s("r/p:2"), None, given("r/p:2", None)),
            (None, s("r/p:1"), Chosen::Own("r/p:1".into())),
            (s(""), s("r/p:1"), Chosen::Own("r/p:1".into())),
            (None, None, Chosen::Unknown),
        ];
        for (g, own, want) in cases {
            assert_eq!(choose(g.clone(), own.clone()), want, "{g:?} {own:?}");
        }
    }
}
