package profiles

// The profile schema: one typed description of a lab. Every field here is
// decoded strictly (unknown keys are errors) and validated once by Load; the
// rest of kiln receives a *Profile it can trust and never re-checks it.

// Profile is one lab.
type Profile struct {
	// Name identifies the lab; it seeds every derived identifier (GPT GUIDs,
	// filesystem UUIDs), so renaming a lab changes them all.
	Name     string    `yaml:"name"`
	Debian   Debian    `yaml:"debian"`
	Network  Network   `yaml:"network"`
	Machines []Machine `yaml:"machines"`

	// Source is the file the profile was read from ("homelab.yaml" for the
	// embedded default); it is not part of the YAML.
	Source string `yaml:"-"`
}

// Debian says where root filesystems, kernels and firmware come from.
type Debian struct {
	Suite  string `yaml:"suite"`  // e.g. bookworm
	Mirror string `yaml:"mirror"` // e.g. http://deb.debian.org/debian
}

// Network is the lab's one L2 segment.
type Network struct {
	CIDR    string   `yaml:"cidr"`    // e.g. 192.168.1.0/24
	Gateway string   `yaml:"gateway"` // the ISP box / router
	DNS     []string `yaml:"dns"`
	NTP     []string `yaml:"ntp"`
	DHCP    DHCP     `yaml:"dhcp"`
}

// DHCP modes of the gate's netboot service.
const (
	DHCPProxy = "proxy" // beside an existing DHCP server: netboot options only
	DHCPFull  = "full"  // the gate hands out leases itself
)

// DHCP configures how the gate answers DHCP.
type DHCP struct {
	Mode  string `yaml:"mode"`  // DHCPProxy (default) or DHCPFull
	Range string `yaml:"range"` // "first-last" pool for DHCPFull
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
	Name     string `yaml:"name"`
	Role     string `yaml:"role"`
	Hardware string `yaml:"hardware"` // free text, for people
	Board    string `yaml:"board"`
	Arch     string `yaml:"arch"`     // amd64 or arm64
	Firmware string `yaml:"firmware"` // bios or uefi (board pc)
	MAC      string `yaml:"mac"`      // the NIC that netboots, aa:bb:cc:dd:ee:ff
	Address  string `yaml:"address"`  // static IPv4 inside Network.CIDR
	Disks    []Disk `yaml:"disks"`
	// WireGuard is the gate's tunnel to a VPS (seed 004); only the gate
	// may have one, nil means no tunnel.
	WireGuard *WireGuard `yaml:"wireguard"`
}

// WireGuard is the gate's end of its tunnel; the keys are not here but in
// the lab's secrets directory (package image/secrets).
type WireGuard struct {
	// Address is the gate's tunnel address with the tunnel's prefix
	// length, e.g. 10.99.0.2/24; the tunnel must not overlap the lab.
	Address string `yaml:"address"`
	// ListenPort is the gate's UDP port; 0 lets the kernel choose (the
	// gate dials out, so nothing needs to reach it).
	ListenPort int           `yaml:"listen_port"`
	Peer       WireGuardPeer `yaml:"peer"`
}

// DefaultKeepalive is the keepalive, in seconds, of a peer that names none:
// the gate sits behind the ISP box's NAT, whose mapping must stay open for
// the VPS to reach it.
const DefaultKeepalive = 25

// WireGuardPeer is the VPS at the other end.
type WireGuardPeer struct {
	Endpoint string `yaml:"endpoint"` // host:port of the VPS
	// Address is the VPS's tunnel address, inside the gate's tunnel
	// prefix (written into the VPS's config by kiln gate wireguard-peer).
	Address string `yaml:"address"`
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
	Name   string `yaml:"name"`   // unique within the machine, e.g. "system"
	Serial string `yaml:"serial"` // as the disk reports it (udev ID_SERIAL_SHORT)
	WWN    string `yaml:"wwn"`    // e.g. 0x50014ee2b5f0c1a2
	Size   Size   `yaml:"size"`   // capacity; also the rehearsal disk size
	Use    string `yaml:"use"`    // UseSystem or UseData
	// SystemSize bounds the OS slice on a system disk; zero means the
	// whole disk. The space after it is the role's data partition.
	SystemSize Size `yaml:"system_size"`
	// Wipe allows kiln to overwrite a disk that holds partitions or
	// filesystems. Without it such a disk stops the install untouched.
	Wipe bool `yaml:"wipe"`
}
