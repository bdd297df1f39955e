//! Where each service is reached in each region: the one place that knows the default OpenAPI
//! endpoints. Explicit `[cloud.endpoints]` override everything here.
//!
//! The table follows the official SDKs' endpoint maps, as generated into
//! `aliyun/alibabacloud-go-sdk` `polardb-20170801/client/client.go` and
//! `rds-20140815/client/client.go` (`EndpointRule = "regional"` and `EndpointMap`; the same maps
//! are in the Python, Java and C# SDKs `alibabacloud_polardb20170801` and
//! `alibabacloud_rds20140815`). Their `GetEndpoint` takes the map's entry for a region when
//! there is one, and otherwise the endpoint rule of `endpoint-util` (`GetEndpointRules`):
//! `<product><network>.<region>.aliyuncs.com` for the regional rule, where `<network>` is empty
//! for `public` and `-vpc` for `vpc`.
//!
//! - *Central* below is a region the SDK map sends to `polardb.aliyuncs.com` or
//!   `rds.aliyuncs.com`; *Regional* is one it sends to `<product>.<region>.aliyuncs.com`,
//!   whether the map says so or the rule does.
//! - The regions known are those either SDK map names, without the internal, test and
//!   point-of-presence ones (`cn-hangzhou-internal-test-1`, `ap-northeast-2-pop`, ...), which
//!   no customer resource lives in. A region outside this table has no default endpoint: the
//!   config must name one (`[cloud.endpoints]`), and saying so at load beats a DNS failure at
//!   the first rotation.
//! - `network = "vpc"` gives `<product>-vpc.<region>.aliyuncs.com` in every region, central ones
//!   included: the SDKs' rule with the VPC network. (Their `GetEndpoint` consults the map first,
//!   which would send a VPC-only host to the public central endpoint; pwrotd does not.)

use std::fmt;

use serde::Deserialize;

use super::ops::Service;

/// `cloud.network`: which of a region's endpoints the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The public endpoints (`polardb.aliyuncs.com`, `polardb.<region>.aliyuncs.com`).
    #[default]
    Public,
    /// The VPC endpoints (`polardb-vpc.<region>.aliyuncs.com`), reachable only from inside a
    /// VPC of Alibaba Cloud.
    Vpc,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Public => "public",
            Network::Vpc => "vpc",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a service's public endpoint in a region is the central one or the region's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Central,
    Regional,
}

use Kind::{Central, Regional};

/// Each known region, with the kind of its PolarDB and its RDS endpoint (see the module docs).
const REGIONS: &[(&str, Kind, Kind)] = &[
    // Mainland China.
    ("cn-qingdao", Central, Central),
    ("cn-beijing", Central, Central),
    ("cn-zhangjiakou", Regional, Regional),
    ("cn-huhehaote", Regional, Regional),
    ("cn-wulanchabu", Central, Regional),
    ("cn-hangzhou", Central, Central),
    ("cn-shanghai", Central, Central),
    ("cn-shenzhen", Regional, Central),
    ("cn-heyuan", Central, Regional),
    ("cn-guangzhou", Regional, Regional),
    ("cn-chengdu", Regional, Regional),
    ("cn-wuhan", Central, Central),
    ("cn-fujian", Central, Central),
    ("cn-hongkong", Regional, Central),
    // Finance and government clouds.
    ("cn-hangzhou-finance", Central, Central),
    ("cn-shanghai-finance-1", Regional, Central),
    ("cn-shenzhen-finance-1", Regional, Central),
    ("cn-beijing-finance-1", Central, Central),
    ("cn-beijing-gov-1", Central, Central),
    ("cn-north-2-gov-1", Regional, Central),
    // Outside China.
    ("ap-northeast-1", Regional, Regional),
    ("ap-northeast-2", Regional, Regional),
    ("ap-southeast-1", Regional, Central),
    ("ap-southeast-3", Regional, Regional),
    ("ap-southeast-5", Regional, Regional),
    ("ap-southeast-6", Regional, Regional),
    ("ap-southeast-7", Regional, Regional),
    ("ap-southeast-8", Regional, Regional),
    ("us-west-1", Regional, Central),
    ("us-east-1", Regional, Central),
    ("na-south-1", Regional, Regional),
    ("eu-central-1", Regional, Regional),
    ("eu-west-1", Regional, Regional),
    ("me-east-1", Regional, Regional),
];

