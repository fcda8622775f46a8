package profiles

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kilnlab/kiln/internal/golden"
)

func TestDefaultValidates(t *testing.T) {
	p, err := Default()
	if err != nil {
		t.Fatalf("homelab.yaml does not validate:\n%v", err)
	}
	if p.Source != "homelab.yaml" || p.Name != "homelab" || len(p.Machines) != 5 {
		t.Errorf("Default() = source %q name %q %d machines", p.Source, p.Name, len(p.Machines))
	}
	// The file on disk is the one embedded.
	q, err := Load("homelab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, q); diff != "" {
		t.Errorf("Load(homelab.yaml) differs from Default() (-want +got):\n%s", diff)
	}
}

func TestDefaultsApplied(t *testing.T) {
	p, err := Load("testdata/good-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := []string{p.Debian.Suite, p.Debian.Mirror, p.Network.DHCP.Mode, p.Machines[0].MAC, p.Machines[1].Disks[0].WWN}
	want := []string{"bookworm", "http://deb.debian.org/debian", "proxy", "52:54:00:aa:00:01", "0x50014ee2b5f0c1a2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults and normalisation (-want +got):\n%s", diff)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
}

// TestBadProfiles pins the exact problems of each bad profile: place,
// field and message are the user interface of validation.
func TestBadProfiles(t *testing.T) {
	seen := map[string]bool{}
	defer func() {
		files, _ := filepath.Glob("testdata/bad-*.yaml")
		for _, f := range files {
			if !seen[filepath.Base(f)] {
				t.Errorf("%s has no case in TestBadProfiles", f)
			}
		}
	}()
	for _, tc := range []struct {
		file string
		want []string // each a Problem.String(), in order
	}{
		{"bad-empty.yaml", []string{"bad-empty.yaml:1:1: the profile is empty"}},
		{"bad-syntax.yaml", []string{"bad-syntax.yaml:4:1: YAML syntax: mapping values are not allowed in this context"}},
		{"bad-unknown-key.yaml", []string{
			"bad-unknown-key.yaml:5:3: network.vlan: unknown field (known: cidr, gateway, dns, ntp, dhcp, cluster)",
			"bad-unknown-key.yaml:13:5: machines[0].colour: unknown field (known: name, role, hardware, board, arch, firmware, mac, address, memory, interfaces, disks, wireguard)",
			"bad-unknown-key.yaml:26:9: machines[1].disks[0].systemsize: unknown field (known: name, serial, wwn, size, use, system_size, wipe)",
		}},
		{"bad-types.yaml", []string{
			"bad-types.yaml:3:9: network.cidr: want a single value, not a list",
			"bad-types.yaml:6:5: machines[0]: YAML anchors and aliases are not supported in profiles",
			`bad-types.yaml:23:15: machines[1].disks[0].size: size "lots": want a whole number with a unit such as 500GB or 50GiB`,
			"bad-types.yaml:25:15: machines[1].disks[0].wipe: want true or false",
			"bad-types.yaml:26:5: machines[2]: YAML anchors and aliases are not supported in profiles",
		}},
		{"bad-required.yaml", []string{
			"bad-required.yaml:1:1: name: required",
			"bad-required.yaml:1:1: network.cidr: required",
			"bad-required.yaml:1:1: network.gateway: required",
			"bad-required.yaml:2:3: network.dhcp.range: required in mode full (the pool the gate leases from, e.g. 192.168.1.100-192.168.1.199)",
			"bad-required.yaml:5:5: machines[0].mac: required",
			"bad-required.yaml:5:5: machines[0].address: required",
			"bad-required.yaml:9:5: machines[1].name: required",
			"bad-required.yaml:9:5: machines[1].firmware: required",
			"bad-required.yaml:9:5: machines[1].mac: required",
			"bad-required.yaml:9:5: machines[1].address: required",
			"bad-required.yaml:13:9: machines[1].disks[0].name: required",
			"bad-required.yaml:13:9: machines[1].disks[0]: a disk without serial or wwn: the installer could not find it (/dev names change between boots)",
		}},
		{"bad-enums.yaml", []string{
			`bad-enums.yaml:6:5: network.dhcp.mode: unknown value "relay" (want proxy, full)`,
			"bad-enums.yaml:7:1: machines: no machine has role gate; a lab needs exactly one (a Raspberry Pi 4)",
			`bad-enums.yaml:9:5: machines[0].role: unknown value "gateway" (want storage, compute, gate)`,
			`bad-enums.yaml:10:5: machines[0].board: unknown value "rpi5" (want pc, rpi4)`,
			`bad-enums.yaml:17:5: machines[1].arch: unknown value "x86_64" (want amd64, arm64)`,
			`bad-enums.yaml:18:5: machines[1].firmware: unknown value "coreboot" (want bios, uefi)`,
			"bad-enums.yaml:21:5: machines[1].disks: want exactly one disk with use: system, found 0",
			`bad-enums.yaml:25:9: machines[1].disks[0].use: unknown value "os" (want system, data)`,
		}},
		{"bad-names.yaml", []string{
			`bad-names.yaml:1:1: name: "My Lab" is not a valid lab name: use at most 63 lowercase letters, digits and '-', not starting or ending with '-'`,
			`bad-names.yaml:3:3: debian.suite: "Bookworm!" is not a Debian suite name such as bookworm`,
			`bad-names.yaml:4:3: debian.mirror: "ftp.debian.org/debian" is not an http:// or https:// URL`,
			`bad-names.yaml:8:19: network.dns[1]: "dns.example" is not an IP address`,
			`bad-names.yaml:9:23: network.ntp[1]: "not a host" is neither an IP address nor a host name`,
			`bad-names.yaml:17:5: machines[1].name: "Node_1" is not a valid machine name (an RFC 1123 host name): use at most 63 lowercase letters, digits and '-', not starting or ending with '-'`,
			`bad-names.yaml:22:5: machines[1].mac: "52-54-00-00-00-02" is not a MAC address such as 52:54:00:12:34:56`,
			`bad-names.yaml:25:9: machines[1].disks[0].name: "-system" is not a valid disk name: use at most 63 lowercase letters, digits and '-', not starting or ending with '-'`,
			`bad-names.yaml:26:9: machines[1].disks[0].serial: "WD 123" has spaces or non-ASCII characters; write it as udev's ID_SERIAL_SHORT does (spaces as _)`,
			`bad-names.yaml:27:9: machines[1].disks[0].wwn: "0x1234" is not a WWN as udev's ID_WWN spells it (0x, naa. or eui. and 16 or 32 hex digits)`,
			`bad-names.yaml:35:5: machines[2].mac: 01:00:5e:00:00:01 is a multicast address, not a network card's`,
		}},
		{"bad-duplicates.yaml", []string{
			`bad-duplicates.yaml:28:5: machines[2].name: "node-1" is also the name of a machine (line 12)`,
			`bad-duplicates.yaml:33:5: machines[2].mac: "52:54:00:00:00:02" is also the MAC of node-1 (line 17)`,
			`bad-duplicates.yaml:34:5: machines[2].address: "10.0.0.3" is also the address of node-1 (line 18)`,
			`bad-duplicates.yaml:36:9: machines[2].disks[0].name: "system" is also the name of a disk of node-1 (line 20)`,
			`bad-duplicates.yaml:37:9: machines[2].disks[0].serial: "S1" is also the serial of node-1 disk system (line 21)`,
			`bad-duplicates.yaml:40:9: machines[2].disks[1].name: "system" is also the name of a disk of node-1 (line 20)`,
			`bad-duplicates.yaml:41:9: machines[2].disks[1].wwn: "0x5000C500A1B2C3D4" is also the WWN of node-1 disk osd (line 25)`,
		}},
		{"bad-network.yaml", []string{
			"bad-network.yaml:4:3: network.gateway: 10.0.1.1 is outside network.cidr 10.0.0.0/24",
			`bad-network.yaml:7:5: network.dhcp.range: "10.0.0.200-10.0.0.100" ends before it starts`,
			"bad-network.yaml:14:5: machines[0].address: 10.0.0.0 is the network address of 10.0.0.0/24",
			"bad-network.yaml:21:5: machines[1].address: 10.0.0.255 is the broadcast address of 10.0.0.0/24",
			"bad-network.yaml:33:5: machines[2].address: 10.1.0.3 is outside network.cidr 10.0.0.0/24",
		}},
		{"bad-cidr.yaml", []string{
			`bad-cidr.yaml:3:3: network.cidr: "10.0.0.5/24" has host bits set; the network is 10.0.0.0/24`,
			`bad-cidr.yaml:6:5: network.dhcp.range: "10.0.0.100" is not a range such as 192.168.1.100-192.168.1.199`,
		}},
		{"bad-range.yaml", []string{
			"bad-range.yaml:7:5: network.dhcp.range: 10.0.0.1-10.0.0.50 contains network.gateway 10.0.0.1",
			"bad-range.yaml:7:5: network.dhcp.range: 10.0.0.1-10.0.0.50 contains the address 10.0.0.1 of gate (line 14)",
			"bad-range.yaml:7:5: network.dhcp.range: 10.0.0.1-10.0.0.50 contains the address 10.0.0.20 of node-1 (line 21)",
			"bad-range.yaml:14:5: machines[0].address: 10.0.0.1 is network.gateway",
		}},
		{"bad-gates.yaml", []string{
			"bad-gates.yaml:8:5: machines[0].board: the gate must be board rpi4, not pc",
			"bad-gates.yaml:14:5: machines[1].role: a second gate (the first is gate-1, line 7); a lab has exactly one",
			"bad-gates.yaml:16:5: machines[1].arch: board rpi4 is arm64, not amd64",
			"bad-gates.yaml:17:5: machines[1].firmware: only board pc has a firmware choice",
			"bad-gates.yaml:22:5: machines[2].board: board rpi4 can only be the gate (role gate)",
		}},
		{"bad-nogate.yaml", []string{
			"bad-nogate.yaml:5:1: machines: no machine has role gate; a lab needs exactly one (a Raspberry Pi 4)",
			"bad-nogate.yaml:6:5: machines[0].firmware: required",
			"bad-nogate.yaml:9:5: machines[0].arch: board pc is amd64, not arm64",
		}},
		{"bad-disks.yaml", []string{
			"bad-disks.yaml:19:5: machines[1].disks: want exactly one disk with use: system, found 0",
			"bad-disks.yaml:24:9: machines[1].disks[0].system_size: only a disk with use: system has a system_size",
			"bad-disks.yaml:32:5: machines[2].disks: want exactly one disk with use: system, found 2",
			"bad-disks.yaml:37:9: machines[2].disks[1]: a disk without serial or wwn: the installer could not find it (/dev names change between boots)",
			"bad-disks.yaml:50:9: machines[3].disks[0].size: layout does not fit: the disk (3GiB) is smaller than the 3202MiB a system needs (1MiB GPT headroom at each end, ESP 128MiB, root 2GiB, state at least 1GiB)",
			"bad-disks.yaml:64:9: machines[4].disks[0].system_size: layout does not fit: system_size 1TB is larger than the disk (100GB)",
			"bad-disks.yaml:65:5: machines[5].disks: want exactly one disk with use: system, found 0",
		}},
		{"bad-wireguard.yaml", []string{
			`bad-wireguard.yaml:15:7: machines[0].wireguard.listen_port: 70000 is not a UDP port (0 to 65535; 0 lets the kernel choose)`,
			`bad-wireguard.yaml:17:9: machines[0].wireguard.peer.endpoint: "vps.example.net" is not host:port, such as vps.example.net:51820`,
			`bad-wireguard.yaml:18:9: machines[0].wireguard.peer.address: 10.98.0.1 is outside the tunnel 10.99.0.0/24`,
			`bad-wireguard.yaml:19:37: machines[0].wireguard.peer.allowed_ips[1]: "10.99.1.1/24" has host bits set; the network is 10.99.1.0/24`,
			`bad-wireguard.yaml:19:51: machines[0].wireguard.peer.allowed_ips[2]: 10.0.0.0/16 overlaps network.cidr 10.0.0.0/24: the gate would send the lab's own traffic into the tunnel`,
			`bad-wireguard.yaml:19:64: machines[0].wireguard.peer.allowed_ips[3]: "vps" is not an IPv4 network such as 10.99.0.0/24`,
			`bad-wireguard.yaml:19:69: machines[0].wireguard.peer.allowed_ips[4]: "2001:db8::/32" is not an IPv4 network such as 10.99.0.0/24`,
			`bad-wireguard.yaml:20:9: machines[0].wireguard.peer.keepalive: 65536 is out of range (0 to 65535 seconds; 0 turns it off)`,
			`bad-wireguard.yaml:33:5: machines[1].wireguard: only the gate has a wireguard tunnel (this machine's role is compute)`,
		}},
		{"bad-wireguard-tunnel.yaml", []string{
			`bad-wireguard-tunnel.yaml:14:7: machines[0].wireguard.address: the tunnel 10.0.99.0/24 overlaps network.cidr 10.0.0.0/16; give it a network of its own`,
			`bad-wireguard-tunnel.yaml:16:9: machines[0].wireguard.peer.endpoint: "bad host:0": "bad host" is neither an IP address nor a host name`,
			`bad-wireguard-tunnel.yaml:16:9: machines[0].wireguard.peer.endpoint: "bad host:0": "0" is not a UDP port (1 to 65535)`,
			`bad-wireguard-tunnel.yaml:19:5: machines[1].role: a second gate (the first is gate, line 8); a lab has exactly one`,
			`bad-wireguard-tunnel.yaml:25:7: machines[1].wireguard.address: "10.99.0.0/31" leaves no room for the peer in the tunnel (at most /30)`,
			`bad-wireguard-tunnel.yaml:26:7: machines[1].wireguard.peer.endpoint: required`,
			`bad-wireguard-tunnel.yaml:26:7: machines[1].wireguard.peer.address: required`,
		}},
		{"bad-wireguard-types.yaml", []string{
			`bad-wireguard-types.yaml:14:16: machines[0].wireguard.address: want a single value, not a list`,
			`bad-wireguard-types.yaml:15:20: machines[0].wireguard.listen_port: want a whole number`,
			`bad-wireguard-types.yaml:19:22: machines[0].wireguard.peer.allowed_ips: want a list, not a single value`,
			`bad-wireguard-types.yaml:20:20: machines[0].wireguard.peer.keepalive: want a whole number`,
			`bad-wireguard-types.yaml:21:9: machines[0].wireguard.peer.public_key: unknown field (known: endpoint, address, allowed_ips, keepalive)`,
		}},
		{"bad-interfaces.yaml", []string{
			"bad-interfaces.yaml:13:5: machines[0].interfaces: the gate has no interfaces: it configures its one NIC itself (interfaces are for the servers kiln installs)",
			"bad-interfaces.yaml:25:48: machines[1].interfaces.nics[1].mtu: nic1 is a member of bond0, which sets its MTU: give the mtu to bond0",
			`bad-interfaces.yaml:27:12: machines[1].interfaces.nics[3].name: "vlan5" is a name kiln gives bonds and VLANs; call the NIC e.g. nic3`,
			`bad-interfaces.yaml:28:24: machines[1].interfaces.nics[4].mac: "52:54:00:00:11:01" is also the MAC of node-1 NIC nic1 (line 25)`,
			"bad-interfaces.yaml:28:48: machines[1].interfaces.nics[4].mtu: 70000 is out of range (1280 to 9216 bytes)",
			"bad-interfaces.yaml:30:62: machines[1].interfaces.bonds[0].members[2]: nic0 is already a member of bond0 (line 30): a NIC is in one bond, once",
			`bad-interfaces.yaml:31:25: machines[1].interfaces.bonds[1].mode: unknown value "balance-rr" (want 802.3ad, active-backup)`,
			"bad-interfaces.yaml:31:53: machines[1].interfaces.bonds[1].members[0]: nic1 is already a member of bond0 (line 30): a NIC is in one bond, once",
			`bad-interfaces.yaml:31:59: machines[1].interfaces.bonds[1].members[1]: "nic9" is not a NIC of node-1 (interfaces.nics: nic0, nic1, nic2, nic4)`,
			`bad-interfaces.yaml:32:12: machines[1].interfaces.bonds[2].name: "lag0" is not a bond name: bonds are bond0, bond1, ... (kiln names links by kind)`,
			"bad-interfaces.yaml:32:45: machines[1].interfaces.bonds[2].members: required: the names of the NICs it bonds (from interfaces.nics)",
			"bad-interfaces.yaml:34:12: machines[1].interfaces.vlans[0].id: 0 is not a VLAN id (1 to 4094)",
			"bad-interfaces.yaml:35:12: machines[1].interfaces.vlans[1].id: 5000 is not a VLAN id (1 to 4094)",
			`bad-interfaces.yaml:36:20: machines[1].interfaces.vlans[2].link: "bond7" is not a NIC or bond of node-1 (links: nic0, nic1, nic2, nic4, bond0, bond1)`,
			"bad-interfaces.yaml:37:20: machines[1].interfaces.vlans[3].link: nic1 is a member of bond0: put the VLAN on bond0",
			"bad-interfaces.yaml:38:32: machines[1].interfaces.vlans[4].mtu: 9000 is larger than the MTU of nic2 (1500): the kernel refuses a VLAN larger than its link; give nic2 mtu: 9000 too",
			"bad-interfaces.yaml:39:12: machines[1].interfaces.vlans[5].id: VLAN 40 is listed twice (first on line 38): a machine joins a VLAN once",
			"bad-interfaces.yaml:40:20: machines[1].interfaces.vlans[6].link: vlan40 is a VLAN: kiln puts VLANs on a NIC or a bond",
			"bad-interfaces.yaml:48:5: machines[2].mac: 52:54:00:00:01:02 is not the MAC of any of interfaces.nics: list the NIC that netboots there too",
			`bad-interfaces.yaml:53:24: machines[2].interfaces.nics[1].mac: "52:54:00:00:01:01" is also the MAC of node-1 (line 20)`,
			"bad-interfaces.yaml:65:5: machines[3].interfaces.nics: required: the machine's NICs, the one that netboots (52:54:00:00:01:03) among them",
			"bad-interfaces.yaml:67:11: machines[3].interfaces.bonds[0].members: required: the names of the NICs it bonds (from interfaces.nics)",
		}},
		{"bad-cluster.yaml", []string{
			"bad-cluster.yaml:46:17: machines[2].interfaces.cluster.link: vlan20 has MTU 1500, but the cluster network has 9000 on ceph-1 (line 30): one MTU per network, or large frames are dropped",
			`bad-cluster.yaml:46:31: machines[2].interfaces.cluster.address: "10.20.0.11" is also the cluster address of ceph-1 (line 30)`,
			"bad-cluster.yaml:62:17: machines[3].interfaces.cluster.link: nic1 is a member of bond0: put the cluster network on bond0 or on a VLAN over it",
			"bad-cluster.yaml:62:29: machines[3].interfaces.cluster.address: 10.21.0.13 is outside network.cluster.cidr 10.20.0.0/24",
			"bad-cluster.yaml:75:17: machines[4].interfaces.cluster.link: nic0 carries the LAN untagged: the cluster network needs a link of its own (a VLAN or another NIC or bond)",
			"bad-cluster.yaml:75:29: machines[4].interfaces.cluster.address: 10.20.0.255 is the broadcast address of 10.20.0.0/24",
			`bad-cluster.yaml:88:17: machines[5].interfaces.cluster.link: "vlan20" is not a link of ceph-5 (links: nic0)`,
			"bad-cluster.yaml:91:5: machines[6].interfaces.cluster: required for a storage machine when the lab has network.cluster (Ceph's OSDs replicate over it)",
		}},
		{"bad-cluster-net.yaml", []string{
			"bad-cluster-net.yaml:7:5: network.cluster.cidr: 10.0.0.0/16 overlaps network.cidr 10.0.0.0/24: the cluster network must be a network of its own",
			"bad-cluster-net.yaml:28:11: machines[1].interfaces.nics[4]: nic4 carries nothing: it does not netboot, is in no bond, and has no VLAN or the cluster network on it",
			"bad-cluster-net.yaml:30:11: machines[1].interfaces.bonds[0]: bond0 carries nothing: the NIC that netboots is not a member (so the LAN is elsewhere), and no VLAN or the cluster network is on it",
			"bad-cluster-net.yaml:32:11: machines[1].interfaces.vlans[0]: vlan20 carries nothing: the cluster network is not on it (the LAN is untagged on the link that netboots)",
		}},
		{"bad-memory.yaml", []string{
			"bad-memory.yaml:13:5: machines[0].memory: 4B is less than the 512MiB a machine needs to run its role (a size without its unit? write e.g. 16GiB)",
			"bad-memory.yaml:21:5: machines[1].memory: 0B is less than the 512MiB a machine needs to run its role (a size without its unit? write e.g. 16GiB)",
		}},
		{"bad-services.yaml", []string{
			"bad-services.yaml:15:3: services.consul: no storage machine to run a Consul server (one runs on every storage machine)",
			`bad-services.yaml:16:5: services.consul.datacenter: "My DC" is not a Consul datacenter name: use lowercase letters, digits, '-' and '_'`,
			`bad-services.yaml:17:5: services.consul.domain: "-bad-" is not a DNS domain such as consul`,
			`bad-services.yaml:18:5: services.consul.version: "latest" is not a release version such as 1.22.6 or v1.33.6+k3s1`,
			"bad-services.yaml:19:3: services.vault: Vault stores its data in Consul, and this lab runs no Consul server: add services.consul and at least one storage machine",
			`bad-services.yaml:20:5: services.vault.unseal: unknown value "later" (want gate, manual)`,
			"bad-services.yaml:21:3: services.k3s: no compute machine to run k3s (it runs on every compute machine)",
			`bad-services.yaml:22:5: services.k3s.version: "1.33" is not a release version such as 1.22.6 or v1.33.6+k3s1`,
			`bad-services.yaml:23:24: services.k3s.disable[1]: unknown value "kube-proxy" (want coredns, servicelb, traefik, local-storage, metrics-server, runtimes)`,
			`bad-services.yaml:24:24: services.k3s.tls_san[1]: "not a name" is neither an IP address nor a DNS name`,
			"bad-services.yaml:25:5: services.k3s.gitops.repo: required",
			`bad-services.yaml:26:7: services.k3s.gitops.path: "../apps" is not a clean path inside the repository (no leading /, no ..)`,
			`bad-services.yaml:27:7: services.k3s.gitops.revision: "main branch" is not a git branch, tag or commit`,
		}},
		{"bad-cluster-none.yaml", []string{
			"bad-cluster-none.yaml:24:7: machines[1].interfaces.cluster: the lab has no cluster network: set network.cluster.cidr, or remove this",
		}},
	} {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tc.file))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Load = %v, want a *ValidationError", err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, strings.TrimPrefix(p.String(), "testdata/"))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWarnings pins what a valid but questionable profile is warned of:
// a Ceph cluster that does not survive a node loss, OSDs short of memory
// or of hosts. The reference labs have none.
func TestWarnings(t *testing.T) {
	seen := map[string]bool{}
	defer func() {
		files, _ := filepath.Glob("testdata/warn-*.yaml")
		for _, f := range files {
			if !seen[filepath.Base(f)] {
				t.Errorf("%s has no case in TestWarnings", f)
			}
		}
	}()
	for _, tc := range []struct {
		file string
		want []string // each a Problem.String(), in order
	}{
		{"homelab.yaml", nil},
		{"testdata/good-bonded.yaml", nil},
		{"testdata/good-minimal.yaml", nil},
		{"testdata/warn-one-node.yaml", []string{
			"warn-one-node.yaml:15:5: machines[1].role: the only storage node: Ceph keeps one copy of each object and stops with this machine; three storage nodes survive the loss of one",
			"warn-one-node.yaml:21:5: machines[1].memory: 6GiB leaves each of the 2 OSDs less than Ceph's minimum osd_memory_target (896MiB) once 4GiB is kept for the system, Consul, Vault, the monitor and the manager: kiln sets the minimum, and the machine may run out of memory during recovery; give it at least 6486MiB, or fewer OSDs",
		}},
		{"testdata/warn-two-nodes.yaml", []string{
			"warn-two-nodes.yaml:8:1: machines: 1 of the 2 storage nodes have an OSD, fewer than the 2 copies of each object Ceph keeps, one per host: placement groups stay undersized (HEALTH_WARN); give more storage nodes an OSD (a data disk, or a system_size that leaves room after the OS)",
			"warn-two-nodes.yaml:26:5: machines[2].role: one of two storage nodes (with ceph-1): two Ceph monitors need each other for a quorum, so the cluster stops when either machine is down (pools keep 2 copies, min_size 1); three storage nodes survive the loss of one",
			"warn-two-nodes.yaml:26:5: machines[2].role: one of two Consul servers (with ceph-1): a Raft quorum of two needs both, so Consul (and Vault on it) stops when either machine is down; three survive the loss of one",
		}},
		{"testdata/warn-consul-four.yaml", []string{
			"warn-consul-four.yaml:42:5: machines[4].role: 4 Consul servers: an even count survives no more losses than 3 servers do, and its quorum is larger",
		}},
		{"testdata/warn-no-osd.yaml", []string{
			"warn-no-osd.yaml:14:5: machines[1].role: the only storage node: Ceph keeps one copy of each object and stops with this machine; three storage nodes survive the loss of one",
			"warn-no-osd.yaml:20:5: machines[1].disks: the storage node has no OSD, so Ceph has nowhere to keep data: give it a data disk, or a system_size that leaves room after the OS",
		}},
	} {
		seen[filepath.Base(tc.file)] = true
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			p, err := Load(tc.file)
			if err != nil {
				t.Fatalf("a profile with warnings must still be valid: %v", err)
			}
			var got []string
			for _, w := range p.Warnings {
				got = append(got, strings.TrimPrefix(w.String(), "testdata/"))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOSDMemoryTarget pins the formula: (memory - 4GiB) × 3/4 per OSD,
// whole MiB, between Ceph's minimum and its default.
func TestOSDMemoryTarget(t *testing.T) {
	for _, tc := range []struct {
		memory Size
		osds   int
		want   Size
		fits   bool
	}{
		{8 * GiB, 2, 1536 * MiB, true}, // ceph-1 of the reference lab
		{16 * GiB, 2, 4 * GiB, true},   // 4.5GiB, capped at Ceph's default
		{64 * GiB, 1, 4 * GiB, true},
		{8 * GiB, 1, 3 * GiB, true},
		{6 * GiB, 2, 896 * MiB, false}, // 768MiB: the floor
		{4 * GiB, 1, 896 * MiB, false}, // nothing left after the reserve
		{2 * GiB, 1, 896 * MiB, false},
		{8 * GiB, 0, 896 * MiB, false},
		{7*GiB + 1, 3, 896 * MiB, false}, // 3GiB × 3/4 / 3 = 768MiB: the floor
		{MinStorageMemory(2), 2, 896 * MiB, true},
		{MinStorageMemory(2) - MiB, 2, 896 * MiB, false},
		{MinStorageMemory(3), 3, 896 * MiB, true},
	} {
		got, fits := OSDMemoryTarget(tc.memory, tc.osds)
		if got != tc.want || fits != tc.fits {
			t.Errorf("OSDMemoryTarget(%s, %d) = %s, %v; want %s, %v", tc.memory, tc.osds, got, fits, tc.want, tc.fits)
		}
	}
}

func TestCephReplication(t *testing.T) {
	for nodes, want := range map[int]Replication{
		1: {Size: 1, MinSize: 1, ChooseleafType: 0},
		2: {Size: 2, MinSize: 1, ChooseleafType: 1},
		3: {Size: 3, MinSize: 2, ChooseleafType: 1},
		5: {Size: 3, MinSize: 2, ChooseleafType: 1},
	} {
		if got := CephReplication(nodes); got != want {
			t.Errorf("CephReplication(%d) = %+v, want %+v", nodes, got, want)
		}
	}
}

// TestStorageOSDs: the system disk's data partition (after system_size)
// and every data disk, whole; a system disk that is all OS has none.
func TestStorageOSDs(t *testing.T) {
	p, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	type osd struct {
		Disk        string
		Start, Size uint64
	}
	var got []osd
	for _, o := range StorageOSDs(&p.Machines[1]) {
		g := osd{Disk: o.Disk.Name}
		if o.Part != nil {
			g.Start, g.Size = o.Part.Start, o.Part.Size
		}
		got = append(got, g)
	}
	want := []osd{
		{"system", 50 * GiB, 1000000000000 - 50*GiB - 1*MiB - 1000000000000%MiB},
		{"osd", 0, 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ceph-1 OSDs (-want +got):\n%s", diff)
	}
	if o := StorageOSDs(&p.Machines[4]); len(o) != 0 { // compute-1: all OS
		t.Errorf("compute-1 OSDs = %d, want 0", len(o))
	}
}

// TestGolden records the decoded form of every good profile (defaults
// applied, spellings normalised); run with -update after an intended change.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/good-*.yaml")
	for _, f := range append(files, "homelab.yaml") {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(p, "", "  ")
			got = append(got, '\n')
			golden.Check(t, strings.TrimSuffix(filepath.Join("testdata", filepath.Base(f)), ".yaml")+".golden", got)
		})
	}
}

// FuzzParse: any input either parses into a profile whose system disks lay
// out, or is rejected with located problems; it never panics.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range append(files, "homelab.yaml") {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("Parse error %v is not a *ValidationError with problems", err)
			}
			for _, pr := range ve.Problems {
				if pr.File != "fuzz.yaml" || pr.Line < 0 || pr.Msg == "" {
					t.Fatalf("bad problem %+v", pr)
				}
			}
			return
		}
		for _, m := range p.Machines {
			for _, d := range m.Disks {
				if m.Role != RoleGate && d.Use == UseSystem {
					if _, err := SystemSlices(d.Size, d.SystemSize); err != nil {
						t.Fatalf("valid profile, but %s/%s does not lay out: %v", m.Name, d.Name, err)
					}
				}
			}
		}
	})
}
