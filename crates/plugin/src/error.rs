//! The plugin's errors, worded so that a person knows what to do next: which object was not found
//! in which namespace, which verb on which resource was forbidden, which server did not answer.

use std::fmt;

use kube::core::Status;

/// What went wrong in a plugin command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named object does not exist where we looked.
    #[error(
        "{kind} \"{name}\" not found in namespace \"{namespace}\" (pass -n NAMESPACE to look elsewhere)"
    )]
    NotFound {
        /// Kind of the object, e.g. `Rollout`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The namespace searched.
        namespace: String,
    },
    /// The API server does not serve the resource at all.
    #[error(
        "the cluster does not serve {resource}.argoproj.io: install Sluice's CRDs first (kubectl apply -f crds/)"
    )]
    NoResource {
        /// Plural resource name, e.g. `rollouts`.
        resource: &'static str,
    },
    /// RBAC refused the request.
    #[error("forbidden: you may not {verb} {resource} {scope} ({message})")]
    Forbidden {
        /// The API verb (get, list, watch, patch).
        verb: &'static str,
        /// The resource, e.g. `rollouts/status`.
        resource: &'static str,
        /// Where: `in namespace "x"` or `across all namespaces`.
        scope: String,
        /// The API server's own words.
        message: String,
    },
    /// Nothing answered at the configured server.
    #[error(
        "no cluster reachable at {server}: {source} (check --context, --kubeconfig or KUBECONFIG)"
    )]
    Unreachable {
        /// The server URL of the current context.
        server: String,
        /// The connection error.
        #[source]
        source: kube::Error,
    },
    /// The rollout a `--watch` followed was deleted: nothing more will happen to it.
    #[error("the rollout \"{name}\" was deleted")]
    Deleted {
        /// The rollout's name.
        name: String,
    },
    /// A request that cannot be carried out as asked (unknown container, missing revision, …).
    #[error("{0}")]
    Refused(String),
    /// Any other answer of the API server.
    #[error("{what}: {message}")]
    Api {
        /// What the plugin was doing.
        what: String,
        /// The server's message.
        message: String,
    },
    /// The kubeconfig could not be loaded.
    #[error("{0:#}")]
    Config(anyhow::Error),
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Output could not be encoded or written.
    #[error("writing the output: {0}")]
    Output(String),
}

/// One request to the API server, described for error messages.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The verb: get, list, watch or patch.
    pub verb: &'static str,
    /// The resource as RBAC names it, e.g. `rollouts/status`.
    pub resource: &'static str,
    /// The kind, for "not found".
    pub kind: &'static str,
    /// The object's name, when the request names one.
    pub name: Option<&'a str>,
    /// The namespace; empty for a request across all namespaces.
    pub namespace: &'a str,
    /// The server URL, for "no cluster reachable".
    pub server: &'a str,
}

impl Request<'_> {
    /// `in namespace "x"`, or `across all namespaces`.
    fn scope(&self) -> String {
        if self.namespace.is_empty() {
            "across all namespaces".into()
        } else {
            format!("in namespace \"{}\"", self.namespace)
        }
    }

    /// Turns a client error into one a person can act on.
    pub fn error(&self, error: kube::Error) -> Error {
        match error {
            kube::Error::Api(status) => self.api_error(&status),
            e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => Error::Unreachable {
                server: self.server.to_string(),
                source: e,
            },
            other => Error::Api {
                what: self.to_string(),
                message: other.to_string(),
            },
        }
    }

    fn api_error(&self, status: &Status) -> Error {
        match status.code {
            404 if status
                .message
                .contains("could not find the requested resource") =>
            {
                Error::NoResource {
                    resource: self.resource.split('/').next().unwrap_or(self.resource),
                }
            }
            404 => Error::NotFound {
                kind: self.kind,
                name: self.name.unwrap_or_default().to_string(),
                namespace: self.namespace.to_string(),
            },
            403 => Error::Forbidden {
                verb: self.verb,
                resource: self.resource,
                scope: self.scope(),
                message: status.message.clone(),
            },
            _ => Error::Api {
                what: self.to_string(),
                message: if status.message.is_empty() {
                    format!("{} {}", status.code, status.reason)
                } else {
                    status.message.clone()
                },
            },
        }
    }
}

impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if let Some(name) = self.name {
            write!(f, " \"{name}\"")?;
        }
        write!(f, " {}", self.scope())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request<'static> {
        Request {
            verb: "patch",
            resource: "rollouts/status",
            kind: "Rollout",
            name: Some("app"),
            namespace: "shop",
            server: "https://127.0.0.1:6443",
        }
    }

    fn status(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            message: message.into(),
            ..Status::default()
        }))
    }

    #[test]
    fn not_found_names_the_namespace_searched() {
        let e = request().error(status(404, "rollouts.argoproj.io \"app\" not found"));
        assert_eq!(
            e.to_string(),
            "Rollout \"app\" not found in namespace \"shop\" (pass -n NAMESPACE to look elsewhere)"
        );
    }

    #[test]
    fn forbidden_names_the_verb_and_resource() {
        let e = request().error(status(403, "User \"dev\" cannot patch"));
        assert!(
            e.to_string()
                .starts_with("forbidden: you may not patch rollouts/status in namespace \"shop\""),
            "{e}"
        );
    }

    #[test]
    fn a_missing_crd_is_not_a_missing_rollout() {
        let e = request().error(status(
            404,
            "the server could not find the requested resource",
        ));
        assert!(
            matches!(
                e,
                Error::NoResource {
                    resource: "rollouts"
                }
            ),
            "{e}"
        );
    }
}
