//! The `resources` field of a container config: the OCI runtime spec's `LinuxResources`
//! subset that LinuxKit's schema admits (device cgroup rules, memory, cpu, pids, block I/O,
//! hugepages, network class).
//!
//! Keys are read in the OCI spelling (`blockIO`, `hugepageLimits`) and also all-lowercase
//! (`blockio`, `hugepagelimits`), which is how LinuxKit's yaml.v3 decodes these untagged Go
//! structs (and what its schema partly requires); they are written in the OCI spelling,
//! which is what ends up in a bundle's `config.json`. Pure data: no validation lives here.

use serde::{Deserialize, Serialize};

use crate::yaml::strict;

/// OCI `LinuxResources`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceCgroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    #[serde(
        rename = "blockIO",
        alias = "blockio",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub block_io: Option<BlockIo>,
    #[serde(
        rename = "hugepageLimits",
        alias = "hugepagelimits",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hugepage_limits: Vec<HugepageLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

/// OCI `LinuxDeviceCgroup`: one device-cgroup allow/deny rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCgroup {
    #[serde(default, deserialize_with = "strict::req")]
    pub allow: bool,
    #[serde(
        rename = "type",
        default,
        deserialize_with = "strict::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub major: Option<i64>,
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub minor: Option<i64>,
    #[serde(
        default,
        deserialize_with = "strict::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub access: String,
}

/// OCI `LinuxMemory`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<i64>,
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub reservation: Option<i64>,
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub swap: Option<i64>,
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub kernel: Option<i64>,
    #[serde(
        rename = "kernelTCP",
        alias = "kerneltcp",
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub kernel_tcp: Option<i64>,
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub swappiness: Option<u64>,
    #[serde(
        rename = "disableOOMKiller",
        alias = "disableoomkiller",
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_oom_killer: Option<bool>,
}

/// OCI `LinuxCPU`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cpu {
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub shares: Option<u64>,
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub quota: Option<i64>,
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub period: Option<u64>,
    #[serde(
        rename = "realtimeRuntime",
        alias = "realtimeruntime",
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub realtime_runtime: Option<i64>,
    #[serde(
        rename = "realtimePeriod",
        alias = "realtimeperiod",
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub realtime_period: Option<u64>,
    #[serde(
        default,
        deserialize_with = "strict::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub cpus: String,
    #[serde(
        default,
        deserialize_with = "strict::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub mems: String,
}

/// OCI `LinuxPids`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pids {
    #[serde(default, deserialize_with = "strict::req")]
    pub limit: i64,
}

/// OCI `LinuxBlockIO`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockIo {
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub weight: Option<u16>,
    #[serde(
        rename = "leafWeight",
        alias = "leafweight",
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub leaf_weight: Option<u16>,
    #[serde(
        rename = "weightDevice",
        alias = "weightdevice",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub weight_device: Vec<WeightDevice>,
    #[serde(
        rename = "throttleReadBpsDevice",
        alias = "throttlereadbpsdevice",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub throttle_read_bps_device: Vec<ThrottleDevice>,
    #[serde(
        rename = "throttleWriteBpsDevice",
        alias = "throttlewritebpsdevice",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub throttle_write_bps_device: Vec<ThrottleDevice>,
    #[serde(
        rename = "throttleReadIOPSDevice",
        alias = "throttlereadiopsdevice",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub throttle_read_iops_device: Vec<ThrottleDevice>,
    #[serde(
        rename = "throttleWriteIOPSDevice",
        alias = "throttlewriteiopsdevice",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub throttle_write_iops_device: Vec<ThrottleDevice>,
}

/// OCI `LinuxWeightDevice`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightDevice {
    #[serde(default, deserialize_with = "strict::req")]
    pub major: i64,
    #[serde(default, deserialize_with = "strict::req")]
    pub minor: i64,
    #[serde(
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub weight: Option<u16>,
    #[serde(
        rename = "leafWeight",
        alias = "leafweight",
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub leaf_weight: Option<u16>,
}

/// OCI `LinuxThrottleDevice`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleDevice {
    #[serde(default, deserialize_with = "strict::req")]
    pub major: i64,
    #[serde(default, deserialize_with = "strict::req")]
    pub minor: i64,
    #[serde(default, deserialize_with = "strict::req")]
    pub rate: u64,
}

/// OCI `LinuxHugepageLimit`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HugepageLimit {
    /// `<size><unit>B`, e.g. `2MB`.
    #[serde(
        rename = "pageSize",
        alias = "pagesize",
        default,
        deserialize_with = "strict::string"
    )]
    pub page_size: String,
    #[serde(default, deserialize_with = "strict::req")]
    pub limit: u64,
}

/// OCI `LinuxNetwork`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(
        rename = "classID",
        alias = "classid",
        default,
        deserialize_with = "strict::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub class_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priorities: Vec<InterfacePriority>,
}

/// OCI `LinuxInterfacePriority`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfacePriority {
    #[serde(default, deserialize_with = "strict::string")]
    pub name: String,
    #[serde(default, deserialize_with = "strict::req")]
    pub priority: u32,
}
