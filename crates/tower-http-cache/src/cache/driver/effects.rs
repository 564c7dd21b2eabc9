//! Carrying out what an exchange asks of the store: invalidations (RFC 9111 §4.4), the write
//! of a response as its body streams to the client, freshenings (§4.3.4) and removals.

use std::sync::Arc;

use bytes::Buf;
use cache_policy::{Freshen, Reply, StoreResponse};
use cache_store::{EntryWriter, StoreError, VariantId, WriteOptions};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{Driver, Exchange, Later, Trip};
use crate::cache::body::{CacheBody, Finish};
use crate::log;

impl<S, ReqB, ResB> Driver<S, ReqB, ResB>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Data: Buf + Send,
    ResB::Error: Send,
{
    /// The answers that wait on the store: the invalidations first (RFC 9111 §4.4), then the
    /// write, freshenings or removals the answer needs.
    pub(super) async fn complete(&self, later: Box<Later<ResB>>) -> Response<CacheBody<ResB>> {
        let Later {
            mut trip,
            reply,
            effects,
            response,
        } = *later;
        let key = trip.exchange.key().clone();
        let mut invalidate: Vec<Arc<str>> = effects
            .invalidate
            .iter()
            .map(|uri| self.shared.key_for(uri))
            .collect();
        if effects.invalidate_own_key {
            invalidate.push(key.clone());
        }
        let own_key = invalidate.contains(&key);
        self.invalidate(invalidate).await;
        if own_key {
            // This request's own invalidation comes before what it stores (a POST cached by
            // its body's key): only a later one overtakes its write.
            trip.generation = self.shared.invalidations.generation(&key);
        }
        if let Some(store) = effects.store {
            let begun = self
                .shared
                .store
                .begin(&key, store.entry.clone(), write_options(&store))
                .await;
            return self.tee(begun, store, reply, response, trip);
        }
        self.freshen(&trip, effects.freshen).await;
        let removed = variants_of(&trip.exchange, effects.remove.iter().copied());
        self.remove_variants(&key, removed).await;
        self.respond(&trip.exchange, reply, Some(response))
    }

    /// Tees the origin's response into the writer the store began; when it could not begin,
    /// passes the response on unstored.
    pub(super) fn tee(
        &self,
        begun: Result<Box<dyn EntryWriter>, StoreError>,
        store: StoreResponse,
        reply: Reply,
        response: Response<ResB>,
        trip: Trip,
    ) -> Response<CacheBody<ResB>> {
        let mut status = reply.status;
        let writer = match begun {
            Ok(writer) => writer,
            Err(error) => {
                log::store_error("begin", &error);
                return self.finish(response.map(CacheBody::origin), status);
            }
        };
        status.stored = true;
        if let Some(leader) = &trip.leader {
            leader.streaming();
        }
        // A store keeps one entry per variant: the new response overwrites its own.
        let own = VariantId::of(&store.entry);
        let superseded = variants_of(&trip.exchange, store.superseded.iter().copied())
            .into_iter()
            .filter(|variant| *variant != own)
            .collect();
        let finish = Finish {
            store: self.shared.store.clone(),
            key: trip.exchange.key().clone(),
            superseded,
            leader: trip.leader,
            entry: store.entry,
            invalidations: self.shared.invalidations.clone(),
            generation: trip.generation,
        };
        let writer = self.limit(writer);
        self.finish(
            response.map(|body| CacheBody::tee(body, writer, finish)),
            status,
        )
    }

    /// RFC 9111 §4.4: removes what is stored under the invalidated keys, after marking them
    /// invalidated so that no write begun earlier lands afterwards.
    async fn invalidate(&self, keys: Vec<Arc<str>>) {
        for key in keys {
            self.shared.invalidations.invalidate(&key);
            if let Err(error) = self.shared.store.remove(&key, None).await {
                log::store_error("invalidate", &error);
            }
        }
    }

    /// Writes the freshened metadata of stored variants (RFC 9111 §4.3.4), unless an
    /// invalidation of the key began since the request read them: then the freshening would
    /// bring back what the invalidation removed. One that lands in the middle of the writes
    /// has what they wrote removed again.
    async fn freshen(&self, trip: &Trip, freshen: Vec<Freshen>) {
        let invalidations = &self.shared.invalidations;
        let key = &**trip.exchange.key();
        let mut written = Vec::new();
        for Freshen {
            candidate,
            entry,
            ttl,
        } in freshen
        {
            if !invalidations.unchanged_since(trip.generation) {
                break;
            }
            let Some(stored) = trip.exchange.candidate(candidate) else {
                continue;
            };
            let variant = stored.variant.clone();
            match self.shared.store.update(key, &variant, entry, ttl).await {
                Ok(()) => written.push(variant),
                Err(error) => log::store_error("update", &error),
            }
        }
        if !invalidations.unchanged_since(trip.generation) {
            self.remove_variants(key, written).await;
        }
    }

    async fn remove_variants(&self, key: &str, variants: Vec<VariantId>) {
        for variant in variants {
            if let Err(error) = self.shared.store.remove(key, Some(&variant)).await {
                log::store_error("remove", &error);
            }
        }
    }

    fn limit(&self, writer: Box<dyn EntryWriter>) -> Box<dyn EntryWriter> {
        match self.shared.rules.body_size_limit() {
            Some(limit) => Box::new(LimitedWriter {
                inner: writer,
                written: 0,
                limit,
            }),
            None => writer,
        }
    }
}

/// The variant ids of the candidates `ids` name.
fn variants_of(
    exchange: &Exchange,
    ids: impl Iterator<Item = cache_policy::CandidateId>,
) -> Vec<VariantId> {
    ids.filter_map(|id| Some(exchange.candidate(id)?.variant.clone()))
        .collect()
}

pub(super) fn write_options(store: &StoreResponse) -> WriteOptions {
    WriteOptions {
        ttl: store.ttl,
        content_length: store.content_length,
    }
}

/// Enforces the layer's body size limit on top of the store's own.
struct LimitedWriter {
    inner: Box<dyn EntryWriter>,
    written: u64,
    limit: u64,
}

impl EntryWriter for LimitedWriter {
    fn write(&mut self, chunk: bytes::Bytes) -> Result<(), StoreError> {
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(StoreError::TooLarge { limit: self.limit });
        }
        self.inner.write(chunk)
    }

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), StoreError>> {
        self.inner.poll_ready(cx)
    }

    fn commit(self: Box<Self>) -> cache_store::BoxFuture<'static, Result<(), StoreError>> {
        self.inner.commit()
    }
}
