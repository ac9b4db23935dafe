//! The only code that talks to the Kubernetes API: reads proxies and operations, creates
//! operations, patches `spec.paused`, follows an operation.
//!
//! Every write uses the field manager [`FIELD_MANAGER`]. Errors say which CRD to install or
//! which proxy is missing, instead of a bare 404.

use std::time::Duration;

use futures::StreamExt;
use kcp_crds::{
    KafkaConsumerProxy,
    v1alpha1::{KafkaConsumerProxyOperation, OperationStatus, Phase},
};
use kube::{
    Api, Client, Config,
    api::{ListParams, Patch, PatchParams, PostParams},
    config::KubeConfigOptions,
    runtime::{WatchStreamExt, watcher},
};
use serde_json::Value;

use crate::{error::Error, objects::FIELD_MANAGER, render::Operations};

/// A client bound to one namespace.
pub struct Kube {
    client: Client,
    pub namespace: String,
}

/// The kubeconfig for `context` (the current one when `None`), and its namespace.
pub async fn kubeconfig(context: Option<&str>) -> Result<Config, Error> {
    let loaded = match context {
        None => Config::infer().await.map_err(|e| Box::new(e) as _),
        Some(c) => Config::from_kubeconfig(&KubeConfigOptions {
            context: Some(c.to_owned()),
            ..KubeConfigOptions::default()
        })
        .await
        .map_err(|e| Box::new(e) as _),
    };
    loaded.map_err(|source| Error::LoadKubeconfig {
        context: context.map(str::to_owned),
        source,
    })
}

impl Kube {
    /// A client already made (a test's mocked API server).
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
        }
    }

    /// Connects with `config`, in `namespace` or the config's default namespace.
    pub fn connect(config: Config, namespace: Option<String>) -> Result<Self, Error> {
        let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)
            .map_err(|e| Error::kube("creating the Kubernetes client", e))?;
        Ok(Self { client, namespace })
    }

    fn proxies(&self) -> Api<KafkaConsumerProxy> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn operations(&self) -> Api<KafkaConsumerProxyOperation> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The proxy `name`; a missing CRD and a missing proxy are told apart.
    pub async fn proxy(&self, name: &str) -> Result<KafkaConsumerProxy, Error> {
        let api = self.proxies();
        match api.get_opt(name).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => match api.list(&ListParams::default().limit(1)).await {
                Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::proxy_crd_missing()),
                _ => Err(Error::ProxyNotFound {
                    name: name.to_owned(),
                    namespace: self.namespace.clone(),
                }),
            },
            Err(e) => Err(Error::kube(
                format!(
                    "reading KafkaConsumerProxy {name:?} in namespace {:?}",
                    self.namespace
                ),
                e,
            )),
        }
    }

    /// Every operation of the namespace (the caller keeps the proxy's).
    pub async fn list_operations(&self) -> Operations {
        match self.operations().list(&ListParams::default()).await {
            Ok(list) => Operations::Listed(list.items),
            Err(kube::Error::Api(s)) if s.code == 404 => Operations::NotInstalled,
            Err(e) => Operations::Unreadable(e.to_string()),
        }
    }

    /// Applies a JSON merge patch to the proxy's spec; returns the proxy as patched.
    pub async fn merge_patch_proxy(
        &self,
        name: &str,
        patch: &Value,
    ) -> Result<KafkaConsumerProxy, Error> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        self.proxies()
            .patch(name, &params, &Patch::Merge(patch))
            .await
            .map_err(|e| Error::kube(format!("patching KafkaConsumerProxy {name:?}"), e))
    }

    /// Creates `op`; an existing name and a missing CRD get their own errors.
    pub async fn create_operation(&self, op: &KafkaConsumerProxyOperation) -> Result<(), Error> {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let name = op.metadata.name.clone().unwrap_or_default();
        match self.operations().create(&params, op).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::OperationExists {
                name,
                namespace: self.namespace.clone(),
            }),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::operation_crd_missing()),
            Err(e) => Err(Error::kube(format!("creating operation {name:?}"), e)),
        }
    }

    /// Follows operation `name` until it finished, calling `seen` with each new status; the
    /// last status it saw. Gives up after 5 failed watches in a row.
    pub async fn follow_operation(
        &self,
        name: &str,
        mut seen: impl FnMut(&OperationStatus),
    ) -> Result<OperationStatus, Error> {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut events = watcher(self.operations(), config).default_backoff().boxed();
        let mut failures = 0;
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    failures = 0;
                    let status = o.status.unwrap_or_default();
                    seen(&status);
                    if status.phase.is_some_and(Phase::finished) {
                        return Ok(status);
                    }
                }
                Ok(watcher::Event::Delete(_)) => {
                    return Err(Error::OperationDeleted {
                        name: name.to_owned(),
                    });
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    if failures >= 5 {
                        return Err(Error::FollowOperation {
                            name: name.to_owned(),
                            namespace: self.namespace.clone(),
                            reason: e.to_string(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Err(Error::OperationDeleted {
            name: name.to_owned(),
        })
    }
}
