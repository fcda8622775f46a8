package roles

import (
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/coreos/ignition/v2/config/v3_5/types"
)

// unitDir is where Apply writes units and their enablement links.
const unitDir = "/etc/systemd/system/"

func applyUnit(root *os.Root, u types.Unit) error {
	if strings.Contains(u.Name, "/") {
		return fmt.Errorf("unit name %q has a /", u.Name)
	}
	overwrite := true
	node := func(p string) types.Node { return types.Node{Path: p, Overwrite: &overwrite} }
	if u.Mask != nil && *u.Mask {
		return applyLink(root, link(unitDir+u.Name, "/dev/null"))
	}
	if u.Contents != nil {
		f := file(unitDir+u.Name, *u.Contents)
		f.Node = node(f.Path)
		if err := applyFile(root, f); err != nil {
			return err
		}
	}
	for _, d := range u.Dropins {
		if strings.Contains(d.Name, "/") {
			return fmt.Errorf("drop-in name %q has a /", d.Name)
		}
		if d.Contents == nil {
			continue // nothing to write
		}
		f := file(unitDir+u.Name+".d/"+d.Name, *d.Contents)
		f.Node = node(f.Path)
		if err := applyFile(root, f); err != nil {
			return err
		}
	}
	if u.Enabled == nil {
		return nil
	}
	return enable(root, u)
}

// enable makes the links `systemctl enable` would make for a unit kiln
// writes. Disabling needs the base image's links gone, which an /etc
// overlay cannot express without whiteouts, so it is refused.
func enable(root *os.Root, u types.Unit) error {
	if !*u.Enabled {
		return fmt.Errorf("%w: enabled: false", ErrUnsupported)
	}
	if u.Contents == nil || strings.Contains(u.Name, "@.") {
		return fmt.Errorf("%w: enabling a unit (or template) whose contents the config does not carry; add its links instead", ErrUnsupported)
	}
	target := unitDir + u.Name
	inst := installSection(*u.Contents)
	var links []types.Link
	for _, w := range inst["WantedBy"] {
		links = append(links, link(unitDir+w+".wants/"+u.Name, target))
	}
	for _, r := range inst["RequiredBy"] {
		links = append(links, link(unitDir+r+".requires/"+u.Name, target))
	}
	for _, a := range inst["Alias"] {
		links = append(links, link(unitDir+path.Base(a), target))
	}
	if len(links) == 0 {
		return fmt.Errorf("unit has no [Install] WantedBy, RequiredBy or Alias to enable it by")
	}
	overwrite := true
	for _, l := range links {
		l.Overwrite = &overwrite
		if err := applyLink(root, l); err != nil {
			return err
		}
	}
	return nil
}
