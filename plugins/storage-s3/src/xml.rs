//! The S3 XML documents we read and the one we write.

use serde::Deserialize;

/// One page of ListObjectsV2.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListPage {
    #[serde(default)]
    pub is_truncated: bool,
    pub next_continuation_token: Option<String>,
    /// `url` when keys and prefixes are percent-encoded.
    pub encoding_type: Option<String>,
    #[serde(default)]
    pub contents: Vec<Object>,
    #[serde(default)]
    pub common_prefixes: Vec<CommonPrefix>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Object {
    pub key: String,
    pub last_modified: Option<String>,
    #[serde(default)]
    pub size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommonPrefix {
    pub prefix: String,
}

impl ListPage {
    /// Keys and prefixes as they are, undoing `encoding-type=url`.
    pub fn decode(mut self) -> ListPage {
        if self.encoding_type.as_deref() == Some("url") {
            for object in &mut self.contents {
                object.key = url_decode(&object.key);
            }
            for prefix in &mut self.common_prefixes {
                prefix.prefix = url_decode(&prefix.prefix);
            }
        }
        self
    }
}

fn url_decode(text: &str) -> String {
    // Some servers write a space as `+` in this encoding, as forms do; a
    // real `+` then arrives as `%2B`, so turning `+` into a space is safe.
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// An S3 error document.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorDoc {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InitiateMultipartUploadResult {
    pub upload_id: String,
}

/// The answer of CopyObject (`CopyObjectResult`) and UploadPartCopy
/// (`CopyPartResult`), and of CompleteMultipartUpload.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EtagResult {
    #[serde(rename = "ETag")]
    pub etag: String,
}

/// Reads a document, or the error document S3 may send instead (even with
/// status 200, for copies and completions).
pub fn parse<'de, T: Deserialize<'de>>(body: &'de str) -> Result<T, ParseFailure> {
    if root_element(body) == Some("Error") {
        return Err(ParseFailure::S3Error(parse_error(body)));
    }
    quick_xml::de::from_str(body).map_err(|e| ParseFailure::Malformed(e.to_string()))
}

#[derive(Debug)]
pub enum ParseFailure {
    /// The body was an `<Error>` document.
    S3Error(ErrorDoc),
    /// Not the document we expected.
    Malformed(String),
}

/// An error body, or an empty one when the body is not one.
pub fn parse_error(body: &str) -> ErrorDoc {
    quick_xml::de::from_str(body).unwrap_or_default()
}

/// The name of the first element, after any XML declaration and comments.
fn root_element(body: &str) -> Option<&str> {
    let mut rest = body;
    loop {
        let start = rest.find('<')?;
        rest = &rest[start + 1..];
        if rest.starts_with('?') || rest.starts_with('!') {
            continue;
        }
        let end = rest.find(|c: char| c == '>' || c == '/' || c.is_whitespace())?;
        return Some(&rest[..end]);
    }
}

/// The CompleteMultipartUpload request body.
pub fn complete_body(parts: &[(u32, String)]) -> String {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (number, etag) in parts {
        xml.push_str(&format!(
            "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
            escape(etag)
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_page_with_files_and_prefixes() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>files</Name><Prefix>u/d/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
  <Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents><Key>u/d/</Key><LastModified>2026-12-02T14:00:00.000Z</LastModified>
    <ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>u/d/a &amp; b.txt</Key><LastModified>2026-12-02T14:00:01.500Z</LastModified>
    <ETag>"x"</ETag><Size>13</Size></Contents>
  <CommonPrefixes><Prefix>u/d/sub/</Prefix></CommonPrefixes>
</ListBucketResult>"#;
        let page: ListPage = parse(body).unwrap();
        assert!(page.is_truncated);
        assert_eq!(
            page.next_continuation_token.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
        assert_eq!(page.contents.len(), 2);
        assert_eq!(page.contents[1].key, "u/d/a & b.txt");
        assert_eq!(page.contents[1].size, 13);
        assert_eq!(page.common_prefixes[0].prefix, "u/d/sub/");
    }

    #[test]
    fn empty_and_url_encoded_pages() {
        let page: ListPage = parse(
            "<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>",
        )
        .unwrap();
        assert!(!page.is_truncated && page.contents.is_empty() && page.common_prefixes.is_empty());

        let page: ListPage = parse(
            "<ListBucketResult><EncodingType>url</EncodingType>\
             <Contents><Key>d/Gr%C3%BC%C3%9Fe+x%2By%01.txt</Key><Size>1</Size></Contents>\
             <CommonPrefixes><Prefix>d/a%20b/</Prefix></CommonPrefixes></ListBucketResult>",
        )
        .unwrap();
        let page = page.decode();
        assert_eq!(page.contents[0].key, "d/Grüße x+y\u{1}.txt");
        assert_eq!(page.common_prefixes[0].prefix, "d/a b/");
    }

    #[test]
    fn errors_even_with_status_200() {
        let body = "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code>\
                    <Message>We encountered an internal error.</Message></Error>";
        match parse::<EtagResult>(body) {
            Err(ParseFailure::S3Error(e)) => assert_eq!(e.code, "InternalError"),
            other => panic!("{other:?}"),
        }
        let ok: EtagResult = parse(
            "<CompleteMultipartUploadResult><Location>x</Location><Bucket>b</Bucket>\
             <Key>k</Key><ETag>\"abc-2\"</ETag></CompleteMultipartUploadResult>",
        )
        .unwrap();
        assert_eq!(ok.etag, "\"abc-2\"");
        let id: InitiateMultipartUploadResult = parse(
            "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>\
             <UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>",
        )
        .unwrap();
        assert_eq!(id.upload_id, "VXBsb2FkIElE");
        assert!(matches!(
            parse::<EtagResult>("not xml"),
            Err(ParseFailure::Malformed(_))
        ));
        assert_eq!(parse_error("garbage").code, "");
    }

    #[test]
    fn complete_body_lists_parts_in_order() {
        let body = complete_body(&[(1, "\"a\"".into()), (2, "\"b\"".into())]);
        assert_eq!(
            body,
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>\"b\"</ETag></Part></CompleteMultipartUpload>"
        );
    }
}
