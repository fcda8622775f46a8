package roles

import (
	"bufio"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vincent-petithory/dataurl"

	"github.com/kilnlab/kiln/profiles"
)

// networkdKeys are the sections and keys kiln writes, each checked against
// systemd.network(5) and systemd.netdev(5) of bookworm's systemd 252; a
// rendered file using anything else fails TestNetworkdFiles. Keys that may
// repeat within a section are marked true.
var networkdKeys = map[string]map[string]map[string]bool{
	".network": {
		"Match":   {"MACAddress": false, "PermanentMACAddress": false, "Name": false},
		"Link":    {"MTUBytes": false, "RequiredForOnline": false},
		"Network": {"Address": true, "Gateway": false, "DNS": true, "NTP": true, "Bond": false, "PrimarySlave": false, "VLAN": true},
		"Address": {"Address": false, "AddPrefixRoute": false},
		"Route":   {"Destination": false, "Scope": false, "Gateway": false, "GatewayOnLink": false, "MTUBytes": false},
	},
	".netdev": {
		"NetDev": {"Name": false, "Kind": false, "MACAddress": false, "MTUBytes": false},
		"Bond":   {"Mode": false, "LACPTransmitRate": false, "TransmitHashPolicy": false, "MIIMonitorSec": false, "PrimaryReselectPolicy": false},
		"VLAN":   {"Id": false},
	},
}

// iniFile is a parsed networkd file: each section's keys and values.
type iniFile map[string]map[string][]string

// parseINI reads a networkd file back: comments, blank lines, [Section]
// headers and Key=Value lines, each key known for its section and file
// kind. It is not networkd's parser, but it catches a typo, a key in the
// wrong section, or a value left empty.
func parseINI(t *testing.T, name, text string) iniFile {
	t.Helper()
	known := networkdKeys[path.Ext(name)]
	f := iniFile{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			if known[section] == nil {
				t.Errorf("%s:%d: section [%s] is not one kiln writes in %s files", name, n, section, path.Ext(name))
			}
			if f[section] != nil && section != "Route" {
				t.Errorf("%s:%d: section [%s] twice", name, n, section)
			}
			f[section] = map[string][]string{}
		default:
			k, val, ok := strings.Cut(line, "=")
			repeats, knownKey := known[section][k]
			switch {
			case !ok || val == "" || strings.TrimSpace(line) != line:
				t.Errorf("%s:%d: %q is not Key=Value", name, n, line)
			case section == "":
				t.Errorf("%s:%d: %q before any section", name, n, line)
			case !knownKey:
				t.Errorf("%s:%d: %s= is not a key of [%s]", name, n, k, section)
			case len(f[section][k]) > 0 && !repeats:
				t.Errorf("%s:%d: %s= twice in [%s]", name, n, k, section)
			}
			if f[section] != nil {
				f[section][k] = append(f[section][k], val)
			}
		}
	}
	return f
}

// TestNetworkdFiles reads back every networkd file rendered for the
// reference lab, the bonded lab and the variants, and checks that they
// hang together: each Bond= and VLAN= names a netdev of that kind, each
// netdev has a .network, no two .network files match the same link, each
// NIC is matched by a MAC the profile gives it, and MTUs are in range.
func TestNetworkdFiles(t *testing.T) {
	def, err := profiles.Default()
	if err != nil {
		t.Fatal(err)
	}
	vars, err := profiles.Parse("variants.yaml", []byte(variants))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*profiles.Profile{def, bonded(t), vars} {
		for i := range p.Machines {
			m := &p.Machines[i]
			t.Run(p.Name+"/"+m.Name, func(t *testing.T) {
				checkNetworkd(t, m, networkdOf(t, p, m))
			})
		}
	}
}

// networkdOf renders m and returns its networkd files by base name.
func networkdOf(t *testing.T, p *profiles.Profile, m *profiles.Machine) map[string]iniFile {
	t.Helper()
	cfg, err := Render(p, m)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]iniFile{}
	for _, f := range cfg.Storage.Files {
		if path.Dir(f.Path)+"/" != NetworkDir {
			continue
		}
		u, err := dataurl.DecodeString(*f.Contents.Source)
		if err != nil {
			t.Fatal(err)
		}
		files[path.Base(f.Path)] = parseINI(t, path.Base(f.Path), string(u.Data))
	}
	return files
}

func checkNetworkd(t *testing.T, m *profiles.Machine, files map[string]iniFile) {
	netdevs := map[string]string{}   // name -> kind
	matched := map[string]string{}   // "Name=x" or "PermanentMACAddress=y" -> file
	stacked := map[string][]string{} // netdev name -> the files that attach it
	macs := []string{strings.ToLower(m.MAC)}
	if m.Interfaces != nil {
		macs = nil
		for _, n := range m.Interfaces.NICs {
			macs = append(macs, n.MAC)
		}
	}
	for name, f := range files {
		if path.Ext(name) == ".netdev" {
			netdevs[one(t, name, f, "NetDev", "Name")] = one(t, name, f, "NetDev", "Kind")
			if id := f["VLAN"]["Id"]; len(id) > 0 {
				if n, err := strconv.Atoi(id[0]); err != nil || n < 1 || n > 4094 {
					t.Errorf("%s: Id=%s is not a VLAN id", name, id[0])
				}
			}
		}
		for _, sec := range []string{"NetDev", "Link", "Route"} {
			for _, v := range f[sec]["MTUBytes"] {
				if n, err := strconv.Atoi(v); err != nil || n < profiles.MinMTU || n > profiles.MaxMTU {
					t.Errorf("%s: [%s] MTUBytes=%s is out of range", name, sec, v)
				}
			}
		}
	}
	for name, f := range files {
		if path.Ext(name) != ".network" {
			continue
		}
		if len(f["Match"]) != 1 {
			t.Errorf("%s: [Match] has %d keys, want 1", name, len(f["Match"]))
		}
		for k, vs := range f["Match"] {
			key := k + "=" + vs[0]
			if other, dup := matched[key]; dup {
				t.Errorf("%s and %s both match %s", name, other, key)
			}
			matched[key] = name
			switch k {
			case "Name":
				if netdevs[vs[0]] == "" {
					t.Errorf("%s: matches %s, which no .netdev creates", name, vs[0])
				}
			default:
				if !slices.Contains(macs, vs[0]) {
					t.Errorf("%s: matches %s, not a MAC of %s in the profile", name, key, m.Name)
				}
			}
		}
		for _, kind := range []string{"Bond", "VLAN"} {
			for _, dev := range f["Network"][kind] {
				if netdevs[dev] != strings.ToLower(kind) {
					t.Errorf("%s: %s=%s, but %s is no .netdev of kind %s", name, kind, dev, dev, strings.ToLower(kind))
				}
				if kind == "VLAN" {
					stacked[dev] = append(stacked[dev], name)
				}
			}
		}
	}
	for dev, kind := range netdevs {
		if matched["Name="+dev] == "" {
			t.Errorf("netdev %s has no .network", dev)
		}
		if kind == "vlan" && len(stacked[dev]) != 1 {
			t.Errorf("VLAN %s is attached by %v, want exactly one link", dev, stacked[dev])
		}
	}
}

// one returns the single value of key in section.
func one(t *testing.T, name string, f iniFile, section, key string) string {
	t.Helper()
	if vs := f[section][key]; len(vs) == 1 {
		return vs[0]
	}
	t.Errorf("%s: want one %s= in [%s], have %q", name, key, section, f[section][key])
	return ""
}
