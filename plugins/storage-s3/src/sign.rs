//! AWS Signature Version 4 for S3 requests, computed here in the guest with
//! AWS's `aws-sigv4` crate. Payloads are not hashed (`UNSIGNED-PAYLOAD`, which
//! S3 accepts on every request): hashing every byte of an upload in
//! WebAssembly would cost more CPU than the transfer itself, and HTTPS
//! already protects the body on the way.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// The credentials and region requests are signed for.
pub struct Signer {
    identity: Identity,
    region: String,
}

/// What a request is signed with; `None` payload hash means `UNSIGNED-PAYLOAD`.
pub struct ToSign<'a> {
    pub method: &'a str,
    /// The full URL, path and query already percent-encoded.
    pub url: &'a str,
    /// Headers that go out with the request and are signed with it.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_sha256: Option<&'a str>,
}

impl Signer {
    pub fn new(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        region: &str,
    ) -> Signer {
        let credentials = Credentials::new(
            access_key_id,
            secret_access_key,
            session_token.map(str::to_string),
            None,
            "wasmftpd-config",
        );
        Signer {
            identity: credentials.into(),
            region: region.to_string(),
        }
    }

    /// The headers to add to the request: `authorization`, `x-amz-date`,
    /// `x-amz-content-sha256` (and `x-amz-security-token` with a session token).
    pub fn sign(
        &self,
        request: &ToSign,
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, String> {
        let mut settings = SigningSettings::default();
        // S3 signs the path as sent (encoded once, `//` and `.` kept).
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let body = match request.payload_sha256 {
            Some(hash) => SignableBody::Precomputed(hash.to_string()),
            None => SignableBody::UnsignedPayload,
        };
        let signable = SignableRequest::new(
            request.method,
            request.url,
            request.headers.iter().copied(),
            body,
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// The worked example "GET Object" of AWS's S3 documentation ("Signature
    /// Calculations for the Authorization Header"): a ranged GET of
    /// `/test.txt` from `examplebucket`, 2013-05-24T00:00:00Z, with the
    /// documentation's example keys. The expected signature is the one the
    /// documentation prints.
    #[test]
    fn matches_the_documented_get_object_example() {
        let signer = Signer::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            "us-east-1",
        );
        let when = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let headers = signer
            .sign(
                &ToSign {
                    method: "GET",
                    url: "https://examplebucket.s3.amazonaws.com/test.txt",
                    headers: &[("range", "bytes=0-9")],
                    payload_sha256: Some(empty),
                },
                when,
            )
            .unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-date"), Some("20130524T000000Z"));
        assert_eq!(get("x-amz-content-sha256"), Some(empty));
        assert_eq!(
            get("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
                 Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            )
        );
    }

    #[test]
    fn unsigned_payload_and_encoded_keys() {
        let signer = Signer::new("AK", "SK", Some("TOKEN"), "eu-west-1");
        let headers = signer
            .sign(
                &ToSign {
                    method: "PUT",
                    url: "http://127.0.0.1:8333/b/dir/Gr%C3%BC%C3%9Fe%20x.txt?partNumber=1&uploadId=a%2Bb",
                    headers: &[],
                    payload_sha256: None,
                },
                SystemTime::now(),
            )
            .unwrap();
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"authorization"), "{names:?}");
        assert!(names.contains(&"x-amz-security-token"), "{names:?}");
        assert!(headers.contains(&(
            "x-amz-content-sha256".to_string(),
            "UNSIGNED-PAYLOAD".to_string()
        )));
    }
}
