//! DHCP host reservations (Kea `subnet4[].reservations[]`).

use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Ipv4Cidr, MacAddress};

/// A DHCP option sent to the reserved host, as Kea's `option-data` entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DhcpOption {
    /// Option name as Kea knows it, e.g. `domain-name-servers`.
    pub name: String,
    /// Option payload in Kea's textual form, e.g. `10.0.1.1, 10.0.1.2`.
    pub data: String,
}

/// `spec` of a `DhcpReservation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DhcpReservationSpec {
    pub subnet: Ipv4Cidr,
    pub mac: MacAddress,
    pub ip: Ipv4Addr,
    pub hostname: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<DhcpOption>,
}
