//! What the outbox sweep redoes for an event it relays: the read-cache
//! invalidation its writer does right after the write, which a writer killed
//! in between never did. Without it, another instance would serve the chat as
//! it was before the change until the cache entry expired.

use broker::events::DecodedEnvelope;
use broker::outbox::Recovery;
use futures_util::future::BoxFuture;
use shared::cache::Cache;

use crate::domain::service::stale_generations;

pub struct CacheRecovery {
    pub cache: Cache,
}

impl Recovery for CacheRecovery {
    fn recover<'a>(&'a self, event: &'a DecodedEnvelope) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let generations = stale_generations(&event.data);
            if !generations.is_empty() {
                self.cache.bump(&generations).await;
            }
        })
    }
}