/// Whether the table knows `region`.
pub fn is_known_region(region: &str) -> bool {
    REGIONS.iter().any(|(r, _, _)| *r == region)
}

/// The default endpoint of `service` in `region` on `network`, as `https://host`; `None` for a
/// region the table does not know.
pub fn default_endpoint(service: Service, region: &str, network: Network) -> Option<String> {
    let (_, polardb, rds) = REGIONS.iter().find(|(r, _, _)| *r == region)?;
    let (product, kind) = match service {
        Service::PolarDb => ("polardb", *polardb),
        Service::Rds => ("rds", *rds),
    };
    Some(match (network, kind) {
        (Network::Vpc, _) => format!("https://{product}-vpc.{region}.aliyuncs.com"),
        (Network::Public, Central) => format!("https://{product}.aliyuncs.com"),
        (Network::Public, Regional) => format!("https://{product}.{region}.aliyuncs.com"),
    })
}

/// A few of the known regions, for a message about one that is not.
pub fn some_regions() -> String {
    let names: Vec<&str> = REGIONS.iter().take(6).map(|(r, _, _)| *r).collect();
    format!("{}, ...", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn central_regional_and_vpc_endpoints() {
        let at = |s, r, n| default_endpoint(s, r, n);
        use Network::{Public, Vpc};
        use Service::{PolarDb, Rds};
        // Central in both SDK maps.
        assert_eq!(
            at(PolarDb, "cn-hangzhou", Public).as_deref(),
            Some("https://polardb.aliyuncs.com")
        );
        assert_eq!(
            at(Rds, "cn-beijing", Public).as_deref(),
            Some("https://rds.aliyuncs.com")
        );
        // Regional for PolarDB, central for RDS.
        assert_eq!(
            at(PolarDb, "ap-southeast-1", Public).as_deref(),
            Some("https://polardb.ap-southeast-1.aliyuncs.com")
        );
        assert_eq!(
            at(Rds, "ap-southeast-1", Public).as_deref(),
            Some("https://rds.aliyuncs.com")
        );
        // Central for PolarDB, regional (the SDK rule) for RDS.
        assert_eq!(
            at(PolarDb, "cn-wulanchabu", Public).as_deref(),
            Some("https://polardb.aliyuncs.com")
        );
        assert_eq!(
            at(Rds, "cn-wulanchabu", Public).as_deref(),
            Some("https://rds.cn-wulanchabu.aliyuncs.com")
        );
        assert_eq!(
            at(Rds, "eu-central-1", Public).as_deref(),
            Some("https://rds.eu-central-1.aliyuncs.com")
        );
        // VPC: the region's own VPC endpoint, central regions included.
        assert_eq!(
            at(PolarDb, "cn-hangzhou", Vpc).as_deref(),
            Some("https://polardb-vpc.cn-hangzhou.aliyuncs.com")
        );
        assert_eq!(
            at(Rds, "ap-northeast-1", Vpc).as_deref(),
            Some("https://rds-vpc.ap-northeast-1.aliyuncs.com")
        );
        // Unknown regions, and the internal ones the SDK maps also list.
        for region in [
            "mars-north-1",
            "",
            "cn-hangzhou-internal-test-1",
            "CN-HANGZHOU",
        ] {
            assert_eq!(at(PolarDb, region, Public), None, "{region}");
            assert!(!is_known_region(region));
        }
    }

    #[test]
    fn every_default_endpoint_is_a_valid_endpoint() {
        for (region, _, _) in REGIONS {
            for service in Service::ALL {
                for network in [Network::Public, Network::Vpc] {
                    let url = default_endpoint(service, region, network).unwrap();
                    assert!(super::super::client::parse_endpoint(&url).is_ok(), "{url}");
                }
            }
        }
    }
}
