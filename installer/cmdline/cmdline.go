// Package cmdline owns reading kiln's parameters from a kernel command line
// (kiln.mode, kiln.gate, kiln.mac, kiln.token, kiln.root, kiln.state). Both
// the initramfs (kiln-init) and the role OS's first boot (kiln-firstboot)
// read them, so the parsing lives here once.
package cmdline

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMissing means a parameter the mode needs is absent.
var ErrMissing = errors.New("missing kernel parameter")

// Params are the kiln.* parameters; other parameters are ignored.
type Params struct {
	Mode  string // "install" or "boot"
	Gate  string // install: gate base URL, http://host:port
	MAC   string // install: MAC of the NIC that netbooted
	Token string // install: one-time install credential
	Root  string // boot: PARTUUID of the root (squashfs) partition
	State string // boot: PARTUUID of the state (ext4) partition
}

// Parse reads a command line such as the contents of /proc/cmdline. Values
// may be double-quoted. kiln.root and kiln.state accept "PARTUUID=<guid>" or
// a bare GUID and are returned as the lower-case GUID.
func Parse(line string) Params {
	var p Params
	for _, f := range fields(line) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "kiln.mode":
			p.Mode = v
		case "kiln.gate":
			p.Gate = strings.TrimRight(v, "/")
		case "kiln.mac":
			p.MAC = strings.ToLower(v)
		case "kiln.token":
			p.Token = v
		case "kiln.root":
			p.Root = partUUID(v)
		case "kiln.state":
			p.State = partUUID(v)
		}
	}
	return p
}

// Need returns an error naming every listed parameter that is empty.
func (p Params) Need(names ...string) error {
	vals := map[string]string{
		"kiln.mode": p.Mode, "kiln.gate": p.Gate, "kiln.mac": p.MAC,
		"kiln.token": p.Token, "kiln.root": p.Root, "kiln.state": p.State,
	}
	var missing []string
	for _, n := range names {
		if vals[n] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissing, strings.Join(missing, " "))
	}
	return nil
}

func partUUID(v string) string {
	if len(v) > len("PARTUUID=") && strings.EqualFold(v[:len("PARTUUID=")], "PARTUUID=") {
		v = v[len("PARTUUID="):]
	}
	return strings.ToLower(v)
}

// fields splits on spaces outside double quotes and drops the quotes, as
// the kernel does.
func fields(line string) []string {
	var (
		out   []string
		cur   strings.Builder
		quote bool
	)
	for _, r := range line {
		switch {
		case r == '"':
			quote = !quote
		case !quote && (r == ' ' || r == '\t' || r == '\n'):
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
