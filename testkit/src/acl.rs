//! Kafka ACLs for tests, behind the `acl` feature: grant and revoke them on the local broker
//! through its PLAINTEXT listener, whose principal (`User:ANONYMOUS`) is a super user there
//! (see `hack/kafka/server.properties`).
//!
//! rdkafka has no ACL API and Kafka's own `kafka-acls` starts a JVM per call (seconds on a
//! busy machine), so this speaks the two requests it needs, CreateAcls and DeleteAcls, with the
//! `kafka-protocol` crate's message types over one TCP connection per call.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use eventconsumer_contract::acl::{Acl, Operation, Pattern, ResourceType};
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    RequestHeader, ResponseHeader, create_acls_request::AclCreation,
    delete_acls_request::DeleteAclsFilter,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The request versions used: the newest both this crate and Kafka 4 know.
const CREATE_ACLS_VERSION: i16 = 3;
const DELETE_ACLS_VERSION: i16 = 3;
/// A broker answers ACL requests in milliseconds; this only bounds a hung connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Any host: the tests' clients all connect from loopback anyway.
const ANY_HOST: &str = "*";
/// `ALLOW` in Kafka's `AclPermissionType`.
const PERMISSION_ALLOW: i8 = 3;

fn resource_type_code(t: ResourceType) -> i8 {
    // Kafka's `ResourceType` codes.
    match t {
        ResourceType::Topic => 2,
        ResourceType::Group => 3,
        ResourceType::Cluster => 4,
        ResourceType::TransactionalId => 5,
    }
}

fn pattern_code(p: Pattern) -> i8 {
    match p {
        Pattern::Literal => 3,
        Pattern::Prefixed => 4,
    }
}

fn operation_code(o: Operation) -> i8 {
    // Kafka's `AclOperation` codes.
    match o {
        Operation::Read => 3,
        Operation::Write => 4,
        Operation::Create => 5,
        Operation::Describe => 8,
        Operation::IdempotentWrite => 12,
    }
}

/// Allows `principal` (such as `User:consumer`) each of `acls`, and returns once the broker
/// has stored them.
///
/// # Panics
/// When the broker cannot be reached or refuses one of them.
pub async fn grant(plaintext_bootstrap: &str, principal: &str, acls: &[Acl]) {
    let creations = acls
        .iter()
        .map(|acl| {
            AclCreation::default()
                .with_resource_type(resource_type_code(acl.resource))
                .with_resource_name(StrBytes::from_string(acl.name.clone()))
                .with_resource_pattern_type(pattern_code(acl.pattern))
                .with_principal(StrBytes::from_string(principal.to_owned()))
                .with_host(StrBytes::from_static_str(ANY_HOST))
                .with_operation(operation_code(acl.operation))
                .with_permission_type(PERMISSION_ALLOW)
        })
        .collect();
    let request = CreateAclsRequest::default().with_creations(creations);
    let body = call(
        plaintext_bootstrap,
        ApiKey::CreateAcls,
        CREATE_ACLS_VERSION,
        |buf| request.encode(buf, CREATE_ACLS_VERSION),
    )
    .await;
    let mut body = body;
    let response = CreateAclsResponse::decode(&mut body, CREATE_ACLS_VERSION)
        .unwrap_or_else(|e| panic!("undecodable CreateAcls response: {e}"));
    for (acl, result) in acls.iter().zip(response.results) {
        assert_eq!(
            result.error_code,
            0,
            "the broker refused to allow {principal} {acl}: {:?}",
            result.error_message.as_deref().map(|m| m.to_string())
        );
    }
}

/// Removes each of `acls` of `principal`; returns how many ACLs the broker deleted.
///
/// # Panics
/// When the broker cannot be reached or refuses the deletion.
pub async fn revoke(plaintext_bootstrap: &str, principal: &str, acls: &[Acl]) -> usize {
    let filters = acls
        .iter()
        .map(|acl| {
            DeleteAclsFilter::default()
                .with_resource_type_filter(resource_type_code(acl.resource))
                .with_resource_name_filter(Some(StrBytes::from_string(acl.name.clone())))
                .with_pattern_type_filter(pattern_code(acl.pattern))
                .with_principal_filter(Some(StrBytes::from_string(principal.to_owned())))
                .with_host_filter(Some(StrBytes::from_static_str(ANY_HOST)))
                .with_operation(operation_code(acl.operation))
                .with_permission_type(PERMISSION_ALLOW)
        })
        .collect();
    let request = DeleteAclsRequest::default().with_filters(filters);
    let mut body = call(
        plaintext_bootstrap,
        ApiKey::DeleteAcls,
        DELETE_ACLS_VERSION,
        |buf| request.encode(buf, DELETE_ACLS_VERSION),
    )
    .await;
    let response = DeleteAclsResponse::decode(&mut body, DELETE_ACLS_VERSION)
        .unwrap_or_else(|e| panic!("undecodable DeleteAcls response: {e}"));
    let mut deleted = 0;
    for (acl, result) in acls.iter().zip(response.filter_results) {
        assert_eq!(
            result.error_code,
            0,
            "the broker refused to delete {principal}'s {acl}: {:?}",
            result.error_message.as_deref().map(|m| m.to_string())
        );
        deleted += result.matching_acls.len();
    }
    deleted
}

/// Sends one request to the first broker of `bootstrap` and returns the response body.
async fn call(
    bootstrap: &str,
    key: ApiKey,
    version: i16,
    encode_body: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
) -> Bytes {
    let broker = bootstrap.split(',').next().unwrap_or(bootstrap).trim();
    let exchange = async {
        let mut request = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str("eventconsumer-testkit")));
        header
            .encode(&mut request, key.request_header_version(version))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        encode_body(&mut request).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut framed = BytesMut::with_capacity(request.len() + 4);
        framed.put_u32(u32::try_from(request.len()).map_err(std::io::Error::other)?);
        framed.extend_from_slice(&request);

        let mut stream = TcpStream::connect(broker).await?;
        stream.write_all(&framed).await?;
        let len = stream.read_u32().await?;
        let mut response = vec![0; usize::try_from(len).map_err(std::io::Error::other)?];
        stream.read_exact(&mut response).await?;
        Ok::<_, std::io::Error>(Bytes::from(response))
    };
    let mut response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{key:?} to {broker} got no answer in {REQUEST_TIMEOUT:?}"))
        .unwrap_or_else(|e| {
            panic!(
                "{key:?} to {broker} failed: {e}. Is the local stack running? {}",
                crate::START_THE_STACK
            )
        });
    let header = ResponseHeader::decode(&mut response, key.response_header_version(version))
        .unwrap_or_else(|e| panic!("undecodable {key:?} response header: {e}"));
    assert_eq!(
        header.correlation_id, 1,
        "{key:?}: answer to another request"
    );
    // The rest is the body.
    let rest = response.remaining();
    response.copy_to_bytes(rest)
}
