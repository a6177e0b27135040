//! TLS for wss:// and https:// proxies, on the same static OpenSSL that libdatachannel uses
//! for DTLS (one TLS stack in the library: docs/design.md, "One TLS stack").
//!
//! Trust: `ca_cert` alone when given; otherwise the system's store, found the way
//! openssl-probe finds it (SSL_CERT_FILE / SSL_CERT_DIR, then the usual distribution paths),
//! because the vendored OpenSSL's compiled-in directory is the build machine's, not the user's.
use super::transport::{Io, OpenError, TransportOptions};
use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509VerifyResult, X509};
use std::pin::Pin;

/// What to connect with: built once per open from the options.
pub struct Tls {
    connector: SslConnector,
    insecure: bool,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> OpenError {
    OpenError::InvalidUrl(format!("{what}: {e}"))
}

fn certificates(pem: &str, what: &str) -> Result<Vec<X509>, OpenError> {
    let certs = X509::stack_from_pem(pem.as_bytes()).map_err(|e| invalid(&format!("{what} is not valid PEM"), e))?;
    if certs.is_empty() {
        return Err(OpenError::InvalidUrl(format!("{what} holds no certificate")));
    }
    Ok(certs)
}

impl Tls {
    pub fn new(opts: &TransportOptions) -> Result<Tls, OpenError> {
        Self::build(opts, None)
    }

    /// The same, offering the ALPN protocols `alpn` (wire format, e.g. b"\x02h2").
    pub fn with_alpn(opts: &TransportOptions, alpn: &[u8]) -> Result<Tls, OpenError> {
        Self::build(opts, Some(alpn))
    }

    fn build(opts: &TransportOptions, alpn: Option<&[u8]>) -> Result<Tls, OpenError> {
        let setup = |e| OpenError::Failed(format!("TLS setup: {e}"));
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(setup)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2)).map_err(setup)?;
        if let Some(protos) = alpn {
            b.set_alpn_protos(protos).map_err(setup)?;
        }
        if opts.insecure {
            b.set_verify(SslVerifyMode::NONE);
        } else if let Some(pem) = &opts.ca_cert {
            let mut store = X509StoreBuilder::new().map_err(setup)?;
            for cert in certificates(pem, "ca_cert")? {
                store.add_cert(cert).map_err(|e| invalid("ca_cert rejected", e))?;
            }
            b.set_cert_store(store.build());
        } else {
            let found = openssl_probe::probe();
            if let Some(file) = &found.cert_file {
                b.set_ca_file(file).map_err(setup)?;
            }
            for dir in &found.cert_dir {
                b.cert_store_mut()
                    .add_lookup(openssl::x509::store::X509Lookup::hash_dir())
                    .and_then(|l| l.add_dir(&dir.to_string_lossy(), openssl::ssl::SslFiletype::PEM))
                    .map_err(setup)?;
            }
        }
        match (&opts.client_cert, &opts.client_key) {
            (Some(cert), Some(key)) => {
                let mut chain = certificates(cert, "client_cert")?.into_iter();
                let leaf = chain.next().expect("certificates() returns at least one");
                let key = PKey::private_key_from_pem(key.as_bytes()).map_err(|e| invalid("client_key is not valid PEM", e))?;
                b.set_certificate(&leaf).map_err(|e| invalid("client certificate rejected", e))?;
                for extra in chain {
                    b.add_extra_chain_cert(extra).map_err(|e| invalid("client certificate chain rejected", e))?;
                }
                b.set_private_key(&key).map_err(|e| invalid("client certificate rejected", e))?;
                b.check_private_key().map_err(|e| invalid("client_key does not match client_cert", e))?;
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(OpenError::InvalidUrl("client_cert and client_key must be given together".into()))
            }
            (None, None) => {}
        }
        Ok(Tls { connector: b.build(), insecure: opts.insecure })
    }

    /// Runs the handshake over `stream`, checking the certificate against `host` (a name
    /// or an IP address) unless insecure.
    pub async fn wrap(&self, stream: Box<dyn Io>, host: &str) -> Result<Box<dyn Io>, OpenError> {
        let handshake = |e: &dyn std::fmt::Display| OpenError::Failed(format!("TLS handshake: {e}"));
        let ssl = self
            .connector
            .configure()
            .and_then(|c| c.verify_hostname(!self.insecure).into_ssl(host))
            .map_err(|e| handshake(&e))?;
        let mut tls = tokio_openssl::SslStream::new(ssl, stream).map_err(|e| handshake(&e))?;
        if let Err(e) = Pin::new(&mut tls).connect().await {
            let verify = tls.ssl().verify_result();
            return Err(if verify != X509VerifyResult::OK {
                OpenError::Failed(format!("TLS handshake: certificate verify failed: {}", verify.error_string()))
            } else {
                handshake(&e)
            });
        }
        Ok(Box::new(tls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> TransportOptions {
        TransportOptions {
            ca_cert: ca.map(str::to_string),
            client_cert: cert.map(str::to_string),
            client_key: key.map(str::to_string),
            ..Default::default()
        }
    }

    fn invalid_message(o: TransportOptions) -> String {
        match Tls::new(&o) {
            Err(OpenError::InvalidUrl(m)) => m,
            Err(OpenError::Failed(m)) => panic!("expected an option error, got a failure: {m}"),
            Ok(_) => panic!("expected an option error"),
        }
    }

    #[test]
    fn default_trust_and_insecure_build() {
        assert!(Tls::new(&TransportOptions::default()).is_ok());
        assert!(Tls::new(&TransportOptions { insecure: true, ..Default::default() }).is_ok());
    }

    #[test]
    fn bad_pem_is_an_option_error() {
        assert!(invalid_message(opts(Some("not a certificate"), None, None)).contains("ca_cert"));
        assert!(invalid_message(opts(Some(""), None, None)).contains("ca_cert holds no certificate"));
        let m = invalid_message(opts(None, Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), Some("x")));
        assert!(m.contains("client_cert"), "{m}");
    }

    #[test]
    fn half_a_client_identity_is_refused() {
        assert!(invalid_message(opts(None, Some("x"), None)).contains("together"));
        assert!(invalid_message(opts(None, None, Some("x"))).contains("together"));
    }
}
