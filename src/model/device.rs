//! Devices: Proxmox guests (VMs and containers), physical hosts, IoT and lab equipment.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{MacAddress, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceType {
    /// A Proxmox QEMU virtual machine.
    Vm,
    /// A Proxmox LXC container.
    Lxc,
    Physical,
    Iot,
    /// Lab instrument reached over SCPI.
    Scpi,
}

impl DeviceType {
    /// Guests live on a Proxmox node under a vmid.
    pub fn is_guest(self) -> bool {
        matches!(self, DeviceType::Vm | DeviceType::Lxc)
    }
}

/// Where a Proxmox guest lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxmoxGuest {
    /// Cluster node name, e.g. `pve-01`.
    pub node: String,
    /// Guest id, unique in the cluster (100-999999999).
    pub vmid: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Disk {
    /// Proxmox slot, e.g. `scsi0`, `virtio1`, `rootfs`.
    pub name: String,
    /// Storage id, e.g. `local-lvm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(rename = "sizeGiB")]
    pub size_gib: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkInterface {
    /// Interface name, e.g. `net0` or `eth0`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Proxmox bridge, e.g. `vmbr0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceProtocol {
    Tcp,
    Udp,
    Http,
    Https,
}

/// A network service a device offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    /// Unique on the device; routes refer to it as `device/service`.
    pub name: String,
    pub port: u16,
    pub protocol: ServiceProtocol,
    /// HTTP path probed for health, e.g. `/api/health` (http and https services only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
}

/// `spec` of a `Device`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceSpec {
    #[serde(rename = "type")]
    pub device_type: DeviceType,
    /// Path of the pool the device belongs to, e.g. `/homelab/compute/gpu-nodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Required for `vm` and `lxc`; not allowed for other types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxmox: Option<ProxmoxGuest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    #[serde(default, rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<NetworkInterface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, Value>,
}

impl DeviceSpec {
    /// IPv4 addresses of all interfaces.
    pub fn ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.interfaces.iter().filter_map(|i| i.ip)
    }
}
