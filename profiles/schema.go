package profiles

// The profile schema: one typed description of a lab. Every field here is
// decoded strictly (unknown keys are errors) and validated once by Load; the
// rest of kiln receives a *Profile it can trust and never re-checks it.

// Profile is one lab.
type Profile struct {
	// Name identifies the lab; it seeds every derived identifier (GPT GUIDs,
	// filesystem UUIDs), so renaming a lab changes them all.
	Name     string    `yaml:"name" jsonschema:"required"`
	Debian   Debian    `yaml:"debian"`
	Network  Network   `yaml:"network" jsonschema:"required"`
	Machines []Machine `yaml:"machines" jsonschema:"required"`
	// Services are what the lab runs beyond Ceph (Consul, Vault, k3s);
	// nil for none. See services.go.
	Services *Services `yaml:"services" json:",omitempty"`

	// Source is the file the profile was read from ("homelab.yaml" for the
	// embedded default); it is not part of the YAML.
	Source string `yaml:"-"`
	// Warnings are what validation found questionable but valid (e.g. a
	// Ceph cluster that cannot survive the loss of a node), located like
	// problems; kiln validate and kiln plan print them.
	Warnings []Problem `yaml:"-" json:",omitempty"`
	// Places are where each field is written in Source, for problems
	// found after loading (At); not part of the YAML.
	Places Places `yaml:"-" json:"-"`
}

// Debian says where root filesystems, kernels and firmware come from.
type Debian struct {
	Suite  string `yaml:"suite"`  // e.g. bookworm
	Mirror string `yaml:"mirror"` // e.g. http://deb.debian.org/debian
}

// Network is the lab's LAN, the one L2 segment every machine netboots on,
// and optionally a second, non-routed cluster network.
type Network struct {
	CIDR    string   `yaml:"cidr" jsonschema:"required"`    // e.g. 192.168.1.0/24
	Gateway string   `yaml:"gateway" jsonschema:"required"` // the ISP box / router
	DNS     []string `yaml:"dns"`
	NTP     []string `yaml:"ntp"`
	DHCP    DHCP     `yaml:"dhcp"`
	// Cluster is the storage machines' back network (Ceph's
	// cluster_network: OSD replication and heartbeats), nil for none.
	// Machines join it through interfaces.cluster.
	Cluster *Cluster `yaml:"cluster" json:",omitempty"`
}

// Cluster is a non-routed IPv4 network beside the LAN: no gateway, no DNS,
// nothing on it but the machines that name an address in it. It must not
// overlap network.cidr. When a lab has one, every storage machine must be on
// it: an OSD host missing from Ceph's cluster_network cannot replicate, and
// Ceph only finds that out under load.
type Cluster struct {
	CIDR string `yaml:"cidr" jsonschema:"required"` // e.g. 10.10.0.0/24
}

// DHCP modes of the gate's netboot service.
const (
	DHCPProxy = "proxy" // beside an existing DHCP server: netboot options only
	DHCPFull  = "full"  // the gate hands out leases itself
)

// DHCP configures how the gate answers DHCP.
type DHCP struct {
	Mode  string `yaml:"mode"`  // proxy (the default: beside the ISP box's DHCP) or full
	Range string `yaml:"range"` // mode full's pool, "first-last", e.g. 192.168.1.100-192.168.1.199
}

// Roles a machine can have; see package roles for what each one runs.
const (
	RoleGate    = "gate"
	RoleStorage = "storage"
	RoleCompute = "compute"
)

