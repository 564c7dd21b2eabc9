//! The circuit breaker in front of whichever HTTP client object_store sends through (ours over
//! plain HTTP, or reqwest with `s3-tls`): after a request could not reach the server, requests
//! fail at once for a short pause (see [`Breaker`]), with an error kind object_store does not
//! retry, so that an outage does not cost every lookup a connection attempt and retries.

use std::sync::Arc;

use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
};
use object_store::ClientOptions;

use crate::breaker::{Breaker, PAUSE};

/// Wraps the clients `connector` makes in the breaker.
#[derive(Debug)]
pub(super) struct Guarded<C> {
    pub(super) connector: C,
    pub(super) breaker: Arc<Breaker>,
}

impl<C: HttpConnector> HttpConnector for Guarded<C> {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(GuardedClient {
            inner: self.connector.connect(options)?,
            breaker: self.breaker.clone(),
        }))
    }
}

#[derive(Debug)]
struct GuardedClient {
    inner: HttpClient,
    breaker: Arc<Breaker>,
}

#[async_trait::async_trait]
impl HttpService for GuardedClient {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        if !self.breaker.admit() {
            let why = format!(
                "the S3 server is unreachable (a request failed to reach it less than {PAUSE:?} \
                 ago); not trying again yet"
            );
            // Unknown: object_store does not retry it.
            return Err(HttpError::new_boxed(HttpErrorKind::Unknown, why.into()));
        }
        let answer = self.inner.execute(request).await;
        // Any answer, even an error status, shows the server is there; no answer opens the
        // breaker.
        self.breaker.record(answer.is_ok());
        answer
    }
}
