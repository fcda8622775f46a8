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
