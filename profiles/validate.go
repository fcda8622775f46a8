package profiles

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
)

// Validation: every rule a profile must satisfy, checked once after strict
// decoding. Each rule reports by field path; the path's place in the file
// comes from the structural pass. Rules never stop at the first problem.

var (
	labelRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	suiteRE  = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	macRE    = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
	serialRE = regexp.MustCompile(`^[\x21-\x7e]+$`)
	// wwnRE: udev's ID_WWN spellings (SCSI/SATA 0x..., NVMe eui./naa.).
	wwnRE = regexp.MustCompile(`^(0x|eui\.|naa\.)([0-9a-fA-F]{16}|[0-9a-fA-F]{32})$`)
)

// Enumerations, in the order error messages list them.
var (
	roles     = []string{RoleStorage, RoleCompute, RoleGate}
	boards    = []string{BoardPC, BoardRPi4}
	arches    = []string{"amd64", "arm64"}
	firmwares = []string{FirmwareBIOS, FirmwareUEFI}
	uses      = []string{UseSystem, UseData}
	dhcpModes = []string{DHCPProxy, DHCPFull}
	bondModes = []string{Bond8023ad, BondActiveBackup}
)

// validator carries what rules across machines need: the parsed networks
// and who already claimed each unique value.
type validator struct {
	p       *Profile
	ps      *problems
	prefix  netip.Prefix // invalid when network.cidr is
	gw      netip.Addr   // invalid when network.gateway is
	cluster netip.Prefix // invalid when network.cluster.cidr is (or absent)
	// clusterMTU is the first machine's MTU on the cluster network, which
	// every other machine must match.
	clusterMTU *clusterMTU
	seen       map[string]string
}

func validate(p *Profile, ps *problems) {
	v := &validator{p: p, ps: ps, seen: map[string]string{}}
	v.label("name", p.Name, "lab name")
	v.debian()
	v.network()
	for i := range p.Machines {
		v.machine(i)
	}
	v.gates()
	v.dhcpRange()
	v.storage()
	v.services()
}

// claim records that value, a kind ("serial", "MAC", ...) that must be
// unique in the lab, belongs to owner; a second claim is a problem at field.
// Values compare case-insensitively (MACs, WWNs). owner may be empty when
// kind says it all ("name of a machine"). It reports whether the claim
// was the first.
func (v *validator) claim(field, kind, value, owner string) bool {
	key := kind + "\x00" + strings.ToLower(value)
	if first, ok := v.seen[key]; ok {
		v.ps.add(field, "%q is also the %s%s", value, kind, first)
		return false
	}
	if owner != "" {
		owner = " of " + owner
	}
	v.seen[key] = fmt.Sprintf("%s (line %d)", owner, v.ps.pos.near(field).Line)
	return true
}

// present reports whether field is written in the file (a zero value may
// be written or left out).
func (v *validator) present(field string) bool {
	_, ok := v.ps.pos[field]
	return ok
}

func (v *validator) required(field, value string) bool {
	if value == "" {
		v.ps.add(field, "required")
		return false
	}
	return true
}

// label checks a DNS label (RFC 1123): machine names become host names and
// bundle paths, so only lowercase letters, digits and inner hyphens.
func (v *validator) label(field, value, what string) bool {
	if !v.required(field, value) {
		return false
	}
	if !labelRE.MatchString(value) {
		v.ps.add(field, "%q is not a valid %s: use at most 63 lowercase letters, digits and '-', not starting or ending with '-'", value, what)
		return false
	}
	return true
}

func (v *validator) oneOf(field, value string, allowed []string) bool {
	if !v.required(field, value) {
		return false
	}
	for _, a := range allowed {
		if value == a {
			return true
		}
	}
	v.ps.add(field, "unknown value %q (want %s)", value, strings.Join(allowed, ", "))
	return false
}

func (v *validator) debian() {
	if !suiteRE.MatchString(v.p.Debian.Suite) {
		v.ps.add("debian.suite", "%q is not a Debian suite name such as bookworm", v.p.Debian.Suite)
	}
	u, err := url.Parse(v.p.Debian.Mirror)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.ps.add("debian.mirror", "%q is not an http:// or https:// URL", v.p.Debian.Mirror)
	}
}