// Boards and firmware.
const (
	BoardPC   = "pc"   // amd64 server booting BIOS or UEFI
	BoardRPi4 = "rpi4" // Raspberry Pi 4 (the gate)

	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// Machine is one physical machine of the lab.
type Machine struct {
	Name     string `yaml:"name" jsonschema:"required"`    // its host name (RFC 1123 label)
	Role     string `yaml:"role" jsonschema:"required"`    // what it runs: storage, compute or gate
	Hardware string `yaml:"hardware"`                      // free text, for people
	Board    string `yaml:"board" jsonschema:"required"`   // pc (amd64 server) or rpi4 (the gate)
	Arch     string `yaml:"arch" jsonschema:"required"`    // amd64 or arm64
	Firmware string `yaml:"firmware"`                      // bios or uefi (board pc)
	MAC      string `yaml:"mac" jsonschema:"required"`     // the NIC that netboots, aa:bb:cc:dd:ee:ff
	Address  string `yaml:"address" jsonschema:"required"` // static IPv4 inside network.cidr
	// Memory is the machine's RAM (e.g. 16GiB), zero when not given. A
	// storage node's OSDs are sized by it (osd_memory_target, see
	// OSDMemoryTarget); without it they keep Ceph's default.
	Memory Size `yaml:"memory" json:",omitempty"`
	// Interfaces describe the machine's links when it has more than the
	// one NIC that netboots; nil means that NIC alone carries the LAN.
	Interfaces *Interfaces `yaml:"interfaces" json:",omitempty"`
	Disks      []Disk      `yaml:"disks"`
	// WireGuard is the gate's tunnel to a VPS (seed 004); only the gate
	// may have one, nil means no tunnel.
	WireGuard *WireGuard `yaml:"wireguard"`
}

// Interfaces are a server's links, rendered as systemd-networkd files:
//
//	interfaces:
//	  nics:                            # physical NICs, found by MAC
//	    - {name: nic0, mac: 52:54:00:00:01:01}
//	    - {name: nic1, mac: 52:54:00:00:11:01}
//	  bonds:
//	    - {name: bond0, mode: 802.3ad, members: [nic0, nic1], mtu: 9000}
//	  vlans:
//	    - {id: 20, link: bond0}        # the interface vlan20
//	  cluster: {link: vlan20, address: 10.10.0.11}
//
// The machine's mac must be one of the NICs: the one that netboots. The
// LAN (address, gateway, DNS, NTP) lives untagged on the link that carries
// that NIC, i.e. the NIC itself or the bond it is a member of, because PXE
// firmware sends untagged frames: the port the machine netbooted through
// carries the LAN untagged, and so does the bond over it. An 802.3ad bond
// over the netbooting NIC needs a switch that lets a port of an LACP group
// carry traffic before LACP is up ("LACP fallback", "no lacp
// suspend-individual"), since PXE firmware does not speak LACP.
//
// Links are named by kind, and these names are also the kernel's: bonds
// are bondN, a VLAN is vlan<id> (one per id on a machine). NIC names are
// labels for references only: a NIC keeps the kernel's name and is found by
// its permanent MAC, because kernel names change with firmware and slots.
//
// MTU is per link, 1280 to 9216 bytes (MinMTU, MaxMTU); a link without one
// keeps Ethernet's 1500, except a VLAN, which inherits its link's. A bond
// member takes its bond's MTU, so only the bond names one, and a VLAN can be
// no larger than its link (the kernel refuses). The LAN stays at 1500 even
// on a jumbo link (the ISP box, the gate and single-NIC machines are at
// 1500): only what is above that link, e.g. the cluster VLAN, runs jumbo.
// Every machine on the cluster network must give it the same MTU.
//
// The cluster network needs a link of its own: a VLAN, or a NIC or bond
// that does not carry the LAN. Every link listed must carry something (the
// LAN, a bond, a VLAN or the cluster network); the gate has no interfaces
// (it configures its one NIC itself).
type Interfaces struct {
	NICs  []NIC  `yaml:"nics"`
	Bonds []Bond `yaml:"bonds"`
	VLANs []VLAN `yaml:"vlans"`
	// Cluster puts the machine on network.cluster; nil for none.
	Cluster *ClusterLink `yaml:"cluster"`
}

// MTU bounds: IPv6's minimum link MTU (below it the kernel and networkd
// turn IPv6 off on the link) and the largest jumbo frame switches commonly
// accept.
const (
	MinMTU = 1280
	MaxMTU = 9216
	// DefaultMTU is Ethernet's, the MTU of a link that names none and of
	// the LAN whatever its link's MTU.
	DefaultMTU = 1500
)

// Bond modes kiln renders: 802.3ad (LACP, the switch must bundle the
// ports) and active-backup (any switch, one member at a time).
const (
	Bond8023ad       = "802.3ad"
	BondActiveBackup = "active-backup"
)

// NIC is one physical network card.
type NIC struct {
	// Name labels the NIC for members and links; bondN and vlanN are
	// kept for bonds and VLANs.
	Name string `yaml:"name" jsonschema:"required"`
	MAC  string `yaml:"mac" jsonschema:"required"`
	MTU  int    `yaml:"mtu"` // 1280 to 9216; 0 or none: Ethernet's 1500
}

// Bond aggregates NICs into one link.
type Bond struct {
	Name string `yaml:"name" jsonschema:"required"` // bond0, bond1, ...
	Mode string `yaml:"mode" jsonschema:"required"` // 802.3ad (LACP) or active-backup
	// Members name NICs of the machine; in active-backup the first is
	// the primary.
	Members []string `yaml:"members" jsonschema:"required"`
	MTU     int      `yaml:"mtu"` // 1280 to 9216; 0 or none: Ethernet's 1500
}

// VLAN is an 802.1Q VLAN on a NIC or bond; its interface is vlan<ID>.
type VLAN struct {
	ID   int    `yaml:"id" jsonschema:"required,minimum=1,maximum=4094"` // 1 to 4094
	Link string `yaml:"link" jsonschema:"required"`                      // the NIC or bond it is on
	MTU  int    `yaml:"mtu"`                                             // 0: its link's
}

// ClusterLink is the machine's place on the cluster network.
type ClusterLink struct {
	Link    string `yaml:"link" jsonschema:"required"`    // a NIC (not a bond member), bond or vlanN
	Address string `yaml:"address" jsonschema:"required"` // inside network.cluster.cidr, no prefix
}

// WireGuard is the gate's end of its tunnel; the keys are not here but in
// the lab's secrets directory (package image/secrets).
type WireGuard struct {
	// Address is the gate's tunnel address with the tunnel's prefix
	// length, e.g. 10.99.0.2/24; the tunnel must not overlap the lab.
	Address string `yaml:"address" jsonschema:"required"`
	// ListenPort is the gate's UDP port; 0 lets the kernel choose (the
	// gate dials out, so nothing needs to reach it).
	ListenPort int           `yaml:"listen_port"`
	Peer       WireGuardPeer `yaml:"peer" jsonschema:"required"`
}

// DefaultKeepalive is the keepalive, in seconds, of a peer that names none:
// the gate sits behind the ISP box's NAT, whose mapping must stay open for
// the VPS to reach it.
const DefaultKeepalive = 25

// WireGuardPeer is the VPS at the other end.
type WireGuardPeer struct {
	Endpoint string `yaml:"endpoint" jsonschema:"required"` // host:port of the VPS
	// Address is the VPS's tunnel address, inside the gate's tunnel
	// prefix (written into the VPS's config by kiln gate wireguard-peer).
	Address string `yaml:"address" jsonschema:"required"`
	// AllowedIPs are routed to the VPS through the tunnel; empty means
	// the tunnel's own network.
	AllowedIPs []string `yaml:"allowed_ips"`
	// Keepalive in seconds, 0 to turn it off; nil in the file means
	// DefaultKeepalive, and a validated profile never has nil here.
	Keepalive *int `yaml:"keepalive"`
}

// Disk uses: the system disk carries ESP, root and state (and, after
// SystemSize, the role's data partition); a data disk is whole for the role.
const (
	UseSystem = "system"
	UseData   = "data"
)

// Disk is one physical disk, found by a stable identifier, never by its
// /dev name (which is not stable across boots).
type Disk struct {
	Name   string `yaml:"name" jsonschema:"required"` // unique within the machine, e.g. "system"
	Serial string `yaml:"serial"`                     // as the disk reports it (udev ID_SERIAL_SHORT)
	WWN    string `yaml:"wwn"`                        // e.g. 0x50014ee2b5f0c1a2
	Size   Size   `yaml:"size" jsonschema:"required"` // capacity; also the rehearsal disk size
	Use    string `yaml:"use" jsonschema:"required"`  // system (ESP, root, state, then the role's data) or data (whole, for the role)
	// SystemSize bounds the OS slice on a system disk; zero means the
	// whole disk. The space after it is the role's data partition.
	SystemSize Size `yaml:"system_size"`
	// Wipe allows kiln to overwrite a disk that holds partitions or
	// filesystems. Without it such a disk stops the install untouched.
	Wipe bool `yaml:"wipe"`
}
