//! The Alibaba Cloud OpenAPI: signing, credentials, the operations, the default endpoint of each
//! service in each region, the client that sends them, and the classification of failures.
//!
//! Every byte pwrotd sends to the cloud leaves through [`Client::call`].

pub mod client;
pub mod clients;
pub mod credentials;
pub mod endpoints;
pub mod error;
pub mod ops;
pub mod sign;

pub use client::{Client, ClientConfig, Endpoints, Reply, SignatureVersion};
pub use clients::Clients;
pub use credentials::{
    AssumeRoleConfig, CredentialSource, Credentials, CredentialsConfig, OidcConfig, SourceKind,
};
pub use endpoints::Network;
pub use error::{ApiError, Class, CloudError, ErrorKind};
pub use ops::{
    Api, DescribeAccounts, Grant, GrantAccountPrivilege, Operation, Privilege, Service, SetPassword,
};
