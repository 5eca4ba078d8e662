//! The registry side of a build, over `oxkit-registry`'s client: pulling missing images (one
//! platform, or those a `format: oci` volume lists) and fetching the signatures the trust policy checks. The HTTP is the registry
//! crate's; this module only decides what to ask for.

use oxkit_registry::Client;
use oxkit_registry::transfer::{Platforms, pull};
use oxkit_spec::{Platform, Reference};
use oxkit_store::Store;

use crate::images::{BoxError, ImageFetcher};

/// Registry access for a build.
pub struct RegistryRemote {
    client: Client,
}

impl RegistryRemote {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl ImageFetcher for RegistryRemote {
    fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<(), BoxError> {
        pull(
            &self.client,
            store,
            reference,
            &Platforms::Only(vec![platform.clone()]),
        )?;
        Ok(())
    }

    fn pull_platforms(
        &self,
        store: &Store,
        reference: &Reference,
        platforms: &[Platform],
    ) -> Result<(), BoxError> {
        let which = if platforms.is_empty() {
            Platforms::All
        } else {
            Platforms::Only(platforms.to_vec())
        };
        pull(&self.client, store, reference, &which)?;
        Ok(())
    }
}
